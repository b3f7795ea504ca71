"""Where calibration images come from: a user's folder (JPEG/PNG, recursive) or the generic set.

Host-only. The generic set is built from the photographs that ship inside scikit-image
(``skimage.data``), so it works offline; it is *not* the user's domain and every record made from it
says so (``generic: True``).
"""
from __future__ import annotations

import functools
import logging
import os
import random
from dataclasses import dataclass
from typing import Any

from deploy.errors import CalibrationError, UsageError
from deploy.preprocess import PICK_SEED, folder_label, list_image_files, pick_order

LOG = logging.getLogger(__name__)

# Photographs in skimage.data (files shipped inside the package, no download). Ordered: colour
# photos first; grey ones are converted to RGB like any grey user image.
GENERIC_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "brick.png",
    "grass.png", "gravel.png", "camera.png", "coins.png", "moon.png", "cell.png",
)


@dataclass(frozen=True)
class ImageItem:
    """One calibration/verification image: a file, or a generic photo with a deterministic crop."""

    path: str
    label: str | None = None           # class folder name, where the folder is labelled
    crop: tuple[float, float, float, float] | None = None  # (left, top, right, bottom) in 0..1
    flip: bool = False

    @property
    def name(self) -> str:
        if self.crop is None and not self.flip:
            return self.path
        return "{}[crop={},flip={}]".format(self.path, ",".join("%.2f" % v for v in self.crop or ()), self.flip)


def find_images(folder: str) -> list[str]:
    """All JPEG/PNG files under ``folder`` (recursive), sorted. Raises CalibrationError if none."""
    folder = str(folder)
    if not os.path.isdir(folder):
        raise CalibrationError(
            f"image folder {folder} does not exist or is not a folder",
            hint="give a folder of JPEG/PNG images (searched recursively)",
        )
    found = list_image_files(folder)
    if not found:
        raise CalibrationError(
            f"no JPEG/PNG images found in {folder}",
            hint="put .jpg/.jpeg/.png files in it (sub-folders are searched), or leave out the image "
                 "folder to use the generic sample set",
        )
    return found


def check_image_folder(folder: str, option: str = "--calib-images") -> int:
    """Before any work: ``folder`` exists, is a folder and holds an image in the listing calibration
    uses (find_images). Returns how many images it holds; raises UsageError naming ``option``."""
    try:
        return len(find_images(folder))
    except CalibrationError as exc:
        raise UsageError(f"{option}: {exc}", hint=exc.hint) from None


def folder_items(folder: str, labelled: bool = False) -> list[ImageItem]:
    """Every image of ``folder`` in pick order; ``labelled``: the label is the first sub-folder name."""
    return [ImageItem(path=path, label=folder_label(path, folder) if labelled else None)
            for path in pick_order(find_images(folder))]


def generic_photo_paths() -> list[str]:
    """Paths of the sample photographs shipped inside scikit-image. Raises CalibrationError if absent."""
    try:
        import skimage.data
    except ImportError:
        raise CalibrationError(
            "scikit-image is not installed, so there is no generic calibration set",
            hint="pip install scikit-image, or give your own images with --calib-images DIR",
        ) from None
    data_dir = os.path.dirname(skimage.data.__file__)
    paths = [os.path.join(data_dir, n) for n in GENERIC_PHOTOS if os.path.isfile(os.path.join(data_dir, n))]
    if not paths:
        raise CalibrationError(
            f"no sample photographs found in {data_dir}",
            hint="reinstall scikit-image, or give your own images with --calib-images DIR",
        )
    return paths


def generic_items(count: int, seed: int = PICK_SEED) -> list[ImageItem]:
    """``count`` items from the generic photos: each photo whole, then deterministic crops and flips."""
    photos = generic_photo_paths()
    items = [ImageItem(path=p) for p in photos]
    rng = random.Random(seed)
    while len(items) < count:
        path = photos[len(items) % len(photos)]
        scale = rng.uniform(0.35, 1.0)           # side of the crop, as a fraction of the image
        aspect = rng.uniform(3 / 4, 4 / 3)
        w = min(1.0, scale * aspect ** 0.5)
        h = min(1.0, scale / aspect ** 0.5)
        left = rng.uniform(0.0, 1.0 - w)
        top = rng.uniform(0.0, 1.0 - h)
        items.append(ImageItem(path=path, crop=(left, top, left + w, top + h), flip=rng.random() < 0.5))
    return items[:count]


class ImageCache:
    """Decoded generic photos, kept in memory: hundreds of crops come from a dozen files."""

    def __init__(self) -> None:
        self._images: dict[str, Any] = {}  # path -> PIL.Image.Image

    def open(self, item: ImageItem, min_side: int):
        """PIL RGB image for ``item`` (crop and flip applied). Raises deploy.preprocess.ImageError."""
        from PIL import ImageOps

        from deploy.preprocess import load_image

        if item.crop is None and not item.flip:
            return load_image(item.path, min_side=min_side)
        image = self._images.get(item.path)
        if image is None:
            image = self._images[item.path] = load_image(item.path)
        width, height = image.size
        left, top, right, bottom = item.crop or (0.0, 0.0, 1.0, 1.0)
        box = (int(left * width), int(top * height), max(int(left * width) + 1, int(right * width)),
               max(int(top * height) + 1, int(bottom * height)))
        out = image.crop(box)
        if item.flip:
            out = ImageOps.mirror(out)
        return out


def generic_verify_images(count: int) -> list:
    """verify's unlabelled sample set (``deploy.verify.VerifyImage`` items): the generic photographs in
    another crop sequence than calibration's. Passed to ``verify_bundle`` by pipeline.py on the host."""
    from deploy.preprocess import preprocess_image, resize_side
    from deploy.verify import GENERIC_SEED, VerifyImage

    cache = ImageCache()

    def tensor(item, cfg):
        return preprocess_image(cache.open(item, resize_side(cfg)), cfg)

    def image(item, cfg):
        return cache.open(item, resize_side(cfg))

    return [VerifyImage(item.name, None, functools.partial(tensor, item), functools.partial(image, item))
            for item in generic_items(count, seed=GENERIC_SEED)]
