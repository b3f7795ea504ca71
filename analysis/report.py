"""``analyze``: per-layer and per-model params, MACs, CIO, MoC and roofline, and the reports.

The library returns data and strings; ``pipeline.py`` prints them. Files are written atomically.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

from analysis.cio import counts_macs, layer_cio, moc
from analysis.graph import analyze_graph
from analysis.roofline import BYTES_PER_ELEMENT, Hardware, check_precision, layer_time, ridge_moc
from deploy.atomic import json_bytes, write_files
from deploy.tables import format_markdown_table, format_table

LOG = logging.getLogger(__name__)

# The comparisons the HarDNet paper makes. Baselines: the networks whose CIO HarDNet's is put beside.
BASELINES = ("resnet50", "densenet121")
# Jetson Nano pairs of the paper (similar accuracy, measured with TensorRT at 320x320).
NANO_PAIRS = (("hardnet39ds", "mobilenetv2"), ("hardnet68ds", "mobilenetv2_140"))


@dataclass
class ModelAnalysis:
    model: str
    origin: str
    family: str
    input_shape: list[int]
    params: int
    macs: int
    cio: int
    moc: float
    weight_bytes: int
    target: str
    precision: str
    convention: str
    threshold_moc: float
    peak_gflops: float             # the roofline's figures at this precision
    dram_gbs: float
    conv_layers: int               # convolutions counted in CIO
    layers_below: int              # of those, MoC below the threshold
    share_below: float
    memory_bound_layers: int       # roofline: layers whose bytes term dominates (all layers)
    predicted_ms: float
    memory_time_share: float       # share of predicted time spent in memory-bound layers
    published: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def analyze_model(graph: onnx.ModelProto, name: str, hw: Hardware, precision: str, *,
                  convention: str = "paper", origin: str = "", family: str = "",
                  published: dict[str, Any] | None = None) -> ModelAnalysis:
    """Everything ``analyze`` reports for one ONNX graph on one target at one precision."""
    check_precision(hw, precision)
    summary = analyze_graph(graph)
    cios = layer_cio(summary.layers, convention)
    ridge = ridge_moc(hw, precision)
    width = BYTES_PER_ELEMENT[precision]
    rows = []
    total_ms = memory_ms = 0.0
    below = counted = mem_layers = 0
    for layer, cio in zip(summary.layers, cios):
        lm = moc(layer.macs, cio)
        comp_s, mem_s, bound_s = layer_time(hw, precision, layer.macs,
                                            layer.in_elems + layer.out_elems + layer.weight_elems)
        bound = "memory" if mem_s > comp_s else "compute"
        total_ms += bound_s * 1e3
        if bound == "memory":
            mem_layers += 1
            memory_ms += bound_s * 1e3
        is_below = bool(cio) and lm < ridge
        if cio:
            counted += 1
            below += int(is_below)
        row = layer.to_dict()
        row.update(cio=cio, moc=round(lm, 4), counted=bool(cio), weight_bytes=layer.weight_elems * width,
                   below_threshold=is_below, bound=bound, compute_ms=comp_s * 1e3, memory_ms=mem_s * 1e3,
                   time_ms=bound_s * 1e3)
        for key in ("input", "output", "source", "source_readers"):
            row.pop(key, None)
        rows.append(row)
    macs = sum(layer.macs for layer in summary.layers if counts_macs(layer))
    cio_total = sum(cios)
    weight_elems = sum(layer.weight_elems for layer in summary.layers)
    return ModelAnalysis(
        model=name, origin=origin, family=family, input_shape=list(summary.input_shape), params=summary.params,
        macs=macs, cio=cio_total, moc=round(moc(macs, cio_total), 4), weight_bytes=weight_elems * width,
        target=hw.target, precision=precision, convention=convention, threshold_moc=round(ridge, 4),
        peak_gflops=hw.peak_flops[precision] / 1e9, dram_gbs=hw.dram_bandwidth / 1e9, conv_layers=counted, layers_below=below, share_below=(below / counted if counted else 0.0),
        memory_bound_layers=mem_layers, predicted_ms=total_ms,
        memory_time_share=(memory_ms / total_ms if total_ms else 0.0),
        published=dict(published or {}), layers=rows)


# ------------------------------------------------------------------------------------------------
# comparisons
# ------------------------------------------------------------------------------------------------
def _side(a: ModelAnalysis) -> int:
    return int(a.input_shape[-1]) if a.input_shape else 0


def paper_cio_rows(analyses: list[ModelAnalysis]) -> list[dict[str, Any]]:
    """Our CIO beside the paper's (published figures are at 224x224; other sizes are not compared)."""
    rows = []
    for a in analyses:
        paper = a.published.get("cio_224_m")
        if paper is None:
            continue
        ours = a.cio / 1e6
        rows.append({"model": a.model, "size": _side(a), "cio_m": round(ours, 3), "paper_cio_m": paper,
                     "macs_g": round(a.macs / 1e9, 3), "paper_gmacs": a.published.get("gmacs_224"),
                     "comparable": _side(a) == 224,
                     "match_1dp": _side(a) == 224 and round(ours, 1) == round(float(paper), 1)})
    return rows


