"""`doctor`: each probe's parsing and verdict, the host run on a real bundle, and the CLI's lines
and exit codes. Device runs with fake TensorRT are in test_doctor_device.py."""
import collections
import json
import os
import sys

import pytest

import pipeline
from deploy.bundle import Bundle
from deploy.device import doctor


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    if sys.version_info < (3, 10):
        pytest.skip("needs a bundle, which the host's build makes (Python 3.10+ with torch)")
    out = tmp_path_factory.mktemp("doctor") / "bundle"
    assert pipeline.main(["-q", "build", "--models", "mobilenetv2", "--size", "64", "--out", str(out)]) == 0
    return str(out)


# -- probes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg, expected", [
    ("home = /usr/bin\ninclude-system-site-packages = false\n", True),
    ("home = /usr/bin\ninclude-system-site-packages = true\n", False),
    ("home = /usr/bin\n", True),
])
def test_isolated_virtualenv_is_read_from_pyvenv_cfg(cfg, expected):
    assert doctor.in_isolated_virtualenv("/venv", "/usr", read=lambda path: cfg) is expected
    assert doctor.in_isolated_virtualenv("/usr", "/usr", read=lambda path: cfg) is False


def test_cuda_cudnn_and_meminfo_parsers():
    assert doctor.parse_cuda_version("CUDA Version 10.2.300\n") == "10.2.300"
    assert doctor.parse_cuda_version('{"cuda" : {"name" : "CUDA SDK", "version" : "11.4.19"}}') == "11.4.19"
    assert doctor.parse_cuda_version("garbage") is None
    header = "#define CUDNN_MAJOR 8\n#define CUDNN_MINOR 2\n#define CUDNN_PATCHLEVEL 1\n"
    assert doctor.parse_cudnn_version(header) == "8.2.1"
    assert doctor.parse_cudnn_version("#define CUDNN_MAJOR 8\n") is None
    mem = doctor.parse_meminfo("MemTotal:        4059272 kB\nMemAvailable:     912000 kB\nSwapTotal: 0 kB\n")
    assert mem["total_mb"] == 3964 and mem["available_mb"] == 890 and mem["swap_total_mb"] == 0


def test_low_memory_without_swap_warns_on_a_small_device_only():
    text = "MemTotal: 4059272 kB\nMemAvailable: 912000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"
    warn = doctor.check_memory(text, on_small_device=True)
    assert warn.status == doctor.WARN and "swapon" in warn.fix and not warn.required
    assert doctor.check_memory(text, on_small_device=False).status == doctor.OK
    swap = text.replace("SwapTotal: 0 kB", "SwapTotal: 4194300 kB")
    assert doctor.check_memory(swap, on_small_device=True).status == doctor.OK


def test_full_disk_fails_and_is_required():
    usage = collections.namedtuple("usage", "total used free")
    check = doctor.check_disk(".", usage=lambda path: usage(1 << 30, 1 << 30, 10 << 20))
    assert check.status == doctor.FAIL and check.required and "10 MB free" in check.detail


def test_jetpack_other_than_4_6_warns():
    info = {"board": "NVIDIA Jetson Nano Developer Kit", "l4t": {"l4t": "32.7.1", "jetpack": "4.6.1"}}
    assert doctor.check_jetson(info).status == doctor.OK
    info["l4t"] = {"l4t": "35.4.1", "jetpack": "5.1.2"}
    assert doctor.check_jetson(info).status == doctor.WARN
    assert doctor.check_jetson(None).status == doctor.INFO


