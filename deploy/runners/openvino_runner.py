"""OpenVINO runner on the CPU: an optional fallback backend (``--backend openvino``).

OpenVINO reads the bundle's ONNX directly (no conversion step), compiles it for this CPU with
the LATENCY performance hint (one stream, all physical cores) and runs one synchronous infer
request. For the timed loop the input is wrapped once as a shared-memory tensor (no copy per
call). Python 3.6-compatible; openvino is imported lazily and is not a required dependency.
"""
import logging
import os

import numpy as np

from deploy.errors import BackendUnavailableError, PipelineError
from deploy.runners.base import Runner, TensorMeta, check_feed

LOG = logging.getLogger(__name__)


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError(
            "openvino is not installed",
            hint="pip install openvino (optional CPU backend; ONNX Runtime is the default fallback)",
        )
    return openvino


def openvino_version():
    ov = import_openvino()
    try:
        return ov.get_version()
    except AttributeError:
        return getattr(ov, "__version__", "unknown")


class OpenVinoRunner(Runner):
    name = "openvino"

    def __init__(self, model_path, threads=None, hint="LATENCY"):
        super(OpenVinoRunner, self).__init__()
        self.model_path = str(model_path)
        self.threads = int(threads) if threads else None
        self.hint = hint
        self.compiled = None
        self.request = None
        self._inputs = None

    def describe(self):
        return {"runtime": "openvino {}".format(openvino_version()), "device": "CPU",
                "performance_hint": self.hint, "threads": self.threads or "auto (physical cores)"}

    def activate_impl(self):
        ov = import_openvino()
        if not os.path.isfile(self.model_path):
            raise PipelineError("ONNX model {} does not exist".format(self.model_path),
                                hint="rebuild the bundle with `python pipeline.py build`")
        config = {"PERFORMANCE_HINT": self.hint}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.compiled = ov.Core().compile_model(self.model_path, "CPU", config)
        except RuntimeError as exc:
            raise PipelineError("OpenVINO cannot compile {}: {}".format(self.model_path, str(exc).splitlines()[0]),
                                hint="check the ONNX file or use --backend onnxruntime")
        self.request = self.compiled.create_infer_request()
        self._inputs = [p.get_any_name() for p in self.compiled.inputs]

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
