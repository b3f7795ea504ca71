"""Item 11 of issue 12: messages that pointed the wrong way now name the real cause and fix."""
import errno
import logging
import os
import pickle

import pytest

from tests.faults.helpers import edit_manifest, hashes, run, verify_bundle_dir, write_images

BUILD = ["-q", "build", "--target", "cpu", "--size", "32"]


def test_a_cache_that_cannot_be_saved_is_a_warning_not_a_broken_model(tmp_path, monkeypatch, capsys, caplog):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    import contextlib

    from deploy.runners import onnxruntime_runner

    @contextlib.contextmanager
    def full_disk(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        yield  # pragma: no cover

    monkeypatch.setattr(onnxruntime_runner, "atomic_path", full_disk)
    root = verify_bundle_dir(tmp_path / "b")
    with caplog.at_level(logging.WARNING):
        code, err, out = run(["-q", "bench", root, "--backend", "onnxruntime", "--iterations", "2", "--threads", "1"],
                             capsys)
    assert code == 0 and err == ""
    assert "could not save the optimised graph" in caplog.text and "No space left" in caplog.text
    assert "rebuild the bundle" not in caplog.text


class _Payload(object):
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


@pytest.mark.parametrize("how", ["torch.save", "pickle protocol 4", "pickle protocol 0"])
def test_a_code_carrying_checkpoint_is_refused_as_such(tmp_path, capsys, how):
    import torch

    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"w": _Payload()}, str(path))
    else:
        with open(str(path), "wb") as handle:
            pickle.dump({"w": _Payload()}, handle, protocol=4 if "4" in how else 0)
    code, err, _ = run(BUILD + ["--models", "mobilenetv2", "--weights", str(path), "--out", str(tmp_path / "b")],
                       capsys)
    assert code == 1 and "needs code to load (posix.system), refused for safety" in err
    assert "weights_only" not in err and "corrupt" not in err
    assert not (tmp_path / "b").exists()


def test_nan_weights_are_blamed_on_the_weights(tmp_path, capsys):
    import torch

    from models import create_model

    state = create_model("mobilenetv2").state_dict()
    state["features.0.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, str(tmp_path / "nan.pt"))
    code, err, _ = run(BUILD + ["--models", "mobilenetv2", "--weights", str(tmp_path / "nan.pt"),
                                "--out", str(tmp_path / "b")], capsys)
    assert code == 1 and "the weights hold NaN or infinite values (features.0.0.weight)" in err
    assert "folded PyTorch" not in err and "-vv" not in err


def test_a_record_without_an_onnx_path_says_so(tmp_path, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    write_images(tmp_path / "imgs", 2)
    edit_manifest(root, lambda m: m["models"]["mobilenetv2"]["onnx"].pop("path"))
    before = hashes(root)
    code, err, _ = run(["-q", "verify", root, "--images", str(tmp_path / "imgs")], capsys)
    assert code == 1 and "names no ONNX file (onnx.path)" in err and "install onnxruntime" not in err
    assert hashes(root) == before


def test_a_size_error_names_the_card_side_not_a_wrong_default(tmp_path, capsys):
    code, err, _ = run(["-q", "build", "--models", "hardnet68", "--size", "8", "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "model card's side, the paper's, is 224" in err and "default 224" not in err
