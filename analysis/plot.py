"""A roofline chart per model: each layer's MoC against the target's MoC threshold.

matplotlib is imported lazily, with the Agg backend (no display needed). Written atomically.
"""
from __future__ import annotations

import logging

from deploy.atomic import atomic_path

LOG = logging.getLogger(__name__)


def plot_roofline(analysis, path: str) -> str:
    """Left: MoC of every counted convolution, in graph order, against the threshold line.
    Right: the classic roofline (attainable MAC/s against MoC) with each layer on it."""
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
    for kind, marker in markers.items():
        idx = [i for i, row in enumerate(layers) if row["kind"] == kind]
        if idx:
            ax.scatter([xs[i] for i in idx], [mocs[i] for i in idx], c=[colours[i] for i in idx], marker=marker,
                       s=22, label=kind, edgecolors="none")
    ax.axhline(thr, color="black", linestyle="--", linewidth=1, label=f"threshold {thr:.1f}")
    ax.set_yscale("log")
    ax.set_xlabel("convolution (graph order)")
    ax.set_ylabel("MoC = MACs / CIO (MACs per element)")
    ax.set_title(f"{analysis.model} {analysis.input_shape[-1]}x{analysis.input_shape[-1]}: "
                 f"{analysis.layers_below}/{analysis.conv_layers} layers below threshold (red)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)

    # roofline: attainable MAC/s = min(peak MAC/s, MoC x elements/s); the ridge sits at the threshold
    peak_macs = thr  # in units of (elements/s): attainable/elements_per_s = min(thr, MoC)
    lo, hi = min(mocs + [thr]) / 2, max(mocs + [thr]) * 2
    ax2.plot([lo, thr, hi], [lo, peak_macs, peak_macs], color="black", linewidth=1.2)
    ax2.scatter(mocs, [min(m, peak_macs) for m in mocs], c=colours, s=16, edgecolors="none")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("MoC (MACs per element)")
    ax2.set_ylabel("attainable MAC/s / (elements/s)")
    ax2.set_title(f"{analysis.target} {analysis.precision}: roofline")
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    LOG.info("wrote %s", path)
    return path
