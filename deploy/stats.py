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


# Two-sided 95 % Student t quantiles for 1..30 degrees of freedom (no scipy on the device).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def mean_ci95(values):
    """(mean, low, high): the mean of ``values`` (e.g. one ratio per interleaved round) and its 95 %
    confidence interval (Student t); low == high == mean for a single value."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    half = t * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half
