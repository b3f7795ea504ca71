"""deploy.predict.decode: the fast decode/resize/normalise path gives the reference's pixels."""
import numpy as np
import pytest

from deploy.predict import decode
from deploy.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    PreprocessConfig,
    load_image,
    preprocess_file,
    preprocess_image,
)
from tests.deploy.predict_helpers import photo, write_photo

CFG = PreprocessConfig(size=320, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")
TABLE = decode.normalise_table(CFG)
DECODERS = ["pillow"] + [pytest.param(name, marks=pytest.mark.skipif(
    not decode.opencv_available(), reason="OpenCV (opencv-python-headless) is not installed here"))
                         for name in ("opencv", "pillow+opencv")]


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a.dot(b) / np.linalg.norm(a) / np.linalg.norm(b))


def fast_tensor(path, decoder, cfg=CFG):
    decoded = decode.decode_file(path, cfg, decoder)
    return decode.to_tensor(decode.resize_crop(decoded.image, cfg, decoder), decode.normalise_table(cfg)), decoded


def test_dct_scale_keeps_the_crop_near_the_network_size():
    assert decode.dct_scale(1280, 720, CFG) == 2       # crop box 630 px -> 315 px >= 0.95 * 320
    assert decode.dct_scale(4000, 3000, CFG) == 8      # 2623 px -> 328 px
    assert decode.dct_scale(640, 480, CFG) == 1        # 420 px -> 210 px would be too small at 1/2
    for width, height in ((1280, 720), (4000, 3000), (721, 1283), (366, 366)):
        left, top, right, bottom = decode.crop_box(width, height, CFG)
        assert min(right - left, bottom - top) / decode.dct_scale(width, height, CFG) >= 0.95 * CFG.size


def test_box_resize_is_the_reference_resize_then_crop():
    from PIL import Image

    for width, height in ((1280, 720), (500, 900), (200, 150), (366, 366)):
        image = Image.fromarray(photo(width, height, seed=width), "RGB")
        reference = preprocess_image(image, CFG)
        fast = decode.to_tensor(decode.resize_crop(image, CFG, "pillow"), TABLE)
        assert fast.shape == reference.shape == (3, 320, 320) and fast.dtype == np.float32
        # the same filter over the same box; uint8 rounding of the intermediate is the difference
        assert cosine(fast, reference) > 0.9999, (width, height)
        assert np.abs(fast - reference).mean() < 0.01


def test_lookup_table_normalisation_equals_the_formula():
    rgb = photo(320, 320, seed=3)
    expected = ((rgb.astype(np.float32) / 255.0 - np.asarray(CFG.mean, np.float32)) /
                np.asarray(CFG.std, np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(decode.to_tensor(rgb, TABLE), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decoder", DECODERS)
def test_draft_decode_of_a_720p_jpeg_stays_close_to_the_reference(tmp_path, decoder):
    path = write_photo(tmp_path / "frame.jpg", 1280, 720, seed=1)
    tensor, decoded = fast_tensor(path, decoder)
    assert decoded.dct_scale == 2
    image = decoded.image
    assert (image.shape[1], image.shape[0]) if isinstance(image, np.ndarray) else image.size == (640, 360)
    reference = preprocess_file(path, CFG)
    assert cosine(tensor, reference) > 0.999
    assert np.abs(tensor - reference).mean() < 0.05


@pytest.mark.parametrize("decoder", DECODERS)
def test_small_and_non_jpeg_images_decode_in_full(tmp_path, decoder):
    from PIL import Image

    png = tmp_path / "grey.png"
    Image.fromarray(photo(300, 200, seed=2)[:, :, 0], "L").save(str(png))
    tensor, decoded = fast_tensor(str(png), decoder)
    assert decoded.dct_scale == 1
    assert cosine(tensor, preprocess_file(str(png), CFG)) > 0.9999


@pytest.mark.parametrize("decoder", DECODERS)
def test_truncated_and_non_image_files_raise_image_error(tmp_path, decoder):
    path = write_photo(tmp_path / "whole.jpg", 800, 600)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for bad in (cut, text, tmp_path / "missing.jpg"):
        with pytest.raises(ImageError) as info:
            decode.decode_file(str(bad), CFG, decoder)
        assert str(bad) in info.value.one_line() and "fix:" in info.value.one_line()


def test_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    path = write_photo(tmp_path / "big.jpg", 400, 300)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # 400x300 is then more than twice the limit
    for decoder in ("pillow",) + (("opencv",) if decode.opencv_available() else ()):
        with pytest.raises(ImageError, match="too large"):
            decode.decode_file(path, CFG, decoder)


def test_arrays_must_be_uint8_images():
    grey = np.zeros((10, 12), dtype=np.uint8)
    assert decode.as_rgb(grey).shape == (10, 12, 3)
    assert decode.as_rgb(np.zeros((10, 12, 4), dtype=np.uint8)).shape == (10, 12, 3)
    with pytest.raises(ImageError, match="uint8"):
        decode.as_rgb(np.zeros((10, 12, 3), dtype=np.float32))
    with pytest.raises(ImageError, match="shape"):
        decode.as_rgb(np.zeros((3, 10, 12, 3), dtype=np.uint8))


def test_reference_path_of_load_image_is_unchanged(tmp_path):
    """load_image without draft_size still drafts only for images twice the needed side (calibration's path)."""
    path = write_photo(tmp_path / "big.jpg", 1600, 1200)
    assert load_image(path, min_side=366).size == (800, 600)
    assert load_image(path, min_side=700).size == (1600, 1200)


def test_decoder_names():
    assert decode.resolve_decoder("pillow") == "pillow"
    assert decode.resolve_decoder("auto") == ("pillow+opencv" if decode.opencv_available() else "pillow")
    with pytest.raises(Exception, match="unknown decoder"):
        decode.resolve_decoder("turbo")
