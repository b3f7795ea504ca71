"""Review of issue 12, findings N2, N6, N9 and item 5's caveat: what `build` refuses before any work,
what a killed or terminated build leaves, what its cleanup may remove, and what a reuse trusts.
Each test: the exit code, the one-line message, and that nothing was lost (file hashes)."""
import copy
import fnmatch
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys

import onnx
import pytest

import pipeline
from deploy.bundle import LOCK_NAME, Bundle
from export import build as build_mod
from export.build import (
    WORK_DIR_PREFIX,
    WORK_DIR_SUFFIX,
    check_build_folder,
    is_work_folder,
    record_mismatches,
    remove_leftovers,
)
from export.options import MAX_BATCH, MAX_NUM_CLASSES
from tests.faults.helpers import edit_manifest, hashes, run, write_images

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the build's parity stages need it")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = ["-q", "build", "--target", "cpu", "--size", "32"]
RSYNC_EXCLUDES = (".*.tmp", LOCK_NAME)   # the documented copy: rsync -a --exclude '.*.tmp' --exclude .lock


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cpu bundle of hardnet39ds and mobilenetv2 at 32x32 (copied by the tests that change it)."""
    root = str(tmp_path_factory.mktemp("limits") / "b")
    assert pipeline.main(BUILD + ["--models", "hardnet39ds,mobilenetv2", "--out", root]) == 0
    return root


@pytest.fixture
def bundle(built, tmp_path):
    root = str(tmp_path / "b")
    shutil.copytree(built, root)
    return root


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if the build itself starts: the refusals below come before any work."""
    def build_bundle(*args, **kwargs):
        raise AssertionError("build_bundle ran: the option was not refused before the work")
    monkeypatch.setattr(build_mod, "build_bundle", build_bundle)


def _leftovers(root):
    """Work folders and temporary files anywhere under ``root``."""
    found = []
    for folder, dirs, files in os.walk(str(root)):
        found += [os.path.join(folder, n) for n in dirs + files
                  if n.startswith(".pipeline-build") or fnmatch.fnmatchcase(n, ".*.tmp")]
    return found


# ------------------------------------------------------------------------------------------------
# N2: --batch and --num-classes have an upper bound, checked before the lock file or folder is made
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, message", [
    (["--batch", "100000"], "--batch must be from 1 to {}, got 100000".format(MAX_BATCH)),
    (["--batch", str(MAX_BATCH + 1)], "--batch must be from 1 to {}, got {}".format(MAX_BATCH, MAX_BATCH + 1)),
    (["--num-classes", "100000000"], "--num-classes must be from 1 to {}, got 100000000".format(MAX_NUM_CLASSES)),
    (["--num-classes", str(MAX_NUM_CLASSES + 1)], "--num-classes must be from 1 to {}".format(MAX_NUM_CLASSES)),
])
def test_a_huge_batch_or_class_count_is_refused_before_any_work(tmp_path, capsys, no_build, option, message):
    out = tmp_path / "new"
    code, err, _ = run(BUILD + ["--models", "hardnet39ds", "--out", str(out)] + option, capsys)
    assert code == 2 and err.startswith("error: " + message) and "fix:" in err
    assert not out.exists()   # no folder, no .lock, no work folder: the "empty bundle" of item 10


def test_a_huge_batch_leaves_an_existing_bundle_as_it_was(bundle, capsys, no_build):
    before = hashes(bundle)
    code, err, _ = run(BUILD + ["--models", "hardnet39ds", "--out", bundle, "--batch", "100000"], capsys)
    assert code == 2 and "--batch must be from 1 to {}".format(MAX_BATCH) in err
    assert hashes(bundle) == before and _leftovers(bundle) == []


