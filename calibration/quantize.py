"""ONNX Runtime INT8 (QDQ) for the CPU fallback, from the bundle's calibration batches.

``onnxruntime.quantization.quantize_static`` does the work: QDQ format, per-channel weights,
unsigned 8-bit activations with signed 8-bit weights (the fast x86 path), MinMax, Entropy or
Percentile calibration, 7-bit weight range (see REDUCE_RANGE). Host-only.

Before quantizing, convolution channels are padded to multiples of CHANNEL_ALIGN with zero
filters (deploy.runners.ort_channel_pad; exact): ONNX Runtime's fast symmetric INT8 convolution
kernels (MLAS "ConvSym", x86 and ARM) take only convolutions whose output channels are multiples
of 8 and input channels multiples of 4, and depthwise ones with groups in multiples of 16 on x86.
HarDNet's growth rates (14, 20, 40 ...) miss that; padded, its convolutions all qualify
(HarDNet39DS INT8 at 320x320 went from 1.49x to 1.58-1.59x the FP32 speed, bench/int8_speed.py).
MobileNetV2's channels are aligned already, so it is left as it is.

The 3-channel stem is the exception the FP32 padding cannot reach (its input is the image): after
quantizing, the quantized image gets a fourth channel of zeros (a uint8 Pad right after its
QuantizeLinear) and the stem's int8 weights a fourth input channel of zeros (see
``pad_quantized_stem``), so the stem runs on the symmetric kernels too. Exact.
"""
from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from deploy.atomic import atomic_path
from deploy.errors import CalibrationError, ExportError, UsageError
from deploy.preprocess import check_calibration_batches

LOG = logging.getLogger(__name__)

CALIB_METHODS = ("minmax", "entropy", "percentile")

# 7-bit weights. x86 CPUs without VNNI (AVX2 only, like this host) multiply uint8 x int8 with
# VPMADDUBSW, whose int16 sums saturate; with full 8-bit weights the digits MobileNetV2 lost 2.2
# points of held-out accuracy (97.50% -> 95.28%, MinMax), with 7-bit weights 0.28. ONNX Runtime
# recommends it for such CPUs; it costs nothing in speed and little precision elsewhere.
REDUCE_RANGE = True

# Input-channel alignment of the symmetric INT8 kernels (MLAS KernelInputChannelAlignment).
STEM_CHANNEL_ALIGN = 4

# Channel alignment for the symmetric INT8 kernels (see the module docstring). 8, not 16: padding
# to 16 measured slower on HarDNet39DS (more zero MACs than the depthwise kernels gain).
CHANNEL_ALIGN = 8


def check_method(method: str) -> str:
    """Return ``method`` if it is a known calibration method, else raise UsageError listing them."""
    if method not in CALIB_METHODS:
        raise UsageError(f"unknown calibration method {method!r}",
                         hint=f"choose one of: {', '.join(CALIB_METHODS)}")
    return method


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[check_method(method)]


