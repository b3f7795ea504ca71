"""onnx-simplifier (onnxsim) as a stage: constant folding and graph clean-up, then checked again.

onnxsim's own random-input comparison is switched off (``check_n=0``): the build compares the
simplified graph with the eager PyTorch model in export.parity, on the same seeded inputs as every
other stage, which is the stronger check.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from deploy.atomic import atomic_path, sha256_file
from deploy.errors import ExportError

LOG = logging.getLogger(__name__)


@dataclass
class SimplifyRecord:
    path: str
    sha256: str
    nodes_before: int
    nodes_after: int
    opset: int | None
    ops: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"tool": "onnxsim", "nodes_before": self.nodes_before, "nodes_after": self.nodes_after}


def simplify_onnx(in_path: str, out_path: str) -> SimplifyRecord:
    """Simplify ``in_path`` into ``out_path`` (atomic; may be the same path). Raises ExportError."""
    import onnx
    import onnxsim

    from export.onnx_export import check_onnx_file, first_line
    from export.opset_check import main_opset, op_histogram

    model = onnx.load(str(in_path))
    nodes_before = len(model.graph.node)
    opset_before = main_opset(model)
    try:
        simplified, ok = onnxsim.simplify(model, check_n=0)
    except Exception as exc:  # noqa: BLE001 - onnxsim raises bare RuntimeError/ValueError/its own types
        raise ExportError(f"onnxsim failed on {in_path}: {first_line(exc)}",
                          hint="report the model; the unsimplified export is still valid for debugging") from exc
    if not ok:
        raise ExportError(f"onnxsim could not validate the simplified {in_path}",
                          hint="report the model; run `python pipeline.py -v build ...` for details")
    if main_opset(simplified) != opset_before:
        raise ExportError(f"onnxsim changed the opset of {in_path} from {opset_before} to {main_opset(simplified)}",
                          hint="pin an onnxsim version that keeps the opset (see requirements.txt)")
    with atomic_path(out_path) as tmp:
        onnx.save(simplified, tmp)
        checked = check_onnx_file(tmp, label=f"simplified {out_path}")
        record = SimplifyRecord(path=str(out_path), sha256=sha256_file(tmp), nodes_before=nodes_before,
                                nodes_after=len(checked.graph.node), opset=main_opset(checked),
                                ops=op_histogram(checked))
    LOG.debug("simplified %s: %d -> %d nodes", out_path, nodes_before, record.nodes_after)
    return record