def baseline_rows(analyses: list[ModelAnalysis]) -> list[dict[str, Any]]:
    """Each HarDNet's CIO (and MACs) beside each baseline's at the same size: the reduction."""
    by_name = {a.model: a for a in analyses}
    rows = []
    for a in analyses:
        # HarDNet68/85 against the paper's baselines; the DS models are compared with MobileNetV2 instead
        if a.family != "hardnet" or any(r["kind"] == "depthwise" for r in a.layers):
            continue
        for base in BASELINES:
            b = by_name.get(base)
            if b is None or _side(b) != _side(a):
                continue
            rows.append({"model": a.model, "baseline": base, "size": _side(a),
                         "cio_m": a.cio / 1e6, "baseline_cio_m": b.cio / 1e6,
                         "cio_reduction": 1.0 - a.cio / b.cio if b.cio else 0.0,
                         "macs_g": a.macs / 1e9, "baseline_macs_g": b.macs / 1e9})
    return rows


def nano_pair_rows(analyses: list[ModelAnalysis]) -> list[dict[str, Any]]:
    """Predicted latency of each paper pair beside the authors' measured Nano TensorRT figures."""
    by_name = {a.model: a for a in analyses}
    rows = []
    for left, right in NANO_PAIRS:
        a, b = by_name.get(left), by_name.get(right)
        if a is None or b is None:
            continue
        ma, mb = a.published.get("nano_trt_ms_320"), b.published.get("nano_trt_ms_320")
        row = {"pair": f"{left} / {right}", "size": _side(a), "target": a.target, "precision": a.precision,
               "predicted_ms": [round(a.predicted_ms, 3), round(b.predicted_ms, 3)],
               "predicted_ratio": a.predicted_ms / b.predicted_ms if b.predicted_ms else None,
               "cio_ratio": a.cio / b.cio if b.cio else None,
               "macs_ratio": a.macs / b.macs if b.macs else None,
               "measured_ms": [ma, mb],
               "measured_ratio": (float(ma) / float(mb)) if ma and mb else None,
               "comparable": a.target == "jetson-nano" and _side(a) == 320 and a.precision == "fp16"}
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100.0 * x:.0f}%"


def summary_table(analyses: list[ModelAnalysis]) -> tuple[list[str], list[list[str]]]:
    headers = ["model", "input", "params (M)", "MACs (G)", "CIO (M)", "MoC", "paper CIO (M)",
               "below MoC thr", "mem-bound time", "roofline ms"]
    rows = []
    for a in analyses:
        paper = a.published.get("cio_224_m")
        rows.append([
            a.model, f"{_side(a)}x{_side(a)}", f"{a.params / 1e6:.2f}", f"{a.macs / 1e9:.3f}", f"{a.cio / 1e6:.3f}",
            f"{a.moc:.1f}", "-" if paper is None else (f"{paper}" if _side(a) == 224 else f"({paper} @224)"),
            f"{a.layers_below}/{a.conv_layers} ({_pct(a.share_below)})", _pct(a.memory_time_share),
            f"{a.predicted_ms:.2f}"])
    return headers, rows


def _baseline_table(rows):
    return (["HarDNet", "baseline", "input", "CIO (M)", "baseline CIO (M)", "CIO reduction", "MACs (G)",
             "baseline MACs (G)"],
            [[r["model"], r["baseline"], str(r["size"]), f"{r['cio_m']:.2f}", f"{r['baseline_cio_m']:.2f}",
              _pct(r["cio_reduction"]), f"{r['macs_g']:.3f}", f"{r['baseline_macs_g']:.3f}"] for r in rows])


