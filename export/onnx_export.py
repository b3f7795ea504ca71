"""PyTorch -> ONNX at a given opset, written atomically and checked with onnx.checker (full check).

We use the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it emits the
requested opset (13 for TensorRT 8.2) directly, is fast for convolutional classifiers, and keeps the
input/output names and dynamic batch axis we ask for. The dynamo exporter builds at opset 18 and
down-converts, which adds time and a conversion step we would then have to verify too.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deploy.atomic import atomic_path, sha256_file
from deploy.errors import ExportError

LOG = logging.getLogger(__name__)

DEFAULT_INPUT_SHAPE = (1, 3, 320, 320)


@dataclass
class ExportRecord:
    path: str
    sha256: str
    opset: int
    input_name: str
    output_name: str
    input_shape: list[Any]        # "batch" in place of the batch size when dynamic
    output_shape: list[Any]
    dynamic_batch: bool
    nodes: int
    ops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256, "opset": self.opset, "nodes": self.nodes,
            "input": {"name": self.input_name, "shape": self.input_shape, "dynamic_batch": self.dynamic_batch},
            "output": {"name": self.output_name, "shape": self.output_shape},
            "ops": self.ops,
        }


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (exporter and checker messages run long), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def graph_io_shape(value_info) -> list[Any]:
    dims = []
    for dim in value_info.type.tensor_type.shape.dim:
        dims.append(int(dim.dim_value) if dim.HasField("dim_value") else (dim.dim_param or None))
    return dims


def check_onnx_file(path: str, label: str = "ONNX model"):
    """onnx.checker with full_check (includes strict shape inference). Returns the loaded model."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        return onnx.load(str(path))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{label} fails onnx.checker: {first_line(exc)}",
                          hint="this is a bug in the export of this model; run `python pipeline.py -v build ...` and report it") from exc


def export_onnx(model: nn.Module, path: str, *, input_shape=DEFAULT_INPUT_SHAPE, opset: int = 13,
                dynamic_batch: bool = False, input_name: str = "input",
                output_name: str = "logits") -> ExportRecord:
    """Export ``model`` (eval mode) to ``path`` atomically; the file exists only if it passed the checker."""
    from export.opset_check import op_histogram

    input_shape = tuple(int(v) for v in input_shape)
    model = model.eval()
    dummy = torch.zeros(input_shape, dtype=torch.float32)
    dynamic_axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    with atomic_path(path) as tmp:
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript exporter deprecation notices
                torch.onnx.export(
                    model, (dummy,), tmp, dynamo=False, opset_version=int(opset),
                    input_names=[input_name], output_names=[output_name], dynamic_axes=dynamic_axes,
                    do_constant_folding=True, export_params=True,
                )
        except (RuntimeError, TypeError, ValueError, torch.onnx.errors.OnnxExporterError) as exc:
            raise ExportError(f"torch.onnx.export failed for {type(model).__name__} at opset {opset}: "
                              f"{first_line(exc)}",
                              hint="the model uses an operation the exporter cannot write at this opset; "
                                   "run `python pipeline.py -v build ...` for the full trace") from exc
        onnx_model = check_onnx_file(tmp, label=f"exported {os.path.basename(path)}")
        graph = onnx_model.graph
        if [i.name for i in graph.input] != [input_name] or [o.name for o in graph.output] != [output_name]:
            raise ExportError(
                f"exported graph has inputs {[i.name for i in graph.input]} and outputs "
                f"{[o.name for o in graph.output]}, expected [{input_name!r}] and [{output_name!r}]",
                hint="the model must take one image tensor and return one logits tensor")
        record = ExportRecord(
            path=str(path), sha256=sha256_file(tmp), opset=int(opset), input_name=input_name,
            output_name=output_name, input_shape=graph_io_shape(graph.input[0]),
            output_shape=graph_io_shape(graph.output[0]), dynamic_batch=bool(dynamic_batch),
            nodes=len(graph.node), ops=op_histogram(onnx_model),
        )
    LOG.debug("exported %s: %d nodes, opset %d", path, record.nodes, opset)
    return record
