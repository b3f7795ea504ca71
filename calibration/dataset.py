"""Preprocessed calibration batches: images -> float32 (N, 3, H, W) .npy, written atomically.

The array is exactly what the network sees (deploy.preprocess, the same function predict and verify
use), so the device's TensorRT calibrator and ONNX Runtime's quantizer read it as it is.
Host-only.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from calibration.images import ImageCache, ImageItem
from deploy.atomic import atomic_path, scratch_path
from deploy.errors import CalibrationError
from deploy.preprocess import ImageError, PreprocessConfig, check_calibration_batches, preprocess_image, resize_side

LOG = logging.getLogger(__name__)


@dataclass
class CalibrationSet:
    """What ``write_calibration_array`` wrote."""

    path: str
    count: int
    skipped: int
    shape: tuple[int, ...]
    skipped_files: list[str] = field(default_factory=list)


def write_calibration_array(items: list[ImageItem], cfg: PreprocessConfig, count: int, out_path: str,
                            progress: bool = True, desc: str = "calibration") -> CalibrationSet:
    """Preprocess images from ``items`` (in order) until ``count`` are good; write them to ``out_path``.

    Unreadable, corrupt and oversized files are skipped, counted and logged. Raises CalibrationError
    when no image at all could be used. The file appears only when complete (atomic rename).
    """
    from tqdm import tqdm

    if count < 1:
        raise CalibrationError(f"calibration count must be at least 1, not {count}",
                               hint="pass --calib-count 500 (the default) or another positive number")
    rows = min(count, len(items))
    if len(items) < count:
        LOG.warning("the image folder holds %d image(s), fewer than the %d asked for: calibrating on at most %d "
                    "(recorded in the manifest)", len(items), count, len(items))
    shape = (rows, 3, cfg.size, cfg.size)
    skipped: list[str] = []
    cache = ImageCache()
    min_side = resize_side(cfg)
    with atomic_path(out_path) as tmp:
        # Named as atomic_path's temporaries are, so the next build's cleanup removes it if this one is killed.
        scratch = scratch_path(out_path)
        try:
            data = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32, shape=shape)
            good = 0
            with tqdm(total=rows, desc=desc, unit="img", disable=not progress, leave=False) as bar:
                for item in items:
                    if good == rows:
                        break
                    try:
                        data[good] = preprocess_image(cache.open(item, min_side), cfg)
                    except ImageError as exc:
                        skipped.append(item.name)
                        LOG.warning("skipped %s", exc.one_line())
                        continue
                    good += 1
                    bar.update(1)
            if good == 0:
                raise CalibrationError(
                    f"none of the {len(items)} image file(s) could be read ({len(skipped)} skipped as "
                    "corrupt or not images)",
                    hint="check the folder holds real JPEG/PNG photos; see the warnings above for each file",
                )
            data.flush()
            if good < rows:
                LOG.warning("only %d of the %d requested calibration images were usable", good, count)
            final = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(good,) + shape[1:])
            final[:] = data[:good]
            final.flush()
            del final, data
        finally:
            if os.path.exists(scratch):
                os.unlink(scratch)
    return CalibrationSet(path=str(out_path), count=good, skipped=len(skipped),
                          shape=(good,) + shape[1:], skipped_files=skipped)


def load_calibration_array(path: str, input_shape, model_name: str) -> np.ndarray:
    """Open ``path`` (memory-mapped) and check it belongs to a model with ``input_shape``.

    Raises CalibrationError for a missing or unreadable file, or one made for another model
    (another input size or layout).
    """
    if not os.path.isfile(path):
        raise CalibrationError(f"calibration data {path} for {model_name} does not exist",
                               hint="re-run calibration: python pipeline.py build ... --precision int8")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CalibrationError(f"calibration data {path} is not a readable .npy file ({exc})",
                               hint="delete it and re-run calibration") from None
    check_calibration_batches(array.shape, array.dtype, input_shape, model_name, path)
    return array
