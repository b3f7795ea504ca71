"""quantize_onnx: channel alignment for ONNX Runtime's symmetric INT8 kernels, exact in FP32."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from calibration import quantize
from tests.deploy.bench_tiny import tiny_cnn


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _conv_output_channels(path):
    model = onnx.load(str(path))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    out = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            dq = producers[node.input[1]]          # QDQ: the weight comes through a DequantizeLinear
            out.append(weights[dq.input[0]].shape[0])
    return out


def test_unaligned_channels_are_padded_before_quantizing(tmp_path):
    fp32 = tiny_cnn(tmp_path / "tiny.onnx", channels=(12, 20, 10))          # as HarDNet: not multiples of 8
    calib = np.random.RandomState(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    record = quantize.quantize_onnx(fp32, str(tmp_path / "tiny.int8.onnx"), calib, progress=False)
    assert record["channels_padded_to"] == quantize.CHANNEL_ALIGN == 8
    channels = _conv_output_channels(tmp_path / "tiny.int8.onnx")
    assert channels == [16, 16, 24, 16]       # stem, depthwise (grows with its input), 1x1, 1x1 after the concat
    x = np.random.RandomState(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    want, got = _run(fp32, x)[0], _run(tmp_path / "tiny.int8.onnx", x)[0]
    cosine = float(np.dot(want, got) / (np.linalg.norm(want) * np.linalg.norm(got)))
    assert cosine > 0.99 and got.shape == want.shape == (5,)   # the logits keep their 5 real classes


def test_aligned_channels_are_left_alone(tmp_path):
    fp32 = tiny_cnn(tmp_path / "aligned.onnx", channels=(16, 24, 8))
    calib = np.random.RandomState(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    record = quantize.quantize_onnx(fp32, str(tmp_path / "aligned.int8.onnx"), calib, progress=False)
    assert record["channels_padded_to"] is None
    assert _conv_output_channels(tmp_path / "aligned.int8.onnx") == [16, 16, 24, 8]
