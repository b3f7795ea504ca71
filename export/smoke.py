"""The smoke model: a tiny ONNX network that `doctor` runs on the device in seconds.

Built into every bundle so the first run on a Jetson checks the whole TensorRT path (parse, build,
deserialize, bind, copy, execute) on the same kinds of layers the real models use, without the
minutes a real engine build takes: a stem convolution with ReLU, a depthwise convolution with
Clip (ReLU6), a 1x1 convolution, Concat of two branches, global average pooling and a Gemm
classifier. The graph is written with ``onnx.helper`` at the target's opset from seeded weights;
its reference output is computed here with PyTorch's functional operators, independently of
ONNX Runtime (which the tests compare it with) and of TensorRT (which `doctor` compares it with).
"""
from __future__ import annotations

import collections
import os
from typing import Any

import numpy as np

from deploy.atomic import sha256_file, write_bytes
from deploy.device.smoke import (
    SMOKE_INPUT_RELPATH,
    SMOKE_INPUT_SHAPE,
    SMOKE_ONNX_RELPATH,
    SMOKE_REFERENCE_RELPATH,
    SMOKE_TOLERANCES,
)

SEED = 20191027          # ICCV 2019's first day: any fixed seed would do
CLASSES = 10
STEM, BRANCH = 8, 8      # channels


def _weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    channels = SMOKE_INPUT_SHAPE[1]

    def he(shape, fan_in):      # keeps every activation of order one, so the tolerances mean something
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return collections.OrderedDict([
        ("stem.weight", he((STEM, channels, 3, 3), channels * 9)),
        ("stem.bias", (rng.standard_normal(STEM) * 0.1).astype(np.float32)),
        ("dw.weight", he((STEM, 1, 3, 3), 9)),
        ("dw.bias", (rng.standard_normal(STEM) * 0.1).astype(np.float32)),
        ("pw.weight", he((BRANCH, STEM, 1, 1), STEM)),
        ("pw.bias", (rng.standard_normal(BRANCH) * 0.1).astype(np.float32)),
        ("fc.weight", he((CLASSES, STEM + BRANCH), STEM + BRANCH)),
        ("fc.bias", (rng.standard_normal(CLASSES) * 0.1).astype(np.float32)),
    ])


def make_smoke_graph(opset: int, weights: dict[str, np.ndarray]):
    """The smoke network as an ``onnx.ModelProto`` at ``opset`` (11..13 for the Jetson targets)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(value, name) for name, value in weights.items()]
    inits += [numpy_helper.from_array(np.array(0.0, np.float32), "clip.min"),
              numpy_helper.from_array(np.array(6.0, np.float32), "clip.max")]
    nodes = [
        helper.make_node("Conv", ["input", "stem.weight", "stem.bias"], ["stem"], kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], name="stem_conv"),
        helper.make_node("Relu", ["stem"], ["stem_relu"], name="stem_relu"),
        helper.make_node("Conv", ["stem_relu", "dw.weight", "dw.bias"], ["dw"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], group=STEM, name="depthwise_conv"),
        helper.make_node("Clip", ["dw", "clip.min", "clip.max"], ["dw_relu6"], name="relu6"),
        helper.make_node("Conv", ["dw_relu6", "pw.weight", "pw.bias"], ["pw"], kernel_shape=[1, 1],
                         name="pointwise_conv"),
        helper.make_node("Concat", ["stem_relu", "pw"], ["cat"], axis=1, name="concat"),
        helper.make_node("GlobalAveragePool", ["cat"], ["pool"], name="global_pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name="classifier"),
    ]
    graph = helper.make_graph(
        nodes, "smoke",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(SMOKE_INPUT_SHAPE))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [SMOKE_INPUT_SHAPE[0], CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="hardnet-pipeline smoke",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7          # readable by the ONNX parser of TensorRT 8.2 (onnx 1.8)
    onnx.checker.check_model(model, full_check=True)
    return model


def reference_output(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The smoke network computed with torch.nn.functional (float64, then rounded to float32)."""
    import torch
    import torch.nn.functional as F

    w = {k: torch.from_numpy(v).double() for k, v in weights.items()}
    with torch.no_grad():
        stem = F.relu(F.conv2d(torch.from_numpy(x).double(), w["stem.weight"], w["stem.bias"], stride=2, padding=1))
        dw = F.conv2d(stem, w["dw.weight"], w["dw.bias"], padding=1, groups=STEM).clamp(0.0, 6.0)
        pw = F.conv2d(dw, w["pw.weight"], w["pw.bias"])
        pooled = torch.cat([stem, pw], dim=1).mean(dim=(2, 3))
        logits = F.linear(pooled, w["fc.weight"], w["fc.bias"])
    return logits.numpy().astype(np.float32)


def write_smoke(bundle, opset: int) -> dict[str, Any]:
    """Write the smoke model, its input and reference into ``bundle``; return its manifest record."""
    rng = np.random.default_rng(SEED)
    weights = _weights(rng)
    x = rng.standard_normal(SMOKE_INPUT_SHAPE).astype(np.float32)
    model = make_smoke_graph(opset, weights)
    files = ((SMOKE_ONNX_RELPATH, model.SerializeToString()),
             (SMOKE_INPUT_RELPATH, _npy_bytes(x)),
             (SMOKE_REFERENCE_RELPATH, _npy_bytes(reference_output(weights, x))))
    record: dict[str, Any] = collections.OrderedDict()
    for key, (relpath, data) in zip(("onnx", "input", "reference"), files):
        path = bundle.path(relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_bytes(path, data)
        record[key] = collections.OrderedDict([("path", relpath), ("sha256", sha256_file(path))])
    record["opset"] = opset
    record["input_shape"] = list(SMOKE_INPUT_SHAPE)
    record["operators"] = sorted({node.op_type for node in model.graph.node})
    record["tolerance"] = collections.OrderedDict((k, dict(v)) for k, v in SMOKE_TOLERANCES.items())
    record["reference_by"] = "torch {} functional, float64".format(_torch_version())
    return record


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _torch_version() -> str:
    import torch

    return str(torch.__version__)
