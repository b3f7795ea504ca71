"""ONNX Runtime runner on the CPU: the fallback wherever TensorRT is absent.

Python 3.6-compatible; onnxruntime is imported lazily.
"""
import logging

import numpy as np

from deploy.errors import BackendUnavailableError
from deploy.runners.base import Runner, TensorMeta

LOG = logging.getLogger(__name__)

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(
            "onnxruntime is not installed",
            hint="pip install onnxruntime (on a Jetson, use NVIDIA's onnxruntime-gpu wheel for JetPack 4.6)",
        )
    return onnxruntime


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model_path, threads=None):
        super(OnnxRuntimeRunner, self).__init__()
        self.model_path = str(model_path)
        self.threads = threads
        self.session = None

    def activate_impl(self):
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        self.session = ort.InferenceSession(self.model_path, options, providers=["CPUExecutionProvider"])

    def deactivate_impl(self):
        self.session = None

    def input_metadata_impl(self):
        metas = []
        for node in self.session.get_inputs():
            shape = tuple(d if isinstance(d, int) else None for d in node.shape)
            metas.append(TensorMeta(node.name, shape, np.dtype(_ORT_DTYPES.get(node.type, np.float32))))
        return metas

    def infer_impl(self, feed):
        names = [o.name for o in self.session.get_outputs()]
        values = self.session.run(names, feed)
        return dict(zip(names, values))
