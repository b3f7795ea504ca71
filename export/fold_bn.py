"""BatchNorm folding, a build stage of its own.

Every BatchNorm whose input is the output of a convolution (plain, grouped or depthwise; with or
without bias), and nothing else reads that convolution's output, is folded into the convolution
on a deep copy of the model: the convolution gets the scaled weight and the shifted bias, and the
BatchNorm module is replaced by ``nn.Identity``. The model keeps its own class and ``forward``,
so custom forwards (HarDNet's concatenations) run unchanged.

Which BatchNorm follows which convolution is decided from the data flow, never guessed from the
order of modules:

1. ``torch.fx`` symbolic trace (preferred): a pair is folded when the BatchNorm's only input is
   the convolution's output, that output has no other reader, and both modules are called once.
2. When the model cannot be traced, ``nn.Sequential`` adjacency: a plain ``nn.Sequential`` feeds
   child i's output to child i+1 and to nothing else, so adjacent (conv, bn) children are a pair.

A BatchNorm that cannot be folded (pre-activation BatchNorm after a concatenation, as in
DenseNet) is listed in the report with the reason. With ``standalone="affine"`` (the default) a
BatchNorm2d/3d left over becomes the per-channel affine it computes in eval mode, a 1x1 depthwise
convolution, so the exported graph has no BatchNormalization node for any model; with
``standalone="keep"`` it stays a BatchNorm.

Folding (eval mode, running statistics; per-channel factors in float64):
    scale = gamma / sqrt(running_var + eps)
    W'    = W * scale[out_channel]
    b'    = (b - running_mean) * scale + beta          (b = 0 when the conv has no bias)
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

LOG = logging.getLogger(__name__)

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MATCHING_BN = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


@dataclass(frozen=True)
class FoldedPair:
    conv: str
    bn: str
    kind: str   # "plain", "grouped" or "depthwise"
    conv_had_bias: bool


@dataclass(frozen=True)
class LeftBatchNorm:
    bn: str
    reason: str
    replaced_by: str | None = None   # what the BatchNorm became when it could not be folded


@dataclass
class FoldReport:
    method: str                                   # "torch.fx" or "nn.Sequential adjacency"
    folded: list[FoldedPair] = field(default_factory=list)
    left: list[LeftBatchNorm] = field(default_factory=list)
    trace_error: str | None = None                # why torch.fx could not be used, if it could not

    @property
    def n_folded(self) -> int:
        return len(self.folded)

    def to_dict(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for pair in self.folded:
            kinds[pair.kind] = kinds.get(pair.kind, 0) + 1
        return {
            "method": self.method,
            "folded": len(self.folded),
            "folded_by_kind": dict(sorted(kinds.items())),
            "left": [{"bn": item.bn, "reason": item.reason, "replaced_by": item.replaced_by}
                     for item in self.left],
            "left_as_batchnorm": sum(1 for item in self.left if item.replaced_by is None),
            "trace_error": self.trace_error,
            "pairs": [f"{p.conv} <- {p.bn}" for p in self.folded],
        }


def conv_kind(conv: Any) -> str:
    if conv.groups == 1:
        return "plain"
    if conv.groups == conv.in_channels and conv.out_channels % conv.in_channels == 0:
        return "depthwise"
    return "grouped"


def fold_conv_bn_weights(conv: Any, bn: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weight, bias) of the convolution with ``bn`` (eval mode) folded in."""
    # Per-channel vectors in float64; the weight tensor itself is scaled once in its own dtype.
    w = conv.weight.detach()
    dtype = w.dtype
    out_channels = w.shape[0]
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(out_channels, dtype=torch.float64)
    mean = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    new_w = w * scale.to(dtype).reshape([-1] + [1] * (w.dim() - 1))
    new_b = (b - mean) * scale + beta
    return new_w, new_b.to(dtype)


def _why_not_foldable(conv: Any, bn: Any) -> str | None:
    if type(bn) is not _MATCHING_BN.get(type(conv)):
        return f"{type(bn).__name__} does not match {type(conv).__name__}"
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return "BatchNorm has no running statistics (track_running_stats=False): it normalises with batch statistics"
    if bn.num_features != conv.out_channels:
        return f"BatchNorm has {bn.num_features} features, the convolution {conv.out_channels} outputs"
    if conv.weight.is_meta:
        return "convolution has no materialised weight (meta tensor)"
    return None


def _apply_fold(model: nn.Module, conv_name: str, bn_name: str) -> FoldedPair:
    conv: Any = model.get_submodule(conv_name)
    bn: Any = model.get_submodule(bn_name)
    had_bias = conv.bias is not None
    weight, bias = fold_conv_bn_weights(conv, bn)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if had_bias:
            conv.bias.copy_(bias)
        else:
            conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
    model.set_submodule(bn_name, nn.Identity())
    return FoldedPair(conv=conv_name, bn=bn_name, kind=conv_kind(conv), conv_had_bias=had_bias)


def _module_use_counts(model: nn.Module) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        counts[id(module)] = counts.get(id(module), 0) + 1
    return counts