class _QuietOnnxRuntimeInfo(logging.Filter):
    """Drop the INFO lines onnxruntime.quantization logs on the root logger (one per bias copy)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and "onnxruntime" in record.pathname)


def _stride(total: int, limit: int = 16) -> int:
    """The largest divisor of ``total`` not above ``limit``: calibration runs that many at a time."""
    return max(d for d in range(1, min(limit, total) + 1) if total % d == 0)


class ArrayDataReader:
    """onnxruntime CalibrationDataReader over an (N, 3, H, W) array, one model batch at a time.

    Supports ``set_range`` so that quantize_static (``CalibStridedMinMax``) collects statistics a
    slice at a time: histogram calibrators otherwise keep every activation of every image in memory.
    """

    def __init__(self, array: np.ndarray, input_name: str, batch: int = 1, progress=None) -> None:
        self.array = array
        self.input_name = input_name
        self.batch = max(1, int(batch))
        self.progress = progress
        self.start, self.end = 0, len(array)
        self.pos = 0

    def __len__(self) -> int:
        return len(self.array)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self.array))
        self.pos = self.start

    def get_next(self):
        if self.pos >= self.end:
            return None
        stop = min(self.pos + self.batch, self.end)
        feed = {self.input_name: np.ascontiguousarray(self.array[self.pos:stop], dtype=np.float32)}
        if self.progress is not None:
            self.progress.update(stop - self.pos)
        self.pos = stop
        return feed

    def rewind(self) -> None:
        self.pos = self.start

    def __iter__(self):
        self.rewind()
        while True:
            feed = self.get_next()
            if feed is None:
                return
            yield feed


def quantize_onnx(fp32_path: str, int8_path: str, array: np.ndarray, method: str = "minmax",
                  progress: bool = True, desc: str = "int8") -> dict:
    """Write ``int8_path``: the QDQ INT8 model of ``fp32_path`` calibrated on ``array``.

    The file appears only when complete and loadable by ONNX Runtime. Returns a small record
    (method, formats, count, node counts) for the manifest.
    """
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tqdm import tqdm

    ort_method = _ort_method(method)
    session = ort.InferenceSession(fp32_path, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ExportError(f"{fp32_path} has {len(inputs)} inputs; INT8 calibration takes models with one image input",
                          hint="build this model with --precision fp32 or fp16")
    name, shape = inputs[0].name, inputs[0].shape
    del session
    check_calibration_batches(array.shape, array.dtype, shape, os.path.basename(fp32_path), "calibration data")
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    count = len(array) - len(array) % batch
    if count < 1:
        raise CalibrationError(f"{len(array)} calibration image(s) is fewer than one batch of {batch}",
                               hint="calibrate with more images (--calib-count)")
    array = array[:count]
    stride = _stride(count // batch) * batch
    with tempfile.TemporaryDirectory(prefix="int8.") as scratch:
        prepared = os.path.join(scratch, "prepared.onnx")
        source, padded = _aligned_source(fp32_path, scratch)
        try:
            # Shape inference + graph optimisation first, as ONNX Runtime recommends for quantization.
            quant_pre_process(source, prepared, skip_symbolic_shape=True)
        except Exception as exc:  # onnxruntime raises assorted types here; fall back to the plain model
            LOG.warning("quantization pre-processing failed (%s); quantizing the model as it is", exc)
            prepared = source
        with tqdm(total=count, desc=f"{desc} ({method})", unit="img", disable=not progress, leave=False) as bar:
            reader = ArrayDataReader(array, name, batch=batch, progress=bar)
            quiet = _QuietOnnxRuntimeInfo()
            logging.getLogger().addFilter(quiet)
            try:
                with atomic_path(int8_path) as tmp:
                    stem_padded, ops = _quantize_and_check(prepared, tmp, reader, ort_method, stride, name,
                                                           array[:batch], fp32_path)
            finally:
                logging.getLogger().removeFilter(quiet)
    return {
        "calib_method": method,
        "format": "QDQ",
        "activations": "uint8 (asymmetric)",
        "weights": "int8 per-channel (symmetric{})".format(", 7-bit range (reduce_range)" if REDUCE_RANGE else ""),
        "channels_padded_to": CHANNEL_ALIGN if padded else None,
        "stem_input_channels_padded_to": stem_padded,
        "calibration_count": int(count),
        "nodes": len(ops),
        "quantize_nodes": ops.count("QuantizeLinear"),
        "onnxruntime": ort.__version__,
    }


def _aligned_source(fp32_path: str, scratch: str) -> tuple[str, bool]:
    """``fp32_path`` with convolution channels padded to CHANNEL_ALIGN (a file in ``scratch``), or the
    path itself when the channels are aligned already or the padding does not apply; and whether padded."""
    import onnx

    from deploy.runners.ort_channel_pad import pad_channels

    padded = pad_channels(onnx.load(fp32_path), CHANNEL_ALIGN)
    if padded is None:
        return fp32_path, False
    path = os.path.join(scratch, "aligned.onnx")
    onnx.save(padded, path)
    LOG.info("%s: convolution channels padded to multiples of %d for the INT8 kernels",
             os.path.basename(fp32_path), CHANNEL_ALIGN)
    return path, True


def pad_quantized_stem(model) -> int | None:
    """In a QDQ ``model`` (onnx.ModelProto, changed in place), give the convolution that reads the
    quantized graph input zero channels up to STEM_CHANNEL_ALIGN: a uint8 Pad (value: the input's
    zero point, which dequantizes to 0) between the input's QuantizeLinear and DequantizeLinear,
    and zero input channels in its int8 weights. Returns the new channel count, or None when the
    graph does not have that shape (input -> Q -> DQ -> Conv, each used once) or needs nothing."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {out: node for node in graph.node for out in node.output}
    users = consumers.get(graph.input[0].name, []) if len(graph.input) else []
    if len(users) != 1 or users[0].op_type != "QuantizeLinear" or len(users[0].input) < 3:
        return None
    quant = users[0]
    users = consumers.get(quant.output[0], [])
    if len(users) != 1 or users[0].op_type != "DequantizeLinear":
        return None
    dequant = users[0]
    users = consumers.get(dequant.output[0], [])
    if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != dequant.output[0]:
        return None
    weight_dq = producer.get(users[0].input[1])
    if weight_dq is None or weight_dq.op_type != "DequantizeLinear" or weight_dq.input[0] not in inits:
        return None
    if quant.input[2] not in inits or len(consumers.get(weight_dq.input[0], [])) != 1:
        return None
    weight = numpy_helper.to_array(inits[weight_dq.input[0]])
    group = next((a.i for a in users[0].attribute if a.name == "group"), 1)
    channels = weight.shape[1] if weight.ndim == 4 else 0
    wanted = -(-channels // STEM_CHANNEL_ALIGN) * STEM_CHANNEL_ALIGN
    if group != 1 or channels == 0 or wanted == channels:
        return None
    extra = np.zeros((weight.shape[0], wanted - channels) + weight.shape[2:], weight.dtype)
    inits[weight_dq.input[0]].CopyFrom(numpy_helper.from_array(np.concatenate([weight, extra], axis=1),
                                                               weight_dq.input[0]))
    zero_point = numpy_helper.to_array(inits[quant.input[2]])
    pads, value, padded = "stem.channel_pads", "stem.channel_pad_value", quant.output[0] + ".channel_padded"
    graph.initializer.extend([
        numpy_helper.from_array(np.array([0, 0, 0, 0, 0, wanted - channels, 0, 0], np.int64), pads),
        numpy_helper.from_array(zero_point.reshape(()), value)])
    dequant.input[0] = padded
    nodes = list(graph.node)
    nodes.insert(nodes.index(quant) + 1, helper.make_node("Pad", [quant.output[0], pads, value], [padded],
                                                          name="stem.channel_pad", mode="constant"))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return wanted


def _quantize_and_check(prepared: str, tmp: str, reader: ArrayDataReader, ort_method, stride: int,
                        input_name: str, sample: np.ndarray, fp32_path: str) -> tuple[int | None, list[str]]:
    """quantize_static into ``tmp`` (then the stem's channel padding, see ``pad_quantized_stem``),
    and prove the result loads and runs in ONNX Runtime. Returns the stem's new channel count (or
    None) and the INT8 graph's operator types."""
    import contextlib
    import io

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    chatter = io.StringIO()  # the histogram calibrators print() their settings; keep stdout clean
    with contextlib.redirect_stdout(chatter):
        quantize_static(
            prepared, tmp, reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=REDUCE_RANGE,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=ort_method,
            extra_options={"CalibStridedMinMax": stride},
        )
    if chatter.getvalue().strip():
        LOG.debug("onnxruntime.quantization: %s", chatter.getvalue().strip())
    model = onnx.load(tmp)
    stem_padded = pad_quantized_stem(model)
    if stem_padded is not None:
        onnx.save(model, tmp)
        LOG.info("%s: INT8 stem input padded to %d channels", os.path.basename(fp32_path), stem_padded)
    try:
        check = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        check.run(None, {input_name: np.ascontiguousarray(sample)})
    except Exception as exc:  # any ORT failure means the file must not land in the bundle
        raise ExportError(f"the INT8 model of {fp32_path} does not run in ONNX Runtime ({exc})",
                          hint="try another --calib-method, or report the model") from None
    return stem_padded, [n.op_type for n in model.graph.node]
