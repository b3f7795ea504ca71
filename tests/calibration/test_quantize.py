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


def _stem_weight(path):
    model = onnx.load(str(path))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    return weights[producers[stem.input[1]].input[0]]


def test_the_stem_gets_a_fourth_input_channel_and_the_same_answers(tmp_path, monkeypatch):
    fp32 = tiny_cnn(tmp_path / "tiny.onnx", channels=(16, 24, 8))
    calib = np.random.RandomState(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    record = quantize.quantize_onnx(fp32, str(tmp_path / "padded.int8.onnx"), calib, progress=False)
    assert record["stem_input_channels_padded_to"] == quantize.STEM_CHANNEL_ALIGN == 4
    stem = _stem_weight(tmp_path / "padded.int8.onnx")
    assert stem.shape == (16, 4, 3, 3) and stem.dtype == np.int8 and not stem[:, 3].any()
    graph = onnx.load(str(tmp_path / "padded.int8.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    (pad,) = [n for n in graph.node if n.op_type == "Pad"]
    assert producers[pad.input[0]].op_type == "QuantizeLinear" and producers[pad.input[0]].input[0] == "input"
    assert [n.op_type for n in graph.node if pad.output[0] in n.input] == ["DequantizeLinear"]
    monkeypatch.setattr(quantize, "pad_quantized_stem", lambda model: None)
    plain = quantize.quantize_onnx(fp32, str(tmp_path / "plain.int8.onnx"), calib, progress=False)
    assert plain["stem_input_channels_padded_to"] is None and _stem_weight(tmp_path / "plain.int8.onnx").shape[1] == 3
    for seed in range(3):   # integer arithmetic: the zero channel changes nothing, exactly
        x = np.random.RandomState(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)
        np.testing.assert_array_equal(_run(tmp_path / "padded.int8.onnx", x), _run(tmp_path / "plain.int8.onnx", x))


def test_a_graph_without_the_stem_pattern_is_left_alone(tmp_path):
    fp32 = tiny_cnn(tmp_path / "tiny.onnx", channels=(16, 24, 8))
    model = onnx.load(fp32)
    assert quantize.pad_quantized_stem(model) is None          # FP32: no QuantizeLinear after the input
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in onnx.load(fp32).graph.node]


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
