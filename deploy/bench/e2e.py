"""bench --e2e: the end-to-end protocol on real image files, beside the network-only protocol.

Per model, the same Classifier `predict` runs (decode, preprocess, network, postprocess), over the
images of a folder in a fixed order, cycling until ``iterations`` images were timed after
``warmup`` untimed ones. Every component of every image is kept; the total is summarised with the
same statistics as the network-only latencies (deploy.bench.stats), and the share of decode +
preprocess in the network time is reported. Python 3.6-compatible.
"""
import collections
import logging

import numpy as np

from deploy.bench import stats as stats_mod
from deploy.errors import PipelineError, UsageError
from deploy.preprocess import ImageError, list_image_files

LOG = logging.getLogger(__name__)

COMPONENTS = ("decode_ms", "preprocess_ms", "network_ms", "postprocess_ms", "total_ms")


def image_paths(images_dir):
    import os

    if not images_dir or not os.path.isdir(str(images_dir)):
        raise UsageError("--e2e needs --images DIR, a folder of JPEG/PNG images (got {!r})".format(images_dir),
                         hint="e.g. --e2e --images photos/ (1280x720 JPEGs for the Nano's camera case)")
    paths = list_image_files(images_dir)
    if not paths:
        raise UsageError("no JPEG/PNG images in {}".format(images_dir), hint="give a folder of .jpg/.png files")
    return paths


def run_e2e(bundle, names, paths, iterations, warmup, backend, precision=None, threads=None, decoder="auto"):
    """{model: e2e record} for ``names`` of ``bundle`` over ``paths``; bad images are skipped (and counted)."""
    from deploy.predict.classifier import open_classifier

    if backend not in ("tensorrt", "onnxruntime", "openvino"):
        raise UsageError("--e2e runs the deployed model: use --backend tensorrt, onnxruntime or openvino, "
                         "not {}".format(backend), hint="drop --backend torch, or leave --e2e out")
    out = collections.OrderedDict()
    for name in names:
        with open_classifier(bundle, name, backend=backend, precision=precision, threads=threads,
                             decoder=decoder) as clf:
            rows, bad = _timed(clf, paths, int(iterations), int(warmup))
            out[name] = _record(clf, rows, bad, len(paths))
    return out


def _timed(clf, paths, iterations, warmup):
    rows, bad, i = [], set(), 0
    while len(rows) < iterations:
        if len(bad) == len(paths):
            raise PipelineError("none of the {} image(s) could be read".format(len(paths)),
                                hint="check the --images folder; see the warnings above")
        path = paths[i % len(paths)]
        i += 1
        if path in bad:
            continue
        try:
            timing = clf.predict(path).timing
        except ImageError as exc:
            bad.add(path)
            LOG.warning("skipped %s", exc.one_line())
            continue
        if i > warmup:
            rows.append(timing)
    return np.asarray(rows, dtype=np.float64), bad


def _record(clf, rows, bad, count):
    summary = stats_mod.summarize(rows[:, 4])
    record = collections.OrderedDict()
    record["images"] = count
    record["skipped_images"] = len(bad)
    record["iterations"] = int(len(rows))
    record["backend"] = clf.backend
    record["precision"] = clf.precision
    record["input"] = clf.input_kind
    record["decoder"] = clf.decoder
    record["latency_ms"] = stats_mod.latency_dict(summary)
    record["throughput_fps"] = round(summary.throughput_fps, 3)
    record["cov"] = round(summary.cov, 5)
    record["warning"] = stats_mod.instability_message(summary, what="end-to-end latency")
    record["median_ms"] = collections.OrderedDict(
        (name, round(float(np.median(rows[:, i])), 4)) for i, name in enumerate(COMPONENTS))
    record["mean_ms"] = collections.OrderedDict(
        (name, round(float(np.mean(rows[:, i])), 4)) for i, name in enumerate(COMPONENTS))
    network = record["median_ms"]["network_ms"]
    record["decode_preprocess_share"] = round(
        (record["median_ms"]["decode_ms"] + record["median_ms"]["preprocess_ms"]) / network, 4) if network else None
    return record


E2E_HEADERS = ["model", "input", "decoder", "network-only median", "e2e: decode", "preprocess", "network",
               "postprocess", "total median", "total mean", "total p99", "fps", "(decode+pre)/network"]


def e2e_rows(results):
    """Rows of the side-by-side table, for the results that carry an "e2e" record."""
    rows = []
    for r in results:
        e = r.get("e2e")
        if not e:
            continue
        med = e["median_ms"]
        rows.append([r["model"], e["input"], e["decoder"], "{:.2f}".format(r["latency_ms"]["median"]),
                     "{:.2f}".format(med["decode_ms"]), "{:.2f}".format(med["preprocess_ms"]),
                     "{:.2f}".format(med["network_ms"]), "{:.2f}".format(med["postprocess_ms"]),
                     "{:.2f}".format(e["latency_ms"]["median"]), "{:.2f}".format(e["latency_ms"]["mean"]),
                     "{:.2f}".format(e["latency_ms"]["p99"]), "{:.1f}".format(e["throughput_fps"]),
                     "{:.1f}%".format(100 * e["decode_preprocess_share"]) if e["decode_preprocess_share"] else "-"])
    return rows
