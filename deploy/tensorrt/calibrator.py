"""INT8 calibration for TensorRT, split so that almost all of it is plain numpy.

* ``CalibrationBatchStream``: the bundle's ``calibration/<name>.npy`` (N, 3, H, W float32, written
  on the host by the calibration stage), checked against the model input and cut into whole
  batches only (a short last batch would skew the histograms; it is dropped and logged).
* ``CalibrationCache``: the TensorRT calibration cache file, read first (so a second build skips
  calibration) and written atomically; a cache that is not a TensorRT cache of this calibrator's
  algorithm is set aside as ``<cache>.corrupt`` and calibration runs again, saying why.
* ``CalibratorCore``: what the TensorRT callbacks do, with the device copy injected.
* ``make_trt_calibrator``: the thin TensorRT subclass (``IInt8EntropyCalibrator2`` or
  ``IInt8MinMaxCalibrator``), created lazily because it needs tensorrt and pycuda.

Python 3.6-compatible; tensorrt and pycuda are imported only by ``make_trt_calibrator``.
"""
import json
import logging
import os
import re
from typing import Any, Optional  # noqa: F401 (type comments)

import numpy as np

from deploy.atomic import write_bytes, write_json
from deploy.errors import CalibrationError, UnknownNameError

LOG = logging.getLogger(__name__)

# --calibrator choice -> the algorithm name TensorRT writes in the cache header.
CALIBRATORS = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration"}
DEFAULT_CALIBRATOR = "entropy"
DEFAULT_BATCH_SIZE = 8
IMAGES_KEY = "calibration_images"   # in <cache>.json: how many images calibrated the cache

_HEADER = re.compile(r"^TRT-(\d+)-([A-Za-z0-9]+)$")
_ENTRY = re.compile(r"^\S.*: [0-9a-fA-F]+$")


def check_calibrator(name):
    # type: (str) -> str
    if name not in CALIBRATORS:
        raise UnknownNameError(
            "unknown calibrator {!r}".format(name),
            hint="choose one of: {}".format(", ".join(sorted(CALIBRATORS))))
    return name


class CalibrationBatchStream(object):
    """Whole batches of preprocessed calibration images from a ``.npy`` file."""

    def __init__(self, path, input_shape, batch_size=DEFAULT_BATCH_SIZE, max_batches=None):
        # type: (str, tuple, int, Optional[int]) -> None
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise CalibrationError(
                "calibration data {} is missing".format(self.path),
                hint="rebuild the bundle on the host with calibration images, or use --precision fp16")
        try:
            data = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CalibrationError(
                "calibration data {} is not a readable .npy array ({})".format(self.path, exc),
                hint="rebuild the bundle's calibration data on the host") from exc
        want_chw = tuple(int(d) for d in input_shape[1:])
        if data.ndim != 4 or tuple(data.shape[1:]) != want_chw:
            raise CalibrationError(
                "calibration data {} has shape {}; the model input needs (N,) + {}".format(
                    self.path, tuple(data.shape), want_chw),
                hint="it belongs to another model or input size: rebuild the bundle's calibration data")
        if data.dtype != np.float32:
            raise CalibrationError(
                "calibration data {} is {}, not float32".format(self.path, data.dtype),
                hint="rebuild the bundle's calibration data on the host")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise CalibrationError("calibration batch size must be >= 1, not {}".format(batch_size),
                                   hint="e.g. --calib-batch 8 (the default)")
        if data.shape[0] < batch_size:
            raise CalibrationError(
                "calibration data {} has {} images, fewer than one batch of {}".format(
                    self.path, data.shape[0], batch_size),
                hint="use more calibration images or a smaller calibration batch")
        self.data = data
        self.batch_size = batch_size
        self.num_batches = int(data.shape[0]) // batch_size
        if max_batches is not None:
            self.num_batches = min(self.num_batches, int(max_batches))
        dropped = int(data.shape[0]) - self.num_batches * batch_size
        if dropped:
            LOG.info("calibration: using %d batches of %d from %s; %d images left out (whole batches only)",
                     self.num_batches, batch_size, self.path, dropped)
        self.position = 0

    @property
    def batch_shape(self):
        return (self.batch_size,) + tuple(self.data.shape[1:])

    def reset(self):
        self.position = 0

    def next_batch(self):
        """The next whole batch as a C-contiguous float32 array, or None when all have been fed."""
        if self.position >= self.num_batches:
            return None
        start = self.position * self.batch_size
        self.position += 1
        return np.ascontiguousarray(self.data[start:start + self.batch_size], dtype=np.float32)

    def __iter__(self):
        self.reset()
        while True:
            batch = self.next_batch()
            if batch is None:
                return
            yield batch


