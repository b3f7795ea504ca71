#!/usr/bin/env python3
"""Benchmark (not a test): ONNX Runtime INT8 (QDQ) vs FP32 on this CPU. Goal: INT8 >= 1.5x faster.

    python bench/int8_speed.py                                  # hardnet39ds and mobilenetv2, 320x320
    python bench/int8_speed.py --models mobilenetv2 --iterations 200 --threads 2
    python bench/int8_speed.py --profile                        # also: where the time goes, per kind of layer

Per model: build a cpu bundle in a temporary folder (random weights: latency does not depend on
them), calibrate on --calib-count generic images (MinMax) to get models/<name>.int8.onnx, then time
batch-1 inference of both ONNX models in ONNX Runtime, two ways: plain sessions (every ONNX Runtime
default: the goal's comparison) and the CPU fallback's tuned runner (what `bench` uses: for FP32
that includes the NCHWc channel padding and Concat split, which do not apply to a QDQ graph).
Warm-up first; medians of --iterations runs, the four variants' rounds interleaved (--rounds,
default 8) so a busy machine hurts them alike. Each speed-up comes with its 95 % bootstrap
confidence interval over the rounds (deploy.bench.stats.ratio_with_ci), and "INT8 faster" is said only
where the interval excludes 1. The CPU model and its vector flags are printed with the table; on a
CPU without an INT8 dot product (VNNI, AMX-INT8, ARM dotprod) the report says INT8 gains are limited.

--profile adds ONNX Runtime's own per-node profile of both models (separate sessions, after the
timing), summed per kind of layer: pointwise (1x1) convolutions, depthwise convolutions, the
other convolutions (the 3-channel stem), and everything else. Profiling adds overhead of its own,
so compare the kinds with each other, not with the timed medians.
"""
import argparse
import collections
import functools
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


def layer_kind(node, shapes):
    """'pointwise' | 'depthwise' | 'other conv' | 'other' for a node of an ONNX Runtime-optimised graph."""
    if node.op_type not in ("Conv", "QLinearConv", "FusedConv"):
        return "other"
    weight = shapes.get(node.input[3 if node.op_type == "QLinearConv" else 1])
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    if weight is None or len(weight) != 4:
        return "other conv"
    if group > 1 and weight[1] == 1:
        return "depthwise"
    return "pointwise" if tuple(weight[2:]) == (1, 1) else "other conv"


def profile_kinds(path, feed, threads, runs):
    """Mean ms per inference spent in each layer kind, from ONNX Runtime's profiler."""
    import collections
    import json

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="int8-profile.") as scratch:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(scratch, "profile")
        options.optimized_model_filepath = os.path.join(scratch, "optimised.onnx")
        options.log_severity_level = 3
        sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            sess.run(None, feed)
        with open(sess.end_profiling()) as handle:
            events = json.load(handle)
        graph = onnx.load(options.optimized_model_filepath).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    kinds = {n.name: layer_kind(n, shapes) for n in graph.node}
    total = collections.OrderedDict((k, 0.0) for k in ("pointwise", "depthwise", "other conv", "other"))
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[kinds.get(event["name"][:-len("_kernel_time")], "other")] += event["dur"] / 1000.0
    return collections.OrderedDict((k, v / runs) for k, v in total.items())


def tuned_step(path, feed, threads, cache):
    """One inference with the CPU fallback's tuned runner (deploy.runners.onnxruntime_runner), inputs pre-bound."""
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(path, threads=threads, optimized_model_dir=cache)
    runner.activate()
    runner.prepare(feed)
    return runner.run_prepared


