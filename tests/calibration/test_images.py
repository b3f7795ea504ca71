"""Image sources: the deterministic pick and the generic scikit-image set."""
import os

import pytest

from calibration.images import GENERIC_PHOTOS, ImageCache, find_images, folder_items, generic_items, pick_order
from deploy.errors import CalibrationError

from .helpers import write_images


def test_generic_items_are_deterministic_whole_photos_first():
    a, b = generic_items(40), generic_items(40)
    assert a == b and len(a) == 40
    photos = [item for item in a if item.crop is None]
    assert photos and all(os.path.basename(i.path) in GENERIC_PHOTOS for i in photos)
    assert all(0.0 <= v <= 1.0 for item in a if item.crop for v in item.crop)
    assert generic_items(40, seed=1) != a


def test_generic_crops_open_as_rgb_images():
    cache = ImageCache()
    for item in generic_items(20)[-3:]:
        image = cache.open(item, min_side=32)
        assert image.mode == "RGB" and min(image.size) >= 1


def test_folder_items_labels_and_pick(tmp_path):
    write_images(tmp_path / "cat", 3, seed=1)
    write_images(tmp_path / "dog", 3, seed=2)
    write_images(tmp_path, 1, seed=3)
    items = folder_items(str(tmp_path), labelled=True)
    assert sorted(i.label for i in items if i.label) == ["cat"] * 3 + ["dog"] * 3
    assert [i.label for i in items].count(None) == 1
    assert [i.path for i in items] == pick_order(find_images(str(tmp_path)))


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(CalibrationError) as info:
        find_images(str(tmp_path / "nope"))
    assert "does not exist" in str(info.value)
    with pytest.raises(CalibrationError) as info:
        find_images(str(tmp_path))
    assert "no JPEG/PNG images" in str(info.value) and "generic" in info.value.hint
