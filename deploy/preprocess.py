"""Image preprocessing, written once: calibration, verify and predict use it on host and device.

numpy + Pillow only, Python 3.6-compatible. The parameters come from the model card (host) or the
bundle manifest (device), as a plain dict, so the device never needs the model code.
"""
import collections
import math

import numpy as np

from deploy.errors import PipelineError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PreprocessConfig = collections.namedtuple(
    "PreprocessConfig",
    ["size", "crop_pct", "mean", "std", "interpolation"],
)
# size: the square network input side (e.g. 320); crop_pct: the centre crop is ``size`` out of a
# shorter side resized to round(size / crop_pct) (torchvision's 256 -> 224 is crop_pct 0.875);
# mean/std in 0..1 units on RGB; interpolation: "bilinear" or "bicubic".


def config_from_dict(d):
    # type: (dict) -> PreprocessConfig
    return PreprocessConfig(
        size=int(d["size"]),
        crop_pct=float(d["crop_pct"]),
        mean=tuple(float(v) for v in d["mean"]),
        std=tuple(float(v) for v in d["std"]),
        interpolation=str(d.get("interpolation", "bilinear")),
    )


def config_to_dict(cfg):
    # type: (PreprocessConfig) -> dict
    return collections.OrderedDict(
        [
            ("size", cfg.size),
            ("resize_shorter_side", resize_side(cfg)),
            ("crop", [cfg.size, cfg.size]),
            ("crop_pct", cfg.crop_pct),
            ("mean", list(cfg.mean)),
            ("std", list(cfg.std)),
            ("interpolation", cfg.interpolation),
            ("color", "RGB"),
            ("layout", "NCHW float32"),
        ]
    )


def resize_side(cfg):
    # type: (PreprocessConfig) -> int
    return int(math.floor(cfg.size / cfg.crop_pct + 0.5))


class ImageError(PipelineError):
    """An image that cannot be read or used."""


def _pil_filter(name):
    from PIL import Image

    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    try:
        return filters[name]
    except KeyError:
        raise ImageError("unknown interpolation {!r}".format(name), hint="use one of " + ", ".join(filters))


def load_image(path):
    """Open an image file as RGB (grey, palette, CMYK, alpha are converted). Raises ImageError."""
    from PIL import Image

    try:
        with Image.open(str(path)) as image:
            image.load()
            return image.convert("RGB")
    except (IOError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError("cannot read image {}: {}".format(path, exc), hint="remove or replace the file")


def preprocess_image(image, cfg):
    """PIL image (any mode) -> float32 array (3, size, size), normalised."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("image has no pixels ({}x{})".format(width, height))
    side = resize_side(cfg)
    scale = float(side) / min(width, height)
    new_w = max(side, int(round(width * scale)))
    new_h = max(side, int(round(height * scale)))
    image = image.resize((new_w, new_h), _pil_filter(cfg.interpolation))
    left = (new_w - cfg.size) // 2
    top = (new_h - cfg.size) // 2
    image = image.crop((left, top, left + cfg.size, top + cfg.size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


def preprocess_file(path, cfg):
    return preprocess_image(load_image(path), cfg)