def test_the_largest_batch_and_class_count_pass_the_check(tmp_path, capsys, monkeypatch):
    seen = []

    def build_bundle(options, progress=True):
        seen.append((options.batch, options.num_classes))
        raise KeyboardInterrupt   # stop here: building a 1024-image batch is not this test's business
    monkeypatch.setattr(build_mod, "build_bundle", build_bundle)
    code = pipeline.main(BUILD + ["--models", "hardnet39ds", "--out", str(tmp_path / "b"), "--batch",
                                  str(MAX_BATCH), "--num-classes", str(MAX_NUM_CLASSES)])
    assert code == 130 and seen == [(MAX_BATCH, MAX_NUM_CLASSES)]
    assert "interrupted:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# N9: --calib-images is checked before the export, with the listing the calibration uses
# ------------------------------------------------------------------------------------------------
def _calib_cases(tmp_path):
    a_file = tmp_path / "one.png"
    write_images(tmp_path / "imgs", 1)
    shutil.copy(str(tmp_path / "imgs" / "img000.png"), str(a_file))
    no_images = tmp_path / "notes"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("not an image")
    return {"a file": (a_file, "is not a folder"), "missing": (tmp_path / "nosuch", "does not exist"),
            "no images": (no_images, "no JPEG/PNG images found in")}


@pytest.mark.parametrize("case", ["a file", "missing", "no images"])
def test_bad_calibration_images_are_refused_before_the_export(tmp_path, capsys, no_build, case):
    folder, message = _calib_cases(tmp_path)[case]
    out = tmp_path / "new"
    code, err, _ = run(BUILD + ["--models", "mobilenetv2", "--precision", "int8", "--calib-images", str(folder),
                                "--out", str(out)], capsys)
    assert code == 2 and err.startswith("error: --calib-images: ") and message in err and "fix:" in err
    assert not out.exists()


def test_bad_calibration_images_leave_an_existing_bundle_as_it_was(bundle, tmp_path, capsys, no_build):
    folder, _ = _calib_cases(tmp_path)["a file"]
    before = hashes(bundle)
    code, err, _ = run(BUILD + ["--models", "mobilenetv2", "--precision", "int8", "--calib-images", str(folder),
                                "--out", bundle], capsys)
    assert code == 2 and "is not a folder" in err
    assert hashes(bundle) == before


def test_the_check_counts_what_the_calibration_would_use(tmp_path):
    from calibration.images import check_image_folder, find_images

    write_images(tmp_path / "imgs" / "a", 2)
    write_images(tmp_path / "imgs" / "b", 1)
    (tmp_path / "imgs" / "b" / "notes.txt").write_text("skipped")
    assert check_image_folder(str(tmp_path / "imgs")) == len(find_images(str(tmp_path / "imgs"))) == 3


