"""Which CIO counting convention reproduces the paper's figures? An exhaustive search.

The paper defines CIO (Eq. 1) but leaves open how its depthwise-separable models were counted.
This splits every conv's input and output tensor into categories (the image, the stem's output,
3x3 convs, pointwise convs that feed a depthwise conv, other pointwise convs, stride-1 depthwise
convs, pooling depthwise convs; inputs split by whether they are concatenations) and tries every
include/exclude choice of categories, the same choice for all models, keeping those that give
every model's published CIO to the first decimal. docs/analyze.md reports the result.
"""
from __future__ import annotations

import itertools

from analysis.cio import is_pooling_depthwise
from analysis.graph import LayerRecord


def categories(layers: list[LayerRecord]) -> dict[str, int]:
    """Elements per category for one model's layers (affine and FC layers are left out)."""
    convs = [layer for layer in layers if layer.op == "conv" and layer.kind != "affine"]
    readers: dict[str, list[LayerRecord]] = {}
    for layer in convs:
        readers.setdefault(layer.source, []).append(layer)
    out: dict[str, int] = {}

    def add(key: str, value: int) -> None:
        out[key] = out.get(key, 0) + int(value)

    for i, layer in enumerate(convs):
        if i == 0:
            add("image", layer.in_elems)
            add("stem_out", layer.out_elems)
            continue
        if layer.kind == "depthwise":
            tag = "dw_pool" if is_pooling_depthwise(layer, convs) else "dw"
        elif layer.kind == "pointwise":
            feeds_dw = any(r.kind == "depthwise" for r in readers.get(layer.output, []))
            tag = "pw_to_dw" if feeds_dw else "pw"
        else:
            tag = "conv"
        add(f"{tag}_in_concat" if layer.concat_input else f"{tag}_in", layer.in_elems)
        add(f"{tag}_out", layer.out_elems)
    return out


def search(models: dict[str, list[LayerRecord]], published_m: dict[str, float]) -> list[list[str]]:
    """Every set of *excluded* categories under which all models round to their published CIO (M)."""
    cats = {name: categories(layers) for name, layers in models.items()}
    keys = sorted(set().union(*[set(c) for c in cats.values()]))
    hits = []
    for mask in itertools.product((True, False), repeat=len(keys)):
        if all(round(sum(v for k, v in cats[name].items() if mask[keys.index(k)]) / 1e6, 1)
               == round(float(published_m[name]), 1) for name in models):
            hits.append([k for k, keep in zip(keys, mask) if not keep])
    return hits
