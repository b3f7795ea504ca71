"""Engine building logic with fake tensorrt/pycuda modules, for both TensorRT API generations."""
import json
import logging
import os

import pytest

from deploy.errors import BackendUnavailableError, BundleError, PrecisionUnsupportedError
from deploy.targets import DeviceInfo
from deploy.tensorrt import engine_files, engines
from tests.deploy import pycuda_fakes, trt_fakes

GENERATIONS = trt_fakes.GENERATIONS


@pytest.fixture
def fake_env(monkeypatch):
    """Install a fake TensorRT (and pycuda) of the asked generation; returns the fake trt module."""
    def install(generation="10", with_pycuda=True, **kwargs):
        trt = trt_fakes.make_fake_trt(generation, **kwargs)
        pycuda = pycuda_fakes.make_fake_pycuda() if with_pycuda else None
        trt_fakes.install(monkeypatch, trt, pycuda)
        return trt
    return install


def _sidecar(bundle, rel):
    with open(bundle.path(engine_files.sidecar_relpath(rel))) as handle:
        return json.load(handle)


# -- building -------------------------------------------------------------------------------------
@pytest.mark.parametrize("generation", GENERATIONS)
def test_fp16_build_writes_engine_sidecar_log_layers_and_timing_cache(tmp_path, fake_env, generation):
    trt = fake_env(generation)
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    results, summary = engines.build_engines(bundle.root, "fp16")
    (result,) = results
    assert result.action == "built" and result.reason == "no engine yet"
    assert result.path == "engines/tiny.fp16.{}.nvidia-tegra-x1.engine".format(trt.__version__)
    side = _sidecar(bundle, result.path)
    assert side["onnx_sha256"] == bundle.model("tiny")["onnx"]["sha256"]
    assert side["tensorrt"] == trt.__version__ and side["device"] == "NVIDIA Tegra X1"
    assert side["precision"] == "fp16" and side["build_options"]["workspace_mib"] == 256
    # the API generation was chosen by capability
    config = trt.last_config
    if generation == "8.2":
        assert side["workspace_api"] == "max_workspace_size"
        assert config.max_workspace_size == 256 << 20
    else:                                                  # 8.5 offers both: the pools are used
        assert side["workspace_api"] == "set_memory_pool_limit"
        assert config._pool_limits == {"WORKSPACE": 256 << 20}
    # 1 << EXPLICIT_BATCH where implicit batch still exists; TensorRT 10 is always explicit batch
    assert ("create_network", 0 if generation == "10" else 1) in trt.calls
    assert config._flags == {"FP16"}
    assert str(config.profiling_verbosity).endswith("DETAILED")
    log = open(bundle.path(engine_files.report_relpath(result.path, ".build.log"))).read()
    assert "[INFO] building with flags ['FP16']" in log and "tactic chatter" not in log
    layers = json.load(open(bundle.path(engine_files.report_relpath(result.path, ".layers.json"))))
    assert layers["Layers"] == ["conv1", "fc"] and layers["format"].endswith("JSON")
    assert os.path.isfile(bundle.path(engine_files.timing_cache_relpath(trt.__version__, "NVIDIA Tegra X1")))
    assert os.path.isfile(bundle.path("trtexec.sh"))
    assert os.path.isfile(bundle.path(summary["report"]))


def test_second_run_reuses_then_rebuilds_with_reason(tmp_path, fake_env, caplog):
    fake_env("10")
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    (first,), _ = engines.build_engines(bundle.root, "fp16")
    (again,), _ = engines.build_engines(bundle.root, "fp16")
    assert again.action == "reused" and again.path == first.path
    (forced,), _ = engines.build_engines(bundle.root, "fp16", force=True)
    assert forced.action == "built" and forced.reason == "--force"
    (bigger,), _ = engines.build_engines(bundle.root, "fp16", workspace_mib=512)
    assert bigger.action == "built" and "workspace_mib 256 -> 512" in bigger.reason


