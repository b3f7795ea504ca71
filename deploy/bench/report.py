"""Benchmark reports: bench.json (everything, raw latencies included), bench.md (the tables),
bench.png (latency distribution per model and the pair comparison), and the console table.

Everything is rendered in memory first and written at the very end, each file atomically, so
an interrupted or failed run never leaves a partial report in place of a good one.
Python 3.6-compatible; matplotlib is imported lazily and is optional (no PNG without it).
"""
import collections
import hashlib
import io
import json
import logging
import os

from deploy.atomic import folder_write_problem, json_bytes, sha256_file, write_files
from deploy.bench.e2e import E2E_HEADERS, e2e_rows
from deploy.bundle import check_folder_inside
from deploy.errors import UsageError
from deploy.tables import format_markdown_table, format_table

LOG = logging.getLogger(__name__)

REPORT_SCHEMA = 1
CHART_KEY = "chart"   # bench.json: {"path": "bench.png", "sha256": ...} of the chart drawn with it, or null

# The authors' comparison pairs: (HarDNet, its MobileNet/ResNet counterpart).
PAIRS = (
    ("hardnet39ds", "mobilenetv2"),
    ("hardnet68ds", "mobilenetv2_140"),
    ("hardnet68", "resnet50"),
)
PUBLISHED_LATENCY_KEYS = (
    ("nano_trt_ms_320", "Jetson Nano, TensorRT, 320x320"),
    ("gpu_ms_1024", "GPU, PyTorch, 1024x1024"),
)


def build_report(environment, protocol, results, extras=None):
    report = collections.OrderedDict()
    report["schema_version"] = REPORT_SCHEMA
    report["environment"] = environment
    proto = collections.OrderedDict(protocol._asdict() if hasattr(protocol, "_asdict") else protocol)
    proto["input"] = "seeded standard-normal random input (numpy RandomState(seed)), as the authors' torch.randn"
    proto["timing"] = ("warm-up first, then every iteration timed and kept; batch {} synchronous "
                       "inference".format(proto.get("batch")))
    if extras:
        proto.update(extras)
    report["protocol"] = proto
    report["results"] = results
    report["pairs"] = pair_rows(results)
    return report


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def _fmt(value, digits=2):
    if value is None:
        return "-"
    return "{:.{}f}".format(value, digits)


def latency_rows(results, markdown=False):
    has_compute = any(r.get("compute_ms") for r in results)
    has_power = any(r.get("power") for r in results)
    has_floor = any(r.get("floor_share") for r in results)
    headers = ["model", "backend", "prec", "input", "mean ms", "std", "min", "median", "p90", "p95", "p99",
               "max", "img/s", "CoV"]
    if has_compute:
        headers += ["GPU compute ms"]
    if has_power:
        headers += ["W", "mJ/inf"]
    if has_floor:
        headers += ["floor ms", "floor share"]
    rows = []
    for r in results:
        lat = r["latency_ms"]
        row = [r["model"], r["backend"], r["precision"], "x".join(str(d) for d in r["input_shape"][1:][-2:]),
               _fmt(lat["mean"]), _fmt(lat["std"]), _fmt(lat["min"]), _fmt(lat["median"]), _fmt(lat["p90"]),
               _fmt(lat["p95"]), _fmt(lat["p99"]), _fmt(lat["max"]), _fmt(r["throughput_fps"], 1),
               "{:.1f}%{}".format(r["cov"] * 100.0, " (!)" if r.get("unstable") else "")]
        if has_compute:
            row.append(_fmt((r.get("compute_ms") or {}).get("mean")))
        if has_power:
            p = r.get("power") or {}
            row += [_fmt(p.get("average_w")), _fmt(p.get("mj_per_inference"), 1)]
        if has_floor:
            floor = r.get("compute_floor_ms")
            row += ["-" if floor is None else "{:.3g}".format(floor),
                    "{:.0f}%".format(r["floor_share"] * 100.0) if r.get("floor_share") else "-"]
        rows.append(row)
    return headers, rows


