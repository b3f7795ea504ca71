"""Tiny ONNX models and bundles for the benchmark tests (onnx.helper: no torch, milliseconds)."""
import collections
import json
import os

import numpy as np


def tiny_cnn(path, size=32, seed=0, channels=(12, 20, 10), classes=5):
    """input 1x3xSxS -> conv 3x3 (c0) -> relu -> depthwise 3x3 -> conv 1x1 (c1) -> relu
    -> concat(depthwise out, conv out) -> conv 1x1 (c2) -> clip -> global pool -> flatten -> gemm.

    Channel counts (12, 20, 10 by default) are not multiples of 8, as in HarDNet, so the NCHWc
    channel padding has work to do; the concat and the depthwise conv exercise its channel map.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(seed)
    c0, c1, c2 = channels

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    inits = [
        w("w0", c0, 3, 3, 3), w("b0", c0),
        w("wd", c0, 1, 3, 3), w("bd", c0),
        w("w1", c1, c0, 1, 1), w("b1", c1),
        w("w2", c2, c0 + c1, 1, 1), w("b2", c2),
        w("fc", classes, c2), w("fcb", classes),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w0", "b0"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["a"], ["a1"]),
        helper.make_node("Conv", ["a1", "wd", "bd"], ["d"], pads=[1, 1, 1, 1], group=c0),
        helper.make_node("Conv", ["d", "w1", "b1"], ["e"]),
        helper.make_node("Relu", ["e"], ["e1"]),
        helper.make_node("Concat", ["d", "e1"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w2", "b2"], ["f"]),
        helper.make_node("Clip", ["f", "lo", "hi"], ["f1"]),
        helper.make_node("GlobalAveragePool", ["f1"], ["g"]),
        helper.make_node("Flatten", ["g"], ["h"]),
        helper.make_node("Gemm", ["h", "fc", "fcb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def tiny_qdq(fp32_path, path, size=32):
    """A QDQ INT8 copy of a tiny model (ONNX Runtime's static quantization, 4 random calibration inputs)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.RandomState(0)
            self.feeds = iter([{"input": rng.standard_normal((1, 3, size, size)).astype(np.float32)}
                               for _ in range(4)])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(fp32_path, path, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return path


def tiny_bundle(root, names=("hardnet39ds", "mobilenetv2"), size=32, target="cpu", int8=False):
    """A bundle whose models are tiny CNNs under the given names (so the pair table has rows);
    ``int8``: with QDQ INT8 models too (models/<name>.int8.onnx, as the cpu target's INT8 build makes)."""
    from deploy.atomic import sha256_file
    from deploy.targets import get_target

    root = str(root)
    os.makedirs(os.path.join(root, "models"), exist_ok=True)
    manifest = collections.OrderedDict([("schema_version", 1), ("target", dict(get_target(target)._asdict())),
                                        ("models", collections.OrderedDict())])
    for i, name in enumerate(names):
        rel = "models/{}.onnx".format(name)
        tiny_cnn(os.path.join(root, rel), size=size, seed=i, channels=(12 + 4 * i, 20, 10))
        manifest["models"][name] = {
            "onnx": {"path": rel, "sha256": sha256_file(os.path.join(root, rel)), "opset": 13},
            "input": {"name": "input", "shape": [1, 3, size, size], "dtype": "float32", "dynamic_batch": False},
            "output": {"name": "logits", "shape": [1, 5]},
            "params": 1000 + i, "macs": 100000 * (i + 1),
        }
        if int8:
            rel8 = "models/{}.int8.onnx".format(name)
            tiny_qdq(os.path.join(root, rel), os.path.join(root, rel8), size)
            manifest["models"][name]["int8_onnx"] = {"path": rel8, "sha256": sha256_file(os.path.join(root, rel8))}
    with open(os.path.join(root, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return root
