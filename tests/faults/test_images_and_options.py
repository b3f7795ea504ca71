"""Items 7-9 of issue 12: image folders with FIFOs and link loops, calibration options that did
nothing, and commands that disagree on the same bad option."""
import json
import os
import signal

import pytest

from deploy.preprocess import list_image_files
from tests.faults.helpers import hashes, run, verify_bundle_dir, write_images

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: verify and the INT8 build need it")


@pytest.fixture
def no_hang():
    """Fail, not hang, if a read blocks (a FIFO): SIGALRM after 120 s."""
    def fail(signum, frame):
        raise AssertionError("blocked: a FIFO was opened")
    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def hostile_images(tmp_path):
    """Two real images, a FIFO named like an image, a link loop and a second link to one image."""
    folder = tmp_path / "imgs"
    write_images(folder / "a", 2)
    os.mkfifo(str(folder / "a" / "pipe.jpg"))
    os.symlink("..", str(folder / "a" / "loop"))
    os.symlink("img000.png", str(folder / "a" / "again.png"))
    return folder


@pytest.fixture
def no_torch_stages(monkeypatch):
    monkeypatch.setattr("calibration.torch_stages.torch_stages", lambda record, name: ([], []))   # cli/verify.py passes it in


# 7 + 8 ------------------------------------------------------------------------------------------
def test_listing_skips_fifos_and_counts_each_image_once(hostile_images, no_hang):
    found = list_image_files(str(hostile_images))
    assert [os.path.basename(p) for p in found] == ["img000.png", "img001.png"]


def test_verify_on_a_hostile_folder_ends_and_counts_real_images(tmp_path, hostile_images, no_hang,
                                                                no_torch_stages, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    code, err, out = run(["-q", "verify", root, "--images", str(hostile_images), "--count", "50"], capsys)
    assert code == 0 and err == ""
    with open(os.path.join(root, "reports", "verify.json")) as handle:
        assert json.load(handle)["models"]["mobilenetv2"]["images"] == 2


def test_int8_calibration_on_a_hostile_folder_records_the_real_count(tmp_path, hostile_images, no_hang, capsys,
                                                                     caplog):
    root = str(tmp_path / "b")
    code, err, out = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32",
                          "--precision", "int8", "--calib-images", str(hostile_images), "--calib-count", "10",
                          "--out", root], capsys)
    assert code == 0 and err == ""
    assert "calibrated on 2 image(s) (of 10 asked for)" in out
    assert "fewer than the 10 asked for" in caplog.text
    with open(os.path.join(root, "manifest.json")) as handle:
        entry = json.load(handle)["models"]["mobilenetv2"]["calibration"]
    assert (entry["count"], entry["requested"], entry["shape"][0]) == (2, 10, 2)


@pytest.mark.parametrize("option", [["--calib-images", "somewhere"], ["--calib-count", "10"]])
def test_calibration_options_without_int8_are_refused(tmp_path, capsys, option):
    code, err, _ = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32",
                        "--out", str(tmp_path / "b")] + option, capsys)
    assert code == 2 and "apply to INT8 only" in err and "--precision int8" in err
    assert not (tmp_path / "b").exists()


# 9 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["build", "--models", "mobilenetv2", "--size", "32", "--out", ""], "--out is empty"),
    (["bench", "{root}", "--backend", "onnxruntime", "--out", ""], "--out is empty"),
    (["verify", "{root}", "--threads", "0"], "--threads must be at least 1"),
    (["bench", "{root}", "--backend", "onnxruntime", "--threads", "0"], "--threads must be at least 1"),
    (["verify", "{root}", "--model", "nosuch"], "not in bundle"),
    (["bench", "{root}", "--backend", "onnxruntime", "--models", "nosuch"], "not in bundle"),
    (["predict", "{root}", "x.jpg", "--model", "nosuch"], "not in bundle"),
    (["analyze", "{root}", "--models", "nosuch", "--no-plots"], "not in bundle"),
])
def test_commands_agree_on_bad_options(tmp_path, capsys, argv, expected):
    root = verify_bundle_dir(tmp_path / "b")
    before = hashes(tmp_path)
    code, err, _ = run(["-q"] + [a.format(root=root) for a in argv], capsys)
    assert code == 2 and expected in err and "(fix: " in err
    assert hashes(tmp_path) == before and sorted(os.listdir(str(tmp_path))) == ["b"]


# new: other files a build reads -----------------------------------------------------------------
@pytest.mark.parametrize("option, expected", [("--preprocess", "is not a regular file"),
                                              ("--weights", "is not a file")])
def test_a_fifo_given_as_an_input_file_is_refused_not_read(tmp_path, no_hang, capsys, option, expected):
    fifo = tmp_path / "input.json"
    os.mkfifo(str(fifo))
    code, err, _ = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32",
                        option, str(fifo), "--out", str(tmp_path / "b")], capsys)
    assert code in (1, 2) and expected in err and "fix:" in err
    assert not (tmp_path / "b").exists()