def pair_rows(results):
    """The authors' table: each pair with MParams, GMACs, our latency, speed-up, published figures."""
    by_name = {r["model"]: r for r in results}
    out = []
    for hardnet, other in PAIRS:
        if hardnet not in by_name or other not in by_name:
            continue
        a, b = by_name[hardnet], by_name[other]
        key, label = _published_key(a, b)
        ours_speedup = b["latency_ms"]["mean"] / a["latency_ms"]["mean"] if a["latency_ms"]["mean"] else None
        pub_a = (a.get("published") or {}).get(key) if key else None
        pub_b = (b.get("published") or {}).get(key) if key else None
        pub_speedup = pub_b / pub_a if pub_a and pub_b else None
        for r, pub in ((a, pub_a), (b, pub_b)):
            row = collections.OrderedDict()
            row["pair"] = "{} vs {}".format(hardnet, other)
            row["model"] = r["model"]
            row["mparams"] = round(r["params"] / 1e6, 2) if r.get("params") else None
            row["gmacs"] = round(r["macs"] / 1e9, 3) if r.get("macs") else None
            row["mean_ms"] = r["latency_ms"]["mean"]
            row["median_ms"] = r["latency_ms"]["median"]
            row["speedup"] = round(ours_speedup, 3) if (r is a and ours_speedup) else None
            row["published_ms"] = pub
            row["published_label"] = label
            row["published_speedup"] = round(pub_speedup, 3) if (r is a and pub_speedup) else None
            out.append(row)
    return out


def _published_key(a, b):
    for key, label in PUBLISHED_LATENCY_KEYS:
        if (a.get("published") or {}).get(key) and (b.get("published") or {}).get(key):
            return key, label
    return None, None


def pair_table(pairs):
    headers = ["pair", "model", "MParams", "GMACs", "ours mean ms", "ours median ms", "speed-up (ours)",
               "published ms", "speed-up (published)"]
    rows = []
    for p in pairs:
        rows.append([p["pair"], p["model"], _fmt(p["mparams"]), _fmt(p["gmacs"], 3), _fmt(p["mean_ms"]),
                     _fmt(p["median_ms"]), "{:.2f}x".format(p["speedup"]) if p["speedup"] else "",
                     _fmt(p["published_ms"], 1) if p["published_ms"] else "-",
                     "{:.2f}x".format(p["published_speedup"]) if p["published_speedup"] else ""])
    return headers, rows


def environment_lines(report):
    env = report["environment"]
    proto = report["protocol"]
    versions = env.get("versions") or {}
    lines = []
    jetson = env.get("jetson")
    if jetson:
        l4t = jetson.get("l4t") or {}
        lines.append("device: {} (L4T {}, JetPack {})".format(jetson.get("board") or "Jetson", l4t.get("l4t", "?"),
                                                            l4t.get("jetpack") or "?"))
        mode = jetson.get("power_mode") or {}
        clocks = jetson.get("clocks") or {}
        lines.append("power mode: {} (id {}); clocks locked: {}".format(
            mode.get("name", "unknown"), mode.get("id", "?"),
            "yes" if clocks.get("locked") else ("no" if clocks else "unknown")))
    else:
        lines.append("device: {} ({}, {} physical cores, {} logical; {})".format(
            env.get("cpu"), env.get("machine"), env.get("physical_cores"), env.get("logical_cpus"),
            ", ".join(env.get("cpu_flags") or []) or "no SIMD flags read"))
    lines.append("versions: " + ", ".join("{} {}".format(k, v) for k, v in versions.items() if v))
    backend = proto.get("backend")
    if proto.get("fallback"):
        backend = "{} (FALLBACK: {})".format(backend, proto.get("fallback_reason"))
    lines.append("backend: {}; precision: {}; threads: {}".format(backend, proto.get("precision"),
                                                                proto.get("threads") or "-"))
    choice = proto.get("precision_choice")
    if choice and choice.get("requested") != choice.get("precision"):
        lines.append("precision {} chosen for --precision {}: {}".format(
            choice.get("precision"), choice.get("requested"), choice.get("reason")))
    lines.append("protocol: {} timed iterations after {} warm-up, batch {}, {}x{}, seed {}".format(
        proto.get("iterations"), proto.get("warmup"), proto.get("batch"), proto.get("size"), proto.get("size"),
        proto.get("seed")))
    if proto.get("matmul_gflops"):
        lines.append("compute floor: 2 x MACs / {} GFLOP/s (this machine's best FP32 numpy matmul); floor share = "
                     "floor / median".format(proto["matmul_gflops"]))
    if proto.get("power_sampling"):
        lines.append("power: tegrastats board input rail (POM_5V_IN on the Nano, VDD_IN on Xavier/Orin), "
                     "averaged over each model's timed loop; mJ/inference = W x seconds per inference")
    return lines


