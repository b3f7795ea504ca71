#!/usr/bin/env python3
"""The CPU fallback, side by side: ONNX Runtime (plain, each tuning step, and the project's tuned
runner) against OpenVINO on the same ONNX files, at FP32, BF16 (OpenVINO) and INT8 (the bundle's
QDQ models), in one process, interleaved, against the compute floor of this machine.

    python bench/cpu_fallback.py [BUNDLE] [--iterations 300] [--rounds 6] [--threads N] [--models a,b]
    python bench/cpu_fallback.py build/cpu --variants ort-tuned,ort-int8,openvino,openvino-bf16,openvino-int8

Without a bundle (none under build/) the four models are exported here first, plainly
(torch.onnx.export, opset 13, no BN folding or onnxsim), into build/cpu_fallback/models.

Method. Every variant of every model is built once; the timed iterations are split into
``--rounds`` blocks, and the blocks of the variants are interleaved (v1 v2 ... v1 v2 ...) with a
short pause between blocks, so slow drifts of a shared machine hit all variants alike; idle
spinning thread pools of one variant park before the next one runs. Medians are reported, and every
comparison is a ratio with its 95 % bootstrap confidence interval over the rounds
(deploy.bench.stats.ratio_with_ci: per-round ratio of medians, rounds resampled); "A is faster than B"
is said only when the interval excludes 1. Use many short rounds (--rounds 10 or more).

Precision. Every row names the precision that ran: ONNX Runtime runs the FP32 file in FP32 and the
QDQ file in INT8 (its CPU provider has no BF16 convolutions); OpenVINO's precision is read back
from the compiled model (its convolutions' runtime precision). ``openvino`` is OpenVINO with
INFERENCE_PRECISION_HINT=f32, ``openvino-default`` without a hint (BF16 where the CPU has
AVX512_BF16/AMX: OpenVINO's default there), ``openvino-bf16`` with the bf16 hint, ``openvino-int8``
the bundle's QDQ model (unquantized layers f32, as in ONNX Runtime).

Compute floor: 2 x MACs / best FP32 matmul rate of this machine (numpy's BLAS and an ONNX Runtime
MatMul, the faster of the two), MACs counted from the ONNX graph (Conv and Gemm/MatMul).
Floor share = floor / median: 100 % would be every MAC at GEMM speed.

Writes BUNDLE/reports/cpu_fallback.json and cpu_fallback.md (atomically, at the end) and prints
the tables, with the CPU model, its flags and the load average. Exit status 0 when the FP32 goal
holds for every model (tuned ONNX Runtime at or below FP32_GOAL x OpenVINO FP32: the ratio's point
estimate), 3 when not (a speed goal, checked here and not in the unit tests).
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
from deploy.bench.protocol import make_input, measure_matmul_flops, significant  # noqa: E402
from deploy.bench.stats import BOOTSTRAP_RESAMPLES, claim, ratio_dict, ratio_with_ci  # noqa: E402
from deploy.bench.stats import summarize as summarize_latencies  # noqa: E402
from deploy.cpu_isa import choice_record, choose_cpu_precision, isa_summary, local_cpu_isa  # noqa: E402
from deploy.environment import collect_environment, physical_cores  # noqa: E402
from deploy.errors import BackendUnavailableError  # noqa: E402
from deploy.tables import format_markdown_table, format_table  # noqa: E402

LOG = logging.getLogger("cpu_fallback")

DEFAULT_MODELS = ("hardnet39ds", "hardnet68ds", "mobilenetv2", "mobilenetv2_140")
FP32_GOAL = 1.05   # tuned ONNX Runtime FP32 latency at or below 1.05x OpenVINO FP32's


class VariantSkipped(Exception):
    """This variant cannot run here (no INT8 model in the bundle, no BF16 on this CPU)."""


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
        int8 = (record.get("int8_onnx") or {}).get("path")
        out[name] = {"fp32": bundle.path(record["onnx"]["path"]), "int8": bundle.path(int8) if int8 else None}
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
        out[name] = {"fp32": path, "int8": None}
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
# variants: each takes (paths {"fp32", "int8"}, x, threads, cache) and returns
# (step callable, description, precision that runs); all take the same seeded input
# ------------------------------------------------------------------------------------------------
def _path(paths, precision):
    if not paths.get(precision):
        raise VariantSkipped("the bundle has no INT8 model (build it with: python pipeline.py build --target cpu "
                             "--precision int8)")
    return paths[precision]


def _ort_session(path, level, threads, spinning=True):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _plain_variant(precision):
    def make(paths, x, threads, cache):
        import onnxruntime as ort
        session = ort.InferenceSession(_path(paths, precision), providers=["CPUExecutionProvider"])  # every default
        name = session.get_inputs()[0].name
        return (lambda: session.run(None, {name: x})), "InferenceSession(path) with default options", precision
    return make


def _level_variant(level, spinning=True):
    def make(paths, x, threads, cache):
        session = _ort_session(paths["fp32"], level, threads or physical_cores(), spinning)
        name = session.get_inputs()[0].name
        return (lambda: session.run(None, {name: x})), "{}, {} threads, spinning {}".format(
            level, threads or physical_cores(), "on" if spinning else "off"), "fp32"
    return make


def _runner_variant(io_binding=True, cached=True, spinning=True, pad=True, split=True, precision="fp32"):
    def make(paths, x, threads, cache):
        from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner
        runner = OnnxRuntimeRunner(_path(paths, precision), threads=threads,
                                   optimized_model_dir=cache if cached else None, io_binding=io_binding,
                                   spinning=spinning, pad_channels=pad, split_concats=split)
        runner.activate()
        name = list(runner.input_metadata())[0]
        runner.prepare({name: x})
        return runner.run_prepared, json.dumps(runner.describe(), sort_keys=True), precision
    return make


def _openvino_variant(precision, hint=True):
    """OpenVINO with the hint matching ``precision`` (hint=False: OpenVINO's own default)."""
    def make(paths, x, threads, cache):
        from deploy.cpu_isa import check_bf16, local_cpu_isa
        from deploy.errors import PrecisionUnsupportedError
        from deploy.runners import openvino_runner

        if precision == "bf16":
            try:
                check_bf16(local_cpu_isa(), "openvino")
            except PrecisionUnsupportedError as exc:
                raise VariantSkipped(str(exc)) from exc
        runner = openvino_runner.OpenVinoRunner(_path(paths, "int8" if precision == "int8" else "fp32"),
                                                threads=threads, precision=precision, set_precision_hint=hint)
        runner.activate()
        name = list(runner.input_metadata())[0]
        runner.prepare({name: x})
        return runner.run_prepared, json.dumps(runner.describe(), sort_keys=True), runner.precision_ran
    return make


VARIANTS = collections.OrderedDict([
    ("ort-plain", _plain_variant("fp32")),
    ("ort-basic", _level_variant("ORT_ENABLE_BASIC")),
    ("ort-extended", _level_variant("ORT_ENABLE_EXTENDED")),
    ("ort-all", _level_variant("ORT_ENABLE_ALL")),
    ("ort-all-nospin", _level_variant("ORT_ENABLE_ALL", spinning=False)),
    ("ort-pad", _runner_variant(io_binding=False, cached=False, split=False)),
    ("ort-pad-split", _runner_variant(io_binding=False, cached=False)),
    ("ort-pad-split-iob", _runner_variant(cached=False)),
    ("ort-tuned-norewrite", _runner_variant(pad=False, split=False)),
    ("ort-tuned", _runner_variant()),
    ("ort-int8-plain", _plain_variant("int8")),
    ("ort-int8", _runner_variant(precision="int8")),
    ("openvino", _openvino_variant("fp32")),
    ("openvino-default", _openvino_variant("fp32", hint=False)),
    ("openvino-bf16", _openvino_variant("bf16")),
    ("openvino-int8", _openvino_variant("int8")),
])
TUNED, REFERENCE = "ort-tuned", "openvino"
DEFAULT_VARIANTS = ("ort-plain", "ort-tuned", "ort-int8-plain", "ort-int8", "openvino", "openvino-default",
                    "openvino-bf16", "openvino-int8")

# (A, B, what the ratio means): speed-up of A over B = B ms / A ms, with its CI over rounds
COMPARISONS = (
    ("openvino", "ort-tuned", "FP32: OpenVINO over tuned ONNX Runtime (= tuned ms / OpenVINO ms; goal <= {})".format(
        FP32_GOAL)),
    ("ort-tuned", "ort-plain", "FP32: tuned runner over a plain ONNX Runtime session"),
    ("ort-int8", "ort-tuned", "INT8 over FP32, ONNX Runtime tuned runner (goal >= 2.0 on a VNNI CPU)"),
    ("ort-int8-plain", "ort-plain", "INT8 over FP32, plain ONNX Runtime sessions"),
    ("openvino-int8", "openvino", "INT8 over FP32, OpenVINO"),
    ("openvino-bf16", "openvino", "BF16 over FP32, OpenVINO"),
    ("openvino-int8", "openvino-bf16", "INT8 over BF16, OpenVINO"),
    ("openvino-int8", "ort-int8", "INT8, same QDQ model: OpenVINO over ONNX Runtime (tuned)"),
    ("openvino-default", "openvino", "OpenVINO without a precision hint over OpenVINO FP32"),
)


# ------------------------------------------------------------------------------------------------
def input_shape(onnx_path):
    """The model's (static) input shape; a dynamic batch dimension counts as 1."""
    import onnx
    dims = onnx.load(onnx_path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)


def run(models, variants, iterations, rounds, warmup, threads, cache, pause_s=0.2):
    """Time every variant of every model in interleaved rounds.

    Returns (timings {model: {variant: [[ms, ...] per round]}}, described {variant: text},
    precisions {model: {variant: precision that ran}}, skipped {variant: why})."""
    timings = collections.OrderedDict()
    described = collections.OrderedDict()
    precisions = collections.OrderedDict()
    skipped = collections.OrderedDict()
    for model, paths in models.items():
        x = make_input(input_shape(paths["fp32"]), 0)
        steps = collections.OrderedDict()
        precisions[model] = collections.OrderedDict()
        for name in variants:
            try:
                step, desc, precision = VARIANTS[name](paths, x, threads, cache)
            except (ImportError, BackendUnavailableError) as exc:
                skipped[name] = "not installed: {}".format(exc)
                continue
            except VariantSkipped as exc:
                skipped[name] = str(exc)
                continue
            for _ in range(warmup):
                step()
            steps[name] = step
            described[name] = desc
            precisions[model][name] = precision
        per_round = max(1, iterations // rounds)
        times = collections.OrderedDict((name, []) for name in steps)
        for r in range(rounds):
            for name, step in steps.items():
                time.sleep(pause_s)
                step()  # one untimed call after the pause: wake the pool
                block = []
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    step()
                    block.append((time.perf_counter() - t0) * 1000.0)
                times[name].append(block)
            LOG.info("%s: round %d/%d done", model, r + 1, rounds)
        timings[model] = times
        del steps
    return timings, described, precisions, skipped


def compare(timings):
    """{model: [(A, B, meaning, RatioEstimate)]} for the COMPARISONS whose two variants both ran."""
    out = collections.OrderedDict()
    for model, times in timings.items():
        out[model] = [(a, b, meaning, ratio_with_ci(times[b], times[a]))
                      for a, b, meaning in COMPARISONS if a in times and b in times]
    return out


def best_precision_check(timings, rows, best):
    """Per model, the fastest variant of each precision that ran, and the flags' choice against each.

    Returns (table rows, checks {model: {precision: ratio dict of best's fastest over it}})."""
    table, checks = [], collections.OrderedDict()
    for model, r in rows.items():
        fastest = collections.OrderedDict()
        for name, row in sorted(r.items(), key=lambda item: item[1]["median_ms"]):
            fastest.setdefault(row["precision"], name)
        checks[model] = collections.OrderedDict()
        for precision, name in fastest.items():
            line = [model, precision, name, "{:.2f}".format(r[name]["median_ms"])]
            if best in fastest and precision != best:
                est = ratio_with_ci(timings[model][name], timings[model][fastest[best]])
                checks[model][precision] = ratio_dict(est)
                line += ["{:.3f}".format(est.ratio), "{:.3f}-{:.3f}".format(est.low, est.high), est.verdict]
            else:
                line += ["-", "-", "(the choice)" if precision == best else "not measured"]
            table.append(line)
    return table, checks


def summarize(timings, floors, precisions):
    rows = collections.OrderedDict()
    for model, times in timings.items():
        rows[model] = collections.OrderedDict()
        for name, rounds in times.items():
            st = summarize_latencies([v for block in rounds for v in block])
            rows[model][name] = collections.OrderedDict([
                ("precision", precisions[model][name]),
                ("median_ms", round(st.median, 3)), ("mean_ms", round(st.mean, 3)),
                ("min_ms", round(st.min, 3)), ("p90_ms", round(st.p90, 3)),
                ("cov", round(st.cov, 4)), ("n", st.count),
                ("floor_share", significant(floors[model] / st.median) if floors.get(model) else None),
            ])
    return rows


def tables(rows, floors, variants, comparisons):
    present = [v for v in variants if any(v in r for r in rows.values())]
    headers = ["model", "floor ms"] + ["{} ms".format(v) for v in present] + ["tuned vs OV", "tuned floor share"]
    body = []
    ok = True
    for model, r in rows.items():
        line = [model, "{:.3g}".format(floors[model]) if floors.get(model) else "-"]
        line += ["{:.2f} {}".format(r[v]["median_ms"], r[v]["precision"]) if v in r else "-" for v in present]
        goal = [est for a, b, _, est in comparisons.get(model, []) if (a, b) == (REFERENCE, TUNED)]
        if goal:
            ok = ok and goal[0].ratio <= FP32_GOAL
            line.append("{:.3f}x (CI up to {:.3f})".format(goal[0].ratio, goal[0].high))
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
    ratio_rows = [[model, a, b, "{:.3f}".format(est.ratio), "{:.3f}-{:.3f}".format(est.low, est.high), est.verdict,
                   meaning]
                  for model, found in comparisons.items() for a, b, meaning, est in found]
    ratio_table = (["model", "A", "B", "A over B", "95% CI", "A is", "meaning"], ratio_rows)
    return (headers, body), (["change", "mean median change", "per model"], moved), ratio_table, ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", default=None)
    parser.add_argument("--models", default=None, help="comma-separated (default: the four of the pairs)")
    parser.add_argument("--iterations", type=int, default=300, help="timed iterations per variant and model")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved blocks (default 6)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated subset of: {} (default: {})".format(", ".join(VARIANTS),
                                                                                  ",".join(DEFAULT_VARIANTS)))
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

    env = collect_environment(backend="onnxruntime vs openvino", precision="fp32, bf16, int8 (per row)",
                              threads=args.threads or physical_cores())
    isa = local_cpu_isa()
    best = choose_cpu_precision(isa, "best", backend="openvino",
                                int8_available=all(p["int8"] for p in models.values()))
    rates = {"numpy": measure_matmul_flops(), "onnxruntime": ort_matmul_flops(threads=args.threads)}
    rate = max(rates.values())
    macs = {m: count_macs(p["fp32"]) for m, p in models.items()}
    floors = {m: 2.0 * macs[m] / rate * 1000.0 for m in models}
    LOG.info("matmul GFLOP/s: %s", {k: round(v / 1e9, 1) for k, v in rates.items()})

    timings, described, precisions, skipped = run(models, variants, args.iterations, args.rounds, args.warmup,
                                                  args.threads, cache, pause_s=args.pause)
    load_after = list(os.getloadavg())
    rows = summarize(timings, floors, precisions)
    comparisons = compare(timings)
    (h1, b1), (h2, b2), (h3, b3), ok = tables(rows, floors, variants, comparisons)
    best_rows, best_checks = best_precision_check(timings, rows, best.precision)

    report = collections.OrderedDict([
        ("environment", env),
        ("protocol", collections.OrderedDict([
            ("models_from", source),
            ("input", {m: "x".join(str(d) for d in input_shape(p["fp32"])) + " seeded standard normal, fp32"
                       for m, p in models.items()}),
            ("iterations_per_variant", args.iterations), ("rounds", args.rounds), ("warmup", args.warmup),
            ("threads", args.threads or physical_cores()),
            ("matmul_gflops", {k: round(v / 1e9, 2) for k, v in rates.items()}),
            ("floor", "2 x MACs / {:.2f} GFLOP/s".format(rate / 1e9)),
            ("load_average_after", load_after),
            ("ratios", "speed-up of A over B = B ms / A ms: geometric mean over rounds of the per-round ratio of "
                       "medians, 95% bootstrap percentile interval over rounds ({} resamples); A is faster only "
                       "when the interval excludes 1".format(BOOTSTRAP_RESAMPLES))])),
        ("cpu_isa", choice_record(best, isa)),
        ("variants", described), ("skipped", skipped),
        ("macs", macs), ("floor_ms", {m: significant(v) for m, v in floors.items()}),
        ("results", rows),
        ("comparisons", collections.OrderedDict(
            (m, [collections.OrderedDict([("a", a), ("b", b), ("meaning", meaning)] + list(ratio_dict(est).items()))
                 for a, b, meaning, est in found]) for m, found in comparisons.items())),
        ("best_precision", collections.OrderedDict([("chosen_from_flags", best.precision), ("reason", best.reason),
                                                    ("checks", best_checks)])),
        ("fp32_goal_met", ok if REFERENCE in described else None),
        ("raw_ms", {m: {v: [round(t, 4) for block in rounds for t in block] for v, rounds in t_.items()}
                    for m, t_ in timings.items()}),
    ])
    md = ["# CPU fallback: ONNX Runtime against OpenVINO", "",
          "- machine: {} ({} physical cores; {}); load average before the run {}, after {}".format(
              env["cpu"], env["physical_cores"], ", ".join(env["cpu_flags"]),
              ", ".join("{:.2f}".format(v) for v in env["load_average"] or []),
              ", ".join("{:.2f}".format(v) for v in load_after)),
          "- ISA: {}; `--precision best` from the flags: {} ({})".format(isa_summary(isa), best.precision,
                                                                         best.reason),
          "- versions: " + ", ".join("{} {}".format(k, v) for k, v in env["versions"].items() if v),
          "- models: {}; {} iterations per variant in {} interleaved rounds; medians".format(
              source, args.iterations, args.rounds),
          "- floor: 2 x MACs (counted from the ONNX graph) / {:.1f} GFLOP/s, this machine's best FP32 matmul "
          "(numpy {:.1f}, ONNX Runtime {:.1f})".format(rate / 1e9, rates["numpy"] / 1e9, rates["onnxruntime"] / 1e9),
          "", "## Medians (ms, and the precision that ran)", "", format_markdown_table(h1, b1), "",
          "## Ratios with 95% confidence intervals over rounds", "",
          "A over B = B ms / A ms; \"faster\" only where the interval excludes 1.", "",
          format_markdown_table(h3, b3), "",
          "Claims (said only where the interval excludes 1):", ""] + [
              "- {}: {}".format(model, claim(a, b, est)) for model, found in comparisons.items()
              for a, b, _, est in found] + ["",
          "## Fastest variant per precision, against the flags' choice (`best` = {})".format(best.precision), "",
          format_markdown_table(["model", "precision", "fastest variant", "median ms", "best over it", "95% CI",
                                 "best is"], best_rows), "",
          "## What each choice moved", "", format_markdown_table(h2, b2), "", "## Variants", ""]
    md += ["- `{}`: {}".format(k, v) for k, v in described.items()]
    md += ["- `{}`: skipped ({})".format(k, v) for k, v in skipped.items()]
    write_json(os.path.join(report_dir, "cpu_fallback.json"), report)
    write_text(os.path.join(report_dir, "cpu_fallback.md"), "\n".join(md) + "\n")
    print("{} ({}); load average {} -> {}".format(env["cpu"], isa_summary(isa), env["load_average"], load_after))
    print(format_table(h1, b1))
    print()
    print(format_table(h3, b3))
    print()
    print(format_table(["model", "precision", "fastest variant", "median ms", "best over it", "95% CI", "best is"],
                       best_rows))
    print("\nwrote {}".format(os.path.join(report_dir, "cpu_fallback.{json,md}")))
    if REFERENCE in described and not ok:
        print("GOAL NOT MET: tuned ONNX Runtime FP32 is above {}x OpenVINO FP32 for some model".format(FP32_GOAL))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
