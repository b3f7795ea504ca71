"""One runner contract, checked on the ONNX Runtime runner (real, tiny ONNX model) and on the
TensorRT runner (fake tensorrt/pycuda): same model function, same checks, same answers."""
import numpy as np
import pytest

from deploy.runners.contract import RunnerError
from tests.deploy import pycuda_fakes, trt_fakes


def tiny_onnx(tmp_path):
    """logits[b, k] = sum(input[b]) + k for input (1, 3, 4, 4): the function the fake engine computes."""
    onnx = pytest.importorskip("onnx", reason="onnx is needed to build the tiny test model")
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("ReduceSum", ["flat", "axes"], ["total"], keepdims=1),
        helper.make_node("Add", ["total", "offsets"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("offsets", TensorProto.FLOAT, [10], list(range(10)))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    path = str(tmp_path / "tiny.onnx")
    onnx.save(model, path)
    return path


def _onnxruntime(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner
    return OnnxRuntimeRunner(tiny_onnx(tmp_path))


def _tensorrt_fake(generation):
    def make(tmp_path, monkeypatch):
        from deploy.tensorrt.runner import TensorRTRunner
        trt = trt_fakes.make_fake_trt(generation, io_shape=(1, 3, 4, 4))
        trt_fakes.install(monkeypatch, trt, pycuda_fakes.make_fake_pycuda())
        path = tmp_path / "tiny.engine"
        path.write_bytes(trt_fakes.engine_bytes(trt, (1, 3, 4, 4)))
        return TensorRTRunner(str(path))
    return make


RUNNERS = dict([("onnxruntime", _onnxruntime)] + [
    ("tensorrt-{}-fake".format(g), _tensorrt_fake(g)) for g in trt_fakes.GENERATIONS])


@pytest.fixture(params=sorted(RUNNERS))
def runner(request, tmp_path, monkeypatch):
    return RUNNERS[request.param](tmp_path, monkeypatch)


def test_contract_metadata_and_answers(runner):
    x = np.random.RandomState(3).rand(1, 3, 4, 4).astype(np.float32)
    with runner as active:
        assert active is runner and runner.is_active
        meta = runner.input_metadata()
        assert list(meta) == ["input"]
        assert tuple(meta["input"].shape) == (1, 3, 4, 4) and np.dtype(meta["input"].dtype) == np.float32
        out = runner.infer({"input": x})
        assert list(out) == ["logits"] and out["logits"].shape == (1, 10)
        expected = x.sum() + np.arange(10, dtype=np.float32)
        np.testing.assert_allclose(out["logits"][0], expected, rtol=1e-5)
    assert not runner.is_active


@pytest.mark.parametrize("feed, match", [
    ({}, "missing"),
    ({"input": np.zeros((1, 3, 4, 4), np.float32), "extra": np.zeros(1, np.float32)}, "unexpected"),
    ({"input": np.zeros((1, 3, 4, 4), np.float64)}, "dtype"),
    ({"input": np.zeros((1, 3, 5, 4), np.float32)}, "shape"),
    ({"input": [[0.0]]}, "numpy array"),
])
def test_contract_checks_the_feed(runner, feed, match):
    with runner:
        with pytest.raises(RunnerError, match=match):
            runner.infer(feed)


def test_contract_lifecycle(runner):
    with pytest.raises(RunnerError, match="not active"):
        runner.infer({"input": np.zeros((1, 3, 4, 4), np.float32)})
    with runner:
        with pytest.raises(RunnerError, match="already active"):
            runner.activate()
