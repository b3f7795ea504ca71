"""bench/predict_e2e.py on a tiny bundle: every variant timed in rounds, agreement, the goal verdict."""
import json

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the benchmark times it")
pytest.importorskip("onnx", reason="onnx not installed: the tiny models are built with onnx.helper")

from deploy.bundle import Bundle  # noqa: E402
from deploy.predict.decode import opencv_available  # noqa: E402
from tests.deploy.predict_helpers import classifier_bundle, write_photo  # noqa: E402


def test_variants_ratios_and_report(project_script, tmp_path, capsys):
    from export.uint8_input import ensure_uint8_model

    script = project_script("bench/predict_e2e.py")
    root = classifier_bundle(str(tmp_path / "bundle"))
    ensure_uint8_model(Bundle.open(root), "hardnet39ds")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        write_photo(images / "{}.jpg".format(i), 128, 72, seed=i)
    rc = script.main([root, "--images", str(images), "--rounds", "2", "--video-frames", "4"])
    report = json.loads((tmp_path / "bundle" / "reports" / "predict_e2e.json").read_text())
    names = [r["variant"] for r in report["variants"]]
    decoders = ["pillow"] + (["opencv", "pillow+opencv"] if opencv_available() else [])
    assert names == ["reference"] + decoders + [d + "-uint8" for d in decoders]
    for row in report["variants"]:
        low, high = row["ratio_ci95"]
        assert row["decode_preprocess_ms"] > 0 and row["network_ms"] > 0 and low <= row["ratio"] <= high
        assert 0 <= row["top1_agreement"] <= 1 and row["cosine_min"] > 0.9
    assert rc == (0 if report["goal_met"] else 3)
    best = min(report["variants"][1:], key=lambda r: r["ratio"])   # the fastest fast variant
    assert report["best"] == best["variant"] and report["goal_met"] == (best["ratio_ci95"][1] <= 0.25)
    assert (report["video"] is not None) == opencv_available()
    assert "goal " in capsys.readouterr().out
