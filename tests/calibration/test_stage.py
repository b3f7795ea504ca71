"""calibrate_bundle: calibration batches and ONNX Runtime INT8 into a bundle, and every bad input."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from calibration.dataset import load_calibration_array
from calibration.stage import calibrate_bundle, quantize_record, summary_lines
from deploy.atomic import sha256_file
from deploy.bundle import Bundle
from deploy.errors import CalibrationError, UsageError

from .helpers import SIZE, write_images

NAME = "mobilenetv2"


def manifest_text(bundle):
    with open(bundle.path("manifest.json")) as handle:
        return handle.read()


def test_folder_calibration_writes_npy_and_int8(tiny_bundle, image_folder):
    summaries = calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), count=8,
                                 make_int8_onnx=True, progress=False)
    reopened = Bundle.open(tiny_bundle.root)
    record = reopened.model(NAME)
    calib = record["calibration"]
    assert calib["count"] == 8 and calib["skipped"] == 0 and calib["generic"] is False
    assert calib["source"] == os.path.abspath(str(image_folder))
    array = np.load(reopened.path(calib["path"]))
    assert array.shape == (8, 3, SIZE, SIZE) and array.dtype == np.float32
    assert np.isfinite(array).all() and array.std() > 0.1
    int8 = record["int8_onnx"]
    assert int8["calib_method"] == "minmax" and int8["format"] == "QDQ"
    assert int8["channels_padded_to"] is None    # MobileNetV2: channels aligned already
    assert int8["quantize_nodes"] > 0
    assert os.path.isfile(reopened.path(record["onnx"]["path"])), "the FP32 model must stay"
    reopened.verify([NAME])  # every recorded file matches its sha256
    assert "int8" in summary_lines(summaries)[0].lower()


def test_pick_is_deterministic_and_spread(tiny_bundle, tmp_path):
    folder = tmp_path / "many"
    write_images(folder / "a", 6, seed=1)
    write_images(folder / "b", 6, seed=2)
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(folder), count=5, progress=False)
    first = np.load(tiny_bundle.path("calibration/mobilenetv2.npy"))
    os.unlink(tiny_bundle.path("calibration/mobilenetv2.npy"))  # force a rewrite, not reuse
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(folder), count=5, progress=False)
    second = np.load(tiny_bundle.path("calibration/mobilenetv2.npy"))
    assert np.array_equal(first, second)


def test_generic_set_is_marked_generic(tiny_bundle):
    summaries = calibrate_bundle(tiny_bundle, [NAME], count=30, progress=False)
    calib = Bundle.open(tiny_bundle.root).model(NAME)["calibration"]
    assert calib["generic"] is True and calib["count"] == 30
    assert "generic" in calib["source"] and "not your domain" in calib["note"]
    assert "GENERIC" in summary_lines(summaries)[0]
    array = np.load(tiny_bundle.path(calib["path"]))
    # crops and flips of a dozen photos: no two calibration images are the same
    flat = array.reshape(len(array), -1)
    assert len({row.tobytes() for row in flat}) == len(array)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods(tiny_bundle, image_folder, method):
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), count=6, method=method,
                     make_int8_onnx=True, progress=False)
    int8 = Bundle.open(tiny_bundle.root).model(NAME)["int8_onnx"]
    assert int8["calib_method"] == method
    tiny_bundle.verify([NAME])


def test_unknown_method_is_refused_before_any_work(tiny_bundle, image_folder):
    before = manifest_text(tiny_bundle)
    with pytest.raises(UsageError) as info:
        calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), method="kl-magic", progress=False)
    assert "kl-magic" in str(info.value) and "minmax, entropy, percentile" in info.value.hint
    assert manifest_text(tiny_bundle) == before
    assert not os.path.exists(tiny_bundle.path("calibration"))


def test_empty_folder_is_an_error_and_keeps_the_bundle(tiny_bundle, image_folder, tmp_path):
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), count=4, make_int8_onnx=True,
                     progress=False)
    before = manifest_text(tiny_bundle)
    npy_sha = sha256_file(tiny_bundle.path("calibration/mobilenetv2.npy"))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(CalibrationError) as info:
        calibrate_bundle(tiny_bundle, [NAME], images_dir=str(empty), count=4, progress=False)
    assert "no JPEG/PNG images" in str(info.value) and info.value.hint
    assert manifest_text(tiny_bundle) == before
    assert sha256_file(tiny_bundle.path("calibration/mobilenetv2.npy")) == npy_sha
    Bundle.open(tiny_bundle.root).verify([NAME])


def test_only_corrupt_files_is_an_error(tiny_bundle, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"this is not a jpeg")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(CalibrationError) as info:
        calibrate_bundle(tiny_bundle, [NAME], images_dir=str(folder), count=4, progress=False)
    assert "none of the 2 image file(s)" in str(info.value)
    assert not os.path.exists(tiny_bundle.path("calibration/mobilenetv2.npy"))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # big.jpg: over the limit, under 2x
def test_odd_images_are_handled_and_corrupt_ones_counted(tiny_bundle, tmp_path, caplog, monkeypatch):
    from PIL import Image

    folder = tmp_path / "odd"
    folder.mkdir()
    rng = np.random.RandomState(3)
    rgb = Image.fromarray(rng.randint(0, 255, (40, 50, 3), dtype=np.uint8), "RGB")
    rgb.convert("L").save(folder / "grey.png")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    rgb.convert("RGBA").save(folder / "alpha.png")
    rgb.resize((1, 1)).save(folder / "tiny.png")
    Image.fromarray((rng.rand(30, 20) * 65535).astype(np.uint16)).save(folder / "sixteen.png")
    rgb.resize((800, 600)).save(folder / "big.jpg", quality=85)       # decoded at a reduced DCT scale
    Image.new("RGB", (1000, 800), (9, 99, 199)).save(folder / "bomb.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "text.png").write_text("not an image at all")
    # make 1000x800 a decompression bomb (over 2 x the limit) without writing a huge file;
    # 800x600 stays under it (Pillow only warns)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300000)
    caplog.set_level("WARNING")
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(folder), count=20, progress=False)
    calib = Bundle.open(tiny_bundle.root).model(NAME)["calibration"]
    assert calib["count"] == 6 and calib["skipped"] == 3
    assert sorted(os.path.basename(p) for p in calib["skipped_files"]) == ["bomb.png", "broken.jpg", "text.png"]
    assert "too large to decode safely" in caplog.text
    array = np.load(tiny_bundle.path(calib["path"]))
    assert array.shape == (6, 3, SIZE, SIZE) and np.isfinite(array).all()


def test_calibration_data_from_another_model_is_refused(tiny_bundle, image_folder):
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), count=4, progress=False)
    path = tiny_bundle.path("calibration/mobilenetv2.npy")
    # someone copies in another model's calibration data (224x224): refused with a clear message
    np.save(path, np.zeros((4, 3, 224, 224), dtype=np.float32))
    with pytest.raises(CalibrationError) as info:
        quantize_record(tiny_bundle, NAME, "minmax", progress=False)
    assert "another model" in str(info.value) and "(N, 3, 32, 32)" in str(info.value)
    assert not os.path.exists(tiny_bundle.path("models/mobilenetv2.int8.onnx"))
    with pytest.raises(CalibrationError):
        load_calibration_array(path, [1, 3, SIZE, SIZE], NAME)


def test_replaced_calibration_data_with_right_shape_is_refused(tiny_bundle, image_folder):
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), count=4, progress=False)
    np.save(tiny_bundle.path("calibration/mobilenetv2.npy"), np.ones((4, 3, SIZE, SIZE), dtype=np.float32))
    with pytest.raises(CalibrationError) as info:
        quantize_record(tiny_bundle, NAME, "minmax", progress=False)
    assert "does not match the manifest" in str(info.value)


def test_reuse_when_nothing_changed(tiny_bundle, image_folder, caplog):
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), count=4, progress=False)
    mtime = os.path.getmtime(tiny_bundle.path("calibration/mobilenetv2.npy"))
    caplog.set_level("INFO")
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), count=4, progress=False)
    assert "reused" in caplog.text
    assert os.path.getmtime(tiny_bundle.path("calibration/mobilenetv2.npy")) == mtime


def test_manifest_is_valid_json_after_each_step(tiny_bundle, image_folder):
    calibrate_bundle(tiny_bundle, [NAME], images_dir=str(image_folder), count=4, make_int8_onnx=True,
                     progress=False)
    manifest = json.loads(manifest_text(tiny_bundle))
    assert set(manifest["models"][NAME]) >= {"onnx", "calibration", "int8_onnx"}
