"""The TensorRT runner: fakes for both API generations here; the real thing where TensorRT and a GPU exist."""
import threading

import numpy as np
import pytest

from deploy.errors import BackendUnavailableError
from deploy.runners.base import RunnerError
from deploy.runners.tensorrt_runner import TensorRTRunner
from tests.deploy import trt_fakes

GENERATIONS = ["8.2", "10"]


def _engine_file(tmp_path, trt, name="m.engine"):
    """Serialized bytes the fake runtime accepts (what the fake builder returns)."""
    builder = trt.Builder(trt.Logger())
    blob = builder.build_serialized_network(builder.create_network(0), builder.create_builder_config())
    path = tmp_path / name
    path.write_bytes(blob)
    return str(path)


@pytest.fixture
def fakes(monkeypatch):
    def install(generation, **kwargs):
        trt = trt_fakes.make_fake_trt(generation, **kwargs)
        pycuda = trt_fakes.make_fake_pycuda()
        trt_fakes.install(monkeypatch, trt, pycuda)
        return trt, pycuda[1]
    return install


def _expected(x):
    return x.reshape(x.shape[0], -1).sum(axis=1, keepdims=True) + np.arange(10, dtype=np.float32)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_infer_moves_data_through_host_and_device_buffers(tmp_path, fakes, generation):
    trt, driver = fakes(generation)
    x = np.random.RandomState(0).rand(1, 3, 4, 4).astype(np.float32)
    with TensorRTRunner(_engine_file(tmp_path, trt)) as runner:
        assert runner.io_api == ("binding-index" if generation == "8.2" else "tensor-name")
        meta = runner.input_metadata()
        assert list(meta) == ["input"] and meta["input"].shape == (1, 3, 4, 4)   # dynamic batch -> 1
        out = runner.infer({"input": x})
        np.testing.assert_allclose(out["logits"], _expected(x), rtol=1e-6)
        assert runner.last_compute_ms == 0.25
        compute_ms, end_to_end_ms = runner.execute_timed()
        assert compute_ms == 0.25 and end_to_end_ms >= 0.0
        assert ("execute", generation) in trt.calls
        assert driver.context_stack() == []          # every push popped
    assert all(a.freed for a in driver.allocations)


def test_batch_size_fixes_dynamic_batch(tmp_path, fakes):
    trt, _ = fakes("10")
    x = np.ones((3, 3, 4, 4), np.float32)
    with TensorRTRunner(_engine_file(tmp_path, trt), batch_size=3) as runner:
        assert runner.input_metadata()["input"].shape == (3, 3, 4, 4)
        assert runner.output_metadata()[0].shape == (3, 10)
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], _expected(x))


def test_runner_works_from_another_thread(tmp_path, fakes):
    trt, driver = fakes("8.2")
    x = np.full((1, 3, 4, 4), 0.5, np.float32)
    results = {}
    with TensorRTRunner(_engine_file(tmp_path, trt)) as runner:
        def work():   # a fresh thread has no current CUDA context: the runner must push its own
            results["empty_before"] = driver.context_stack() == []
            results.update(runner.infer({"input": x}))
            results["empty_after"] = driver.context_stack() == []
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    assert results["empty_before"] and results["empty_after"]
    np.testing.assert_allclose(results["logits"], _expected(x))
    assert driver.context_stack() == []


def test_copy_outputs_false_returns_the_page_locked_buffer(tmp_path, fakes):
    trt, _ = fakes("10")
    x = np.zeros((1, 3, 4, 4), np.float32)
    with TensorRTRunner(_engine_file(tmp_path, trt), copy_outputs=False) as runner:
        first = runner.infer({"input": x})["logits"]
        second = runner.infer({"input": x + 1})["logits"]
        assert first is second


def test_engine_of_another_tensorrt_is_a_clear_error(tmp_path, fakes):
    trt, driver = fakes("10")
    other = trt_fakes.make_fake_trt("8.2")
    path = _engine_file(tmp_path, other)
    runner = TensorRTRunner(path)
    with pytest.raises(RunnerError, match="version tag mismatch") as info:
        runner.activate()
    assert "rebuild" in info.value.hint and not runner.is_active
    assert driver.context_stack() == []
    with pytest.raises(RunnerError, match="does not exist"):
        TensorRTRunner(str(tmp_path / "none.engine")).activate()


def test_missing_pycuda_or_tensorrt(tmp_path, monkeypatch):
    trt = trt_fakes.make_fake_trt("10")
    trt_fakes.install(monkeypatch, trt, None)
    with pytest.raises(BackendUnavailableError, match="pycuda"):
        TensorRTRunner(str(tmp_path / "m.engine")).activate()
    trt_fakes.install(monkeypatch, None, None)
    with pytest.raises(BackendUnavailableError, match="TensorRT"):
        TensorRTRunner(str(tmp_path / "m.engine")).activate()


# -- the real thing, where it exists --------------------------------------------------------------
def _real_tensorrt_and_gpu():
    try:
        import tensorrt
        import pycuda.driver as cuda
    except ImportError as exc:
        return "TensorRT or pycuda not installed ({})".format(exc)
    if not hasattr(tensorrt, "Builder"):
        return "only tensorrt type stubs are installed, not TensorRT"
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            return "no CUDA GPU"
    except cuda.Error as exc:
        return "no usable CUDA GPU ({})".format(exc)
    return None


@pytest.mark.slow
def test_real_engine_matches_onnxruntime(tmp_path):
    why = _real_tensorrt_and_gpu()
    if why:
        pytest.skip("needs TensorRT and a GPU: " + why)
    from deploy import engines
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner
    from tests.deploy.test_runner_contract import tiny_onnx

    onnx_path = tiny_onnx(tmp_path)
    options = engines.EngineOptions("fp32", 64, "entropy", 8, 1)
    record = {"input": {"name": "input", "shape": [1, 3, 4, 4]}}
    log = engines.BuildLog()
    blob, _ = engines._build_serialized(onnx_path, options, record, str(tmp_path / "t.cache"), None,
                                        engines.make_trt_logger(log))
    path = tmp_path / "tiny.engine"
    path.write_bytes(blob)
    x = np.random.RandomState(0).rand(1, 3, 4, 4).astype(np.float32)
    with TensorRTRunner(str(path)) as trt_runner, OnnxRuntimeRunner(onnx_path) as ort_runner:
        np.testing.assert_allclose(trt_runner.infer({"input": x})["logits"],
                                   ort_runner.infer({"input": x})["logits"], rtol=1e-4)
