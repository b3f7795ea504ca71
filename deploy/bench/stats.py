"""Latency statistics for the benchmark. Python 3.6 + numpy.

``summarize(latencies_ms)`` gives mean, std, min, median, p90, p95, p99, max, throughput and the
coefficient of variation (CoV = std / mean). A run whose CoV exceeds ``COV_WARN_THRESHOLD`` is
flagged unstable, in the spirit of trtexec, which warns when the coefficient of variance of its
GPU compute times exceeds 1 % ("the throughput may not be stable"). trtexec's 1 % is meant for
a locked GPU; our runs also cover CPU fallbacks on shared machines and Python-side timing, so we
warn at 10 %: above that the mean is not a trustworthy summary and the median should be quoted.
"""
import collections
import math

import numpy as np

COV_WARN_THRESHOLD = 0.10   # 10 %: see the module docstring
PERCENTILES = (90, 95, 99)

LATENCY_KEYS = ("mean", "std", "min", "median", "p90", "p95", "p99", "max")

LatencySummary = collections.namedtuple(
    "LatencySummary",
    ["count", "mean", "std", "min", "median", "p90", "p95", "p99", "max", "cov", "throughput_fps",
     "unstable"],
)


def summarize(latencies_ms, batch=1, cov_threshold=COV_WARN_THRESHOLD):
    """Summarise per-iteration latencies in milliseconds.

    ``throughput_fps`` is images per second at the mean latency: ``batch * 1000 / mean``.
    ``std`` is the population standard deviation (ddof=0), as trtexec reports it.
    Raises ValueError on an empty sequence or non-finite values (a bug upstream, not user input).
    """
    values = np.asarray(latencies_ms, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no latencies to summarise")
    if not np.all(np.isfinite(values)):
        raise ValueError("latencies contain NaN or infinity")
    mean = float(values.mean())
    std = float(values.std())
    p90, p95, p99 = (float(v) for v in np.percentile(values, PERCENTILES))
    cov = std / mean if mean > 0 else float("inf")
    return LatencySummary(
        count=int(values.size),
        mean=mean,
        std=std,
        min=float(values.min()),
        median=float(np.median(values)),
        p90=p90,
        p95=p95,
        p99=p99,
        max=float(values.max()),
        cov=cov,
        throughput_fps=(batch * 1000.0 / mean) if mean > 0 else float("inf"),
        unstable=bool(cov > cov_threshold),
    )


def latency_dict(summary, ndigits=5):
    """The ``latency_ms`` block of bench.json: {mean, std, min, median, p90, p95, p99, max}."""
    return collections.OrderedDict((k, _round(getattr(summary, k), ndigits)) for k in LATENCY_KEYS)


def instability_message(summary, what="latency", threshold=COV_WARN_THRESHOLD):
    """A one-line warning when ``summary`` is unstable, else None."""
    if not summary.unstable:
        return None
    return ("{} is unstable: coefficient of variation {:.1f}% > {:.0f}% (median {:.3f} ms, mean {:.3f} ms, "
            "p99 {:.3f} ms); quote the median, and on a Jetson lock the clocks (sudo nvpmodel -m 0 && "
            "sudo jetson_clocks) and close other programs").format(
                what, summary.cov * 100.0, threshold * 100.0, summary.median, summary.mean, summary.p99)


def speedup(baseline_ms, candidate_ms):
    """How many times faster ``candidate`` is than ``baseline`` (>1: candidate faster)."""
    if candidate_ms is None or baseline_ms is None or candidate_ms <= 0:
        return None
    return float(baseline_ms) / float(candidate_ms)


def _round(value, ndigits):
    if value is None or (isinstance(value, float) and (math.isinf(value) or math.isnan(value))):
        return None
    return round(float(value), ndigits)


# ------------------------------------------------------------------------------------------------
# speed ratios with a confidence interval, from interleaved rounds
# ------------------------------------------------------------------------------------------------
RatioEstimate = collections.namedtuple(
    "RatioEstimate", ["ratio", "low", "high", "rounds", "confidence", "verdict"])
# ratio: how many times faster ``candidate`` is than ``baseline`` (>1: candidate faster), the
# geometric mean over rounds of baseline median / candidate median; low, high: the bootstrap
# percentile interval; verdict: "faster", "slower" or "no difference shown" (the interval holds 1).

BOOTSTRAP_RESAMPLES = 4000


def ratio_with_ci(baseline_rounds, candidate_rounds, confidence=0.95, resamples=BOOTSTRAP_RESAMPLES, seed=0):
    """Speed ratio of ``candidate`` over ``baseline`` with a bootstrap confidence interval over rounds.

    Both arguments are lists of rounds, each a list of latencies (ms); round i of both was timed
    back to back (interleaved), so the per-round ratio of medians cancels drifts of a shared
    machine that are slower than a round. The rounds are resampled with replacement
    (``resamples`` times, seeded) and the interval is the percentile interval of the geometric
    mean of the per-round ratios. With fewer than 2 rounds the interval is (ratio, ratio) and the
    verdict is "no difference shown": one round says nothing about the noise.
    """
    if len(baseline_rounds) != len(candidate_rounds) or not baseline_rounds:
        raise ValueError("need the same number (>= 1) of rounds for both, got {} and {}".format(
            len(baseline_rounds), len(candidate_rounds)))
    logs = np.array([math.log(float(np.median(b)) / float(np.median(c)))
                     for b, c in zip(baseline_rounds, candidate_rounds)])
    ratio = math.exp(float(logs.mean()))
    if logs.size < 2:
        return RatioEstimate(ratio, ratio, ratio, int(logs.size), confidence, "no difference shown")
    rng = np.random.RandomState(seed)
    picks = rng.randint(0, logs.size, size=(int(resamples), logs.size))
    means = logs[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = (math.exp(float(v)) for v in np.percentile(means, [tail, 100.0 - tail]))
    verdict = "faster" if low > 1.0 else ("slower" if high < 1.0 else "no difference shown")
    return RatioEstimate(ratio, low, high, int(logs.size), confidence, verdict)


def ratio_dict(estimate, ndigits=4):
    return collections.OrderedDict([
        ("ratio", _round(estimate.ratio, ndigits)), ("ci_low", _round(estimate.low, ndigits)),
        ("ci_high", _round(estimate.high, ndigits)), ("confidence", estimate.confidence),
        ("rounds", estimate.rounds), ("verdict", estimate.verdict)])


def claim(candidate, baseline, estimate):
    """The sentence a report may print: "A is 1.52x faster than B (95% CI 1.41-1.63)", or that no
    difference is shown when the interval holds 1."""
    ci = "{:.0f}% CI {:.2f}-{:.2f}, {} rounds".format(estimate.confidence * 100, estimate.low, estimate.high,
                                                      estimate.rounds)
    if estimate.verdict == "faster":
        return "{} is {:.2f}x as fast as {} ({})".format(candidate, estimate.ratio, baseline, ci)
    if estimate.verdict == "slower":
        return "{} is slower than {}: {:.2f}x ({})".format(candidate, baseline, estimate.ratio, ci)
    return "{} vs {}: {:.2f}x, no difference shown ({} holds 1)".format(candidate, baseline, estimate.ratio, ci)
