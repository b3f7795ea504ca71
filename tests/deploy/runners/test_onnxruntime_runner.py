import os

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the CPU fallback runner needs it")
onnx = pytest.importorskip("onnx", reason="onnx not installed: the tiny test models are built with onnx.helper")

from deploy.errors import PipelineError  # noqa: E402
from deploy.runners.contract import RunnerError  # noqa: E402
from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner, optimized_model_name  # noqa: E402
from deploy.runners.ort_channel_pad import nchwc_block_size, pad_channels  # noqa: E402
from tests.deploy.bench_tiny import tiny_cnn  # noqa: E402


@pytest.fixture
def tiny(tmp_path):
    return tiny_cnn(tmp_path / "tiny.onnx")


def _reference(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _x(seed=0):
    return np.random.RandomState(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)


def test_padding_keeps_the_outputs(tiny):
    model = onnx.load(tiny)
    padded = pad_channels(model, 8)
    assert padded is not None
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in padded.graph.initializer}
    assert weights["w0"].shape[0] == 16 and weights["w1"].shape[0] == 24 and weights["w2"].shape == (16, 40, 1, 1)
    assert weights["wd"].shape[0] == 16          # depthwise grows with its input
    assert weights["fc"].shape == (5, 16)        # the classifier reads only the real channels
    x = _x()
    got = ort.InferenceSession(padded.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    np.testing.assert_allclose(got, _reference(tiny, x), rtol=1e-5, atol=1e-5)


def test_padding_is_skipped_when_aligned_or_unsupported(tmp_path):
    aligned = tiny_cnn(tmp_path / "aligned.onnx", channels=(16, 24, 8))
    assert pad_channels(onnx.load(aligned), 8) is None
    assert pad_channels(onnx.load(aligned), 1) is None          # no NCHWc on this CPU: nothing to do
    model = onnx.load(tiny_cnn(tmp_path / "t.onnx"))
    # Put an op the pass does not know on the activation path: it must give up, not guess.
    for node in model.graph.node:
        if node.op_type == "Relu":
            node.op_type = "Softsign"
            break
    assert pad_channels(model, 8) is None


def test_runner_matches_plain_onnxruntime_and_caches_the_optimised_graph(tiny, tmp_path):
    x = _x(1)
    want = _reference(tiny, x)
    cache = str(tmp_path / "cache")
    with OnnxRuntimeRunner(tiny, threads=1, optimized_model_dir=cache) as runner:
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], want, rtol=1e-5, atol=1e-5)
        first = runner.loaded_from
    assert first.startswith(cache) and os.path.isfile(first)
    assert os.path.basename(first) == optimized_model_name(tiny, ort.__version__, padded=True, split=True)
    assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]   # the atomic write left no temp file
    mtime = os.path.getmtime(first)
    with OnnxRuntimeRunner(tiny, threads=1, optimized_model_dir=cache) as runner:   # reused, not rewritten
        assert runner.loaded_from == first
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], want, rtol=1e-5, atol=1e-5)
    assert os.path.getmtime(first) == mtime


@pytest.mark.parametrize("io_binding", [True, False])
def test_prepared_runs_give_the_same_outputs(tiny, io_binding):
    x = _x(2)
    with OnnxRuntimeRunner(tiny, threads=1, io_binding=io_binding) as runner:
        runner.prepare({"input": x})
        for _ in range(3):
            out = runner.run_prepared()
        got = runner.prepared_outputs()["logits"] if io_binding else out[0]
        np.testing.assert_allclose(got, _reference(tiny, x), rtol=1e-5, atol=1e-5)
        settings = runner.describe()
    assert settings["graph_optimization"] == "all" and settings["io_binding"] is io_binding


def test_options_without_padding_or_layout(tiny):
    x = _x(3)
    for kwargs in ({"pad_channels": False}, {"optimization": "basic"}, {"optimization": "extended"},
                   {"spinning": False}):
        with OnnxRuntimeRunner(tiny, threads=1, **kwargs) as runner:
            np.testing.assert_allclose(runner.infer({"input": x})["logits"], _reference(tiny, x),
                                       rtol=1e-5, atol=1e-5)


def test_bad_inputs(tiny, tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        OnnxRuntimeRunner(str(tmp_path / "missing.onnx")).activate()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(PipelineError, match="cannot load"):
        OnnxRuntimeRunner(str(broken), pad_channels=False).activate()
    with pytest.raises(PipelineError, match="unknown ONNX Runtime optimisation level"):
        OnnxRuntimeRunner(tiny, optimization="fastest").activate()
    with OnnxRuntimeRunner(tiny, threads=1) as runner:
        with pytest.raises(RunnerError, match="shape"):
            runner.prepare({"input": np.zeros((1, 3, 16, 16), np.float32)})


def test_block_size_follows_the_cpu():
    assert nchwc_block_size(["avx512f", "avx2"]) in (16, 1)   # 1 on a non-x86 machine
    assert nchwc_block_size([]) == 1