def test_changed_onnx_is_rebuilt_and_says_why(tmp_path, fake_env):
    fake_env("10")
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    engines.build_engines(bundle.root, "fp16")
    from deploy.atomic import sha256_file
    from deploy.bundle import Bundle
    with open(bundle.path("models/tiny.onnx"), "ab") as handle:
        handle.write(b" re-exported")
    bundle = Bundle.open(bundle.root)
    bundle.model("tiny")["onnx"]["sha256"] = sha256_file(bundle.path("models/tiny.onnx"))
    bundle.save()
    (result,), _ = engines.build_engines(bundle.root, "fp16")
    assert result.action == "built" and result.reason.startswith("the ONNX model changed")


def test_engine_from_other_tensorrt_or_device_is_not_reused(tmp_path, fake_env, caplog):
    fake_env("10", version="10.0.1.6")
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    (old,), _ = engines.build_engines(bundle.root, "fp16")
    fake_env("10", version="10.13.0.35")
    caplog.set_level(logging.INFO, logger="deploy.tensorrt.engines")
    (new,), _ = engines.build_engines(bundle.root, "fp16")
    assert new.path != old.path and new.action == "built"
    assert "is for another TensorRT version or device: not used" in caplog.text
    # a sidecar that names another TensorRT/device under the same file name: rebuilt with the reason
    side_path = bundle.path(engine_files.sidecar_relpath(new.path))
    side = json.load(open(side_path))
    side["tensorrt"] = "10.13.0.1"
    json.dump(side, open(side_path, "w"))
    (again,), _ = engines.build_engines(bundle.root, "fp16")
    assert again.reason == "built with TensorRT 10.13.0.1, this is TensorRT 10.13.0.35"
    side = json.load(open(side_path))
    side["device"] = "Orin"
    json.dump(side, open(side_path, "w"))
    (again,), _ = engines.build_engines(bundle.root, "fp16")
    assert again.reason.startswith("built on Orin")


def test_truncated_engine_or_missing_sidecar_is_rebuilt(tmp_path, fake_env):
    fake_env("10")
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    (result,), _ = engines.build_engines(bundle.root, "fp16")
    with open(bundle.path(result.path), "r+b") as handle:
        handle.truncate(5)
    (again,), _ = engines.build_engines(bundle.root, "fp16")
    assert "does not match its sidecar" in again.reason
    os.unlink(bundle.path(engine_files.sidecar_relpath(result.path)))
    (again,), _ = engines.build_engines(bundle.root, "fp16")
    assert "no sidecar" in again.reason


def test_parse_failure_is_one_error_and_leaves_no_engine(tmp_path, fake_env):
    fake_env("8.2", parse_ok=False)
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    with pytest.raises(engines.EngineBuildError, match="could not parse tiny.onnx: In node 3"):
        engines.build_engines(bundle.root, "fp16")
    assert not os.path.isdir(bundle.path("engines")) or not [
        f for f in os.listdir(bundle.path("engines")) if f.endswith(".engine")]


def test_build_failure_keeps_log(tmp_path, fake_env):
    fake_env("10", build_ok=False)
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    with pytest.raises(engines.EngineBuildError, match="failed to build"):
        engines.build_engines(bundle.root, "fp16")
    logs = os.listdir(bundle.path("reports/engines"))
    assert any(f.endswith(".build.log") for f in logs)
    assert "out of memory" in open(bundle.path("reports/engines/" + logs[0])).read()


