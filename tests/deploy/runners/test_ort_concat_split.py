import collections
import logging

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the CPU fallback runner needs it")
onnx = pytest.importorskip("onnx", reason="onnx not installed: the tiny test models are built with onnx.helper")

from deploy.runners import onnxruntime_runner  # noqa: E402
from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner, optimized_model_name  # noqa: E402
from deploy.runners.ort_channel_pad import pad_channels  # noqa: E402
from deploy.runners.ort_concat_split import fuse_sum_activations, split_concat_convs  # noqa: E402
from tests.deploy.bench_tiny import tiny_cnn  # noqa: E402


@pytest.fixture
def tiny(tmp_path):
    return tiny_cnn(tmp_path / "tiny.onnx")


def _run(model_or_path, x, level=None):
    options = ort.SessionOptions()
    if level is not None:
        options.graph_optimization_level = level
    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _x(seed=0):
    return np.random.RandomState(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)


def _ops(model):
    return collections.Counter(n.op_type for n in model.graph.node)


def test_split_removes_the_concat_and_keeps_the_outputs(tiny):
    model = onnx.load(tiny)
    split = split_concat_convs(model)
    assert split is not None
    before, after = _ops(model), _ops(split)
    assert after["Concat"] == 0 and before["Concat"] == 1
    assert after["Conv"] == before["Conv"] + 1 and after["Add"] == 1   # two parts: 12 + 20 input channels
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in split.graph.initializer}
    assert "w2" not in weights                                            # the whole weight is gone ...
    assert sorted(w.shape[1] for k, w in weights.items() if "concat_split" in k) == [12, 20]   # ... sliced
    onnx.checker.check_model(split)
    x = _x()
    np.testing.assert_allclose(_run(split, x), _run(tiny, x), rtol=1e-5, atol=1e-5)
    assert _ops(model)["Concat"] == 1                                     # the input model is untouched


def test_fused_activation_keeps_the_outputs_and_the_whole_graph_in_nchwc(tiny, tmp_path):
    model = pad_channels(onnx.load(tiny), 8)
    split = split_concat_convs(model)
    assert fuse_sum_activations(split) == 1
    ops = _ops(split)
    assert ops["FusedConv"] == 1 and ops["Clip"] == 0 and ops["Add"] == 0
    fused = [n for n in split.graph.node if n.op_type == "FusedConv"][0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in fused.attribute}
    assert fused.domain == "com.microsoft" and attrs["activation"] == b"Clip"
    assert attrs["activation_params"] == [0.0, 6.0] and len(fused.input) == 4   # X, W, B and the running sum Z
    x = _x(1)
    np.testing.assert_allclose(_run(split, x), _run(tiny, x), rtol=1e-5, atol=1e-5)
    # ONNX Runtime's layout pass takes the FusedConv whole: no Concat and no layout switch mid-graph.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(split.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimised = _ops(onnx.load(str(tmp_path / "opt.onnx")))
    assert optimised["Concat"] == 0 and optimised["Clip"] == 0
    if optimised["ReorderOutput"]:   # an x86 CPU with NCHWc: one reorder, before global pooling
        assert optimised["ReorderInput"] == 0 and optimised["ReorderOutput"] == 1


def test_only_a_concat_feeding_one_pointwise_conv_is_split(tiny):
    model = onnx.load(tiny)
    for node in model.graph.node:                  # a second consumer of the concat: nothing to do
        if node.op_type == "GlobalAveragePool":
            node.input[0] = "cat"   # (no longer a sensible classifier; the pass only reads structure)
    assert split_concat_convs(model) is None

    grouped = onnx.load(tiny)
    for node in grouped.graph.node:
        if node.op_type == "Conv" and node.input[1] == "w2":
            node.attribute.extend([onnx.helper.make_attribute("group", 2)])
    assert split_concat_convs(grouped) is None

    fused_without_activation = split_concat_convs(onnx.load(tiny))
    for node in fused_without_activation.graph.node:
        if node.op_type == "Clip":
            node.op_type = "Sigmoid"
            del node.input[1:]
    assert fuse_sum_activations(fused_without_activation) == 0      # Add stays; ORT fuses it as a Sum


def test_runner_splits_by_default_and_names_its_cache_after_the_rewrites(tiny, tmp_path):
    x = _x(2)
    cache = str(tmp_path / "cache")
    with OnnxRuntimeRunner(tiny, threads=1, optimized_model_dir=cache) as runner:
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], _run(tiny, x), rtol=1e-5, atol=1e-5)
        assert runner.describe()["concat_split"] is True
        assert runner.loaded_from.endswith(optimized_model_name(tiny, ort.__version__, padded=True, split=True))
        assert _ops(onnx.load(runner.loaded_from))["Concat"] == 0
    with OnnxRuntimeRunner(tiny, threads=1, optimized_model_dir=cache, split_concats=False) as runner:
        assert runner.loaded_from.endswith(optimized_model_name(tiny, ort.__version__, padded=True))
        assert _ops(onnx.load(runner.loaded_from))["Concat"] == 1


def test_runner_keeps_the_padded_graph_when_onnxruntime_rejects_the_split(tiny, monkeypatch, caplog):
    monkeypatch.setattr(onnxruntime_runner, "_loads", lambda ort_module, model_bytes: False)
    x = _x(3)
    with caplog.at_level(logging.WARNING, logger="deploy.runners.onnxruntime_runner"):
        with OnnxRuntimeRunner(tiny, threads=1) as runner:
            np.testing.assert_allclose(runner.infer({"input": x})["logits"], _run(tiny, x), rtol=1e-5, atol=1e-5)
    assert "cannot load the split graph" in caplog.text
