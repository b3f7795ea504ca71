#!/usr/bin/env python3
"""Benchmark (not a test): ONNX Runtime INT8 (QDQ) vs FP32 on this CPU. Goal: INT8 >= 1.5x faster.

    python bench/int8_speed.py                                  # hardnet39ds and mobilenetv2, 320x320
    python bench/int8_speed.py --models mobilenetv2 --iterations 200 --threads 2

Per model: build a cpu bundle in a temporary folder (random weights: latency does not depend on
them), calibrate on --calib-count generic images (MinMax) to get models/<name>.int8.onnx, then time
batch-1 inference of both ONNX models in ONNX Runtime (warm-up first; median and mean of
--iterations runs, alternating FP32/INT8 rounds so a busy machine hurts both alike).
"""
import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def time_round(sess, feed, n):
    out = []
    for _ in range(n):
        started = time.perf_counter()
        sess.run(None, feed)
        out.append(1000.0 * (time.perf_counter() - started))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="hardnet39ds,mobilenetv2")
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    p.add_argument("--calib-count", type=int, default=50)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import onnxruntime as ort

    from calibration.stage import calibrate_bundle
    from deploy.bundle import Bundle
    from deploy.environment import cpu_model
    from deploy.report import format_markdown_table
    from deploy.targets import get_target
    from export.build import BuildOptions, build_bundle

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-bench.") as scratch:
        out = os.path.join(scratch, "bundle")
        build_bundle(BuildOptions(target=get_target("cpu"), out_dir=out, models=tuple(names), size=args.size),
                     progress=False)
        bundle = Bundle.open(out)
        calibrate_bundle(bundle, names, count=args.calib_count, method="minmax", make_int8_onnx=True)
        x = np.random.RandomState(0).randn(1, 3, args.size, args.size).astype(np.float32)
        for name in names:
            record = bundle.model(name)
            fp32 = session(bundle.path(record["onnx"]["path"]), args.threads)
            int8 = session(bundle.path(record["int8_onnx"]["path"]), args.threads)
            feed = {record["input"]["name"]: x}
            time_round(fp32, feed, args.warmup)
            time_round(int8, feed, args.warmup)
            times = {"fp32": [], "int8": []}
            rounds = 5
            for _ in range(rounds):
                times["fp32"] += time_round(fp32, feed, max(1, args.iterations // rounds))
                times["int8"] += time_round(int8, feed, max(1, args.iterations // rounds))
            med = {k: statistics.median(v) for k, v in times.items()}
            mean = {k: statistics.mean(v) for k, v in times.items()}
            rows.append((name, med["fp32"], med["int8"], mean["fp32"], mean["int8"], med["fp32"] / med["int8"]))
    print("ONNX Runtime {} on {} ({} CPU cores seen), batch 1, {}x{}, {} iterations, threads {}".format(
        ort.__version__, cpu_model(), os.cpu_count(), args.size, args.size, args.iterations,
        args.threads or "default"))
    print(format_markdown_table(
        ["model", "FP32 median ms", "INT8 median ms", "FP32 mean ms", "INT8 mean ms", "speed-up (median)"],
        [[name] + ["{:.1f}".format(v) for v in ms] + ["{:.2f}x".format(speedup)] for name, *ms, speedup in rows]))
    print("load average at the end: {}".format(", ".join("{:.2f}".format(v) for v in os.getloadavg())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
