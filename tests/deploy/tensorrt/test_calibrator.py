"""The INT8 calibrator's numpy batch stream, cache store and callback core (no TensorRT)."""
import os

import numpy as np
import pytest

from deploy.errors import CalibrationError, UnknownNameError
from deploy.tensorrt.calibrator import (
    CalibrationBatchStream,
    CalibrationCache,
    CalibratorCore,
    cache_problem,
    check_calibrator,
)

VALID = b"TRT-8201-EntropyCalibration2\ninput: 3c010a14\n(Unnamed Layer* 3) [Convolution]_output: 3d8f5c29\n"


def _npy(tmp_path, data, name="calib.npy"):
    path = str(tmp_path / name)
    np.save(path, data)
    return path


def test_stream_feeds_whole_batches_in_order_and_drops_the_rest(tmp_path):
    data = np.arange(11 * 3 * 2 * 2, dtype=np.float32).reshape(11, 3, 2, 2)
    stream = CalibrationBatchStream(_npy(tmp_path, data), (1, 3, 2, 2), batch_size=4)
    assert stream.num_batches == 2 and stream.batch_shape == (4, 3, 2, 2)
    batches = list(stream)
    assert len(batches) == 2
    np.testing.assert_array_equal(np.concatenate(batches), data[:8])
    assert all(b.flags["C_CONTIGUOUS"] and b.dtype == np.float32 for b in batches)
    assert stream.next_batch() is None
    stream.reset()
    np.testing.assert_array_equal(stream.next_batch(), data[:4])


def test_stream_max_batches(tmp_path):
    stream = CalibrationBatchStream(_npy(tmp_path, np.zeros((12, 3, 2, 2), np.float32)), (1, 3, 2, 2), 2,
                                    max_batches=3)
    assert len(list(stream)) == 3


@pytest.mark.parametrize("data, match", [
    (np.zeros((8, 3, 5, 5), np.float32), "shape"),          # another input size
    (np.zeros((8, 3, 2), np.float32), "shape"),             # not N,C,H,W
    (np.zeros((8, 3, 2, 2), np.float64), "float32"),
    (np.zeros((3, 3, 2, 2), np.float32), "fewer than one batch"),
])
def test_stream_rejects_data_of_another_model(tmp_path, data, match):
    with pytest.raises(CalibrationError, match=match):
        CalibrationBatchStream(_npy(tmp_path, data), (1, 3, 2, 2), batch_size=4)


def test_stream_rejects_missing_or_unreadable_file(tmp_path):
    with pytest.raises(CalibrationError, match="missing"):
        CalibrationBatchStream(str(tmp_path / "none.npy"), (1, 3, 2, 2))
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(CalibrationError, match="not a readable"):
        CalibrationBatchStream(str(bad), (1, 3, 2, 2))


def test_cache_format_check():
    assert cache_problem(VALID, "entropy") is None
    assert "MinMaxCalibration" in cache_problem(VALID, "minmax")
    assert cache_problem(b"\xff\xfe", "entropy").startswith("not text")
    assert cache_problem(b"", "entropy") == "empty"
    assert "no tensor scales" in cache_problem(b"TRT-8201-EntropyCalibration2\n", "entropy")
    assert "line 4" in cache_problem(VALID + b"garbage without scale\n", "entropy")
    assert "header" in cache_problem(b"hello\ninput: 1\n", "entropy")


def test_cache_read_write_and_corrupt_cache_set_aside(tmp_path):
    path = str(tmp_path / "m.calib")
    cache = CalibrationCache(path, "entropy")
    assert cache.read() is None and "no cache yet" in cache.status
    cache.write(VALID)
    assert open(path, "rb").read() == VALID and cache.written
    assert CalibrationCache(path, "entropy").read() == VALID
    with open(path, "wb") as handle:
        handle.write(b"TRT-8201-EntropyCalibration2\ninput: 3c01")     # truncated in transit
    broken = CalibrationCache(path, "entropy")
    with open(path, "ab") as handle:
        handle.write(b"zz")
    assert broken.read() is None
    assert "unusable" in broken.status and "calibrating again" in broken.status
    assert not os.path.exists(path) and os.path.isfile(path + ".corrupt")
    other = CalibrationCache(str(tmp_path / "x.calib"), "minmax")
    with open(other.path, "wb") as handle:
        handle.write(VALID)
    assert other.read() is None and "EntropyCalibration2" in other.status


def test_unknown_calibrator():
    with pytest.raises(UnknownNameError, match="legacy"):
        check_calibrator("legacy")


