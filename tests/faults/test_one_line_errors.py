"""Item 10 of issue 12: inputs that ended in a traceback now end in one line (exit 1 or 2, the cause
and the fix), with nothing lost and no empty bundle folder left behind."""
import errno
import os
import shutil
import subprocess
import sys

import pytest

from deploy import atomic
from tests.faults.helpers import edit_manifest, hashes, run, verify_bundle_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = ["-q", "build", "--target", "cpu", "--size", "32"]


def test_a_huge_size_is_refused_before_any_work(tmp_path, capsys):
    code, err, _ = run(BUILD[:-1] + ["100000", "--models", "mobilenetv2", "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "--size must be a number of pixels from 1 to 2048" in err and "fix:" in err
    assert not (tmp_path / "b").exists()


USER_CODE = {
    "raises": ("def build():\n    raise RuntimeError('no such layer')\n", "raised RuntimeError: no such layer"),
    "syntax": ("def build(:\n    pass\n", "has a syntax error"),
    "returns_dict": ("def build():\n    return {'conv': 1}\n", "returned a dict, not a torch.nn.Module"),
    "import_fails": ("raise ValueError('at import')\ndef build():\n    pass\n", "raised ValueError on import"),
}


@pytest.mark.parametrize("kind", sorted(USER_CODE))
def test_a_broken_user_model_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys, kind):
    code_text, expected = USER_CODE[kind]
    package = tmp_path / "userpkg_{}".format(kind)
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text(code_text)
    monkeypatch.chdir(tmp_path)   # the user runs from the folder that holds the package
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    code, err, _ = run(BUILD + ["--model", "userpkg_{}.net:build".format(kind), "--out", "b"], capsys)
    assert code == 2 and expected in err and "fix:" in err
    assert not (tmp_path / "b").exists()


def test_a_user_model_in_the_current_folder_imports(tmp_path, monkeypatch, capsys):
    (tmp_path / "mynet.py").write_text("import torch\ndef build():\n    return torch.nn.Sequential("
                                       "torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), "
                                       "torch.nn.Linear(4, 2))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    code, err, out = run(BUILD + ["--model", "mynet:build", "--out", "b"], capsys)
    assert code == 0 and err == "" and "mynet.build" in out


MANIFESTS = {
    "array": (lambda m: [m], "is a JSON list, not an object"),
    "models_list": (lambda m: m.update(models=list(m["models"].values())), "has 'models' as a JSON list"),
    "huge_shape": (lambda m: m["models"]["mobilenetv2"]["input"].update(shape=[1, 3, 100000, 100000]),
                   "the input shape [1, 3, 100000, 100000]"),
    "huge_batch": (lambda m: m["models"]["mobilenetv2"]["input"].update(shape=[100000, 3, 32, 32]),
                   "the input shape [100000, 3, 32, 32]"),
    "crop_pct_0": (lambda m: m["models"]["mobilenetv2"]["preprocessing"].update(crop_pct=0),
                   "crop_pct 0.0 is not in (0, 1]"),
}


@pytest.mark.parametrize("command", ["bench", "verify"])
@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_a_damaged_manifest_is_one_line(tmp_path, capsys, kind, command):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from tests.faults.helpers import write_images

    root = verify_bundle_dir(tmp_path / "b")
    write_images(tmp_path / "imgs", 2)
    change, expected = MANIFESTS[kind]
    edit_manifest(root, change)
    before = hashes(root)
    extra = ["--iterations", "2", "--backend", "onnxruntime"] if command == "bench" else ["--images", str(tmp_path / "imgs")]
    code, err, _ = run(["-q", command, root] + extra, capsys)
    assert code == 1 and expected in err and "fix: rebuild the bundle" in err
    assert hashes(root) == before


@pytest.mark.parametrize("option, expected", [
    (["--iterations", "1000000000000"], "--iterations must be at least 1 and at most"),
    (["--iterations", "99999999999999999999999"], "--iterations must be at least 1 and at most"),
    (["--seed", "-1"], "--seed must be from 0 to 4294967295"),
    (["--size", "100000"], "the input side must be from 1 to 4096"),
])
def test_bench_numbers_out_of_range(tmp_path, capsys, option, expected):
    root = verify_bundle_dir(tmp_path / "b")
    code, err, _ = run(["-q", "bench", root, "--backend", "onnxruntime"] + option, capsys)
    assert code == 2 and expected in err


def test_a_full_disk_during_build_keeps_the_bundle_as_it_was(tmp_path, monkeypatch, capsys):
    root = str(tmp_path / "b")
    argv = BUILD + ["--models", "mobilenetv2", "--out", root]
    assert run(argv, capsys)[0] == 0
    before = hashes(root)
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    code, err, _ = run(argv[:-2] + ["--num-classes", "7", "--out", root], capsys)   # a real change: rebuilt
    monkeypatch.setattr(atomic.os, "fsync", real)
    assert code == 1 and err.startswith("error: no space left on the device") and "fix: free some space" in err
    assert hashes(root) == before   # the old ONNX and the manifest naming it, in step
    assert not [n for n in os.listdir(os.path.join(root, "models")) if n.startswith(".")]


@pytest.mark.parametrize("command", [["models"], ["build", "--models", "mobilenetv2", "--size", "32"], ["analyze"]])
def test_host_commands_in_the_device_layout(tmp_path, command):
    """On the device only pipeline.py, cli/, deploy/ and scripts/ are copied (docs/device.md): no models/, export/,
    torch."""
    shutil.copy(os.path.join(ROOT, "pipeline.py"), str(tmp_path))
    shutil.copytree(os.path.join(ROOT, "cli"), str(tmp_path / "cli"))
    shutil.copytree(os.path.join(ROOT, "deploy"), str(tmp_path / "deploy"))
    proc = subprocess.run([sys.executable, "pipeline.py"] + command, cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "runs on the host" in proc.stderr and "fix:" in proc.stderr
    assert sorted(os.listdir(str(tmp_path))) == ["cli", "deploy", "pipeline.py"]


@pytest.mark.parametrize("raised, expected", [
    (MemoryError(), "error: out of memory (fix: a smaller --size, --batch or --iterations"),
    (PermissionError(errno.EACCES, "Permission denied", "/some/file"), "error: Permission denied: /some/file (fix:"),
    (ZeroDivisionError("division by zero"), "error: ZeroDivisionError: division by zero (fix: `python pipeline.py -v bench"),
])
def test_a_failure_no_library_code_foresaw_is_still_one_line(tmp_path, monkeypatch, capsys, raised, expected):
    from deploy.bench import protocol as bench

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(bench, "run_bench", fail)
    root = verify_bundle_dir(tmp_path / "b")
    before = hashes(root)
    code, err, _ = run(["-q", "bench", root, "--backend", "onnxruntime"], capsys)
    assert code == 1 and err.startswith(expected)
    assert hashes(root) == before
