"""Items 1-3 of issue 12: what a second process, a foreign folder or a killed calibration does to a
bundle. Each test: the exit code, the one-line message, and that nothing was lost (file hashes)."""
import os
import signal
import subprocess
import sys

import pytest

import pipeline
from deploy import verify as verify_mod
from deploy.atomic import is_temp_name
from deploy.bundle import LOCK_NAME, Bundle, writer_lock
from deploy.errors import BundleError, UsageError
from export.build import WORK_DIR_PREFIX, check_build_folder, remove_leftovers
from tests.faults.helpers import edit_manifest, hashes, run, verify_bundle_dir, write_images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def no_torch_stages(monkeypatch):
    """verify's PyTorch stages re-create registry models: not needed for these tiny CNNs."""
    monkeypatch.setattr("calibration.torch_stages.torch_stages", lambda record, name: ([], []))   # cli/verify.py passes it in


# ------------------------------------------------------------------------------------------------
# 1. verify during a build
# ------------------------------------------------------------------------------------------------
def test_verify_holds_the_writer_lock_so_a_build_cannot_start(tmp_path, no_torch_stages, monkeypatch, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    write_images(tmp_path / "imgs", 3)
    refused = []
    real = verify_mod.verify_model

    def verify_model_while_a_build_starts(*args, **kwargs):
        try:
            with writer_lock(root, "pipeline.py build"):
                pass
        except BundleError as exc:
            refused.append(exc.one_line())
        return real(*args, **kwargs)

    monkeypatch.setattr(verify_mod, "verify_model", verify_model_while_a_build_starts)
    code, err, _ = run(["-q", "verify", root, "--images", str(tmp_path / "imgs"), "--count", "3"], capsys)
    assert code == 0 and err == ""
    assert refused and "is being written by `pipeline.py verify`" in refused[0]


def test_build_while_verify_runs_is_refused_with_one_line(tmp_path, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    before = hashes(root)
    with writer_lock(root, "pipeline.py verify"):
        code, err, _ = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32",
                            "--out", root], capsys)
    assert code == 1 and "is being written by `pipeline.py verify`" in err and "fix:" in err
    assert hashes(root) == before


def test_verify_saves_onto_the_manifest_as_it_is_now_not_its_stale_copy(tmp_path, no_torch_stages, monkeypatch):
    """A library caller without the lock: a record rebuilt meanwhile is kept, not reverted."""
    root = verify_bundle_dir(tmp_path / "b", names=("hardnet39ds", "mobilenetv2"))
    write_images(tmp_path / "imgs", 3)
    real = verify_mod.verify_model
    rebuilt = {"sha256": "f" * 64}

    def verify_model_while_another_writes(bundle, name, *args, **kwargs):
        result = real(bundle, name, *args, **kwargs)
        if name == "mobilenetv2":   # "a build" replaces hardnet39ds's record and adds a model on disk
            def change(manifest):
                manifest["models"]["hardnet39ds"]["onnx"]["sha256"] = rebuilt["sha256"]
                manifest["models"]["new_model"] = {"onnx": {"path": "models/new.onnx", "sha256": "e" * 64}}
            edit_manifest(root, change)
        return result

    monkeypatch.setattr(verify_mod, "verify_model", verify_model_while_another_writes)
    bundle = Bundle.open(root)
    verify_mod.verify_bundle(bundle, images_dir=str(tmp_path / "imgs"), count=3, progress=False)
    after = Bundle.open(root).manifest["models"]
    assert after["hardnet39ds"]["onnx"]["sha256"] == rebuilt["sha256"]   # not reverted
    assert "fidelity" not in after["hardnet39ds"]                       # verified another file: not recorded
    assert "new_model" in after                                         # not dropped
    assert after["mobilenetv2"]["fidelity"]["images"] == 3


# ------------------------------------------------------------------------------------------------
# 2. build --out into a folder that is not a bundle
# ------------------------------------------------------------------------------------------------
def _users_folder(folder):
    (folder / ".build-cache").mkdir(parents=True)
    (folder / ".build-cache" / "important.txt").write_text("the user's")
    (folder / "models").mkdir()
    (folder / "models" / ".draft.tmp").write_text("the user's draft")
    (folder / "models" / ".notes.onnx.a1b2c3d4.tmp").write_text("looks like ours, is not")
    (folder / "notes.md").write_text("hello")


