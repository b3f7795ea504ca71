"""Image preprocessing, written once: calibration, verify and predict use it on host and device.

numpy + Pillow only, Python 3.6-compatible. The parameters come from the model card (host) or the
bundle manifest (device), as a plain dict, so the device never needs the model code.
"""
import collections
import contextlib
import math

import numpy as np

from deploy.errors import CalibrationError, PipelineError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PreprocessConfig = collections.namedtuple(
    "PreprocessConfig",
    ["size", "crop_pct", "mean", "std", "interpolation"],
)
# size: the square network input side (e.g. 320); crop_pct: the centre crop is ``size`` out of a
# shorter side resized to round(size / crop_pct) (torchvision's 256 -> 224 is crop_pct 0.875);
# mean/std in 0..1 units on RGB; interpolation: "bilinear" or "bicubic".


MAX_SIDE = 4096   # a larger input side is a damaged manifest, not a model


def config_from_dict(d):
    # type: (dict) -> PreprocessConfig
    """The preprocessing a manifest records; BundleError when it is missing or out of range."""
    from deploy.errors import BundleError

    try:
        cfg = PreprocessConfig(
            size=int(d["size"]),
            crop_pct=float(d["crop_pct"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            interpolation=str(d.get("interpolation", "bilinear")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError("the manifest's preprocessing record is incomplete or malformed ({}: {})".format(
            type(exc).__name__, exc), hint="rebuild the bundle with `python pipeline.py build`") from exc
    problem = None
    if not 1 <= cfg.size <= MAX_SIDE:
        problem = "size {} is not from 1 to {}".format(cfg.size, MAX_SIDE)
    elif not 0 < cfg.crop_pct <= 1:
        problem = "crop_pct {} is not in (0, 1]".format(cfg.crop_pct)
    elif len(cfg.mean) != 3 or len(cfg.std) != 3 or not all(v > 0 for v in cfg.std):
        problem = "mean and std must be three numbers each, std positive"
    if problem:
        raise BundleError("the manifest's preprocessing is out of range: {}".format(problem),
                          hint="rebuild the bundle with `python pipeline.py build`")
    return cfg


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


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
PICK_SEED = 0  # the deterministic pick: the same folder always gives the same images


def list_image_files(folder):
    # type: (str) -> list
    """Every JPEG/PNG file under ``folder`` (recursive, hidden files and folders skipped), sorted.

    Linked folders are followed once each (a link loop ends there) and each image counts once,
    however many links lead to it; only regular files are listed: a FIFO or device named
    ``x.jpg`` would block or never end when read."""
    import os
    import stat

    found, seen_dirs, seen_files = [], set(), set()
    for root, dirs, files in os.walk(str(folder), followlinks=True):
        real_root = os.path.realpath(root)
        if real_root in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real_root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(root, d)) not in seen_dirs)
        for name in sorted(files, key=lambda n: (os.path.islink(os.path.join(root, n)), n)):   # files before links
            if not name.lower().endswith(IMAGE_EXTENSIONS) or name.startswith("."):
                continue
            path = os.path.join(root, name)
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)
            except OSError:   # a broken link
                continue
            real = os.path.realpath(path)
            if regular and real not in seen_files:
                seen_files.add(real)
                found.append(path)
    return sorted(found)


def pick_order(paths, seed=PICK_SEED):
    """A deterministic shuffle of ``paths``: take the first N for N images spread over the folder."""
    import random

    order = list(paths)
    random.Random(seed).shuffle(order)
    return order


def folder_label(path, folder):
    """The class of an image in a labelled folder: its first sub-folder's name (None at the top level)."""
    import os

    parts = os.path.relpath(path, folder).split(os.sep)
    return parts[0] if len(parts) > 1 else None


def pil_filter(name):
    from PIL import Image

    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    try:
        return filters[name]
    except KeyError:
        raise ImageError("unknown interpolation {!r}".format(name), hint="use one of " + ", ".join(filters)) from None


# Pillow refuses images above ``Image.MAX_IMAGE_PIXELS`` * 2 (decompression bombs); we keep its
# default limit (about 179 megapixels) and turn the refusal into a clear, skippable ImageError.
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_rgb(image):
    """Any Pillow mode -> RGB. 16-bit and float grey are scaled to 8 bits rather than clipped."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_MODES:
        array = np.asarray(image, dtype=np.float64)
        # A 16-bit PNG opens as "I;16" in today's Pillow but as 32-bit "I" in Pillow 8.4 (the Jetson's):
        # PNG has no 32-bit grey, so an "I" PNG is 16-bit and scales from 65535 on both.
        sixteen_bit = image.mode.startswith("I;16") or (image.mode == "I" and getattr(image, "format", None) == "PNG")
        peak = 65535.0 if sixteen_bit else max(float(array.max()), 1.0)
        if image.mode == "F" and peak <= 1.0:
            peak = 1.0
        grey = np.clip(array * (255.0 / peak), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite on white rather than the black Pillow's plain convert() gives transparent pixels.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def load_image(path, min_side=None, draft_size=None):
    """Open an image file as RGB (grey, palette, CMYK, alpha, 16-bit are converted). Raises ImageError.

    ``min_side``: the smallest shorter side the caller needs; large JPEGs are then decoded at a
    reduced DCT scale (Pillow's ``draft``), which is much faster for multi-megapixel photos.
    ``draft_size``: instead, a callable (width, height) -> the (width, height) to ask ``draft`` for,
    or None for a full decode (deploy.predict.decode's fast path chooses its own DCT scale).
    """
    from PIL import Image

    with image_errors(path):
        with Image.open(str(path)) as image:
            if image.format == "JPEG":
                request = None
                if draft_size is not None:
                    request = draft_size(*image.size)
                elif min_side and min(image.size) >= 2 * int(min_side):
                    request = (int(min_side), int(min_side))
                if request:
                    image.draft("RGB", tuple(int(v) for v in request))
            image.load()
            return to_rgb(image)


@contextlib.contextmanager
def image_errors(path):
    """Turn what Pillow (or a decoder after it) raises on a bad file into one skippable ImageError."""
    from PIL import Image

    try:
        yield
    except Image.DecompressionBombError as exc:
        raise ImageError(
            "image {} is too large to decode safely ({})".format(path, exc),
            hint="downscale it below {} pixels, or remove it from the folder".format(
                2 * (Image.MAX_IMAGE_PIXELS or 0)),
        ) from exc
    except (IOError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError("cannot read image {}: {}".format(path, exc), hint="remove or replace the file") from exc


def preprocess_image(image, cfg):
    """PIL image (any mode) -> float32 array (3, size, size), normalised."""
    image = to_rgb(image)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("image has no pixels ({}x{})".format(width, height))
    side = resize_side(cfg)
    scale = float(side) / min(width, height)
    new_w = max(side, int(round(width * scale)))
    new_h = max(side, int(round(height * scale)))
    factor = min(width // new_w, height // new_h) // 2
    if factor >= 2 and hasattr(image, "reduce"):
        # Huge image: box-reduce by an integer factor first (what Pillow's reducing_gap=2 does),
        # so the filtered resize below works on at most ~2x the output size.
        image = image.reduce(factor)
    image = image.resize((new_w, new_h), pil_filter(cfg.interpolation))
    left = (new_w - cfg.size) // 2
    top = (new_h - cfg.size) // 2
    image = image.crop((left, top, left + cfg.size, top + cfg.size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


def preprocess_file(path, cfg):
    """Image file -> float32 array (3, size, size), exactly as calibration, verify and predict see it."""
    return preprocess_image(load_image(path, min_side=resize_side(cfg)), cfg)


def check_calibration_batches(shape, dtype, input_shape, model_name, path="calibration data"):
    """Raise CalibrationError unless an array of ``shape``/``dtype`` can calibrate a model taking
    ``input_shape`` (N, 3, H, W): float32, 4-D, same C/H/W (non-positive or None in
    ``input_shape`` means any size). Used by the host quantizer and the device's TensorRT calibrator
    alike, so calibration data made for another model is refused with the same message."""
    want = tuple(input_shape)[1:]
    same = len(shape) == 4 and len(want) == 3 and all(
        not isinstance(w, int) or w <= 0 or int(w) == int(s) for w, s in zip(want, tuple(shape)[1:]))
    if np.dtype(dtype) != np.float32 or not same or shape[0] < 1:
        raise CalibrationError(
            "{} holds {} {}, but {} takes float32 (N, {}): it was made for another model or input size".format(
                path, np.dtype(dtype), tuple(shape), model_name, ", ".join(str(v) for v in want)),
            hint="re-run calibration for {} on the host (delete {} first if you copied it in)".format(model_name, path),
        )
