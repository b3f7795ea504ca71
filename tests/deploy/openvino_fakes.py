"""A fake ``openvino`` module: enough of its Python API for OpenVinoRunner's precision logic.

What it models, and from where:
  * ``Core().compile_model(path, "CPU", config)`` takes string properties; INFERENCE_PRECISION_HINT
    defaults to bf16 on CPUs with AVX512_BF16 or AMX and to f32 elsewhere (OpenVINO docs, "CPU
    Device", section "Supported Model Precision": https://docs.openvino.ai/2024/openvino-workflow/
    running-inference/inference-devices-and-modes/cpu-device.html; seen here with openvino 2026.4.1,
    whose ``Core().get_property("CPU", "INFERENCE_PRECISION_HINT")`` is bfloat16 on this AMX host).
  * ``CompiledModel.get_property("INFERENCE_PRECISION_HINT")`` returns an ``ov.Type`` whose
    ``get_type_name()`` is "f32"/"bf16"; ``get_runtime_model().get_ordered_ops()`` gives the
    executable graph, each op's ``get_rt_info()`` mapping "layerType" and "runtimePrecision" to
    values read with ``.astype(str)`` (checked against openvino 2026.4.1 on a HarDNet39DS bundle:
    74 Convolution ops, runtimePrecision f32 / bf16 / u8 for the f32 hint, the bf16 hint, the QDQ model).
  * quantized convolutions (a QDQ model) run in u8 whatever the hint: the hint only applies to the
    layers left in floating point (same docs page, "Quantized data types specifics").
"""
import types

import numpy as np


class Type(object):
    def __init__(self, name):
        self.name = name

    def get_type_name(self):
        return self.name

    def to_dtype(self):
        return np.float32


class _Any(object):
    def __init__(self, value):
        self.value = value

    def astype(self, kind):
        return kind(self.value)


class _Op(object):
    def __init__(self, layer_type, precision):
        self.info = {"layerType": _Any(layer_type), "runtimePrecision": _Any(precision)}

    def get_rt_info(self):
        return self.info


class _Dim(object):
    is_static = True

    def __init__(self, n):
        self.n = n

    def get_length(self):
        return self.n


class _Port(object):
    def __init__(self, name, shape):
        self.name, self.shape = name, shape

    def get_any_name(self):
        return self.name

    def get_partial_shape(self):
        return [_Dim(d) for d in self.shape]

    def get_element_type(self):
        return Type("f32")


class _RuntimeModel(object):
    def __init__(self, ops):
        self.ops = ops

    def get_ordered_ops(self):
        return list(self.ops)


class _Request(object):
    def __init__(self, compiled):
        self.compiled = compiled
        self.inputs = {}

    def set_input_tensor(self, index, tensor):
        self.inputs[index] = tensor

    def infer(self, feed=None):
        x = list(feed.values())[0] if feed else self.inputs[0].data
        return {_Port("logits", (1, 2)): np.array([[float(x.mean()), 0.0]], np.float32)}


class CompiledModel(object):
    def __init__(self, path, config, has_bf16, convolutions, quantized):
        self.path, self.config = path, dict(config)
        hint = config.get("INFERENCE_PRECISION_HINT", "bf16" if has_bf16 else "f32")
        self.hint = hint
        conv_precision = "u8" if quantized else hint
        self.ops = [_Op("Input", "f32")] + [_Op("Convolution", conv_precision) for _ in range(convolutions)] + \
            [_Op("Pooling", hint)]
        self.inputs = [_Port("input", (1, 3, 32, 32))]

    def get_property(self, name):
        assert name == "INFERENCE_PRECISION_HINT", name
        return Type(self.hint)

    def get_runtime_model(self):
        return _RuntimeModel(self.ops)

    def create_infer_request(self):
        return _Request(self)


def make_openvino(has_bf16=True, convolutions=3):
    """A module object to put in sys.modules["openvino"]; ``.compiled`` lists what was compiled."""
    module = types.ModuleType("openvino")
    module.compiled = []

    class Core(object):
        def compile_model(self, path, device, config):
            assert device == "CPU"
            compiled = CompiledModel(path, config, has_bf16, convolutions, quantized=".int8." in str(path))
            module.compiled.append(compiled)
            return compiled

    class Tensor(object):
        def __init__(self, array, shared_memory=False):
            self.data = array

    module.Core = Core
    module.Tensor = Tensor
    module.Type = Type
    module.get_version = lambda: "2026.4.1-fake"
    return module
