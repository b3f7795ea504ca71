"""Where ``analyze`` gets its ONNX graphs: the model registry, a bundle, or a plain .onnx file.

Every path ends in a BN-folded ONNX graph, as deployed: registry models go through the same
``export.fold_bn.fold_batchnorm`` and ``export.onnx_export.export_onnx`` (opset 13) as ``build``;
a bundle's graphs are already folded and simplified.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import onnx

from analysis.graph import GraphError, load, set_input_size
from deploy.errors import BundleError, UsageError

LOG = logging.getLogger(__name__)


@dataclass
class GraphSource:
    name: str
    model: onnx.ModelProto
    origin: str                                # "registry", "bundle <dir>" or the .onnx path
    family: str = ""
    published: dict[str, Any] = field(default_factory=dict)


def check_size(size: int, card=None) -> None:
    if size < 1:
        raise UsageError(f"--size {size} is not a positive image side", hint="use e.g. --size 224")
    if card is None:
        return
    min_size = getattr(card, "min_size", 1) or 1
    multiple = getattr(card, "size_multiple", 1) or 1
    if size < min_size or size % multiple:
        raise UsageError(f"model {card.name} cannot take a {size}x{size} input",
                         hint=f"use a size >= {min_size} that is a multiple of {multiple}, e.g. 224")


def from_registry(name: str, size: int, workdir: str | None = None) -> GraphSource:
    """Build the registered model (random weights: shapes are all analyze needs), fold BN, export."""
    from export.fold_bn import fold_batchnorm
    from export.onnx_export import export_onnx
    from models import create_model, get_model_card

    card = get_model_card(name)
    check_size(size, card)
    model = create_model(name, num_classes=card.num_classes).eval()
    folded, _report = fold_batchnorm(model)
    with tempfile.TemporaryDirectory(prefix="analyze-", dir=workdir) as tmp:
        path = os.path.join(tmp, f"{name}.onnx")
        export_onnx(folded, path, input_shape=(1, int(card.input_size[0]), size, size), opset=13)
        graph = load(path)
    return GraphSource(name=name, model=graph, origin="registry", family=card.family,
                       published=dict(card.published))


def from_bundle(root: str, names: list[str] | None, size: int | None) -> list[GraphSource]:
    """The bundle's ONNX graphs (checked against the manifest); ``size`` re-infers shapes at that size."""
    from deploy.bundle import Bundle

    bundle = Bundle.open(root)
    wanted = names or bundle.require_models()
    out = []
    for name in wanted:
        record = bundle.model(name)
        entry = record.get("onnx") or {}
        if not entry.get("path"):
            raise BundleError(f"model {name!r} in bundle {root} has no ONNX file recorded",
                              hint="rebuild the bundle with `python pipeline.py build`")
        path = bundle.verify_file(entry["path"], entry.get("sha256"))   # no sha256: refused
        graph = load(path)
        if size:
            graph = set_input_size(graph, size)
        out.append(GraphSource(name=name, model=graph, origin=f"bundle {root}", family=str(record.get("family", "")),
                               published=dict(record.get("published") or {})))
    return out


def from_onnx_file(path: str, size: int | None) -> GraphSource:
    graph = load(path)
    if size:
        graph = set_input_size(graph, size)
    name = os.path.splitext(os.path.basename(path))[0]
    return GraphSource(name=name, model=graph, origin=path)


__all__ = ["GraphError", "GraphSource", "check_size", "from_bundle", "from_onnx_file", "from_registry"]
