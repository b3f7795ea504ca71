"""OpenVINO runner on the CPU: an optional fallback backend (``--backend openvino``).

OpenVINO reads the bundle's ONNX directly (no conversion step), compiles it for this CPU with
the LATENCY performance hint (one stream, all physical cores) and runs one synchronous infer
request. For the timed loop the input is wrapped once as a shared-memory tensor (no copy per
call). Python 3.6-compatible; openvino is imported lazily and is not a required dependency.

Precision. OpenVINO's CPU plugin runs in BF16 by default wherever the CPU has AVX512_BF16 or AMX
(its INFERENCE_PRECISION_HINT defaults to bf16 there), so a model compiled without a hint is not an
FP32 run on such a CPU. The runner therefore always sets the hint that matches the requested
precision (fp32 -> f32, bf16 -> bf16; int8 -> f32 for the layers a QDQ model leaves unquantized,
as ONNX Runtime runs them) and reads back what was compiled: the compiled model's hint and the
runtime precision of every convolution in the executable graph (``compiled_precision``).
"""
import collections
import logging
import os

import numpy as np

from deploy.errors import BackendUnavailableError, PipelineError, UsageError
from deploy.runners.contract import Runner, TensorMeta, check_feed

LOG = logging.getLogger(__name__)

# requested precision -> INFERENCE_PRECISION_HINT (element type names of ov::element::Type)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# element type names -> the project's precision names
ELEMENT_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "u8": "int8", "i8": "int8"}
CONVOLUTION_TYPES = ("Convolution", "GroupConvolution", "Deconvolution")


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError(
            "openvino is not installed",
            hint="pip install openvino (optional CPU backend; ONNX Runtime is the default fallback)",
        ) from None
    return openvino


def openvino_version():
    ov = import_openvino()
    try:
        return ov.get_version()
    except AttributeError:
        return getattr(ov, "__version__", "unknown")


class OpenVinoRunner(Runner):
    name = "openvino"

    def __init__(self, model_path, threads=None, hint="LATENCY", precision="fp32", set_precision_hint=True):
        """``set_precision_hint=False`` leaves INFERENCE_PRECISION_HINT at OpenVINO's default (BF16 on
        CPUs with AVX512_BF16/AMX): only to show that default; what ran is still read back."""
        super(OpenVinoRunner, self).__init__()
        if precision not in PRECISION_HINTS:
            raise UsageError("OpenVINO on the CPU runs {}, not {}".format(", ".join(sorted(PRECISION_HINTS)), precision),
                             hint="--precision fp32, or best to choose from the CPU's flags")
        self.model_path = str(model_path)
        self.threads = int(threads) if threads else None
        self.hint = hint
        self.precision = precision
        self.set_precision_hint = bool(set_precision_hint)
        self.compiled = None
        self.request = None
        self._inputs = None
        self.compiled_info = None   # set by activate: compiled_precision(self.compiled)

    def describe(self):
        out = {"runtime": "openvino {}".format(openvino_version()), "device": "CPU",
               "performance_hint": self.hint, "threads": self.threads or "auto (physical cores)",
               "precision_requested": self.precision,
               "inference_precision_hint": PRECISION_HINTS[self.precision] if self.set_precision_hint
               else "not set (OpenVINO's default)"}
        if self.compiled_info is not None:
            out.update(self.compiled_info)
        return out

    @property
    def precision_ran(self):
        """The precision that ran, as read back from the compiled model (None before activate)."""
        return (self.compiled_info or {}).get("precision_ran")

    def activate_impl(self):
        ov = import_openvino()
        if not os.path.isfile(self.model_path):
            raise PipelineError("ONNX model {} does not exist".format(self.model_path),
                                hint="rebuild the bundle with `python pipeline.py build`")
        config = {"PERFORMANCE_HINT": self.hint}
        if self.set_precision_hint:
            config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[self.precision]
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.compiled = ov.Core().compile_model(self.model_path, "CPU", config)
        except RuntimeError as exc:
            raise PipelineError("OpenVINO cannot compile {}: {}".format(self.model_path, str(exc).splitlines()[0]),
                                hint="check the ONNX file or use --backend onnxruntime") from exc
        self.request = self.compiled.create_infer_request()
        self._inputs = [p.get_any_name() for p in self.compiled.inputs]
        self.compiled_info = compiled_precision(self.compiled)
        if self.set_precision_hint and self.compiled_info["precision_ran"] != self.precision:
            LOG.warning("OpenVINO was asked for %s but compiled %s (%s)", self.precision,
                        self.compiled_info["precision_ran"], self.compiled_info["convolutions"])

    def deactivate_impl(self):
        self.request = None
        self.compiled = None

    def input_metadata_impl(self):
        metas = []
        for port in self.compiled.inputs:
            pshape = port.get_partial_shape()
            shape = tuple(d.get_length() if d.is_static else None for d in pshape)
            dtype = np.dtype(port.get_element_type().to_dtype())
            metas.append(TensorMeta(port.get_any_name(), shape, dtype))
        return metas

    def infer_impl(self, feed):
        result = self.request.infer({name: feed[name] for name in self._inputs})
        return {port.get_any_name(): np.array(value) for port, value in result.items()}

    def prepare(self, feed):
        self._require_active()
        check_feed(self._input_meta, feed)
        ov = import_openvino()
        for index, name in enumerate(self._inputs):
            tensor = ov.Tensor(np.ascontiguousarray(feed[name]), shared_memory=True)
            self.request.set_input_tensor(index, tensor)

    def run_prepared(self):
        self.request.infer()
        return None


def _type_name(value):
    """'f32' for an ov.Type (or anything whose str is the name)."""
    getter = getattr(value, "get_type_name", None)
    return getter() if getter is not None else str(value)


def compiled_precision(compiled):
    """What OpenVINO compiled: {"inference_precision": "bf16", "convolutions": {"u8": 74}, "precision_ran"}.

    ``inference_precision`` is the compiled model's INFERENCE_PRECISION_HINT; ``convolutions``
    counts the runtime precision (rt_info "runtimePrecision") of the convolutions of the executable
    graph (``get_runtime_model``); ``precision_ran`` is the project's name for the precision most
    convolutions ran in, else the hint's.
    """
    hint = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    counts = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in CONVOLUTION_TYPES and "runtimePrecision" in info:
            counts[info["runtimePrecision"].astype(str)] += 1
    main = counts.most_common(1)[0][0] if counts else hint
    ran = ELEMENT_PRECISIONS.get(main, main)
    return collections.OrderedDict([
        ("inference_precision", ELEMENT_PRECISIONS.get(hint, hint)),
        ("convolutions", collections.OrderedDict(sorted(counts.items()))),
        ("precision_ran", ran)])