def all_warnings(report):
    out = list(report["environment"].get("warnings") or [])
    for r in report["results"]:
        for key in ("warning", "compute_warning"):
            if r.get(key):
                out.append("{}: {}".format(r["model"], r[key]))
    if report["protocol"].get("fallback"):
        out.append("these are CPU fallback numbers, not TensorRT: not comparable with the published Nano figures")
    return out


def render_markdown(report):
    parts = ["# Benchmark", ""]
    parts += ["- " + line for line in environment_lines(report)]
    parts += ["", "## Latency per model", ""]
    headers, rows = latency_rows(report["results"], markdown=True)
    parts.append(format_markdown_table(headers, rows))
    parts.append("")
    parts.append("CoV = std / mean; (!) marks a run over the {:.0f}% instability threshold.".format(
        _threshold() * 100))
    if report["pairs"]:
        parts += ["", "## HarDNet against its counterparts (the authors' table)", ""]
        headers, rows = pair_table(report["pairs"])
        parts.append(format_markdown_table(headers, rows))
        labels = sorted(set(p["published_label"] for p in report["pairs"] if p["published_label"]))
        parts.append("")
        parts.append("Speed-up = counterpart mean / HarDNet mean (the authors averaged). \"published\" columns are "
                     "the authors' figures ({}), not measured here.".format("; ".join(labels) or "none"))
    e2e = e2e_rows(report["results"])
    if e2e:
        parts += ["", "## End to end on image files (bench --e2e)", "", format_markdown_table(E2E_HEADERS, e2e), "",
                  "Medians in ms per image; total = decode + preprocess + network + postprocess, timed per image "
                  "(deploy/bench/e2e.py); the network-only column is the random-input protocol above."]
    warnings = all_warnings(report)
    if warnings:
        parts += ["", "## Warnings", ""] + ["- " + w for w in warnings]
    parts.append("")
    return "\n".join(parts)


def render_console(report):
    lines = environment_lines(report) + [""]
    headers, rows = latency_rows(report["results"])
    lines.append(format_table(headers, rows))
    if report["pairs"]:
        headers, rows = pair_table(report["pairs"])
        lines += ["", format_table(headers, rows)]
    e2e = e2e_rows(report["results"])
    if e2e:
        lines += ["", "end to end on image files (medians, ms):", format_table(E2E_HEADERS, e2e)]
    warnings = all_warnings(report)
    if warnings:
        lines += [""] + ["warning: " + w for w in warnings]
    return "\n".join(lines)


def _threshold():
    from deploy.bench.stats import COV_WARN_THRESHOLD
    return COV_WARN_THRESHOLD