# -- INT8 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("generation", GENERATIONS)
def test_int8_calibrates_whole_batches_then_reads_its_cache(tmp_path, fake_env, generation):
    trt = fake_env(generation)
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="jetson-xavier-nx", calib_count=20)
    # the fake GPU reports sm_53; this test is about calibration, so make the device match the profile
    import sys
    sys.modules["pycuda.driver"].Device.compute_capability = lambda self: (7, 2)
    (result,), _ = engines.build_engines(bundle.root, "int8", calib_batch=8)
    # The static batch-1 input makes TensorRT read one image per get_batch: every image must get there.
    assert ("calibrated_batches", 20) in trt.calls
    _assert_images_reached_tensorrt(trt, bundle, 20)
    assert trt.last_config._flags == {"FP16", "INT8"}                 # INT8 keeps an FP16 fallback
    assert result.calibration == "no cache yet: calibrating; calibrated on 20 images and wrote {}".format(
        os.path.basename(engine_files.calibration_cache_relpath("tiny", "entropy", trt.__version__, "NVIDIA Tegra X1")))
    side = _sidecar(bundle, result.path)
    assert side["build_options"]["calibrator"] == "entropy" and side["build_options"]["fp16_fallback"] is True
    assert side["build_options"]["calib_batch"] == 1 and side["calibration_images"] == 20
    _assert_cuda_balanced()
    cache_rel = engine_files.calibration_cache_relpath("tiny", "entropy", trt.__version__, "NVIDIA Tegra X1")
    assert open(bundle.path(cache_rel), "rb").read().startswith(b"TRT-")
    (again,), _ = engines.build_engines(bundle.root, "int8", calib_batch=8, force=True)
    assert any(c[0] == "calibration_cache_used" for c in trt.calls)
    assert again.calibration.startswith("read cache") and "(calibrated on 20 images)" in again.calibration
    assert _sidecar(bundle, again.path)["calibration_images"] == 20


def _assert_images_reached_tensorrt(trt, bundle, count):
    import numpy as np
    data = np.load(bundle.path(bundle.model("tiny")["calibration"]["path"]))
    assert len(trt.calibration_images) == count
    np.testing.assert_array_equal(np.stack(trt.calibration_images), data[:count])


def _assert_cuda_balanced():
    """Every push popped, every CUDA object freed while its context was current."""
    import sys
    driver = sys.modules["pycuda.driver"]
    assert driver.context_stack() == [] and driver.driver_stack() == []
    assert driver.leaks == [] and driver.live == {} and all(a.freed for a in driver.allocations)
    assert driver.primary_refs.get(0, 0) <= 1


@pytest.mark.parametrize("generation", GENERATIONS)
def test_int8_dynamic_batch_calibrates_through_the_calibration_profile(tmp_path, fake_env, generation):
    trt = fake_env(generation)
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="x86-gpu", calib_count=20, dynamic=True)
    (result,), _ = engines.build_engines(bundle.root, "int8", calib_batch=8, max_batch=4)
    profile = trt.last_config._calibration_profile
    assert profile._shapes["input"][1] == (8, 3, 4, 4)             # OPT = the calibration batch
    assert ("calibrated_batches", 2) in trt.calls                    # 20 images -> 2 whole batches of 8
    _assert_images_reached_tensorrt(trt, bundle, 16)
    side = _sidecar(bundle, result.path)
    assert side["calibration_images"] == 16 and side["build_options"]["calib_batch"] == 8
    _assert_cuda_balanced()


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("broken", ["next_batch", "second_batch", "write", "read"])
def test_calibration_callback_errors_are_raised_after_the_build_not_as_build_failures(
        tmp_path, fake_env, monkeypatch, generation, broken):
    """An exception must not leave a TensorRT callback (8.2 aborts the process; the fake raises
    ProcessAborted, which pytest would report); it is raised after the build, naming the callback."""
    from deploy.errors import CalibrationError
    from deploy.tensorrt import calibrator

    fake_env(generation)
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="x86-gpu")

    real_next_batch = calibrator.CalibrationBatchStream.next_batch

    def boom(self, *args, **kwargs):
        if broken == "second_batch" and self.position == 0:
            return real_next_batch(self)      # one good batch, then the failure: no cache from it
        raise OSError("disk full")
    target = {"next_batch": calibrator.CalibrationBatchStream, "second_batch": calibrator.CalibrationBatchStream,
              "write": calibrator.CalibrationCache, "read": calibrator.CalibrationCache}[broken]
    monkeypatch.setattr(target, "next_batch" if broken == "second_batch" else broken, boom)
    with pytest.raises(CalibrationError) as info:
        engines.build_engines(bundle.root, "int8")
    message = str(info.value)
    assert message.startswith("tiny: INT8 calibration failed in ") and "disk full" in message
    assert "workspace" not in message and "workspace" not in (info.value.hint or "")
    written = os.listdir(bundle.path("engines")) if os.path.isdir(bundle.path("engines")) else []
    assert not [f for f in written if f.endswith((".engine", ".calib"))]
    _assert_cuda_balanced()


