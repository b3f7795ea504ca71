"""`doctor` and `device-run` on a device, with the strict fake TensorRT (8.2, 8.5, 10) and pycuda.

The fakes' ``real_onnx`` mode parses the bundle's real smoke model and computes it with ONNX
Runtime in place of the GPU, so the smoke test's numbers travel the whole path: parse, build,
deserialize, bind, the copies through page-locked and device buffers, execute, compare.
"""
import gc
import os
import sys

import pytest

import pipeline
from deploy.device import doctor

if sys.version_info < (3, 10):   # the device's own Python: the smoke model is made by the host's build
    pytest.skip("needs the host (export.smoke, onnx, onnxruntime) to make and compute the smoke model",
                allow_module_level=True)
from export.smoke import write_smoke  # noqa: E402
from tests.deploy import pycuda_fakes, trt_fakes

NANO = {"board": "NVIDIA Jetson Nano Developer Kit", "l4t": {"l4t": "32.7.1", "jetpack": "4.6.1"},
        "power_mode": {"name": "MAXN", "id": 0}, "clocks": {"locked": True}}
MEMINFO = "MemTotal: 4059272 kB\nMemAvailable: 2912000 kB\nSwapTotal: 2029632 kB\nSwapFree: 2029632 kB\n"


@pytest.fixture
def device(monkeypatch, tmp_path):
    """install(generation, **fake options) -> (bundle, fake pycuda driver)."""
    def install(generation="8.2", capability=(5, 3), **options):
        trt = trt_fakes.make_fake_trt(generation, fast_int8=False, real_onnx=True, **options)
        pycuda = pycuda_fakes.make_fake_pycuda(capability=capability)
        trt_fakes.install(monkeypatch, trt, pycuda)
        bundle = trt_fakes.make_bundle(tmp_path / "b", calib_count=0)
        bundle.manifest["smoke"] = write_smoke(bundle, 13)
        bundle.save()
        return bundle, pycuda[1]
    return install


def _checks(report):
    return dict((c["name"], c) for c in report["checks"])


@pytest.mark.parametrize("generation", trt_fakes.GENERATIONS)
def test_ready_device_passes_every_check_and_the_smoke_test(device, generation):
    bundle, driver = device(generation)
    report = doctor.run_doctor(bundle.root, jetson=NANO, meminfo=MEMINFO, device_role=True)
    checks = _checks(report)
    assert report["ok"] is True and report["role"] == "device" and report["failed"] == []
    assert "NVIDIA Tegra X1 (sm 5.3)" in checks["gpu"]["detail"] and "target: jetson-nano" in checks["gpu"]["detail"]
    assert checks["board"]["status"] == "ok" and "JetPack 4.6.1" in checks["board"]["detail"]
    for precision in ("fp32", "fp16"):                        # FP16 because the fake GPU says it is fast
        result = report["smoke"]["tensorrt " + precision]
        assert result["ok"] is True and result["max_abs_diff"] < 1e-5
    assert os.path.isfile(bundle.path("reports/doctor.json"))
    assert not os.path.isdir(bundle.path("engines"))         # the smoke engine never lands in the bundle
    gc.collect()
    assert driver.leaks == [] and driver.driver_stack() == []   # every context pushed was popped


@pytest.mark.parametrize("options, step", [({"parse_ok": False}, "parse"), ({"build_ok": False}, "build")])
def test_a_failing_step_is_named(device, options, step):
    bundle, _ = device("8.2", **options)
    report = doctor.run_doctor(bundle.root, jetson=NANO, meminfo=MEMINFO, device_role=True)
    assert report["ok"] is False and "smoke tensorrt fp32" in report["failed"]
    assert report["smoke"]["tensorrt fp32"]["step"] == step
    assert "smoke test failed at {}".format(step) in _checks(report)["smoke tensorrt fp32"]["detail"]


def test_wrong_numbers_fail_at_compare(device):
    import numpy as np

    from deploy.atomic import sha256_file

    bundle, _ = device("10")
    path = bundle.path("smoke/reference.npy")
    np.save(path, -np.load(path))
    bundle.manifest["smoke"]["reference"]["sha256"] = sha256_file(path)
    bundle.save()
    report = doctor.run_doctor(bundle.root, jetson=NANO, meminfo=MEMINFO, device_role=True)
    assert report["smoke"]["tensorrt fp32"]["step"] == "compare" and report["ok"] is False


def test_bundle_for_another_gpu_fails_the_gpu_check(device):
    bundle, _ = device("10", capability=(8, 7))
    report = doctor.run_doctor(bundle.root, jetson=NANO, meminfo=MEMINFO, device_role=True)
    gpu = _checks(report)["gpu"]
    assert gpu["status"] == "fail" and "jetson-orin-nano" in gpu["fix"] and report["ok"] is False


def test_no_pycuda_is_a_required_failure_with_the_install_command(device, monkeypatch):
    bundle, _ = device("8.2")
    trt_fakes.install(monkeypatch, trt_fakes.make_fake_trt("8.2", real_onnx=True), None)
    report = doctor.run_doctor(bundle.root, jetson=NANO, meminfo=MEMINFO, device_role=True)
    pycuda = _checks(report)["pycuda"]
    assert pycuda["status"] == "fail" and "requirements-jetson.txt" in pycuda["fix"] and not report["ok"]