def _pair_table(rows):
    def ms(v):
        return "-" if v is None else f"{v}"

    def ratio(v):
        return "-" if v is None else f"{v:.3f}"
    return (["pair", "input", "roofline ms", "measured ms (paper)", "roofline ratio", "measured ratio",
             "CIO ratio", "MACs ratio"],
            [[r["pair"], str(r["size"]), " / ".join(f"{v:.2f}" for v in r["predicted_ms"]),
              " / ".join(ms(v) for v in r["measured_ms"]), ratio(r["predicted_ratio"]), ratio(r["measured_ratio"]),
              ratio(r["cio_ratio"]), ratio(r["macs_ratio"])] for r in rows])


def _header_lines(analyses: list[ModelAnalysis], hw: Hardware) -> list[str]:
    a = analyses[0]
    return [f"target {hw.target} ({hw.description}), {a.precision}: peak {hw.peak_flops[a.precision] / 1e9:.1f} "
            f"GFLOP/s, DRAM {hw.dram_bandwidth / 1e9:.1f} GB/s -> MoC threshold {a.threshold_moc:.1f} MACs/element; "
            f"CIO convention '{a.convention}'"]


def format_console(analyses: list[ModelAnalysis], hw: Hardware) -> str:
    if not analyses:
        return "no models analyzed"
    out = _header_lines(analyses, hw) + [""]
    out.append(format_table(*summary_table(analyses)))
    base = baseline_rows(analyses)
    if base:
        out += ["", "CIO of HarDNet beside the paper's baselines:", format_table(*_baseline_table(base))]
    pairs = nano_pair_rows(analyses)
    if pairs:
        note = "" if all(r["comparable"] for r in pairs) else \
            "  (the measured figures are Jetson Nano, TensorRT FP16, 320x320: run with --size 320 to compare)"
        out += ["", "Paper pairs, roofline vs the authors' measured Nano latency:" + note,
                format_table(*_pair_table(pairs))]
    return "\n".join(out)


def format_markdown(analyses: list[ModelAnalysis], hw: Hardware, command: str = "") -> str:
    if not analyses:
        return "No models analyzed.\n"
    out = ["# analyze", ""]
    if command:
        out += [f"`{command}`", ""]
    out += _header_lines(analyses, hw) + ["", format_markdown_table(*summary_table(analyses))]
    base = baseline_rows(analyses)
    if base:
        out += ["", "## CIO beside the baselines", "", format_markdown_table(*_baseline_table(base))]
    pairs = nano_pair_rows(analyses)
    if pairs:
        out += ["", "## Paper pairs on the Jetson Nano", "", format_markdown_table(*_pair_table(pairs))]
    out += ["", "## Hardware figures", ""] + [f"- {s}" for s in hw.sources]
    return "\n".join(out) + "\n"


def to_json(analyses: list[ModelAnalysis], hw: Hardware, with_layers: bool = True) -> dict[str, Any]:
    models = []
    for a in analyses:
        d = a.to_dict()
        if not with_layers:
            d.pop("layers")
        models.append(d)
    return {"hardware": hw.to_dict(), "models": models, "paper_cio": paper_cio_rows(analyses),
            "baselines": baseline_rows(analyses), "nano_pairs": nano_pair_rows(analyses)}


def write_reports(analyses: list[ModelAnalysis], hw: Hardware, *, json_path: str | None = None,
                  out_dir: str | None = None, command: str = "", plots: bool = True) -> list[str]:
    """Write the JSON (``json_path``), and the Markdown and one roofline PNG per model (``out_dir``),
    as a set: everything is rendered first, and a failure (a full disk) leaves the previous files."""
    contents: dict[str, bytes] = {}
    if json_path:
        contents[json_path] = json_bytes(to_json(analyses, hw))
    if out_dir:
        contents[os.path.join(out_dir, "analyze.md")] = format_markdown(analyses, hw, command).encode("utf-8")
        if plots:
            from analysis.plot import render_roofline

            for a in analyses:
                path = os.path.join(out_dir, f"roofline_{a.model}_{a.target}_{a.precision}_{_side(a)}.png")
                contents[path] = render_roofline(a)
    write_files(contents)
    return list(contents)


def check_outputs(json_path: str | None, out_dir: str | None) -> None:
    """UsageError unless the outputs can be written: checked before the (slow) analysis."""
    from deploy.atomic import folder_write_problem
    from deploy.errors import UsageError

    for option, folder in (("--json", os.path.dirname(os.path.abspath(json_path)) if json_path else None),
                           ("--out", out_dir)):
        problem = folder and folder_write_problem(folder)
        if problem:
            raise UsageError(f"{option}: folder {folder} {problem}", hint=f"give {option} a writable place")
    if json_path and os.path.isdir(json_path):
        raise UsageError(f"--json {json_path} is a folder", hint="give --json a file name, e.g. analyze.json")
