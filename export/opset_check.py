"""Static checks on an exported graph: opset, no BatchNormalization, only operators the target parses.

TENSORRT_8_2_OPS is the explicit allow-list of the ONNX operators that TensorRT 8.2's ONNX parser
supports, taken from onnx-tensorrt release 8.2-GA ``docs/operators.md`` (rows marked "Y";
NonMaxSuppression, marked experimental there, is left out on purpose). It is data, kept by hand:
when a target moves to another TensorRT release, add that release's list beside this one.
"""
from __future__ import annotations

import collections
from typing import Iterable

from deploy.errors import ExportError

TENSORRT_8_2_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
    "AveragePool", "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace",
    "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
    "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm",
    "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GRU",
    "HardSigmoid", "Identity", "If", "ImageScaler", "InstanceNormalization", "IsNaN", "LeakyRelu",
    "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool",
    "MatMul", "Max", "MaxPool", "Mean", "Min", "Mul", "Neg", "Not", "Or", "Pad",
    "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomUniform", "RandomUniformLike",
    "Range", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize",
    "ReverseSequence", "RNN", "Round", "ScaledTanh", "Scan", "Scatter", "ScatterElements",
    "ScatterND", "Selu", "Shape", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax",
    "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh",
    "ThresholdedRelu", "Tile", "TopK", "Transpose", "Unsqueeze", "Upsample", "Where",
})

# TensorRT version (as in deploy.targets profiles) -> allow-list. Targets whose TensorRT release has
# no list here are checked against the oldest list (a conservative floor) and only warned about.
ALLOWED_OPS_BY_TENSORRT = {"8.2": TENSORRT_8_2_OPS}


def allowed_ops_for(target) -> tuple[frozenset[str] | None, bool]:
    """(allow-list, strict) for a deploy.targets profile. None: no operator check (ONNX Runtime)."""
    if target.backend != "tensorrt":
        return None, False
    if target.tensorrt in ALLOWED_OPS_BY_TENSORRT:
        return ALLOWED_OPS_BY_TENSORRT[target.tensorrt], True
    return TENSORRT_8_2_OPS, False


def op_histogram(model) -> dict[str, int]:
    """{op_type: count} over the main graph and every subgraph (If/Loop/Scan bodies)."""
    counts: collections.Counter[str] = collections.Counter()

    def walk(graph):
        for node in graph.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            counts[key] += 1
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(model.graph)
    return dict(sorted(counts.items()))


def main_opset(model) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def unsupported_ops(op_types: Iterable[str], allowed: frozenset[str]) -> list[str]:
    return sorted({op for op in op_types if op not in allowed})


def check_graph(model, *, opset: int, allowed: frozenset[str] | None, label: str,
                target_label: str = "TensorRT 8.2") -> dict[str, int]:
    """Raise ExportError if the graph has BatchNormalization, another opset, or ops outside ``allowed``.

    Returns the operator histogram.
    """
    ops = op_histogram(model)
    found = main_opset(model)
    if found != opset:
        raise ExportError(f"{label}: graph has opset {found}, expected {opset}",
                          hint="export again with the target's opset (see `python pipeline.py targets`)")
    if "BatchNormalization" in ops:
        raise ExportError(
            f"{label}: graph still has {ops['BatchNormalization']} BatchNormalization node(s) after folding",
            hint="a BatchNorm was not folded into its convolution: see the bn_folding report in the manifest")
    if allowed is not None:
        bad = unsupported_ops(ops, allowed)
        if bad:
            raise ExportError(
                f"{label}: operators {', '.join(bad)} are not supported by {target_label}'s ONNX parser",
                hint="replace those layers in the model (or pick a target whose TensorRT parses them)")
    return ops
