"""trtexec command lines and the bundle's trtexec.sh (no TensorRT needed)."""
import os
import shutil
import stat
import subprocess

import pytest

from deploy.errors import PrecisionUnsupportedError
from deploy.trtexec import trtexec_command, workspace_flag, write_trtexec_script
from tests.deploy import trt_fakes


def test_workspace_flag_follows_the_trtexec_version():
    assert workspace_flag("8.2.1.8", 256) == "--workspace=256"
    assert workspace_flag("8.2", 256) == "--workspace=256"
    assert workspace_flag("8.5.2", 1024) == "--memPoolSize=workspace:1024"
    assert workspace_flag("10.13.0.35", 1024) == "--memPoolSize=workspace:1024"
    assert workspace_flag(None, 64) == "--memPoolSize=workspace:64"


def test_fp16_and_int8_commands():
    fp16 = trtexec_command("models/m.onnx", "engines/m.fp16.e", "fp16", "8.2.1", 256, "engines/t.cache")
    assert fp16 == ["trtexec", "--onnx=models/m.onnx", "--saveEngine=engines/m.fp16.e", "--fp16",
                    "--workspace=256", "--timingCacheFile=engines/t.cache"]
    int8 = trtexec_command("m.onnx", "m.e", "int8", "10.0", 512, "t.cache", calib_cache_path="m.calib")
    assert "--int8" in int8 and "--fp16" in int8 and "--calib=m.calib" in int8
    assert "--memPoolSize=workspace:512" in int8
    fp32 = trtexec_command("m.onnx", "m.e", "fp32", "10.0", 512, "t.cache")
    assert not [a for a in fp32 if a in ("--fp16", "--int8")]
    with pytest.raises(ValueError):
        trtexec_command("m.onnx", "m.e", "best", "10.0", 512, "t.cache")


def test_dynamic_batch_gets_shapes():
    cmd = trtexec_command("m.onnx", "m.e", "fp16", "8.2", 256, "t", input_name="input",
                          dynamic_shapes=((1, 3, 320, 320), (4, 3, 320, 320), (4, 3, 320, 320)))
    assert "--minShapes=input:1x3x320x320" in cmd and "--maxShapes=input:4x3x320x320" in cmd


def _fake_trtexec(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "trtexec"
    tool.write_text('#!/bin/sh\necho "$@" >> "{}"\n'.format(tmp_path / "calls.txt"))
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh to run the script with")
def test_host_script_for_the_nano_runs_with_trtexec(tmp_path):
    bundle = trt_fakes.make_bundle(tmp_path / "b", models=("a", "b"))
    path = write_trtexec_script(bundle.root, "best")          # best on the Nano = fp16
    assert os.access(path, os.X_OK)
    text = open(path).read()
    assert text.count("trtexec --onnx=") == 2 and "--workspace=256" in text and "--int8" not in text
    env = dict(os.environ, PATH=_fake_trtexec(tmp_path) + os.pathsep + os.environ["PATH"], DEVICE="nano-test", TRT_VERSION="8.2.1.8")
    subprocess.check_call(["sh", path], env=env)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls[0].split() == [
        "--onnx=models/a.onnx", "--saveEngine=engines/a.fp16.8.2.1.8.nano-test.engine", "--fp16", "--workspace=256",
        "--timingCacheFile=engines/timing.8.2.1.8.nano-test.cache"]
    assert "models/b.onnx" in calls[1]


def test_device_script_names_match_the_python_engines(tmp_path):
    from deploy import engines
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="jetson-orin-nano")
    path = write_trtexec_script(bundle, "int8", trt_version="10.3.0.30", device_name="Orin", calibrator="minmax")
    text = open(path).read()
    assert engines.engine_relpath("tiny", "int8", "10.3.0.30", "Orin") in text
    assert "--calib=" + engines.calibration_cache_relpath("tiny", "minmax", "10.3.0.30", "Orin") in text
    assert "--memPoolSize=workspace:1024" in text and "${DEVICE}" not in text


def test_script_refuses_int8_on_the_nano(tmp_path):
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    with pytest.raises(PrecisionUnsupportedError):
        write_trtexec_script(bundle, "int8")
    assert not os.path.exists(bundle.path("trtexec.sh"))
