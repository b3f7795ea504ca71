"""The TensorRT runner: fakes for both API generations here; the real thing where TensorRT and a GPU exist."""
import threading

import numpy as np
import pytest

from deploy.errors import BackendUnavailableError
from deploy.runners.contract import RunnerError
from deploy.tensorrt.runner import TensorRTRunner
from tests.deploy import pycuda_fakes, trt_fakes

GENERATIONS = trt_fakes.GENERATIONS


def _engine_file(tmp_path, trt, name="m.engine", input_shape=(-1, 3, 4, 4), max_batch=4):
    """A serialized fake engine, as ``engines`` builds it (dynamic batch 1..max_batch by default)."""
    path = tmp_path / name
    path.write_bytes(trt_fakes.engine_bytes(trt, input_shape, max_batch))
    return str(path)


@pytest.fixture
def fakes(monkeypatch):
    def install(generation, **kwargs):
        trt = trt_fakes.make_fake_trt(generation, **kwargs)
        pycuda = pycuda_fakes.make_fake_pycuda()
        trt_fakes.install(monkeypatch, trt, pycuda)
        return trt, pycuda[1]
    return install


def _expected(x):
    return x.reshape(x.shape[0], -1).sum(axis=1, keepdims=True) + np.arange(10, dtype=np.float32)


def _assert_balanced(driver):
    """Both context stacks (pycuda's and the driver's) empty on this thread; nothing leaked."""
    assert driver.context_stack() == [] and driver.driver_stack() == []
    assert driver.leaks == [] and driver.live == {}
    assert all(a.freed for a in driver.allocations)
    assert driver.primary_refs.get(0, 0) <= 1            # the primary context retained once, at most


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
        assert runner.last_compute_ms == trt_fakes.EXECUTE_MS       # events around the execute only
        compute_ms, end_to_end_ms = runner.execute_timed()
        assert compute_ms == trt_fakes.EXECUTE_MS and end_to_end_ms >= 0.0
        # executed, copied and timed on the runner's own stream, not the default stream
        assert ("execute", generation, runner._stream.handle) in trt.calls
        assert {handle for _, handle in driver.calls} == {runner._stream.handle}
        assert [op for op, _ in driver.calls[:4]] == [
            "memcpy_htod_async", "event record", "event record", "memcpy_dtoh_async"]
        assert driver.context_stack() == [] and driver.driver_stack() == []   # every push popped
    _assert_balanced(driver)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_batch_size_fixes_dynamic_batch_within_the_profile(tmp_path, fakes, generation):
    trt, driver = fakes(generation)
    x = np.random.RandomState(1).rand(3, 3, 4, 4).astype(np.float32)
    path = _engine_file(tmp_path, trt, max_batch=4)
    with TensorRTRunner(path, batch_size=3) as runner:
        assert runner.input_metadata()["input"].shape == (3, 3, 4, 4)
        assert runner.output_metadata()[0].shape == (3, 10)
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], _expected(x), rtol=1e-6)
    runner = TensorRTRunner(path, batch_size=5)
    with pytest.raises(RunnerError, match=r"batch 5 is outside .* \(batch 1 to 4\)") as info:
        runner.activate()
    assert "--max-batch 5" in info.value.hint and not runner.is_active
    _assert_balanced(driver)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_static_engine_takes_its_own_batch_only(tmp_path, fakes, generation):
    trt, driver = fakes(generation)
    path = _engine_file(tmp_path, trt, input_shape=(2, 3, 4, 4))
    x = np.ones((2, 3, 4, 4), np.float32)
    with TensorRTRunner(path) as runner:           # no batch asked: the engine's
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], _expected(x))
    with TensorRTRunner(path, batch_size=2) as runner:
        assert runner.input_metadata()["input"].shape == (2, 3, 4, 4)
    with pytest.raises(RunnerError, match="static batch of 2"):
        TensorRTRunner(path, batch_size=1).activate()
    _assert_balanced(driver)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_half_outputs_get_a_half_buffer(tmp_path, fakes, generation):
    trt, driver = fakes(generation, output_dtype="HALF")
    x = np.full((1, 3, 4, 4), 0.5, np.float32)
    with TensorRTRunner(_engine_file(tmp_path, trt)) as runner:
        out = runner.infer({"input": x})["logits"]
        assert out.dtype == np.float16
        np.testing.assert_allclose(out, _expected(x), rtol=1e-3)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_runner_works_from_another_thread(tmp_path, fakes, generation):
    """Activated on one thread, used on a second, deactivated on a third: every thread's context
    stacks end as they began, and nothing leaks."""
    trt, driver = fakes(generation)
    x = np.full((1, 3, 4, 4), 0.5, np.float32)
    results = {}
    runner = TensorRTRunner(_engine_file(tmp_path, trt))

    def in_thread(work):
        def run():
            try:
                work()
                results.setdefault("stacks", []).append((driver.context_stack(), driver.driver_stack()))
            except BaseException as exc:   # noqa: BLE001 - reported by the assertion below
                results["error"] = exc
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()

    in_thread(runner.activate)
    in_thread(lambda: results.update(runner.infer({"input": x})))
    in_thread(runner.deactivate)
    assert "error" not in results, results.get("error")
    assert results["stacks"] == [([], [])] * 3
    np.testing.assert_allclose(results["logits"], _expected(x))
    _assert_balanced(driver)


def test_copy_outputs_false_returns_the_page_locked_buffer(tmp_path, fakes):
    trt, _ = fakes("10")
    x = np.zeros((1, 3, 4, 4), np.float32)
    with TensorRTRunner(_engine_file(tmp_path, trt), copy_outputs=False) as runner:
        first = runner.infer({"input": x})["logits"]
        second = runner.infer({"input": x + 1})["logits"]
        assert first is second


@pytest.mark.parametrize("generation", GENERATIONS)
def test_engine_of_another_tensorrt_is_a_clear_error(tmp_path, fakes, generation):
    trt, driver = fakes(generation)
    other = trt_fakes.make_fake_trt("8.2" if generation != "8.2" else "10")
    path = _engine_file(tmp_path, other)
    runner = TensorRTRunner(path)
    with pytest.raises(RunnerError, match="version tag mismatch") as info:
        runner.activate()
    assert "rebuild" in info.value.hint and not runner.is_active
    _assert_balanced(driver)
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
        import pycuda.driver as cuda
        import tensorrt
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
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner
    from deploy.tensorrt import engine_files, engines
    from tests.deploy.runners.test_runner_contract import tiny_onnx

    onnx_path = tiny_onnx(tmp_path)
    options = engine_files.EngineOptions("fp32", 64, "entropy", 8, 1)
    record = {"input": {"name": "input", "shape": [1, 3, 4, 4]}}
    log = engines.BuildLog()
    blob, _ = engines.build_serialized(onnx_path, options, record, str(tmp_path / "t.cache"), None,
                                        engines.make_trt_logger(log))
    path = tmp_path / "tiny.engine"
    path.write_bytes(blob)
    x = np.random.RandomState(0).rand(1, 3, 4, 4).astype(np.float32)
    with TensorRTRunner(str(path)) as trt_runner, OnnxRuntimeRunner(onnx_path) as ort_runner:
        np.testing.assert_allclose(trt_runner.infer({"input": x})["logits"],
                                   ort_runner.infer({"input": x})["logits"], rtol=1e-4)