def time_round(step, n):
    out = []
    for _ in range(n):
        started = time.perf_counter()
        step()
        out.append(1000.0 * (time.perf_counter() - started))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="hardnet39ds,mobilenetv2")
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8; the CI is over rounds)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    p.add_argument("--calib-count", type=int, default=50)
    p.add_argument("--profile", action="store_true", help="also profile both models per kind of layer")
    args = p.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0 or args.calib_count < 1 or args.rounds < 1:
        p.error("--iterations, --rounds and --calib-count must be at least 1 and --warmup at least 0")
    logging.basicConfig(level=logging.WARNING)

    import onnxruntime as ort

    from calibration.stage import calibrate_bundle
    from deploy.bench.stats import ratio_with_ci
    from deploy.bundle import Bundle
    from deploy.cpu_isa import isa_summary, local_cpu_isa
    from deploy.environment import cpu_model
    from deploy.tables import format_markdown_table
    from deploy.targets import get_target
    from export.build import BuildOptions, build_bundle

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    rows, profiles = [], collections.OrderedDict()
    with tempfile.TemporaryDirectory(prefix="int8-bench.") as scratch:
        out = os.path.join(scratch, "bundle")
        build_bundle(BuildOptions(target=get_target("cpu"), out_dir=out, models=tuple(names), size=args.size),
                     progress=False)
        bundle = Bundle.open(out)
        calibrate_bundle(bundle, names, count=args.calib_count, method="minmax", make_int8_onnx=True)
        x = np.random.RandomState(0).randn(1, 3, args.size, args.size).astype(np.float32)
        for name in names:
            record = bundle.model(name)
            feed = {record["input"]["name"]: x}
            paths = {"fp32": bundle.path(record["onnx"]["path"]), "int8": bundle.path(record["int8_onnx"]["path"])}
            steps = collections.OrderedDict()
            for precision, path in paths.items():
                plain = session(path, args.threads)
                steps[precision] = functools.partial(plain.run, None, feed)
            for precision, path in paths.items():
                steps[precision + " tuned"] = tuned_step(path, feed, args.threads, os.path.join(scratch, "cache"))
            rounds = collections.OrderedDict((k, []) for k in steps)
            for step in steps.values():
                time_round(step, args.warmup)
            for _ in range(args.rounds):
                for key, step in steps.items():
                    rounds[key].append(time_round(step, max(1, args.iterations // args.rounds)))
            med = {k: statistics.median([t for block in v for t in block]) for k, v in rounds.items()}
            plain = ratio_with_ci(rounds["fp32"], rounds["int8"])
            tuned = ratio_with_ci(rounds["fp32 tuned"], rounds["int8 tuned"])
            rows.append([name] + ["{:.1f}".format(med[k]) for k in ("fp32", "int8")]
                        + ["{:.2f}x".format(med["fp32"] / med["int8"])]
                        + ["{:.1f}".format(med[k]) for k in ("fp32 tuned", "int8 tuned")]
                        + ["{:.2f}x".format(med["fp32 tuned"] / med["int8 tuned"])]
                        + ["{:.2f}x ({:.2f}-{:.2f}) {}".format(e.ratio, e.low, e.high, e.verdict)
                           for e in (plain, tuned)])
            del steps   # no idle thread pools beside the next model's (or the profiled) sessions
            if args.profile:
                profiles[name] = {precision: profile_kinds(path, feed, args.threads, max(10, args.iterations // 4))
                                  for precision, path in paths.items()}
    isa = local_cpu_isa()
    print("ONNX Runtime {} on {} ({} CPU cores seen), batch 1, {}x{}, {} iterations in {} interleaved rounds, "
          "threads {}; medians in ms".format(ort.__version__, cpu_model(), os.cpu_count(), args.size, args.size,
                                             args.iterations, args.rounds, args.threads or "default"))
    print("CPU ISA: {}".format(isa_summary(isa)))
    if not isa.int8_dot:
        print("this CPU has no INT8 dot product (VNNI, AMX-INT8 or ARM dotprod): INT8 gains are limited here")
    print(format_markdown_table(
        ["model", "FP32 plain", "INT8 plain", "speed-up (plain)", "FP32 tuned runner", "INT8 tuned runner",
         "speed-up (tuned)", "plain: geo-mean of rounds (95% CI), INT8 is", "tuned: (95% CI), INT8 is"], rows))
    if profiles:
        print("\nONNX Runtime profile, mean ms per inference by kind of layer (profiling overhead included):")
        table = []
        for name, by_precision in profiles.items():
            for kind in by_precision["fp32"]:
                f, q = by_precision["fp32"][kind], by_precision["int8"][kind]
                table.append([name, kind, "{:.2f}".format(f), "{:.2f}".format(q),
                              "{:.2f}x".format(f / q) if q > 0 else "-"])
        print(format_markdown_table(["model", "layers", "FP32 ms", "INT8 ms", "INT8 speed-up"], table))
    print("load average at the end: {}".format(", ".join("{:.2f}".format(v) for v in os.getloadavg())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