def test_stale_engines_are_reported_with_the_rebuild_command(device):
    bundle, _ = device("8.2")
    assert pipeline.main(["-q", "engines", bundle.root]) == 0
    report = doctor.run_doctor(bundle.root, jetson=NANO, meminfo=MEMINFO, device_role=True)
    assert _checks(report)["engines"]["status"] == "ok" and "1 current" in _checks(report)["engines"]["detail"]
    from deploy.atomic import sha256_file

    record = bundle.model("tiny")                             # the host rebuilt the model since
    with open(bundle.path(record["onnx"]["path"]), "wb") as handle:
        handle.write(trt_fakes.fake_onnx_bytes([1, 3, 4, 4]) + b" v2")
    record["onnx"]["sha256"] = sha256_file(bundle.path(record["onnx"]["path"]))
    bundle.save()
    report = doctor.run_doctor(bundle.root, jetson=NANO, meminfo=MEMINFO, device_role=True)
    engines = _checks(report)["engines"]
    assert engines["status"] == "warn" and "ONNX model changed" in engines["detail"]


# -- device-run ------------------------------------------------------------------------------------
def test_device_run_runs_every_step_then_resumes_and_packs_the_reports(device, capsys, monkeypatch):
    import tarfile

    from deploy import environment

    bundle, _ = device("8.2")
    monkeypatch.setattr(environment, "jetson_info", lambda: NANO)
    monkeypatch.setattr(environment, "_read_text",
                        lambda path, real=environment._read_text: MEMINFO if path == "/proc/meminfo" else real(path))
    argv = ["device-run", bundle.root, "--iterations", "20"]
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert "doctor: ready on the device" in out and "send back:" in out
    archives = [f for f in os.listdir(bundle.path("reports")) if f.endswith(".tar.gz")]
    assert len(archives) == 1 and archives[0].startswith("device-run-nvidia-jetson-nano-developer-kit-")
    with tarfile.open(bundle.path("reports/" + archives[0])) as tar:
        names = tar.getnames()
    assert {"reports/bench.json", "reports/doctor.json", "environment.json"} <= set(names)
    assert any(n.startswith("reports/engines/") and n.endswith(".build.log") for n in names)

    assert pipeline.main(argv) == 0                           # a re-run: engines reused, bench skipped
    out = capsys.readouterr().out
    assert "bench: already done for these engines (skipped" in out
    assert pipeline.main(argv + ["--force"]) == 0
    assert "already done" not in capsys.readouterr().out


def test_device_run_verifies_with_the_images_the_bundle_carries(device, capsys, monkeypatch, tmp_path):
    from cli import verify as cli_verify
    from deploy import environment
    from export.verify_images import pack_verify_images
    from tests.calibration.helpers import write_images

    bundle, _ = device("8.2")
    monkeypatch.setattr(environment, "jetson_info", lambda: NANO)
    monkeypatch.setattr(environment, "_read_text",
                        lambda path, real=environment._read_text: MEMINFO if path == "/proc/meminfo" else real(path))
    verified = []   # verify itself is tested in tests/export/test_verify_images.py; here: that device-run calls it
    monkeypatch.setattr(cli_verify, "run_verify", lambda args: verified.append((args.bundle, args.images)) or 0)
    assert pipeline.main(["device-run", bundle.root, "--iterations", "5"]) == 0
    assert verified == []                                     # no --images and none packed: verify is skipped
    write_images(tmp_path / "heldout" / "1", 3, size=(8, 8))
    pack_verify_images(bundle, str(tmp_path / "heldout"), count=3)
    assert pipeline.main(["device-run", bundle.root, "--iterations", "5"]) == 0
    assert verified == [(bundle.root, None)]                  # verify on the bundle's own images
    assert "== verify" in capsys.readouterr().out


def test_device_run_stops_at_the_failing_step_with_its_message(device, capsys, monkeypatch):
    bundle, _ = device("8.2", build_ok=False)
    code = pipeline.main(["device-run", bundle.root, "--iterations", "20"])
    captured = capsys.readouterr()
    assert code == 1 and "device-run stopped at doctor" in captured.err
    assert "Traceback" not in captured.err
    assert not [f for f in os.listdir(bundle.path("reports")) if f.endswith(".tar.gz")]


def test_an_exception_of_tensorrts_own_type_is_named_by_its_step(device, monkeypatch):
    import sys

    bundle, _ = device("10")
    trt = sys.modules["tensorrt"]

    def deserialize_raises(self, data):
        raise RuntimeError("std::exception: out of device memory")
    monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", deserialize_raises)
    report = doctor.run_doctor(bundle.root, jetson=NANO, meminfo=MEMINFO, device_role=True)
    smoke = report["smoke"]["tensorrt fp32"]
    assert smoke["step"] == "deserialize" and "RuntimeError: std::exception: out of device memory" in smoke["error"]
