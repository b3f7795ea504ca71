"""scripts/train_digits.py end to end on a tiny budget (32 px, 128 digits, one epoch): it proves the
script's wiring (train -> cache -> bundle -> INT8 -> table), not the accuracy goal."""
import os

import pytest

pytest.importorskip("torch", reason="torch not installed: the script trains a PyTorch model")
pytest.importorskip("sklearn", reason="scikit-learn not installed: the digits come from it")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the chain runs ONNX and INT8 in it")

pytestmark = pytest.mark.slow

STAGES = ("eager PyTorch", "BN-folded PyTorch", "ONNX (exported)", "ONNX (simplified, bundle)",
          "ONNX Runtime INT8 (minmax)")


def test_trains_caches_and_tabulates_every_stage(project_script, tmp_path, capsys):
    train_digits = project_script("scripts/train_digits.py")
    cache, out, table = tmp_path / "cache", tmp_path / "build", tmp_path / "table.md"
    argv = ["--model", "mobilenetv2", "--size", "32", "--epochs", "1", "--min-epochs", "1", "--train-limit", "128",
            "--methods", "minmax", "--calib-count", "16", "--cache", str(cache), "--out", str(out),
            "--markdown", str(table)]
    assert train_digits.main(argv) == 0
    text = table.read_text()
    assert text.startswith("### mobilenetv2 at 32x32 (360 held-out digits, INT8 calibrated on 16 training digits)")
    for stage in STAGES:
        assert "| {} |".format(stage) in text
    checkpoint = cache / "mobilenetv2.pt"
    assert checkpoint.is_file() and (cache / "mobilenetv2.pt.card.json").is_file()
    assert sorted(os.listdir(str(cache / "heldout"))) == [str(d) for d in range(10)]
    assert (out / "digits-mobilenetv2" / "manifest.json").is_file()
    # A second run with the same settings reuses the checkpoint instead of training again.
    mtime = checkpoint.stat().st_mtime
    capsys.readouterr()
    assert train_digits.main(argv + ["--no-eval"]) == 0
    assert checkpoint.stat().st_mtime == mtime and "mobilenetv2: " in capsys.readouterr().out


def test_an_unknown_calibration_method_fails_before_training(project_script, tmp_path, capsys):
    train_digits = project_script("scripts/train_digits.py")
    rc = train_digits.main(["--model", "mobilenetv2", "--methods", "minmax,best", "--cache", str(tmp_path / "c"),
                            "--out", str(tmp_path / "o")])
    assert rc == 2 and "unknown calibration method 'best'" in capsys.readouterr().err
    assert not (tmp_path / "c" / "mobilenetv2.pt").exists()
