"""ONNX Runtime INT8 (QDQ) for the CPU fallback, from the bundle's calibration batches.

``onnxruntime.quantization.quantize_static`` does the work: QDQ format, per-channel weights,
unsigned 8-bit activations with signed 8-bit weights (the fast x86 path), MinMax, Entropy or
Percentile calibration, 7-bit weight range (see REDUCE_RANGE). Host-only.

Before quantizing, convolution channels are padded to multiples of CHANNEL_ALIGN with zero
filters (deploy.runners.ort_channel_pad; exact): ONNX Runtime's fast symmetric INT8 convolution
kernels (MLAS "ConvSym", x86 and ARM) take only convolutions whose output channels are multiples
of 8 and input channels multiples of 4, and depthwise ones with groups in multiples of 16 on x86.
HarDNet's growth rates (14, 20, 40 ...) miss that; padded, its convolutions all qualify
(HarDNet39DS INT8 at 320x320 went from 1.49x to 1.58-1.59x the FP32 speed, bench/int8_speed.py). MobileNetV2's
channels are aligned already, so it is left as it is.
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
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tqdm import tqdm

    ort_method = _ort_method(method)
    session = ort.InferenceSession(fp32_path, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ExportError(f"{fp32_path} has {len(inputs)} inputs; INT8 calibration takes models with one image input")
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
                    _quantize_and_check(prepared, tmp, reader, ort_method, stride, name, array[:batch], fp32_path)
            finally:
                logging.getLogger().removeFilter(quiet)
    model = onnx.load(int8_path, load_external_data=False)
    ops = [n.op_type for n in model.graph.node]
    return {
        "calib_method": method,
        "format": "QDQ",
        "activations": "uint8 (asymmetric)",
        "weights": "int8 per-channel (symmetric{})".format(", 7-bit range (reduce_range)" if REDUCE_RANGE else ""),
        "channels_padded_to": CHANNEL_ALIGN if padded else None,
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


def _quantize_and_check(prepared: str, tmp: str, reader: ArrayDataReader, ort_method, stride: int,
                        input_name: str, sample: np.ndarray, fp32_path: str) -> None:
    """quantize_static into ``tmp``, then prove the result loads and runs in ONNX Runtime."""
    import contextlib
    import io

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
    try:
        check = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        check.run(None, {input_name: np.ascontiguousarray(sample)})
    except Exception as exc:  # any ORT failure means the file must not land in the bundle
        raise ExportError(f"the INT8 model of {fp32_path} does not run in ONNX Runtime ({exc})",
                          hint="try another --calib-method, or report the model") from None