def _describe(node: Any, modules: dict[str, nn.Module]) -> str:
    import torch.fx

    if not isinstance(node, torch.fx.Node):
        return repr(node)
    if node.op == "placeholder":
        return "the model input"
    if node.op == "call_module":
        return f"{node.target} ({type(modules.get(str(node.target))).__name__})"
    name = getattr(node.target, "__name__", str(node.target))
    return f"a {name} result" if node.op == "call_function" else f"a .{name}() result"


def _pairs_from_fx(model: nn.Module) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Trace ``model``; return foldable (conv, bn) name pairs and {bn name: reason} for the rest."""
    import torch.fx

    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs: list[tuple[str, str]] = []
    left: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(str(node.target)), _BN_TYPES):
            continue
        bn_name = str(node.target)
        source = node.args[0] if node.args else None
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module"
                and isinstance(modules.get(str(source.target)), _CONV_TYPES)):
            left[bn_name] = f"input is not a convolution's output (it is {_describe(source, modules)})"
            continue
        conv_name = str(source.target)
        if calls.get(bn_name, 0) != 1 or calls.get(conv_name, 0) != 1:
            left[bn_name] = f"{conv_name} or {bn_name} is called more than once (shared module)"
            continue
        if len(source.users) != 1:
            readers = ", ".join(_describe(u, modules) for u in source.users)
            left[bn_name] = f"the output of {conv_name} is also read by others ({readers}), not only by the BatchNorm"
            continue
        why = _why_not_foldable(modules[conv_name], modules[bn_name])
        if why:
            left[bn_name] = why
            continue
        pairs.append((conv_name, bn_name))
    return pairs, left


def _pairs_from_sequential(model: nn.Module) -> list[tuple[str, str]]:
    """Adjacent (conv, bn) children of plain nn.Sequential containers (no overridden forward)."""
    uses = _module_use_counts(model)
    pairs: list[tuple[str, str]] = []
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            continue
        children = list(seq.named_children())
        for (conv_key, conv), (bn_key, bn) in zip(children, children[1:]):
            if not (isinstance(conv, _CONV_TYPES) and isinstance(bn, _BN_TYPES)):
                continue
            if uses[id(conv)] != 1 or uses[id(bn)] != 1 or _why_not_foldable(conv, bn):
                continue
            prefix = f"{seq_name}." if seq_name else ""
            pairs.append((prefix + conv_key, prefix + bn_key))
    return pairs


_AFFINE_CONV = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm3d: nn.Conv3d}


def batchnorm_as_affine_conv(bn: Any) -> nn.Module:
    """The eval-mode BatchNorm2d/3d ``bn`` as a 1x1 depthwise convolution computing the same."""
    channels = bn.num_features
    conv: Any = _AFFINE_CONV[type(bn)](channels, channels, 1, groups=channels, bias=True)
    mean = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    dtype = bn.running_mean.dtype
    with torch.no_grad():
        conv.weight.copy_(scale.reshape([-1] + [1] * (conv.weight.dim() - 1)).to(dtype))
        conv.bias.copy_((beta - mean * scale).to(dtype))
    return conv.to(bn.running_mean.device).eval()


def fold_batchnorm(model: nn.Module, standalone: str = "affine") -> tuple[nn.Module, FoldReport]:
    """Fold every BatchNorm that directly follows a convolution into it, on a deep copy.

    The input model is not changed. The copy is in eval mode. ``standalone``: "affine" turns a
    BatchNorm2d/3d that could not be folded into a 1x1 depthwise convolution, "keep" leaves it.
    Returns (folded copy, report).
    """
    if standalone not in ("affine", "keep"):
        raise ValueError(f"standalone must be 'affine' or 'keep', not {standalone!r}")
    folded = copy.deepcopy(model).eval()
    trace_error = None
    left: dict[str, str] = {}
    try:
        pairs, left = _pairs_from_fx(folded)
        method = "torch.fx"
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: use the provable fallback
        trace_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        LOG.info("torch.fx cannot trace %s (%s); folding adjacent pairs in nn.Sequential only",
                 type(model).__name__, trace_error)
        pairs = _pairs_from_sequential(folded)
        method = "nn.Sequential adjacency"
    report = FoldReport(method=method, trace_error=trace_error)
    for conv_name, bn_name in pairs:
        report.folded.append(_apply_fold(folded, conv_name, bn_name))
    folded_bns = {p.bn for p in report.folded}
    for name, module in folded.named_modules():
        if isinstance(module, _BN_TYPES) and name not in folded_bns:
            reason = left.get(name) or (
                "not provably fed by a convolution alone (model not traceable by torch.fx and the "
                "BatchNorm is not right after a convolution in a plain nn.Sequential)")
            report.left.append(LeftBatchNorm(bn=name, reason=reason))
    if standalone == "affine":
        uses = _module_use_counts(folded)
        for index, item in enumerate(report.left):
            bn = folded.get_submodule(item.bn)
            if type(bn) in _AFFINE_CONV and bn.track_running_stats and bn.running_mean is not None \
                    and uses.get(id(bn), 0) == 1:
                folded.set_submodule(item.bn, batchnorm_as_affine_conv(bn))
                report.left[index] = LeftBatchNorm(item.bn, item.reason, "1x1 depthwise conv (per-channel affine)")
    LOG.info("BN folding (%s): %d pairs folded, %d BatchNorm left", method, report.n_folded, len(report.left))
    return folded, report


def count_batchnorm(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, _BN_TYPES))
