#!/usr/bin/env python3
"""The CPU fallback, side by side: ONNX Runtime (plain, each tuning step, and the project's tuned
runner) against OpenVINO on the same ONNX files, in one process, interleaved, against the compute
floor of this machine.

    python bench/cpu_fallback.py [BUNDLE] [--iterations 300] [--rounds 6] [--threads N] [--models a,b]

Without a bundle (none under build/) the four models are exported here first, plainly
(torch.onnx.export, opset 13, no BN folding or onnxsim), into build/cpu_fallback/models.

Method. Every variant of every model is built once; the timed iterations are split into
``--rounds`` blocks, and the blocks of the variants are interleaved (v1 v2 ... v1 v2 ...) with a
short pause between blocks, so slow drifts of a shared machine hit all variants alike; idle
spinning thread pools of one variant park before the next one runs. Medians are reported.

Compute floor: 2 x MACs / best FP32 matmul rate of this machine (numpy's BLAS and an ONNX Runtime
MatMul, the faster of the two), MACs counted from the ONNX graph (Conv and Gemm/MatMul).
Floor share = floor / median: 100 % would be every MAC at GEMM speed.

Writes BUNDLE/reports/cpu_fallback.json and cpu_fallback.md (atomically, at the end) and prints
the table. Exit status 0 when the tuned ONNX Runtime runner's median is at or below OpenVINO's for
every model, 3 when not (a speed goal, checked here and not in the unit tests).
"""
import argparse
import collections
import json
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.atomic import write_json, write_text  # noqa: E402
from deploy.bench import make_input, measure_matmul_flops  # noqa: E402
from deploy.environment import collect_environment, physical_cores  # noqa: E402
from deploy.errors import BackendUnavailableError  # noqa: E402
from deploy.report import format_markdown_table, format_table  # noqa: E402
from deploy.stats import summarize as summarize_latencies  # noqa: E402

LOG = logging.getLogger("cpu_fallback")

DEFAULT_MODELS = ("hardnet39ds", "hardnet68ds", "mobilenetv2", "mobilenetv2_140")


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def bundle_models(bundle_dir, names):
    from deploy.bundle import Bundle
    bundle = Bundle.open(bundle_dir)
    names = names or bundle.require_models()
    out = collections.OrderedDict()
    for name in names:
        record = bundle.model(name)
        out[name] = bundle.path(record["onnx"]["path"])
    return out, os.path.join(bundle.root, "reports"), os.path.join(bundle.root, "cache", "onnxruntime")


def export_models(folder, names, size):
    """Plain exports for when no bundle exists yet (torch on the host)."""
    import torch
    from models import create_model
    os.makedirs(folder, exist_ok=True)
    out = collections.OrderedDict()
    for name in names:
        path = os.path.join(folder, "{}.{}.onnx".format(name, size))
        if not os.path.isfile(path):
            LOG.info("exporting %s", name)
            model = create_model(name).eval()
            tmp = path + ".tmp"
            torch.onnx.export(model, torch.randn(1, 3, size, size), tmp, dynamo=False, opset_version=13,
                              input_names=["input"], output_names=["logits"])
            os.replace(tmp, path)
        out[name] = path
    return out


