"""``python pipeline.py analyze`` on a user's .onnx file and on a bundle: outputs, files and exit codes."""
from __future__ import annotations

import json
import os

import onnx
import pytest

import pipeline
from deploy.atomic import sha256_file
from deploy.bundle import Bundle
from tests.analysis.test_counting import concat_graph, strided_graph


@pytest.fixture()
def onnx_file(tmp_path):
    path = tmp_path / "mine.onnx"
    onnx.save(strided_graph(), str(path))
    return str(path)


def test_onnx_file_console_json_markdown_png(onnx_file, tmp_path, capsys):
    out_dir = tmp_path / "reports"
    json_path = tmp_path / "a.json"
    rc = pipeline.main(["analyze", onnx_file, "--json", str(json_path), "--out", str(out_dir)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "mine" in text and "MoC threshold 18.4" in text
    data = json.loads(json_path.read_text())
    (model,) = data["models"]
    assert model["model"] == "mine" and model["cio"] == 7168 + 1024 + 512   # 'paper': the pooling DW is 0
    assert {"params", "macs", "cio", "moc", "layers", "threshold_moc", "predicted_ms"} <= set(model)
    assert [layer["cio"] for layer in model["layers"]] == [7168, 0, 1536]
    assert data["hardware"]["dram_gbs"] == 25.6 and data["hardware"]["sources"]
    md = (out_dir / "analyze.md").read_text()
    assert md.startswith("# analyze") and "| mine |" in md
    (png,) = [p for p in os.listdir(out_dir) if p.endswith(".png")]
    assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(out_dir) if p.endswith(".tmp")]


def test_size_and_convention_flags(onnx_file, tmp_path):
    json_path = tmp_path / "b.json"
    assert pipeline.main(["analyze", onnx_file, "--size", "64", "--convention", "eq1", "--precision", "fp32",
                          "--json", str(json_path)]) == 0
    (model,) = json.loads(json_path.read_text())["models"]
    assert model["input_shape"] == [1, 3, 64, 64] and model["precision"] == "fp32"
    assert model["cio"] == 4 * (7168 + 5120 + 1536)                        # every tensor 4x the pixels


def test_bundle_reports_land_in_the_bundle(tmp_path, capsys):
    root = tmp_path / "bundle"
    bundle = Bundle.open_or_new(str(root), {"name": "jetson-nano"})
    os.makedirs(root / "models")
    path = root / "models" / "user_net.onnx"
    onnx.save(concat_graph(), str(path))
    bundle.set_model("user_net", {"onnx": {"path": "models/user_net.onnx", "sha256": sha256_file(str(path))},
                                  "family": "user"})
    bundle.save()
    assert pipeline.main(["analyze", str(root), "--no-plots"]) == 0
    assert "user_net" in capsys.readouterr().out
    assert (root / "reports" / "analyze.md").is_file()
    path.write_bytes(path.read_bytes() + b"\0")                         # tampered: refused
    assert pipeline.main(["analyze", str(root), "--no-plots"]) == 1


@pytest.mark.parametrize("argv, code", [
    (["--target", "nope"], 2),
    (["--target", "x86-gpu"], 2),                                        # no figures: give them
    (["--target", "x86-gpu", "--peak-gflops", "1000", "--bandwidth-gbs", "100"], 0),
    (["--models", "hardnet68"], 2),                                      # --models with a single file
])
def test_exit_codes(onnx_file, argv, code, capsys):
    assert pipeline.main(["analyze", onnx_file, "--no-plots"] + argv) == code
    if code:
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "fix:" in err


def test_missing_file_fails_with_a_hint(tmp_path, capsys):
    assert pipeline.main(["analyze", str(tmp_path / "none.onnx")]) == 1
    assert "fix:" in capsys.readouterr().err


def test_a_file_that_is_not_onnx_fails_with_a_hint(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not an onnx model\xff\xff")
    assert pipeline.main(["analyze", str(bad)]) == 1
    assert "fix:" in capsys.readouterr().err