def cache_problem(data, calibrator):
    # type: (bytes, str) -> object
    """None when ``data`` looks like a TensorRT calibration cache of ``calibrator``; else why not."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return "not text (a TensorRT calibration cache is ASCII)"
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "empty"
    header = _HEADER.match(lines[0].strip())
    if not header:
        return "first line {!r} is not a TensorRT cache header (TRT-<version>-<algorithm>)".format(lines[0][:40])
    if header.group(2) != CALIBRATORS[calibrator]:
        return "written by the {} calibrator, not {}".format(header.group(2), CALIBRATORS[calibrator])
    if len(lines) < 2:
        return "has a header but no tensor scales"
    for number, line in enumerate(lines[1:], start=2):
        if not _ENTRY.match(line.strip()):
            return "line {} ({!r}) is not '<tensor>: <hex scale>'".format(number, line[:40])
    return None


class CalibrationCache(object):
    """The calibration cache file of one model, TensorRT version, device and calibrator."""

    def __init__(self, path, calibrator=DEFAULT_CALIBRATOR, source=None):
        # type: (str, str, Optional[dict]) -> None
        """``source``: what the scales were computed from (calibration data sha256, batch size); kept
        beside the cache as ``<cache>.json`` so that a cache from other data is not reused."""
        self.path = str(path)
        self.calibrator = check_calibrator(calibrator)
        self.source = dict(source) if source else None
        self.notes = []  # type: list  # what happened, for the build report
        self.written = False
        self.images = None  # type: Optional[int]  # images that calibrated the cache, when known

    @property
    def status(self):
        # type: () -> str
        return "; ".join(self.notes) or "not read"

    def read(self):
        """Return the cache bytes when a valid cache exists; None means "calibrate now"."""
        if not os.path.isfile(self.path):
            self.notes.append("no cache yet: calibrating")
            return None
        with open(self.path, "rb") as handle:
            data = handle.read()
        problem = cache_problem(data, self.calibrator)
        if problem:
            aside = self.path + ".corrupt"
            os.replace(self.path, aside)
            note = "cache {} is unusable ({}): moved to {}, calibrating again".format(
                os.path.basename(self.path), problem, os.path.basename(aside))
            self.notes.append(note)
            LOG.warning("%s", note)
            return None
        recorded = self._recorded_source()
        if recorded is not None:
            self.images = recorded.pop(IMAGES_KEY, None)
        if self.source is not None and recorded is not None and recorded != self.source:
            changed = sorted(k for k in set(recorded) | set(self.source) if recorded.get(k) != self.source.get(k))
            self.notes.append("cache {} was computed from other calibration input ({} changed): calibrating "
                              "again".format(os.path.basename(self.path), ", ".join(changed)))
            LOG.warning("%s", self.notes[-1])
            return None
        self.notes.append("read cache {}{}{}".format(
            os.path.basename(self.path),
            " (calibrated on {} images)".format(self.images) if self.images is not None else "",
            "" if recorded is not None or self.source is None
            else " (no record of its calibration data, e.g. from trtexec: trusted as is)"))
        LOG.info("calibration: %s", self.notes[-1])
        return data

    def _recorded_source(self):
        try:
            with open(self.path + ".json", "r") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write(self, data, images=None):
        """Write TensorRT's cache (bytes, or the memoryview TensorRT passes, copied here);
        ``images``: how many images calibrated it (recorded)."""
        data = bytes(data)
        problem = cache_problem(data, self.calibrator)
        if problem:
            # Not ours to judge TensorRT's own output harshly; keep it but say so.
            LOG.warning("calibration cache from TensorRT looks unusual (%s); writing it anyway", problem)
        write_bytes(self.path, data)
        record = dict(self.source or {})
        if images is not None:
            record[IMAGES_KEY] = int(images)
        if record:
            write_json(self.path + ".json", record)
        self.images = images
        self.written = True
        self.notes.append("calibrated on {} images and wrote {}".format(
            images if images is not None else "an unknown number of", os.path.basename(self.path)))
        LOG.info("calibration: %s", self.notes[-1])


class CalibratorCore(object):
    """The calibrator callbacks without TensorRT.

    ``to_device(array) -> int`` copies one batch to the device and returns its address (pycuda in
    ``make_trt_calibrator``; a fake in tests). TensorRT calls these from C++ declared noexcept: on
    8.2 an exception escaping one aborts the process (pyInt8.cpp 8.2.1), on 8.5+ it is printed and
    turned into "no more data". So no callback lets an exception out: the first one is kept in
    ``error`` (with the callback's name) and re-raised by ``raise_if_failed`` after the build.
    """

    def __init__(self, stream, cache, to_device, release=None):
        self.stream = stream
        self.cache = cache
        self.to_device = to_device
        self.release = release
        self.error = None  # type: Any
        self.failed_in = None  # type: Any
        self.batches_fed = 0
        self.images_fed = 0

    def _fail(self, where, exc):
        if self.error is None:
            self.error, self.failed_in = exc, where

    def get_batch_size(self):
        try:
            return int(self.stream.batch_size)
        except Exception as exc:  # noqa: BLE001 - kept and re-raised after TensorRT returns
            self._fail("get_batch_size", exc)
            return 1

    def get_batch(self, names):
        if self.error is not None:
            return None
        try:
            if len(names) != 1:
                raise CalibrationError(
                    "the calibrator feeds one input; the network asks for {}".format(list(names)),
                    hint="calibrate a model with one image input, or build this one with --precision fp16")
            batch = self.stream.next_batch()
            if batch is None:
                return None
            address = int(self.to_device(batch))
            self.batches_fed += 1
            self.images_fed += int(batch.shape[0])
            return [address]
        except Exception as exc:  # noqa: BLE001 - kept and re-raised after TensorRT returns
            self._fail("get_batch", exc)
            return None

    def read_calibration_cache(self):
        try:
            data = self.cache.read()
            return None if data is None else bytes(data)
        except Exception as exc:  # noqa: BLE001 - kept and re-raised after TensorRT returns
            self._fail("read_calibration_cache", exc)
            return None

    def write_calibration_cache(self, data):
        # TensorRT passes a memoryview over its own buffer, valid only during this call:
        # CalibrationCache.write copies it to bytes before anything else.
        if self.error is not None:
            return   # scales from a calibration that failed part-way must not be reused
        try:
            self.cache.write(data, images=self.images_fed)
        except Exception as exc:  # noqa: BLE001 - kept and re-raised after TensorRT returns
            self._fail("write_calibration_cache", exc)

    def free(self):
        """Free the device buffer (call while the CUDA context that allocated it is current)."""
        if self.release is not None:
            release, self.release = self.release, None
            release()

    def raise_if_failed(self, model=None):
        if self.error is not None:
            where = "{}: ".format(model) if model else ""
            if isinstance(self.error, CalibrationError):
                raise CalibrationError("{}INT8 calibration failed in {}: {}".format(where, self.failed_in, self.error),
                                       hint=self.error.hint)
            raise CalibrationError(
                "{}INT8 calibration failed in {}: {}: {}".format(
                    where, self.failed_in, type(self.error).__name__, self.error),
                hint="fix the cause above and run engines again; the calibration cache was not written")


def make_trt_calibrator(stream, cache):
    """A TensorRT calibrator subclass over ``CalibratorCore``, one device buffer for all batches.

    Needs tensorrt and pycuda, and a current CUDA context (see deploy.tensorrt.compat.cuda_context);
    call ``core.free()`` while it is still current. ``stream.batch_shape`` must be what TensorRT
    reads per ``get_batch`` (an explicit-batch network reads one input's worth: see
    deploy.tensorrt.engine_files.calibration_batch). Returns (calibrator, core); keep both alive until the
    engine is built.
    """
    from deploy.tensorrt.compat import require_pycuda, require_tensorrt

    require_tensorrt()
    require_pycuda()
    import pycuda.driver as cuda
    import tensorrt as trt

    nbytes = int(np.prod(stream.batch_shape)) * np.dtype(np.float32).itemsize
    device_buffer = cuda.mem_alloc(nbytes)

    def to_device(batch):
        cuda.memcpy_htod(device_buffer, batch)
        return int(device_buffer)

    core = CalibratorCore(stream, cache, to_device, release=device_buffer.free)

    # TensorRT picks the algorithm by the base class; the callbacks are the same for both.
    base = trt.IInt8MinMaxCalibrator if cache.calibrator == "minmax" else trt.IInt8EntropyCalibrator2

    class Calibrator(base):  # type: ignore[misc,valid-type]
        def __init__(self):
            base.__init__(self)

        def get_batch_size(self):
            return core.get_batch_size()

        def get_batch(self, names):
            return core.get_batch(names)

        def read_calibration_cache(self):
            return core.read_calibration_cache()

        def write_calibration_cache(self, cache):
            core.write_calibration_cache(cache)

    calibrator = Calibrator()
    return calibrator, core
