import numpy as np
import pytest

from deploy.bench import stats


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


# ------------------------------------------------------------------------------------------------
# ratios with a bootstrap confidence interval over interleaved rounds
# ------------------------------------------------------------------------------------------------
def _rounds(medians, spread=0.01, n=9, seed=0):
    rng = np.random.RandomState(seed)
    return [list(m * (1.0 + spread * rng.standard_normal(n))) for m in medians]


def test_a_clear_speedup_is_claimed_with_its_interval():
    from deploy.bench.stats import claim, ratio_with_ci

    drift = [10.0, 13.0, 9.0, 12.0, 11.0, 14.0, 10.5, 12.5]          # the machine drifts 50 % ...
    baseline = _rounds(drift)
    candidate = _rounds([d / 2.0 for d in drift], seed=1)            # ... but the candidate is always 2x
    est = ratio_with_ci(baseline, candidate)
    assert 1.9 < est.low <= est.ratio <= est.high < 2.1 and est.verdict == "faster" and est.rounds == 8
    assert "2.00x as fast as" in claim("int8", "fp32", est) and "95% CI" in claim("int8", "fp32", est)
    slower = ratio_with_ci(candidate, baseline)
    assert slower.verdict == "slower" and abs(slower.ratio * est.ratio - 1.0) < 1e-9


def test_noise_larger_than_the_difference_claims_nothing():
    from deploy.bench.stats import claim, ratio_with_ci

    rng = np.random.RandomState(3)
    a = [[10.0 * (1 + 0.3 * rng.standard_normal())] * 5 for _ in range(8)]   # 30 % noise between rounds,
    b = [[10.3 * (1 + 0.3 * rng.standard_normal())] * 5 for _ in range(8)]   # 3 % true difference
    est = ratio_with_ci(a, b)
    assert est.low < 1.0 < est.high and est.verdict == "no difference shown"
    assert "no difference shown" in claim("b", "a", est)


def test_ratio_interval_edge_cases():
    from deploy.bench.stats import ratio_dict, ratio_with_ci

    one = ratio_with_ci([[4.0, 4.0]], [[2.0, 2.0]])
    assert (one.ratio, one.low, one.high, one.verdict) == (2.0, 2.0, 2.0, "no difference shown")  # 1 round: no CI
    assert ratio_with_ci([[2.0]] * 3, [[1.0]] * 3, seed=5) == ratio_with_ci([[2.0]] * 3, [[1.0]] * 3, seed=5)
    assert ratio_dict(one)["rounds"] == 1 and ratio_dict(one)["ci_low"] == 2.0
    with pytest.raises(ValueError):
        ratio_with_ci([[1.0]], [[1.0], [1.0]])