@pytest.mark.parametrize("generation", GENERATIONS)
def test_logger_callback_error_is_raised_after_the_build(tmp_path, fake_env, monkeypatch, generation):
    fake_env(generation)
    bundle = trt_fakes.make_bundle(tmp_path / "b")

    def boom(self, severity, message):
        raise UnicodeEncodeError("ascii", u"\xe9", 0, 1, "cannot log")
    monkeypatch.setattr(engines.BuildLog, "add", boom)
    with pytest.raises(engines.EngineBuildError, match="tiny: building the engine: the TensorRT logger callback failed"):
        engines.build_engines(bundle.root, "fp16")


def test_corrupt_calibration_cache_is_set_aside_and_recalibrated(tmp_path, fake_env):
    trt = fake_env("10")
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="x86-gpu")
    cache_rel = engine_files.calibration_cache_relpath("tiny", "minmax", trt.__version__, "NVIDIA Tegra X1")
    os.makedirs(bundle.path("engines"), exist_ok=True)
    with open(bundle.path(cache_rel), "wb") as handle:
        handle.write(b"\x00\x01garbage")
    (result,), _ = engines.build_engines(bundle.root, "int8", calibrator="minmax", calib_batch=4)
    assert "is unusable (first line" in result.calibration and "calibrated on 20 images and wrote" in result.calibration
    assert os.path.isfile(bundle.path(cache_rel + ".corrupt"))      # kept, not lost
    assert open(bundle.path(cache_rel), "rb").read().startswith(b"TRT-1013-MinMaxCalibration")
    assert ("calibrated_batches", 20) in trt.calls                   # batch-1 input: one image per batch


def test_int8_without_calibration_data_fails_clearly(tmp_path, fake_env):
    fake_env("10")
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="x86-gpu", calib_count=0)
    from deploy.errors import CalibrationError
    with pytest.raises(CalibrationError, match="no calibration data"):
        engines.build_engines(bundle.root, "int8")


# -- precision policy and device checks --------------------------------------------------------------
def test_int8_on_nano_is_refused_before_tensorrt_is_needed(tmp_path, monkeypatch):
    trt_fakes.install(monkeypatch, None, None)          # no TensorRT at all
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    with pytest.raises(PrecisionUnsupportedError, match="Maxwell"):
        engines.build_engines(bundle.root, "int8")


def test_no_tensorrt_is_a_clear_backend_error(tmp_path, monkeypatch):
    trt_fakes.install(monkeypatch, None, None)
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    with pytest.raises(BackendUnavailableError, match="do not import") as info:
        engines.build_engines(bundle.root, "fp16")
    assert "python3 pipeline.py engines" in info.value.hint


def test_stub_only_tensorrt_package_counts_as_missing(tmp_path, monkeypatch):
    import types
    trt_fakes.install(monkeypatch, types.ModuleType("tensorrt"), None)   # what tensorrt-stubs installs
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    with pytest.raises(BackendUnavailableError, match="no Builder"):
        engines.build_engines(bundle.root, "fp16")


def test_best_on_local_gpu_follows_what_the_gpu_reports(tmp_path, fake_env):
    fake_env("10", fast_int8=False)
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="x86-gpu")
    (result,), summary = engines.build_engines(bundle.root, "best")
    assert result.precision == "fp16" and summary["precision"] == "fp16"
    with pytest.raises(PrecisionUnsupportedError):
        engines.build_engines(bundle.root, "int8")


def test_bundle_for_another_gpu_is_refused(tmp_path, fake_env):
    fake_env("10")                                        # the fake GPU is sm_53
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="jetson-orin-nano")
    with pytest.raises(BundleError, match="this GPU is NVIDIA Tegra X1"):
        engines.build_engines(bundle.root, "fp16")