# ------------------------------------------------------------------------------------------------
# figure
# ------------------------------------------------------------------------------------------------
def render_png(report):
    """PNG bytes, or None when matplotlib is not installed (logged)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.warning("matplotlib is not installed: no bench.png (pip install matplotlib to get the figure)")
        return None
    results = report["results"]
    pairs = report["pairs"]
    ncols = 2 if pairs else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.5), squeeze=False)
    ax = axes[0][0]
    data = [r["latencies_ms"] for r in results]
    ax.boxplot(data, showfliers=True, whis=(1, 99))
    ax.set_xticks(range(1, len(results) + 1))
    ax.set_xticklabels([r["model"] for r in results], rotation=20, ha="right")
    ax.set_ylabel("latency per inference (ms)")
    proto = report["protocol"]
    ax.set_title("{} {}, {} iterations (whiskers p1-p99)".format(proto.get("backend"), proto.get("precision"),
                                                                proto.get("iterations")))
    ax.grid(axis="y", alpha=0.3)
    if pairs:
        ax2 = axes[0][1]
        names = [p["model"] for p in pairs]
        ours = [p["mean_ms"] for p in pairs]
        published = [p["published_ms"] or 0.0 for p in pairs]
        x = list(range(len(names)))
        width = 0.4
        ax2.bar([i - width / 2 for i in x], ours, width, label="ours (mean, {})".format(proto.get("backend")))
        if any(published):
            label = next((p["published_label"] for p in pairs if p["published_label"]), "published")
            ax2.bar([i + width / 2 for i in x], published, width, label="published: " + label)
        ax2.set_xticks(x)
        ax2.set_xticklabels(names, rotation=20, ha="right")
        ax2.set_ylabel("ms")
        ax2.set_title("pairs: HarDNet vs counterpart")
        ax2.legend(fontsize=8)
        ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
def write_reports(out_dir, report, png=True):
    """Render everything, then write bench.json, bench.md and bench.png atomically. Returns paths."""
    markdown = render_markdown(report)
    image = render_png(report) if png else None
    paths = collections.OrderedDict()
    paths["json"] = os.path.join(str(out_dir), "bench.json")
    paths["md"] = os.path.join(str(out_dir), "bench.md")
    png_path = os.path.join(str(out_dir), "bench.png")
    # bench.json records the sha256 of the bench.png drawn with it: the proof that a later run may remove it
    saved = collections.OrderedDict(report)
    saved[CHART_KEY] = None if image is None else collections.OrderedDict(
        [("path", "bench.png"), ("sha256", hashlib.sha256(image).hexdigest())])
    contents = collections.OrderedDict([(paths["json"], json_bytes(saved)),
                                        (paths["md"], markdown.encode("utf-8"))])
    stale_chart = image is None and os.path.isfile(png_path) and _chart_is_ours(paths["json"], png_path)
    if image is not None:
        paths["png"] = png_path
        contents[paths["png"]] = image
    write_files(contents)   # as a set: a full disk leaves the previous run's three files, not a mix
    if stale_chart:   # bench drew it for the earlier run its old bench.json recorded: it no longer belongs
        os.unlink(png_path)
        LOG.info("removed %s: it charted an earlier run (this one ran with --no-png)", png_path)
    elif image is None and os.path.isfile(png_path):
        LOG.warning("kept %s: bench did not draw it for the bench.json there, so it is not removed, and it does "
                    "not chart this run (delete it yourself if it is stale)", png_path)
    return paths


def _chart_is_ours(json_path, png_path):
    # type: (str, str) -> bool
    """Whether the bench.json at ``json_path`` (an earlier run's) recorded exactly the file at ``png_path``."""
    try:
        with open(json_path, "rb") as handle:
            recorded = json.loads(handle.read().decode("utf-8")).get(CHART_KEY)
        return isinstance(recorded, dict) and recorded.get("sha256") == sha256_file(png_path)
    except (OSError, ValueError, AttributeError):   # unreadable, not JSON, not an object: not a record of ours
        return False


def check_report_dir(out_dir, bundle_root=None):
    """Raise UsageError unless reports can be written in ``out_dir`` (made if missing): checked
    before the timed run, so an unusable --out never costs the run. A folder inside bundle
    ``bundle_root`` that is a symbolic link to elsewhere is refused (BundleError) before the probe."""
    if bundle_root is not None:
        check_folder_inside(bundle_root, out_dir)
    problem = folder_write_problem(out_dir)
    if problem:
        raise UsageError("report folder {} {}".format(out_dir, problem), hint="give --out a writable folder")
