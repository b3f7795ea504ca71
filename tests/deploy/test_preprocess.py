"""deploy.preprocess: the one preprocessing function, checked against torchvision and odd images."""
import numpy as np
import pytest

from deploy.errors import CalibrationError
from deploy.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    PreprocessConfig,
    check_calibration_batches,
    config_from_dict,
    config_to_dict,
    list_image_files,
    load_image,
    preprocess_file,
    preprocess_image,
    resize_side,
)

CFG = PreprocessConfig(size=32, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")


def photo(width=64, height=48, seed=0):
    from PIL import Image

    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 255, (height, width, 3), dtype=np.uint8), "RGB")


def test_matches_torchvision_transforms():
    transforms = pytest.importorskip("torchvision.transforms",
                                     reason="torchvision is a host package: the reference runs on the host only")

    image = photo()
    reference = transforms.Compose([
        transforms.Resize(resize_side(CFG), interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(CFG.size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])(image).numpy()
    ours = preprocess_image(image, CFG)
    assert ours.shape == (3, 32, 32) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5


def test_config_round_trip():
    assert config_from_dict(config_to_dict(CFG)) == CFG
    assert config_to_dict(CFG)["resize_shorter_side"] == 37


def test_no_crop_config_keeps_the_whole_square_image():
    cfg = PreprocessConfig(size=16, crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear")
    from PIL import Image

    image = Image.new("RGB", (8, 8), (255, 255, 255))
    image.putpixel((0, 0), (0, 0, 0))
    out = preprocess_image(image, cfg)
    assert out.shape == (3, 16, 16)
    assert out[0, 0, 0] < 0.0  # the corner pixel survives: nothing was cropped away


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "1", "I;16"])
def test_every_mode_becomes_three_channels(mode):
    image = photo().convert("L").convert(mode) if mode == "I;16" else photo().convert(mode)
    out = preprocess_image(image, CFG)
    assert out.shape == (3, 32, 32) and np.isfinite(out).all()


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    array = np.full((20, 20), 32768, dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "mid.png")
    rgb = np.asarray(load_image(tmp_path / "mid.png"))
    assert rgb.shape == (20, 20, 3) and abs(int(rgb[0, 0, 0]) - 128) <= 1


def test_sixteen_bit_png_opened_as_32_bit_by_old_pillow_is_scaled_alike():
    """Pillow 8.4 (the Jetson's) opens a 16-bit PNG as mode "I": it must scale from 65535 too."""
    from PIL import Image

    from deploy.preprocess import to_rgb

    image = Image.fromarray(np.full((4, 4), 32768, dtype=np.int32), mode="I")
    image.format = "PNG"
    assert abs(int(np.asarray(to_rgb(image))[0, 0, 0]) - 128) <= 1
    image.format = None                     # an "I" image of unknown depth: scaled from its own peak
    assert int(np.asarray(to_rgb(image))[0, 0, 0]) == 255


def test_transparent_pixels_become_white(tmp_path):
    from PIL import Image

    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.asarray(load_image(tmp_path / "clear.png"))[0, 0].tolist() == [255, 255, 255]


def test_tiny_image_is_upscaled():
    out = preprocess_image(photo(1, 1), CFG)
    assert out.shape == (3, 32, 32)
    assert np.allclose(out, out[:, :1, :1])  # one pixel stretched over the whole input


def test_huge_image_reduce_is_close_to_direct_resize():
    from PIL import Image

    big = photo(64, 48).resize((1280, 960), Image.BILINEAR)
    fast = preprocess_image(big, CFG)
    # the direct filtered resize, without the box reduce
    direct = big.resize((49, 37), Image.BILINEAR).crop((8, 2, 40, 34))
    direct = (np.asarray(direct, np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
        IMAGENET_STD, np.float32)
    assert np.abs(fast - direct.transpose(2, 0, 1)).mean() < 0.05


def test_large_jpeg_draft_decode(tmp_path):
    photo(64, 48).resize((1600, 1200)).save(tmp_path / "big.jpg", quality=90)
    out = preprocess_file(str(tmp_path / "big.jpg"), CFG)
    ref = preprocess_image(photo(64, 48).resize((1600, 1200)), CFG)
    assert out.shape == (3, 32, 32) and np.abs(out - ref).mean() < 0.1


def test_corrupt_and_bomb_files_raise_image_error(tmp_path, monkeypatch):
    from PIL import Image

    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "bad.png")
    assert "cannot read image" in str(info.value) and info.value.hint
    Image.new("RGB", (300, 300)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10000)
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "bomb.png")
    assert "too large to decode safely" in str(info.value)


def test_list_image_files_is_recursive_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ("b/2.PNG", "a.jpg", "c.jpeg", "notes.txt", ".x.png", ".hidden/y.png"):
        (tmp_path / rel).write_bytes(b"x")
    names = [p[len(str(tmp_path)) + 1:] for p in list_image_files(str(tmp_path))]
    assert names == ["a.jpg", "b/2.PNG", "c.jpeg"]


def test_calibration_batches_from_another_model_are_refused():
    check_calibration_batches((10, 3, 32, 32), np.float32, [1, 3, 32, 32], "m")
    check_calibration_batches((10, 3, 32, 32), np.float32, [None, 3, None, None], "m")
    for shape, dtype in (((10, 3, 64, 64), np.float32), ((10, 32, 32, 3), np.float32),
                         ((10, 3, 32, 32), np.float16), ((0, 3, 32, 32), np.float32)):
        with pytest.raises(CalibrationError) as info:
            check_calibration_batches(shape, dtype, [1, 3, 32, 32], "m")
        assert "another model" in str(info.value)