def test_bad_bundles(tmp_path, fake_env):
    fake_env("10")
    with pytest.raises(BundleError, match="does not exist"):
        engines.build_engines(str(tmp_path / "missing"), "fp16")
    cpu = trt_fakes.make_bundle(tmp_path / "cpu", target_name="cpu")
    with pytest.raises(BundleError, match="ONNX Runtime"):
        engines.build_engines(cpu.root, "fp32")
    nano = trt_fakes.make_bundle(tmp_path / "nano")
    with pytest.raises(BundleError, match="built for target 'jetson-nano'"):
        engines.build_engines(nano.root, "fp16", target_name="jetson-xavier-nx")
    with open(nano.path("models/tiny.onnx"), "ab") as handle:
        handle.write(b"x")
    with pytest.raises(BundleError, match="does not match the manifest"):
        engines.build_engines(nano.root, "fp16")


def test_platform_mismatch_is_reported():
    from deploy.targets import get_target, local_profile, platform_mismatches
    nano = get_target("jetson-nano")
    device = DeviceInfo("NVIDIA Tegra X1", "5.3", fast_fp16=True, fast_int8=True, tensorrt="8.2.1.8")
    (line,) = platform_mismatches(nano, device)
    assert "INT8" in line and "platform_has_fast_int8 = True" in line
    assert local_profile(nano, device).fast_int8 is False        # the profile still refuses INT8
    slow = device._replace(fast_fp16=False, tensorrt="8.0.1")
    lines = platform_mismatches(nano, slow)
    assert any("FP16" in l for l in lines) and any("TensorRT 8.2" in l for l in lines)
    assert local_profile(nano, slow).fast_fp16 is False
    local = local_profile(get_target("x86-gpu"), device._replace(name="RTX", compute_capability="8.9"))
    assert local.compute_capability == "8.9" and local.tensorrt == "8.2.1.8"


def test_find_engine_for_this_machine(tmp_path, fake_env):
    fake_env("10")   # installs the fake TensorRT 10 for this test
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="no fp16 engine of tiny") as info:
        engine_files.find_engine(bundle, "tiny", "fp16")
    assert "pipeline.py engines" in info.value.hint
    (result,), _ = engines.build_engines(bundle.root, "fp16")
    assert engine_files.find_engine(bundle, "tiny", "fp16") == result.path
    bundle.model("tiny")["onnx"]["sha256"] = "0" * 64       # the bundle was rebuilt on the host
    with pytest.raises(BundleError, match="stale: the ONNX model changed"):
        engine_files.find_engine(bundle, "tiny", "fp16")
    assert [rel for rel, _ in engine_files.list_engines(bundle)] == [result.path]


def test_new_calibration_data_means_new_calibration(tmp_path, fake_env):
    trt = fake_env("10")
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="x86-gpu")
    engines.build_engines(bundle.root, "int8", calib_batch=4)
    import numpy as np

    from deploy.atomic import sha256_file
    from deploy.bundle import Bundle
    np.save(bundle.path("calibration/tiny.npy"), np.ones((8, 3, 4, 4), np.float32))
    bundle = Bundle.open(bundle.root)
    bundle.model("tiny")["calibration"]["sha256"] = sha256_file(bundle.path("calibration/tiny.npy"))
    bundle.save()
    trt.calls[:] = []
    (result,), _ = engines.build_engines(bundle.root, "int8", calib_batch=4)
    assert "calibration_sha256" in result.reason                         # the engine is rebuilt ...
    assert "other calibration input" in result.calibration               # ... and so is the cache
    assert ("calibrated_batches", 8) in trt.calls                    # 8 new images, one per batch


@pytest.mark.parametrize("generation", GENERATIONS)
def test_timing_cache_of_another_gpu_is_replaced(tmp_path, fake_env, generation):
    trt = fake_env(generation)
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    path = bundle.path(engine_files.timing_cache_relpath(trt.__version__, "NVIDIA Tegra X1"))
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as handle:
        handle.write(b"TC:sm87")                            # written on an Orin
    (result,), _ = engines.build_engines(bundle.root, "fp16")
    assert _sidecar(bundle, result.path)["timing_cache"].endswith("from another device or version: new one")
    assert open(path, "rb").read() == b"TC:sm53"
    with open(path, "wb") as handle:
        handle.write(b"garbage")
    (result,), _ = engines.build_engines(bundle.root, "fp16", force=True)
    assert _sidecar(bundle, result.path)["timing_cache"].endswith("unusable: new one")
