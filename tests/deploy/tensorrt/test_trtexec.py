"""trtexec command lines and the bundle's trtexec.sh (no TensorRT needed)."""
import os
import shutil
import stat
import subprocess

import pytest

from deploy.errors import PrecisionUnsupportedError
from deploy.tensorrt.trtexec import trtexec_command, workspace_flag, write_trtexec_script
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
    bin_dir.mkdir(exist_ok=True)
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
    subprocess.check_call(["sh", path], env=env, cwd=str(tmp_path))
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls[0].split() == [
        "--onnx=models/a.onnx", "--saveEngine=engines/a.fp16.8.2.1.8.nano-test.engine", "--fp16", "--workspace=256",
        "--timingCacheFile=engines/timing.8.2.1.8.nano-test.cache"]
    assert "models/b.onnx" in calls[1]


def test_device_script_names_match_the_python_engines(tmp_path):
    from deploy.tensorrt import engine_files
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="jetson-orin-nano")
    path = write_trtexec_script(bundle, "int8", trt_version="10.3.0.30", device_name="Orin", calibrator="minmax")
    text = open(path).read()
    assert engine_files.engine_relpath("tiny", "int8", "10.3.0.30", "Orin") in text
    # trtexec reads only entropy-calibrator caches, whatever --calibrator the Python build used
    assert "--calib=" + engine_files.calibration_cache_relpath("tiny", "entropy", "10.3.0.30", "Orin") in text
    assert "--memPoolSize=workspace:1024" in text and "${DEVICE}" not in text


def test_script_refuses_int8_on_the_nano(tmp_path):
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    with pytest.raises(PrecisionUnsupportedError):
        write_trtexec_script(bundle, "int8")
    assert not os.path.exists(bundle.path("trtexec.sh"))


def _run_script(path, tmp_path, *args):
    env = dict(os.environ, PATH=_fake_trtexec(tmp_path) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["sh", path] + list(args), env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    calls = tmp_path / "calls.txt"
    return proc, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh to run the script with")
@pytest.mark.parametrize("cache", [None, b"", b"TRT-8502-MinMaxCalibration\ninput: 3c010a14\n", b"garbage\n"])
def test_int8_script_refuses_without_an_entropy_cache(tmp_path, cache):
    from deploy.tensorrt import engine_files
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="jetson-xavier-nx", models=("a", "b"))
    path = write_trtexec_script(bundle, "int8", trt_version="8.5.2.2", device_name="Xavier")
    good = engine_files.calibration_cache_relpath("a", "entropy", "8.5.2.2", "Xavier")
    os.makedirs(bundle.path("engines"), exist_ok=True)
    with open(bundle.path(good), "wb") as handle:
        handle.write(b"TRT-8502-EntropyCalibration2\ninput: 3c010a14\n")
    other = bundle.path(engine_files.calibration_cache_relpath("b", "entropy", "8.5.2.2", "Xavier"))
    if cache is not None:
        with open(other, "wb") as handle:
            handle.write(cache)
    proc, calls = _run_script(path, tmp_path)
    assert proc.returncode == 1 and calls == []               # refused before building anything
    assert "b: no entropy-calibrator cache engines/b.int8-entropy.8.5.2.2.xavier.calib" in proc.stderr
    assert "--precision int8 --calibrator entropy" in proc.stderr
    with open(other, "wb") as handle:
        handle.write(b"TRT-8502-EntropyCalibration2\ninput: 3c010a14\n")
    proc, calls = _run_script(path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 2 and "--calib=" + good in calls[0].split()


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh to run the script with")
def test_bench_lines_run_500_iterations_with_a_warm_up_in_ms(tmp_path):
    bundle = trt_fakes.make_bundle(tmp_path / "b", dynamic=True)
    path = write_trtexec_script(bundle, "fp16", trt_version="8.2.1.8", device_name="NVIDIA Tegra X1", max_batch=4)
    proc, calls = _run_script(path, tmp_path, "bench")
    assert proc.returncode == 0, proc.stderr
    assert calls == ["--loadEngine=engines/tiny.fp16.8.2.1.8.nvidia-tegra-x1.engine --iterations=500 --duration=0 "
                     "--warmUp=2000 --shapes=input:1x3x4x4"]
    proc, _ = _run_script(path, tmp_path, "nonsense")
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh to run the script with")
def test_script_arguments_cannot_inject_commands(tmp_path):
    """A bundle folder, model or input name with a newline, quotes or $(...) stays data (issue 12)."""
    from deploy.bundle import Bundle
    evil = "b\ntouch pwned-by-folder\n"
    bundle = trt_fakes.make_bundle(tmp_path / evil, models=("m",))
    bundle = Bundle.open(bundle.root)
    record = bundle.model("m")
    record["input"]["name"] = "x'$(touch pwned-by-input)\"\ntouch pwned-too; #"
    record["input"]["dynamic_batch"] = True
    bundle.set_model("m", record)
    bundle.save()
    path = write_trtexec_script(bundle.root, "best", max_batch=2)
    env = dict(os.environ, PATH=_fake_trtexec(tmp_path) + os.pathsep + os.environ["PATH"],
               DEVICE="dev $(touch pwned-by-env)", TRT_VERSION="8.2.1.8")
    proc = subprocess.run(["sh", path], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stderr
    assert not [f for f in os.listdir(str(tmp_path)) + os.listdir(bundle.root) if f.startswith("pwned")]
    calls = (tmp_path / "calls.txt").read_text()
    assert "--minShapes=x'$(touch pwned-by-input)\"\ntouch pwned-too; #:1x3x4x4" in calls   # one argument, literal
    assert "engines/m.fp16.8.2.1.8.dev $(touch pwned-by-env).engine" in calls