def test_core_copies_each_batch_once_and_ends_with_none(tmp_path):
    data = np.random.RandomState(1).rand(6, 3, 2, 2).astype(np.float32)
    stream = CalibrationBatchStream(_npy(tmp_path, data), (1, 3, 2, 2), batch_size=3)
    copied = []
    core = CalibratorCore(stream, CalibrationCache(str(tmp_path / "c"), "entropy"),
                          lambda batch: copied.append(batch.copy()) or 0xBEEF)
    assert core.get_batch_size() == 3
    assert core.get_batch(["input"]) == [0xBEEF]
    assert core.get_batch(["input"]) == [0xBEEF]
    assert core.get_batch(["input"]) is None
    np.testing.assert_array_equal(np.concatenate(copied), data)
    assert core.batches_fed == 2
    core.raise_if_failed()


def test_core_keeps_callback_errors_for_after_the_build(tmp_path):
    stream = CalibrationBatchStream(_npy(tmp_path, np.zeros((4, 3, 2, 2), np.float32)), (1, 3, 2, 2), 2)

    def broken_copy(batch):
        raise MemoryError("cudaMalloc failed")

    core = CalibratorCore(stream, CalibrationCache(str(tmp_path / "c"), "entropy"), broken_copy)
    assert core.get_batch(["input"]) is None          # TensorRT would only print an exception
    with pytest.raises(CalibrationError, match="cudaMalloc failed"):
        core.raise_if_failed()
    two_inputs = CalibratorCore(stream, CalibrationCache(str(tmp_path / "d"), "entropy"), lambda b: 1)
    assert two_inputs.get_batch(["a", "b"]) is None
    with pytest.raises(CalibrationError, match="one input"):
        two_inputs.raise_if_failed()


def test_cache_from_other_calibration_data_is_not_reused(tmp_path):
    path = str(tmp_path / "m.calib")
    CalibrationCache(path, "entropy", {"calibration_sha256": "aaa", "batch_size": 8}).write(VALID)
    same = CalibrationCache(path, "entropy", {"calibration_sha256": "aaa", "batch_size": 8})
    assert same.read() == VALID
    other = CalibrationCache(path, "entropy", {"calibration_sha256": "bbb", "batch_size": 8})
    assert other.read() is None
    assert "other calibration input (calibration_sha256 changed)" in other.status
    assert os.path.isfile(path)          # TensorRT's next write replaces it; nothing else is lost
    os.unlink(path + ".json")            # e.g. a cache written by trtexec: no record, trusted
    untracked = CalibrationCache(path, "entropy", {"calibration_sha256": "bbb"})
    assert untracked.read() == VALID and "trusted as is" in untracked.status


def test_core_copies_tensorrts_memoryview_and_records_the_image_count(tmp_path):
    """TensorRT hands write_calibration_cache a memoryview over its own buffer (pyInt8.cpp 8.2.1)."""
    stream = CalibrationBatchStream(_npy(tmp_path, np.zeros((4, 3, 2, 2), np.float32)), (1, 3, 2, 2), 2)
    cache = CalibrationCache(str(tmp_path / "m.calib"), "entropy", {"calibration_sha256": "aaa"})
    core = CalibratorCore(stream, cache, lambda batch: 0xBEEF)
    assert core.read_calibration_cache() is None
    while core.get_batch(["input"]) is not None:
        pass
    buffer = bytearray(VALID)
    core.write_calibration_cache(memoryview(buffer))
    buffer[:] = b"\0" * len(buffer)                  # TensorRT frees its buffer after the call
    core.raise_if_failed()
    assert open(cache.path, "rb").read() == VALID and "calibrated on 4 images" in cache.status
    again = CalibrationCache(cache.path, "entropy", {"calibration_sha256": "aaa"})
    assert again.read() == VALID and again.images == 4 and "(calibrated on 4 images)" in again.status


def test_core_callbacks_never_raise(tmp_path):
    stream = CalibrationBatchStream(_npy(tmp_path, np.zeros((4, 3, 2, 2), np.float32)), (1, 3, 2, 2), 2)

    class BrokenCache(CalibrationCache):
        def read(self):
            raise PermissionError("cache folder not readable")

    core = CalibratorCore(stream, BrokenCache(str(tmp_path / "c"), "entropy"), lambda b: 1)
    assert core.read_calibration_cache() is None
    core.write_calibration_cache(b"\xff not a cache")   # writes (with a warning), no exception
    with pytest.raises(CalibrationError, match="failed in read_calibration_cache: PermissionError"):
        core.raise_if_failed("m")
