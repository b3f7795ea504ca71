"""The device side stays Python 3.6 (JetPack 4.6) and imports no host-only or GPU package at import time."""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Imported lazily (inside functions) by pipeline.py, cli/ and deploy/: a Jetson has no torch/onnx, and
# tensorrt/pycuda/onnxruntime/matplotlib/PIL must not be needed just to import the CLI.
BLOCKED = ["torch", "torchvision", "onnx", "onnxsim", "onnxscript", "onnxruntime", "tensorrt", "pycuda",
           "matplotlib", "PIL"]


def _vermin(*paths):
    pytest.importorskip("vermin", reason="vermin is not installed (pip install -r requirements-dev.txt)")
    return subprocess.run(
        [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())",
         "-t=3.6-", "--violations", "--no-tips"] + list(paths),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def test_pipeline_cli_and_deploy_are_python36():
    proc = _vermin("pipeline.py", "cli", "deploy")
    assert proc.returncode == 0, proc.stdout


def test_vermin_catches_a_37_construct(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from __future__ import annotations\nimport dataclasses\n")
    proc = _vermin(str(bad))
    assert proc.returncode != 0 and "3.7" in proc.stdout


IMPORT_ALL = textwrap.dedent("""
    import importlib, os, pkgutil, sys

    BLOCKED = {blocked!r}

    class Blocker(object):
        # A meta path finder that refuses the host-only and GPU packages (3.4+ find_spec protocol).
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked for this test: " + name)
            return None

    sys.meta_path.insert(0, Blocker())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    import cli, deploy, pipeline
    names = ["pipeline"]
    for package in (cli, deploy):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
            names.append(info.name)
    sys.argv = ["pipeline.py", "targets"]
    code = pipeline.main(["targets"])
    assert code == 0, code
    pipeline.make_parser().parse_args(["engines", "--precision", "fp16"])
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("imported", len(names), "modules")
""")


def test_pipeline_cli_and_deploy_import_without_host_or_gpu_packages():
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL.format(blocked=BLOCKED)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
    assert "imported" in proc.stdout and "jetson-nano" in proc.stdout


def test_the_blocker_really_blocks():
    code = IMPORT_ALL.format(blocked=BLOCKED).split("import deploy, pipeline")[0] + "import numpy\nimport torch\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode != 0 and "blocked for this test: torch" in proc.stdout


def _python36_with_numpy():
    """A real Python 3.6 with numpy: $PYTHON36, else python3.6 on PATH; None when there is none."""
    import shutil
    candidate = os.environ.get("PYTHON36") or shutil.which("python3.6")
    if not candidate:
        return None
    try:
        out = subprocess.run([candidate, "-c", "import sys, numpy; print(sys.version_info[:2] == (3, 6))"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return candidate if out.returncode == 0 and out.stdout.strip() == "True" else None


def test_imports_and_targets_under_a_real_python36():
    python36 = _python36_with_numpy()
    if python36 is None:
        pytest.skip("no Python 3.6 with numpy here (set PYTHON36=/path/to/python3.6 to run this)")
    proc = subprocess.run([python36, "-c", IMPORT_ALL.format(blocked=BLOCKED)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
    assert "jetson-nano" in proc.stdout


def test_host_commands_say_they_need_the_host_python(monkeypatch, capsys):
    import pipeline

    monkeypatch.setattr(pipeline, "HOST_PYTHON", (sys.version_info[0] + 1, 0))   # pretend this Python is too old
    for command in ("build", "analyze", "models"):
        assert pipeline.main([command]) == 2
        err = capsys.readouterr().err
        assert "`{}` runs on the host: it needs Python".format(command) in err and "engines, bench and verify" in err
    assert pipeline.main(["targets"]) == 0                     # the device commands are not affected


def test_host_commands_under_a_real_python36_fail_cleanly(tmp_path):
    python36 = _python36_with_numpy()
    if python36 is None:
        pytest.skip("no Python 3.6 with numpy here (set PYTHON36=/path/to/python3.6 to run this)")
    proc = subprocess.run([python36, os.path.join(ROOT, "pipeline.py"), "build", "--out", str(tmp_path / "b")],
                          cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 2 and "`build` runs on the host" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()