# ------------------------------------------------------------------------------------------------
# N6: the work folder is under the rsync's excludes; SIGTERM cleans up like Ctrl-C; cleanup keeps
# what is not ours
# ------------------------------------------------------------------------------------------------
TERMINATED_BUILD = r"""
import sys, time
import export.simplify
import pipeline

def slow(*args, **kwargs):   # the exported ONNX is in the work folder now
    print("ready", flush=True)
    time.sleep(120)
export.simplify.simplify_onnx = slow
sys.exit(pipeline.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "existing bundle"])
def test_sigterm_mid_build_cleans_up_and_says_so(bundle, tmp_path, existing):
    root = bundle if existing else str(tmp_path / "new")
    before = hashes(root) if existing else None
    proc = subprocess.Popen([sys.executable, "-c", TERMINATED_BUILD] + BUILD +
                            ["--models", "mobilenetv2", "--force", "--out", root],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        work = [n for n in os.listdir(root) if n.startswith(WORK_DIR_PREFIX)]
        assert len(work) == 1 and os.listdir(os.path.join(root, work[0])) == ["mobilenetv2.exported.onnx"]
        assert any(fnmatch.fnmatchcase(work[0], pattern) for pattern in RSYNC_EXCLUDES)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "terminated: files already written are complete; partial files were removed"]
    assert _leftovers(tmp_path) == []
    if existing:
        assert hashes(root) == before
    else:
        assert not os.path.exists(root)   # the folder this build made holds nothing of it


def test_the_sigterm_handler_is_installed_by_main_only():
    """At import, SIGTERM keeps its default (a device script that imports pipeline is not changed);
    main puts back what it found."""
    code = ("import signal, pipeline; before = signal.getsignal(signal.SIGTERM); "
            "pipeline.main(['-q', 'build', '--batch', '0']); "
            "print(before == signal.SIG_DFL, signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert done.stdout.split() == ["True", "True"], done.stderr


def test_a_work_folder_is_named_for_the_rsync_excludes(bundle, monkeypatch):
    made = []
    real = build_mod.tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(build_mod.tempfile, "mkdtemp", mkdtemp)
    assert pipeline.main(BUILD + ["--models", "mobilenetv2", "--force", "--out", bundle]) == 0
    name = os.path.basename(made[0])
    assert name.startswith(WORK_DIR_PREFIX) and name.endswith(WORK_DIR_SUFFIX) and len(name) == 16 + 8 + 4
    assert fnmatch.fnmatchcase(name, RSYNC_EXCLUDES[0]) and not os.path.exists(made[0])


def _ours(folder, name):
    (folder / name).mkdir()
    (folder / name / "mobilenetv2.exported.onnx").write_bytes(b"half an export")
    (folder / name / ".mobilenetv2.onnx.abcd1234.tmp").write_bytes(b"half a simplify")


def _not_ours(folder, outside):
    (folder / ".pipeline-build-data").mkdir()                       # the reviewer's case
    (folder / ".pipeline-build-data" / "thesis.txt").write_text("the user's")
    (folder / ".pipeline-build-abcdefgh.tmp").mkdir()               # our name, someone's file
    (folder / ".pipeline-build-abcdefgh.tmp" / "thesis.txt").write_text("the user's")
    (folder / ".pipeline-build-zyxw9876").mkdir()                   # our name, a sub-folder in it
    (folder / ".pipeline-build-zyxw9876" / "sub").mkdir()
    outside.mkdir()
    (outside / "x.onnx").write_text("the user's")
    os.symlink(str(outside), str(folder / ".pipeline-build-11112222.tmp"))   # a link out of the bundle


def test_cleanup_in_a_bundle_removes_our_work_folders_of_both_names_and_nothing_else(bundle, tmp_path):
    folder = tmp_path / "b"
    _not_ours(folder, tmp_path / "outside")
    before = hashes(tmp_path)
    _ours(folder, WORK_DIR_PREFIX + "k1ll3d00")                     # made before the .tmp suffix
    _ours(folder, WORK_DIR_PREFIX + "k1ll3d01" + WORK_DIR_SUFFIX)
    assert remove_leftovers(bundle) == 2
    assert hashes(tmp_path) == before
    assert os.path.islink(str(folder / ".pipeline-build-11112222.tmp"))
    assert os.path.isdir(str(folder / ".pipeline-build-zyxw9876" / "sub"))


@pytest.mark.parametrize("name", [".pipeline-build-data", ".pipeline-build-abcdefgh.tmp"])
def test_a_folder_that_is_not_a_bundle_keeps_a_work_folder_it_did_not_get_from_us(tmp_path, capsys, no_build, name):
    folder = tmp_path / "mine"
    (folder / name).mkdir(parents=True)
    (folder / name / "thesis.txt").write_text("the user's")
    before = hashes(folder)
    code, err, _ = run(BUILD + ["--models", "mobilenetv2", "--out", str(folder)], capsys)
    assert code == 2 and "is a folder that is not empty and not a bundle" in err and name in err
    assert hashes(folder) == before and sorted(os.listdir(str(folder))) == [name]


def test_a_killed_first_build_leaves_its_work_folder_until_the_folder_is_a_bundle(tmp_path, capsys, caplog):
    folder = tmp_path / "first"
    (folder / "models").mkdir(parents=True)
    (folder / LOCK_NAME).write_text("")
    left = WORK_DIR_PREFIX + "k1ll3d00" + WORK_DIR_SUFFIX
    _ours(folder, left)
    check_build_folder(str(folder))
    with caplog.at_level(logging.WARNING, logger="export.build"):
        code, err, _ = run(BUILD + ["--models", "mobilenetv2", "--out", str(folder)], capsys)
    assert code == 0 and err == ""
    assert "is not a bundle yet: left {}".format(left) in caplog.text
    assert is_work_folder(str(folder / left))   # nothing removed from a folder that was not a bundle
    with caplog.at_level(logging.INFO, logger="export.build"):
        assert run(BUILD + ["--models", "mobilenetv2", "--out", str(folder)], capsys)[0] == 0
    assert "removed 1 leftover(s)" in caplog.text and _leftovers(folder) == []


# ------------------------------------------------------------------------------------------------
# Item 5's caveat: a reused file must be the graph its record describes, not only match its sha256
# ------------------------------------------------------------------------------------------------
def _sha(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_a_valid_onnx_of_another_model_with_its_sha256_edited_in_is_rebuilt(bundle, capsys, caplog):
    models = os.path.join(bundle, "models")
    other = os.path.join(models, "mobilenetv2.onnx")
    shutil.copy(other, os.path.join(models, "hardnet39ds.onnx"))
    edit_manifest(bundle, lambda m: m["models"]["hardnet39ds"]["onnx"].update(sha256=_sha(other)))
    before = hashes(bundle)
    with caplog.at_level(logging.WARNING, logger="export.build"):
        code, err, out = run(BUILD + ["--models", "hardnet39ds,mobilenetv2", "--out", bundle], capsys)
    assert code == 0 and err == ""
    assert "hardnet39ds: the ONNX file the manifest names is not the graph its record describes (nodes 137 " \
           "recorded, 102 in the file" in caplog.text and "rebuilding it" in caplog.text
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("hardnet39ds", "mobilenetv2"))}
    assert "built" in rows["hardnet39ds"] and "reused" not in rows["hardnet39ds"]
    assert "reused" in rows["mobilenetv2"]
    after = hashes(bundle)
    assert after["models/hardnet39ds.onnx"] != before["models/hardnet39ds.onnx"]   # the other model is gone
    assert after["models/mobilenetv2.onnx"] == before["models/mobilenetv2.onnx"]
    record = Bundle.open(bundle).model("hardnet39ds")
    assert record_mismatches(record, onnx.load(os.path.join(models, "hardnet39ds.onnx"))) == []


@pytest.mark.parametrize("change, says", [
    (lambda r: r["onnx"].update(nodes=r["onnx"]["nodes"] + 1), "nodes"),
    (lambda r: r["onnx"]["ops"].update(Conv=r["onnx"]["ops"]["Conv"] - 1), "operator counts differ"),
    (lambda r: r["onnx"].update(opset=13), "opset 13 recorded, 17 in the file"),
    (lambda r: r["input"].update(name="image"), "input input"),
    (lambda r: r["input"].update(shape=[1, 3, 64, 64]), "[1, 3, 64, 64] recorded"),
    (lambda r: r["output"].update(shape=[1, 10]), "output logits [1, 1000] in the file"),
    (lambda r: r["input"].update(dynamic_batch=True), "input input [1, 3, 32, 32] in the file"),
])
def test_each_recorded_fact_of_the_graph_is_compared(built, change, says):
    record = copy.deepcopy(Bundle.open(built).model("mobilenetv2"))
    model = onnx.load(os.path.join(built, "models", "mobilenetv2.onnx"))
    assert record_mismatches(record, model) == []
    change(record)
    differences = record_mismatches(record, model)
    assert differences and says in "; ".join(differences)


def test_a_dynamic_batch_model_is_still_reused(tmp_path, capsys):
    argv = BUILD + ["--models", "mobilenetv2", "--dynamic-batch", "--out", str(tmp_path / "b")]
    assert run(argv, capsys)[0] == 0
    code, err, out = run(argv, capsys)
    row = next(line for line in out.splitlines() if line.startswith("mobilenetv2"))
    assert code == 0 and "reused" in row and "as built: ok 3 stages" in row
