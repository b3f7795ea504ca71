"""CIO and MoC as the HarDNet paper defines them (Chao et al., ICCV 2019, arXiv 1909.00948, Eq. 1).

    CIO = sum over convolution layers l of ( c_in(l) * h_in(l) * w_in(l) + c_out(l) * h_out(l) * w_out(l) )
    MoC = MACs / CIO

counted in tensor elements per image (batch 1), which is how the paper's figures come out:

* every convolution counts its whole input tensor and its whole output tensor;
* a concatenated input is counted in full at every convolution that reads it (two convs reading
  the same Concat count it twice: each reads it from DRAM);
* the stem's input image counts (it is the first conv's input);
* the classifier's fully connected layer does not count (it is not a convolution), and neither do
  pooling, concatenation, addition or activation layers by themselves.

Two conventions (``CONVENTIONS``):

``eq1``    Eq. 1 over every Conv node, depthwise ones included.
``paper``  ``eq1``, except that a *pooling depthwise conv* counts 0: a stride > 1 depthwise conv that
           is not half of a depthwise-separable pair (its output is not read by exactly one
           pointwise conv). HarDNet-DS uses such a conv where HarDNet uses max pooling, and pooling
           is not a convolution in Eq. 1. This is the convention that reproduces the paper's
           HarDNet39DS (8.2 M) and HarDNet68DS (15.3 M); it changes nothing for HarDNet68,
           MobileNetV2 (whose stride-2 depthwise convs feed exactly one projection conv), ResNet
           or DenseNet. docs/analyze.md reports the search that found it.

In both conventions an *affine* conv (1x1, stride 1, depthwise: a BatchNorm that BN folding could
not fold into a conv, e.g. DenseNet's pre-activation BNs, turned into a conv for TensorRT) counts 0
and adds no MACs to the model's total: it is a BatchNorm, not a convolution of the paper's networks.
The roofline still charges it the bytes it moves.
"""
from __future__ import annotations

from analysis.graph import LayerRecord

CONVENTIONS = ("paper", "eq1")


def is_pooling_depthwise(layer: LayerRecord, layers: list[LayerRecord]) -> bool:
    """A stride > 1 depthwise conv that is not the depthwise half of a separable pair."""
    if layer.kind != "depthwise" or all(s == 1 for s in layer.stride):
        return False
    readers = [m for m in layers if m.source == layer.output]
    separable = (len(readers) == 1 and readers[0].kind == "pointwise" and readers[0].source_readers == 1)
    return not separable


def layer_cio(layers: list[LayerRecord], convention: str = "paper") -> list[int]:
    """Each layer's CIO contribution in elements (0 for fully connected and skipped layers)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown CIO convention {convention!r}; choose from {CONVENTIONS}")
    out = []
    for layer in layers:
        if layer.op != "conv" or layer.kind == "affine":
            out.append(0)
        elif convention == "paper" and is_pooling_depthwise(layer, layers):
            out.append(0)
        else:
            out.append(int(layer.in_elems) + int(layer.out_elems))
    return out


def counts_macs(layer: LayerRecord) -> bool:
    """Whether the layer's MACs belong to the model's MAC total (convolutions and FC, not affine BNs)."""
    return layer.kind != "affine"


def moc(macs: float, cio: float) -> float:
    """MACs over CIO; 0 when the layer moves nothing (it is not counted)."""
    return float(macs) / float(cio) if cio else 0.0
