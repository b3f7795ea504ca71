import numpy as np
import pytest

from deploy import stats


def test_summary_of_a_known_array():
    values = np.arange(1, 101, dtype=float)   # 1..100 ms
    s = stats.summarize(values, batch=1)
    assert s.count == 100
    assert s.mean == pytest.approx(50.5)
    assert s.median == pytest.approx(50.5)
    assert s.min == 1.0 and s.max == 100.0
    assert s.std == pytest.approx(np.sqrt((100 ** 2 - 1) / 12.0))   # population std of 1..n
    assert s.p90 == pytest.approx(90.1) and s.p95 == pytest.approx(95.05) and s.p99 == pytest.approx(99.01)
    assert s.throughput_fps == pytest.approx(1000.0 / 50.5)
    assert s.cov == pytest.approx(s.std / 50.5)


def test_throughput_counts_the_batch():
    s = stats.summarize([10.0, 10.0, 10.0], batch=4)
    assert s.throughput_fps == pytest.approx(400.0)
    assert s.std == 0.0 and s.cov == 0.0 and not s.unstable


def test_steady_run_is_stable_and_noisy_run_warns():
    rng = np.random.RandomState(0)
    steady = stats.summarize(10.0 + rng.standard_normal(500) * 0.2)
    assert not steady.unstable
    assert stats.instability_message(steady) is None
    noisy = stats.summarize(np.concatenate([np.full(450, 10.0), np.full(50, 30.0)]))
    assert noisy.cov > stats.COV_WARN_THRESHOLD
    assert noisy.unstable
    message = stats.instability_message(noisy)
    assert "unstable" in message and "coefficient of variation" in message and "jetson_clocks" in message


def test_threshold_is_a_parameter():
    values = [10.0, 10.5, 9.5, 10.2]
    assert not stats.summarize(values).unstable
    assert stats.summarize(values, cov_threshold=0.01).unstable


def test_latency_dict_has_the_report_keys_in_order():
    d = stats.latency_dict(stats.summarize([1.0, 2.0, 3.0]))
    assert list(d) == ["mean", "std", "min", "median", "p90", "p95", "p99", "max"]
    assert d["median"] == 2.0


def test_bad_arrays_raise():
    with pytest.raises(ValueError):
        stats.summarize([])
    with pytest.raises(ValueError):
        stats.summarize([1.0, float("nan")])


def test_speedup():
    assert stats.speedup(37.9, 32.5) == pytest.approx(37.9 / 32.5)
    assert stats.speedup(10.0, None) is None
