"""A short run of the whole digits accuracy chain: train -> build -> calibrate -> INT8 -> verify.

Tiny budget (one epoch on a subset, 32 px), so it proves the chain works, not the accuracy goal;
the measured full-size numbers are in docs/verify.md (the digits harness). It never reads the cached checkpoint
of scripts/train_digits.py: everything is made in tmp_path.
"""
import json
import os

import numpy as np
import pytest

import pipeline
from calibration import digits
from deploy.bundle import Bundle
from deploy.errors import PipelineError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_chain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    split = digits.load_split()
    settings = digits.TrainSettings(model="mobilenetv2", size=32, epochs=1, min_epochs=1, train_limit=256)
    checkpoint = str(folder / "mobilenetv2.pt")
    card = digits.train_or_load(settings, checkpoint, split, progress=False)
    result = digits.evaluate_chain(checkpoint, str(folder / "bundle"), methods=("minmax",), calib_count=48,
                                   split=split, progress=False)
    return folder, split, settings, checkpoint, card, result


def test_split_is_fixed_and_stratified():
    a, b = digits.load_split(), digits.load_split()
    assert np.array_equal(a.heldout_images, b.heldout_images)
    assert len(a.heldout_labels) == 360 and len(a.train_labels) == 1437
    assert set(np.bincount(a.heldout_labels)) <= {35, 36, 37}
    assert a.train_images.dtype == np.uint8 and a.train_images.max() == 255


def test_checkpoint_and_sidecar(short_chain):
    _, _, settings, checkpoint, card, _ = short_chain
    assert os.path.isfile(checkpoint) and os.path.isfile(digits.sidecar_path(checkpoint))
    prep = card["preprocessing"]
    assert prep["size"] == 32 and prep["crop_pct"] == 1.0 and prep["mean"] != [0.485, 0.456, 0.406]
    assert card["labels"] == [str(i) for i in range(10)] and card["num_classes"] == 10
    # cached: the same settings reuse the checkpoint without training
    mtime = os.path.getmtime(checkpoint)
    assert digits.train_or_load(settings, checkpoint, progress=False)["checkpoint_sha256"] == card["checkpoint_sha256"]
    assert os.path.getmtime(checkpoint) == mtime


def test_fp32_stages_agree_on_every_prediction_and_int8_runs(short_chain):
    result = short_chain[5]
    rows = {r["stage"]: r for r in result["rows"]}
    assert list(rows)[:4] == ["eager PyTorch", "BN-folded PyTorch", "ONNX (exported)", "ONNX (simplified, bundle)"]
    for stage in list(rows)[:4]:
        assert rows[stage]["disagreements"] == 0, stage
        assert rows[stage]["accuracy"] == rows["eager PyTorch"]["accuracy"]
    int8 = rows["ONNX Runtime INT8 (minmax)"]
    assert 0.0 <= int8["agreement"] <= 1.0 and 0.0 <= int8["accuracy"] <= 1.0
    assert result["heldout"] == 360


def test_bundle_records_the_digits_preprocessing(short_chain):
    folder, _, _, _, card, result = short_chain
    bundle = Bundle.open(result["bundle"])
    record = bundle.model("mobilenetv2")
    assert record["preprocessing"]["mean"] == card["preprocessing"]["mean"]
    assert record["labels"][3] == "3" and record["num_classes"] == 10
    assert record["calibration"]["generic"] is False and record["int8_onnx"]["calib_method"] == "minmax"
    bundle.verify()


def test_verify_cli_on_held_out_folders(short_chain, capsys):
    folder, split, _, _, _, result = short_chain
    heldout = digits.write_image_folders(split.heldout_images[:40], split.heldout_labels[:40],
                                         str(folder / "heldout"))
    assert pipeline.main(["-q", "verify", result["bundle"], "--images", heldout, "--count", "40"]) == 0
    with open(os.path.join(result["bundle"], "reports", "verify.json")) as handle:
        report = json.load(handle)["models"]["mobilenetv2"]
    stages = {r["stage"]: r for r in report["stages"]}
    assert report["reference"] == "pytorch" and report["labelled_images"] == 40
    assert stages["pytorch-bn-folded"]["top1_agreement"] == 1.0 and stages["onnx-fp32"]["top1_agreement"] == 1.0
    # the PNG -> preprocess path gives the accuracy the harness measured on the same 40 arrays
    chain_top = digits.evaluate_torch(
        __import__("models").create_model("mobilenetv2", num_classes=10, weights=short_chain[3]),
        digits.preprocess_digits(split.heldout_images[:40], digits.config_from_dict(short_chain[4]["preprocessing"])))
    assert stages["pytorch"]["accuracy"] == pytest.approx(float((chain_top.argmax(1) == split.heldout_labels[:40]).mean()))
    assert "onnx-int8" in capsys.readouterr().out


def test_override_of_another_size_is_refused(short_chain):
    _, _, _, _, card, result = short_chain
    other = dict(card, preprocessing=dict(card["preprocessing"], size=64))
    with pytest.raises(PipelineError) as info:
        digits.apply_card_override(Bundle.open(result["bundle"]), "mobilenetv2", other)
    assert "--size 64" in info.value.hint