def test_build_into_a_folder_that_is_not_a_bundle_is_refused_and_nothing_removed(tmp_path, capsys):
    folder = tmp_path / "mine"
    _users_folder(folder)
    before = hashes(folder)
    code, err, _ = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32",
                        "--out", str(folder)], capsys)
    assert code == 2 and "is a folder that is not empty and not a bundle" in err and "fix:" in err
    assert hashes(folder) == before
    assert not (folder / LOCK_NAME).exists()   # not even the lock file is made in someone else's folder


def test_cleanup_in_a_bundle_removes_only_what_a_build_makes(tmp_path):
    root = verify_bundle_dir(tmp_path / "b")
    folder = tmp_path / "b"
    (folder / ".build-cache").mkdir()
    (folder / ".build-cache" / "important.txt").write_text("the user's")
    (folder / "models" / ".draft.tmp").write_text("the user's draft")
    killed = folder / (WORK_DIR_PREFIX + "k1ll3d00")
    killed.mkdir()
    (killed / "x.onnx").write_bytes(b"half")
    half = folder / "models" / ".mobilenetv2.onnx.k1ll3d00.tmp"
    half.write_bytes(b"half")
    keep = hashes(folder)
    del keep[os.path.relpath(str(killed / "x.onnx"), str(folder))], keep["models/.mobilenetv2.onnx.k1ll3d00.tmp"]
    assert remove_leftovers(root) == 2
    assert hashes(folder) == keep


def test_a_folder_left_by_a_killed_first_build_is_accepted(tmp_path):
    folder = tmp_path / "first"
    (folder / "models").mkdir(parents=True)
    (folder / LOCK_NAME).write_text("")
    (folder / (WORK_DIR_PREFIX + "abcdefgh")).mkdir()
    check_build_folder(str(folder))   # no error: only what a build of ours makes
    assert remove_leftovers(str(folder)) == 0   # not a bundle yet: nothing is removed from it
    assert sorted(os.listdir(str(folder))) == sorted([WORK_DIR_PREFIX + "abcdefgh", LOCK_NAME, "models"])
    (folder / "models" / "mine.onnx").write_bytes(b"someone's")
    with pytest.raises(UsageError, match="not empty and not a bundle"):
        check_build_folder(str(folder))


# ------------------------------------------------------------------------------------------------
# 3. a killed INT8 calibration
# ------------------------------------------------------------------------------------------------
KILLED_CALIBRATION = r"""
import sys, time
import calibration.dataset as dataset
from calibration.images import folder_items
from deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

real, seen = dataset.preprocess_image, []
def slow(image, cfg):
    seen.append(1)
    if len(seen) == 2:
        print("ready", flush=True)
        time.sleep(60)
    return real(image, cfg)
dataset.preprocess_image = slow
cfg = PreprocessConfig(32, 1.0, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
dataset.write_calibration_array(folder_items(sys.argv[1]), cfg, 4, sys.argv[2], progress=False)
"""


def test_a_killed_calibration_leaves_only_files_the_next_build_removes(tmp_path):
    root = verify_bundle_dir(tmp_path / "b")
    write_images(tmp_path / "imgs", 4)
    os.makedirs(os.path.join(root, "calibration"))
    before = hashes(root)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CALIBRATION, str(tmp_path / "imgs"),
                             os.path.join(root, "calibration", "mobilenetv2.npy")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    left = os.listdir(os.path.join(root, "calibration"))
    assert left and all(is_temp_name(name) for name in left)   # the rows scratch and the .npy's temporary
    assert remove_leftovers(root) == len(left)
    assert os.listdir(os.path.join(root, "calibration")) == [] and hashes(root) == before


def test_the_printed_copy_command_leaves_temporary_files_behind(tmp_path, capsys, monkeypatch):
    from deploy.tensorrt import compat as trt_compat

    monkeypatch.setattr(trt_compat, "tensorrt_available", lambda: False)
    root = str(tmp_path / "b")
    code = pipeline.main(["-q", "build", "--models", "mobilenetv2", "--size", "32", "--out", root])
    out = capsys.readouterr().out
    assert code == 0
    assert "rsync -a --exclude '.*.tmp' --exclude .lock {}/".format(root) in out


@pytest.mark.parametrize("command", ["verify", "engines"])
def test_a_bundle_command_on_a_folder_that_is_not_a_bundle_leaves_no_lock_file(tmp_path, capsys, command):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.md").write_text("hello")
    before = hashes(folder)
    code, err, _ = run(["-q", command, str(folder)], capsys)
    assert code == 1 and "it is not a bundle" in err
    assert hashes(folder) == before and sorted(os.listdir(str(folder))) == ["notes.md"]