def test_missing_tensorrt_in_an_isolated_venv_names_the_venv(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    check = doctor.check_tensorrt(isolated_venv=True)
    assert check.status == doctor.FAIL and check.required and "--system-site-packages" in check.fix
    assert "python3-libnvinfer" in doctor.check_tensorrt(isolated_venv=False).fix


def test_power_mode_and_clocks_warn_with_the_command():
    info = {"power_mode": {"name": "5W", "id": 1}, "clocks": {"locked": False}}
    check = doctor.check_power(info)
    assert check.status == doctor.WARN and "nvpmodel -m 0" in check.fix and "jetson_clocks" in check.fix
    ok = doctor.check_power({"power_mode": {"name": "MAXN", "id": 0}, "clocks": {"locked": True}})
    assert ok.status == doctor.OK


# -- the host run ----------------------------------------------------------------------------------
def test_host_run_checks_tools_runs_smoke_and_writes_report(bundle_dir):
    seen = []
    report = doctor.run_doctor(bundle_dir, jetson=False, device_role=False, progress=seen.append)
    names = [c["name"] for c in report["checks"]]
    assert report["ok"] is True and report["role"] == "host"
    assert {"torch", "onnx", "onnxruntime", "onnxsim", "bundle", "smoke onnxruntime fp32", "disk"} <= set(names)
    assert [c.name for c in seen] == names                       # printed as they finish, in order
    with open(os.path.join(bundle_dir, "reports", "doctor.json")) as handle:
        written = json.load(handle)
    assert written["ok"] is True and written["smoke"]["onnxruntime fp32"]["ok"] is True


def test_tampered_bundle_fails_with_the_file_named(tmp_path, bundle_dir):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(bundle_dir, copy)
    onnx_rel = Bundle.open(copy).model("mobilenetv2")["onnx"]["path"]
    with open(os.path.join(copy, onnx_rel), "ab") as handle:
        handle.write(b"\0")
    report = doctor.run_doctor(copy, jetson=False, device_role=False)
    assert report["ok"] is False and report["failed"] == ["bundle"]
    bundle_check = [c for c in report["checks"] if c["name"] == "bundle"][0]
    assert onnx_rel in bundle_check["detail"] and "copy the bundle again" in bundle_check["fix"]


def test_unwritable_bundle_fails_the_writable_check(tmp_path, bundle_dir):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(bundle_dir, copy, ignore=shutil.ignore_patterns("reports"))
    with open(os.path.join(copy, "reports"), "w") as handle:   # a file where the folder must go:
        handle.write("not a folder")                           # writing fails even as root
    report = doctor.run_doctor(copy, jetson=False, device_role=False)
    assert report["ok"] is False and "writable" in report["failed"] and report["written"] is None
    with open(os.path.join(copy, "reports")) as handle:
        assert handle.read() == "not a folder"                 # nothing of the user's replaced


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_prints_one_line_per_check_and_exits_0(bundle_dir, capsys, monkeypatch):
    monkeypatch.setattr(doctor, "on_device", lambda jetson, trt: False)
    assert pipeline.main(["doctor", bundle_dir]) == 0
    out = capsys.readouterr().out
    assert "doctor: ready on the host" in out and "smoke onnxruntime fp32" in out


def test_cli_exits_1_and_prints_the_fix_when_a_required_check_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(doctor, "on_device", lambda jetson, trt: False)
    assert pipeline.main(["doctor", str(tmp_path / "nosuch")]) == 1
    out = capsys.readouterr().out
    assert "NOT ready: bundle" in out and "fix: build it on the host" in out


def test_marks_fall_back_to_words_where_the_terminal_is_ascii(monkeypatch):
    from cli import doctor as cli_doctor

    class Ascii(object):
        encoding = "ascii"
    monkeypatch.setattr(sys, "stdout", Ascii())
    assert cli_doctor.mark("ok") == "ok" and cli_doctor.mark("fail") == "FAIL"


@pytest.mark.parametrize("version, status", [("8.2.1.8", doctor.OK), ("10.13.0.35", doctor.OK),
                                             ("7.1.3.0", doctor.FAIL), ("garbage", doctor.FAIL),
                                             ("11.0.0", doctor.WARN)])
def test_tensorrt_of_an_unknown_version_is_named(monkeypatch, version, status):
    import types

    fake = types.ModuleType("tensorrt")
    fake.Builder, fake.__version__ = object, version
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    check = doctor.check_tensorrt(isolated_venv=False)
    assert check.status == status and version in check.detail