def count_macs(onnx_path):
    """MACs of Conv and Gemm/MatMul nodes, from ONNX shape inference."""
    import onnx
    from onnx import numpy_helper, shape_inference
    model = shape_inference.infer_shapes(onnx.load(onnx_path))
    graph = model.graph
    shapes = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in graph.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape)
    macs = 0
    for node in graph.node:
        if node.op_type == "Conv":
            w = shapes.get(node.input[1])
            y = shapes.get(node.output[0])
            if w and y:   # weight (Cout, Cin/group, kH, kW): each output element costs Cin/group*kH*kW MACs
                macs += int(np.prod(y)) * w[1] * int(np.prod(w[2:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if a and b:
                trans_b = next((x.i for x in node.attribute if x.name == "transB"), 0)
                n = b[0] if trans_b else b[-1]
                macs += int(np.prod(a)) * n
    return macs


def ort_matmul_flops(n=1024, threads=None):
    """FP32 MatMul rate of ONNX Runtime's MLAS on this machine (FLOP/s)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    node = helper.make_node("MatMul", ["a", "b"], ["c"])
    graph = helper.make_graph(
        [node], "mm", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                       helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": make_input((n, n), 1), "b": make_input((n, n), 2)}
    session.run(None, feed)
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


# ------------------------------------------------------------------------------------------------
# variants: each returns (step callable, description); all take the same seeded input
# ------------------------------------------------------------------------------------------------
def _ort_session(path, level, threads, spinning=True):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def variant_ort_plain(path, x, threads, cache):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])   # every default
    name = session.get_inputs()[0].name
    return (lambda: session.run(None, {name: x})), "InferenceSession(path) with default options"


def _level_variant(level, spinning=True):
    def make(path, x, threads, cache):
        session = _ort_session(path, level, threads or physical_cores(), spinning)
        name = session.get_inputs()[0].name
        return (lambda: session.run(None, {name: x})), "{}, {} threads, spinning {}".format(
            level, threads or physical_cores(), "on" if spinning else "off")
    return make


def _runner_variant(io_binding=True, cached=True, spinning=True, pad=True, split=True):
    def make(path, x, threads, cache):
        from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner
        runner = OnnxRuntimeRunner(path, threads=threads, optimized_model_dir=cache if cached else None,
                                   io_binding=io_binding, spinning=spinning, pad_channels=pad,
                                   split_concats=split)
        runner.activate()
        name = list(runner.input_metadata())[0]
        runner.prepare({name: x})
        return runner.run_prepared, json.dumps(runner.describe(), sort_keys=True)
    return make


def variant_openvino(path, x, threads, cache):
    from deploy.runners.openvino_runner import OpenVinoRunner
    runner = OpenVinoRunner(path, threads=threads)
    runner.activate()
    name = list(runner.input_metadata())[0]
    runner.prepare({name: x})
    return runner.run_prepared, json.dumps(runner.describe(), sort_keys=True)


VARIANTS = collections.OrderedDict([
    ("ort-plain", variant_ort_plain),
    ("ort-basic", _level_variant("ORT_ENABLE_BASIC")),
    ("ort-extended", _level_variant("ORT_ENABLE_EXTENDED")),
    ("ort-all", _level_variant("ORT_ENABLE_ALL")),
    ("ort-all-nospin", _level_variant("ORT_ENABLE_ALL", spinning=False)),
    ("ort-pad", _runner_variant(io_binding=False, cached=False, split=False)),
    ("ort-pad-split", _runner_variant(io_binding=False, cached=False)),
    ("ort-pad-split-iob", _runner_variant(cached=False)),
    ("ort-tuned-norewrite", _runner_variant(pad=False, split=False)),
    ("ort-tuned", _runner_variant()),
    ("openvino", variant_openvino),
])
TUNED, REFERENCE = "ort-tuned", "openvino"


# ------------------------------------------------------------------------------------------------
def input_shape(onnx_path):
    """The model's (static) input shape; a dynamic batch dimension counts as 1."""
    import onnx
    dims = onnx.load(onnx_path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)


def run(models, variants, iterations, rounds, warmup, threads, cache, pause_s=0.2):
    timings = collections.OrderedDict()
    described = collections.OrderedDict()
    skipped = collections.OrderedDict()
    for model, path in models.items():
        x = make_input(input_shape(path), 0)
        steps = collections.OrderedDict()
        for name in variants:
            try:
                step, desc = VARIANTS[name](path, x, threads, cache)
            except (ImportError, BackendUnavailableError) as exc:
                skipped[name] = "not installed: {}".format(exc)
                continue
            for _ in range(warmup):
                step()
            steps[name] = step
            described[name] = desc
        per_round = max(1, iterations // rounds)
        times = collections.OrderedDict((name, []) for name in steps)
        for r in range(rounds):
            for name, step in steps.items():
                time.sleep(pause_s)
                step()  # one untimed call after the pause: wake the pool
                block = times[name]
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    step()
                    block.append((time.perf_counter() - t0) * 1000.0)
            LOG.info("%s: round %d/%d done", model, r + 1, rounds)
        timings[model] = times
        del steps
    return timings, described, skipped


def summarize(timings, floors):
    rows = collections.OrderedDict()
    for model, times in timings.items():
        rows[model] = collections.OrderedDict()
        for name, values in times.items():
            st = summarize_latencies(values)
            rows[model][name] = collections.OrderedDict([
                ("median_ms", round(st.median, 3)), ("mean_ms", round(st.mean, 3)),
                ("min_ms", round(st.min, 3)), ("p90_ms", round(st.p90, 3)),
                ("cov", round(st.cov, 4)), ("n", st.count),
                ("floor_share", round(floors[model] / st.median, 4) if floors.get(model) else None),
            ])
    return rows


def tables(rows, floors, variants):
    present = [v for v in variants if any(v in r for r in rows.values())]
    headers = ["model", "floor ms"] + ["{} ms".format(v) for v in present] + ["tuned vs OV", "tuned floor share"]
    body = []
    ok = True
    for model, r in rows.items():
        line = [model, "{:.2f}".format(floors[model]) if floors.get(model) else "-"]
        line += ["{:.2f}".format(r[v]["median_ms"]) if v in r else "-" for v in present]
        if TUNED in r and REFERENCE in r:
            ratio = r[TUNED]["median_ms"] / r[REFERENCE]["median_ms"]
            ok = ok and ratio <= 1.0
            line.append("{:+.1f}%".format((ratio - 1.0) * 100.0))
        else:
            line.append("-")
        line.append("{:.0f}%".format(r[TUNED]["floor_share"] * 100) if TUNED in r and r[TUNED]["floor_share"]
                    else "-")
        body.append(line)
    # what each step moved, averaged over models (median ratios)
    steps = [("ort-basic", "ort-plain"), ("ort-extended", "ort-basic"), ("ort-all", "ort-extended"),
             ("ort-all", "ort-plain"), ("ort-all-nospin", "ort-all"), ("ort-pad", "ort-all"),
             ("ort-pad-split", "ort-pad"), ("ort-pad-split-iob", "ort-pad-split"),
             ("ort-tuned", "ort-pad-split-iob"), ("ort-tuned", "ort-tuned-norewrite"),
             ("ort-tuned", "ort-plain"), ("openvino", "ort-plain")]
    moved = []
    for new, old in steps:
        ratios = [r[new]["median_ms"] / r[old]["median_ms"] for r in rows.values() if new in r and old in r]
        if ratios:
            per_model = ", ".join("{} {:+.1f}%".format(m, (r[new]["median_ms"] / r[old]["median_ms"] - 1) * 100)
                                  for m, r in rows.items() if new in r and old in r)
            moved.append(["{} vs {}".format(new, old), "{:+.1f}%".format((np.mean(ratios) - 1) * 100), per_model])
    return (headers, body), (["change", "mean median change", "per model"], moved), ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", default=None)
    parser.add_argument("--models", default=None, help="comma-separated (default: the four of the pairs)")
    parser.add_argument("--iterations", type=int, default=300, help="timed iterations per variant and model")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved blocks (default 6)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " +
                        ", ".join(VARIANTS))
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between blocks (default 0.2)")
    parser.add_argument("--out", default=None, help="report folder (default BUNDLE/reports or build/cpu_fallback)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr)

    if args.iterations < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--iterations and --rounds must be at least 1 and --warmup at least 0")
    names = [n for n in args.models.split(",") if n] if args.models else None
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error("unknown variants: {}".format(", ".join(unknown)))
    bundle_dir = args.bundle
    if bundle_dir is None:
        found = [os.path.join("build", d) for d in (sorted(os.listdir("build")) if os.path.isdir("build") else [])
                 if os.path.isfile(os.path.join("build", d, "manifest.json"))]
        bundle_dir = found[0] if len(found) == 1 else None
    if bundle_dir:
        models, report_dir, cache = bundle_models(bundle_dir, names)
        source = "bundle {}".format(bundle_dir)
    else:
        base = os.path.join("build", "cpu_fallback")
        models = export_models(os.path.join(base, "models"), names or list(DEFAULT_MODELS), 320)
        report_dir, cache = os.path.join(base, "reports"), os.path.join(base, "cache")
        source = "plain torch.onnx.export (no bundle found)"
    report_dir = args.out or report_dir

    env = collect_environment(backend="onnxruntime vs openvino", precision="fp32",
                              threads=args.threads or physical_cores())
    rates = {"numpy": measure_matmul_flops(), "onnxruntime": ort_matmul_flops(threads=args.threads)}
    rate = max(rates.values())
    macs = {m: count_macs(p) for m, p in models.items()}
    floors = {m: 2.0 * macs[m] / rate * 1000.0 for m in models}
    LOG.info("matmul GFLOP/s: %s", {k: round(v / 1e9, 1) for k, v in rates.items()})

    timings, described, skipped = run(models, variants, args.iterations, args.rounds, args.warmup, args.threads,
                                      cache, pause_s=args.pause)
    load_after = list(os.getloadavg())
    rows = summarize(timings, floors)
    (h1, b1), (h2, b2), ok = tables(rows, floors, variants)

    report = collections.OrderedDict([
        ("environment", env),
        ("protocol", collections.OrderedDict([
            ("models_from", source),
            ("input", {m: "x".join(str(d) for d in input_shape(p)) + " seeded standard normal, fp32"
                       for m, p in models.items()}),
            ("iterations_per_variant", args.iterations), ("rounds", args.rounds), ("warmup", args.warmup),
            ("threads", args.threads or physical_cores()),
            ("matmul_gflops", {k: round(v / 1e9, 2) for k, v in rates.items()}),
            ("floor", "2 x MACs / {:.2f} GFLOP/s".format(rate / 1e9)),
            ("load_average_after", load_after)])),
        ("variants", described), ("skipped", skipped),
        ("macs", macs), ("floor_ms", {m: round(v, 3) for m, v in floors.items()}),
        ("results", rows), ("tuned_at_or_below_openvino", ok if REFERENCE in described else None),
        ("raw_ms", {m: {v: [round(t, 4) for t in ts] for v, ts in t_.items()} for m, t_ in timings.items()}),
    ])
    md = ["# CPU fallback: ONNX Runtime against OpenVINO", "",
          "- machine: {} ({} physical cores; {}); load average before the run {}, after {}".format(
              env["cpu"], env["physical_cores"], ", ".join(env["cpu_flags"]),
              ", ".join("{:.2f}".format(v) for v in env["load_average"] or []),
              ", ".join("{:.2f}".format(v) for v in load_after)),
          "- versions: " + ", ".join("{} {}".format(k, v) for k, v in env["versions"].items() if v),
          "- models: {}; {} iterations per variant in {} interleaved rounds; medians".format(
              source, args.iterations, args.rounds),
          "- floor: 2 x MACs (counted from the ONNX graph) / {:.1f} GFLOP/s, this machine's best FP32 matmul "
          "(numpy {:.1f}, ONNX Runtime {:.1f})".format(rate / 1e9, rates["numpy"] / 1e9, rates["onnxruntime"] / 1e9),
          "", "## Medians (ms)", "", format_markdown_table(h1, b1), "",
          "## What each choice moved", "", format_markdown_table(h2, b2), "", "## Variants", ""]
    md += ["- `{}`: {}".format(k, v) for k, v in described.items()]
    md += ["- `{}`: skipped ({})".format(k, v) for k, v in skipped.items()]
    write_json(os.path.join(report_dir, "cpu_fallback.json"), report)
    write_text(os.path.join(report_dir, "cpu_fallback.md"), "\n".join(md) + "\n")
    print(format_table(h1, b1))
    print()
    print(format_table(h2, b2))
    print("\nwrote {}".format(os.path.join(report_dir, "cpu_fallback.{json,md}")))
    if REFERENCE in described and not ok:
        print("GOAL NOT MET: the tuned ONNX Runtime median is above OpenVINO's for some model")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
