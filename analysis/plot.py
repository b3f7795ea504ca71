"""A roofline chart per model: each layer's MoC against the target's MoC threshold.

matplotlib is imported lazily, with the Agg backend (no display needed). Written atomically.
"""
from __future__ import annotations

import logging

from deploy.atomic import write_bytes

LOG = logging.getLogger(__name__)


def plot_roofline(analysis, path: str) -> str:
    """Write ``render_roofline(analysis)`` to ``path`` atomically; return the path."""
    write_bytes(path, render_roofline(analysis))
    LOG.info("wrote %s", path)
    return path


def render_roofline(analysis) -> bytes:
    """The chart as PNG bytes. Left: MoC of every counted convolution, in graph order, against the
    threshold line. Right: the classic roofline (attainable MAC/s against MoC) with each layer on it."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [row for row in analysis.layers if row["counted"]]
    thr = analysis.threshold_moc
    xs = list(range(len(layers)))
    mocs = [max(row["moc"], 1e-3) for row in layers]
    below = [row["below_threshold"] for row in layers]
    colours = ["tab:red" if b else "tab:blue" for b in below]
    markers = {"depthwise": "v", "pointwise": "s", "conv": "o", "grouped": "D"}

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    from matplotlib.lines import Line2D

    handles = []
    for kind, marker in markers.items():
        idx = [i for i, row in enumerate(layers) if row["kind"] == kind]
        if idx:
            ax.scatter([xs[i] for i in idx], [mocs[i] for i in idx], c=[colours[i] for i in idx], marker=marker,
                       s=22, edgecolors="none")
            handles.append(Line2D([], [], linestyle="none", marker=marker, color="grey", label=kind))
    ax.axhline(thr, color="black", linestyle="--", linewidth=1)
    handles += [Line2D([], [], color="black", linestyle="--", label=f"threshold {thr:.1f}"),
                Line2D([], [], linestyle="none", marker="o", color="tab:red", label="below: memory-bound"),
                Line2D([], [], linestyle="none", marker="o", color="tab:blue", label="above")]
    ax.legend(handles=handles, loc="upper left", fontsize=7, framealpha=0.85)
    ax.set_yscale("log")
    ax.set_xlabel("convolution (graph order)")
    ax.set_ylabel("MoC = MACs / CIO (MACs per element)")
    ax.set_title(f"{analysis.model} {analysis.input_shape[-1]}x{analysis.input_shape[-1]}: "
                 f"{analysis.layers_below}/{analysis.conv_layers} layers below threshold (red)")
    ax.grid(True, which="both", alpha=0.3)

    # roofline: attainable GMAC/s = min(peak MAC/s, MoC x elements/s); the ridge sits at the threshold
    from analysis.roofline import BYTES_PER_ELEMENT

    elems_per_s = analysis.dram_gbs * 1e9 / BYTES_PER_ELEMENT[analysis.precision]
    peak_gmacs = analysis.peak_gflops / 2.0

    def attainable(m):
        return min(peak_gmacs, m * elems_per_s / 1e9)
    lo, hi = min(mocs + [thr]) / 2, max(mocs + [thr]) * 2
    ax2.plot([lo, thr, hi], [attainable(lo), peak_gmacs, peak_gmacs], color="black", linewidth=1.2)
    ax2.scatter(mocs, [attainable(m) for m in mocs], c=colours, s=16, edgecolors="none")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("MoC (MACs per element)")
    ax2.set_ylabel("attainable GMAC/s")
    ax2.set_title(f"{analysis.target} {analysis.precision}: roofline")
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
