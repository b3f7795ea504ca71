"""`pipeline.py engines` and the end of `build` (cli.engines.engines_after_build), with and without (fake) TensorRT."""
import os

import pytest

import pipeline
from cli.engines import engines_after_build
from tests.deploy import pycuda_fakes, trt_fakes


def test_int8_on_nano_refused_before_any_work(tmp_path, capsys):
    code = pipeline.main(["engines", str(tmp_path / "none"), "--target", "jetson-nano", "--precision", "int8"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Maxwell" in err and "--precision fp16" in err and len(err.strip().splitlines()) == 1


def test_missing_bundle_is_exit_1(tmp_path, capsys):
    assert pipeline.main(["engines", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_no_tensorrt_names_the_device_command(tmp_path, monkeypatch, capsys):
    trt_fakes.install(monkeypatch, None, None)
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    assert pipeline.main(["engines", bundle.root]) == 1
    err = capsys.readouterr().err
    assert "TensorRT" in err and "python3 pipeline.py engines" in err


@pytest.mark.parametrize("generation", trt_fakes.GENERATIONS)
def test_engines_with_fake_tensorrt_prints_the_table(tmp_path, monkeypatch, capsys, generation):
    trt = trt_fakes.make_fake_trt(generation)
    trt_fakes.install(monkeypatch, trt, pycuda_fakes.make_fake_pycuda())
    bundle = trt_fakes.make_bundle(tmp_path / "b", models=("a", "b"))
    assert pipeline.main(["engines", bundle.root, "--precision", "best", "--models", "b"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA Tegra X1" in out and "precision fp16 (asked: best)" in out
    assert "b.fp16.{}.nvidia-tegra-x1.engine".format(trt.__version__) in out and "a.fp16" not in out


def test_after_build_without_tensorrt_prints_the_device_commands(tmp_path, monkeypatch, capsys):
    trt_fakes.install(monkeypatch, None, None)
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    assert engines_after_build(None, bundle.root, "best") == 0
    out = capsys.readouterr().out
    assert "TensorRT is not available here" in out
    assert "rsync -a pipeline.py cli deploy scripts requirements-jetson.txt USER@DEVICE:hardnet/" in out
    assert "sh scripts/setup-jetson.sh" in out and "pipeline.py device-run" in out
    assert "rsync -a --exclude '.*.tmp' --exclude .lock {}/ USER@DEVICE:hardnet/build/b/".format(bundle.root) in out
    assert "python3 pipeline.py engines build/b --precision fp16" in out
    assert os.path.isfile(bundle.path("trtexec.sh"))


def test_the_printed_device_commands_quote_an_awkward_bundle_path(tmp_path, monkeypatch, capsys):
    import shlex

    trt_fakes.install(monkeypatch, None, None)
    bundle = trt_fakes.make_bundle(tmp_path / "my $HOME bundle")
    assert engines_after_build(None, bundle.root, "fp16") == 0
    commands = [shlex.split(line) for line in capsys.readouterr().out.splitlines()
                if line.strip().startswith(("rsync -a --exclude", "python3 pipeline.py device-run"))]
    assert len(commands) == 2   # each parses back, as a shell would, to the very paths
    assert commands[0][-2:] == [bundle.root + "/", "USER@DEVICE:hardnet/build/my $HOME bundle/"]
    assert commands[1][:4] == ["python3", "pipeline.py", "device-run", "build/my $HOME bundle"]


def test_after_build_with_tensorrt_builds_the_engines(tmp_path, monkeypatch, capsys):
    trt_fakes.install(monkeypatch, trt_fakes.make_fake_trt("10"), pycuda_fakes.make_fake_pycuda())
    bundle = trt_fakes.make_bundle(tmp_path / "b")
    assert engines_after_build(None, bundle.root, "fp16") == 0
    assert "TensorRT imports here" in capsys.readouterr().out
    assert [f for f in os.listdir(bundle.path("engines")) if f.endswith(".engine")]


def test_after_build_for_cpu_target_does_nothing(tmp_path, capsys):
    bundle = trt_fakes.make_bundle(tmp_path / "b", target_name="cpu")
    assert engines_after_build(None, bundle.root, "fp32") == 0
    assert capsys.readouterr().out == "" and not os.path.exists(bundle.path("trtexec.sh"))
