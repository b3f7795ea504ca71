"""``analyze`` on every registered model, cross-checked against PyTorch, and the paper's CIO reproduced.

Each model is exported once, at 64x64 (fast); the paper's 224x224 figures come from the same graph
with its shapes re-inferred at 224 (``set_input_size``), which the size-independence test justifies.
"""
from __future__ import annotations

import io
import warnings

import onnx
import pytest
import torch
from torch import nn

from analysis.graph import set_input_size
from analysis.paper import mobilenetv2_floor_widths
from analysis.report import analyze_model, baseline_rows, nano_pair_rows, paper_cio_rows
from analysis.roofline import HARDWARE
from analysis.sources import from_registry
from export.fold_bn import fold_batchnorm
from models import create_model, get_model_card, list_models

NANO = HARDWARE["jetson-nano"]
SMALL = 64


@pytest.fixture(scope="module")
def exported():
    return {name: from_registry(name, SMALL) for name in list_models()}


def _torch_counts(model: nn.Module, size: int) -> tuple[int, int]:
    """(Eq. 1 CIO over every Conv2d, conv + linear MACs) from forward hooks: independent of ONNX."""
    totals = {"cio": 0, "macs": 0}

    def conv_hook(mod, inp, out):
        totals["cio"] += inp[0].numel() + out.numel()
        totals["macs"] += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    def fc_hook(mod, inp, out):
        totals["macs"] += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else fc_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return totals["cio"], totals["macs"]


@pytest.mark.parametrize("name", list_models())
def test_analyze_runs_on_every_registered_model(exported, name):
    src = exported[name]
    a = analyze_model(src.model, name, NANO, "fp16", convention="eq1", family=src.family, published=src.published)
    model = create_model(name)
    cio, macs = _torch_counts(model, SMALL)
    folded, _ = fold_batchnorm(model)
    assert a.params == sum(p.numel() for p in folded.parameters()), "params differ from the folded PyTorch model"
    assert a.input_shape == [1, 3, SMALL, SMALL]
    assert a.cio == cio, "ONNX-derived CIO differs from the PyTorch forward-hook count"
    assert a.macs == macs, "ONNX-derived MACs differ from the PyTorch forward-hook count"
    assert a.params > 0 and a.predicted_ms > 0 and 0 <= a.share_below <= 1
    assert a.conv_layers == len([r for r in a.layers if r["counted"]]) > 0
    assert all(r["bound"] in ("memory", "compute") for r in a.layers)
    paper = analyze_model(src.model, name, NANO, "fp16", convention="paper")
    if not name.endswith("ds"):  # only HarDNet-DS has depthwise convs standing in for pooling
        assert paper.cio == a.cio
    else:
        assert paper.cio < a.cio


@pytest.mark.slow
def test_shapes_reinferred_at_224_match_an_export_at_224():
    direct = from_registry("hardnet39ds", 224).model
    small = from_registry("hardnet39ds", SMALL).model
    a = analyze_model(direct, "d", NANO, "fp16")
    b = analyze_model(set_input_size(small, 224), "r", NANO, "fp16")
    assert (a.cio, a.macs, a.params) == (b.cio, b.macs, b.params)


def test_paper_cio_reproduced_at_224(exported):
    analyses = []
    for name in ("hardnet68", "mobilenetv2", "hardnet39ds", "hardnet68ds"):
        src = exported[name]
        analyses.append(analyze_model(set_input_size(src.model, 224), name, NANO, "fp16",
                                      family=src.family, published=src.published))
    rows = {r["model"]: r for r in paper_cio_rows(analyses)}
    assert set(rows) == {"hardnet68", "mobilenetv2", "hardnet39ds", "hardnet68ds"}
    for name, row in rows.items():
        assert row["match_1dp"], f"{name}: CIO {row['cio_m']} M, paper {row['paper_cio_m']} M"
    macs = {a.model: a.macs for a in analyses}
    assert round(macs["hardnet68"] / 1e9, 2) == 4.25
    assert round(macs["mobilenetv2"] / 1e9, 2) == 0.30


def test_paper_mobilenetv2_140_needs_floored_widths(exported):
    published = get_model_card("mobilenetv2_140").published["cio_224_m"]
    tv = analyze_model(set_input_size(exported["mobilenetv2_140"].model, 224), "tv", NANO, "fp16")
    assert round(tv.cio / 1e6, 1) != published          # torchvision's width rounding: 19.2 M
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mobilenetv2_floor_widths(1.4).eval(), torch.zeros(1, 3, SMALL, SMALL), buf,
                          dynamo=False, opset_version=13)
    floor = analyze_model(set_input_size(onnx.load_from_string(buf.getvalue()), 224), "floor", NANO, "fp16")
    assert round(floor.cio / 1e6, 1) == published


def test_baselines_and_nano_pairs(exported):
    names = ("hardnet68", "resnet50", "densenet121", "hardnet39ds", "mobilenetv2", "hardnet68ds", "mobilenetv2_140")
    analyses = [analyze_model(exported[n].model, n, NANO, "fp16", family=exported[n].family,
                              published=exported[n].published) for n in names]
    base = {(r["model"], r["baseline"]): r for r in baseline_rows(analyses)}
    assert ("hardnet68", "resnet50") in base and ("hardnet68", "densenet121") in base
    r = base[("hardnet68", "densenet121")]
    assert r["cio_reduction"] == pytest.approx(1 - r["cio_m"] / r["baseline_cio_m"])
    pairs = nano_pair_rows(analyses)
    assert [p["pair"] for p in pairs] == ["hardnet39ds / mobilenetv2", "hardnet68ds / mobilenetv2_140"]
    assert pairs[0]["measured_ratio"] == pytest.approx(32.5 / 37.9)
    assert not pairs[0]["comparable"]                   # 64x64 is not the paper's 320x320


def test_convention_search_finds_the_pooling_depthwise_rule(exported):
    from analysis.convention_search import search
    from analysis.graph import analyze_graph

    names = ("hardnet39ds", "hardnet68ds")
    layers = {n: analyze_graph(set_input_size(exported[n].model, 224)).layers for n in names}
    hits = search(layers, {n: exported[n].published["cio_224_m"] for n in names})
    assert [] not in hits                              # plain Eq. 1 over every conv does not reproduce them
    assert ["dw_pool_in", "dw_pool_out"] in hits       # leaving out the pooling depthwise convs does
    assert len(hits) <= 8                              # and few other category choices do
