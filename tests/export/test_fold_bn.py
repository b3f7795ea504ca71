"""BatchNorm folding: per pair against torch's fuse_conv_bn_eval, end to end, and on every zoo model."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from export.fold_bn import batchnorm_as_affine_conv, count_batchnorm, fold_batchnorm, fold_conv_bn_weights


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return model.eval()


CONV_CASES = {
    "plain": dict(in_channels=6, out_channels=8, groups=1),
    "grouped": dict(in_channels=6, out_channels=9, groups=3),
    "depthwise": dict(in_channels=6, out_channels=6, groups=6),
    "depthwise_multiplier": dict(in_channels=4, out_channels=8, groups=4),
}


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_pair_matches_fuse_conv_bn_eval(case, bias):
    torch.manual_seed(1)
    cfg = CONV_CASES[case]
    conv = nn.Conv2d(cfg["in_channels"], cfg["out_channels"], 3, padding=1, groups=cfg["groups"], bias=bias)
    bn = nn.BatchNorm2d(cfg["out_channels"], eps=1e-3)
    model = randomize_bn(nn.Sequential(conv, bn), seed=2)
    folded, report = fold_batchnorm(model)

    reference = fuse_conv_bn_eval(model[0], model[1])
    assert torch.allclose(folded[0].weight, reference.weight, rtol=1e-5, atol=1e-6)
    assert torch.allclose(folded[0].bias, reference.bias, rtol=1e-5, atol=1e-6)
    assert isinstance(folded[1], nn.Identity)
    assert report.n_folded == 1 and not report.left
    expected_kind = "depthwise" if case.startswith("depthwise") else case
    assert report.folded[0].kind == expected_kind
    assert report.folded[0].conv_had_bias is bias
    # The original model is untouched.
    assert isinstance(model[1], nn.BatchNorm2d) and (model[0].bias is not None) is bias


def test_fold_weights_without_affine():
    conv = nn.Conv2d(3, 4, 1, bias=False)
    bn = randomize_bn(nn.BatchNorm2d(4, affine=False))
    weight, bias = fold_conv_bn_weights(conv, bn)
    reference = fuse_conv_bn_eval(conv.eval(), bn)
    assert torch.allclose(weight, reference.weight, atol=1e-6)
    assert torch.allclose(bias, reference.bias, atol=1e-6)


class ConcatNet(nn.Module):
    """HarDNet-like custom forward: concatenations, a pre-activation BN and a conv read twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.b_conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=True)
        self.b_bn = nn.BatchNorm2d(8)
        self.shared_conv = nn.Conv2d(16, 4, 1)
        self.shared_bn = nn.BatchNorm2d(4)
        self.pre_bn = nn.BatchNorm2d(16)          # follows a concatenation: cannot be folded
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        a = self.a(x)
        b = self.b_bn(self.b_conv(a))
        cat = torch.cat([a, b], 1)
        y = self.shared_conv(torch.relu(self.pre_bn(cat)))
        y = self.shared_bn(y) + y               # the conv output is read twice: not foldable
        return self.head(y.mean((2, 3)))


def test_end_to_end_custom_forward_with_concat():
    model = randomize_bn(ConcatNet(), seed=3)
    folded, report = fold_batchnorm(model, standalone="keep")
    assert report.method == "torch.fx"
    assert {p.bn for p in report.folded} == {"a.1", "b_bn"}
    left = {item.bn: item.reason for item in report.left}
    assert set(left) == {"pre_bn", "shared_bn"}
    assert "not a convolution" in left["pre_bn"]
    assert "also read" in left["shared_bn"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), rtol=1e-4, atol=1e-5)

    affine, report2 = fold_batchnorm(model)   # default: leftovers become 1x1 depthwise convs
    assert count_batchnorm(affine) == 0
    assert all(item.replaced_by for item in report2.left)
    with torch.no_grad():
        assert torch.allclose(affine(x), model(x), rtol=1e-4, atol=1e-5)


def test_batchnorm_as_affine_conv_matches():
    bn = randomize_bn(nn.BatchNorm2d(5), seed=4)
    x = torch.randn(2, 5, 4, 4)
    with torch.no_grad():
        assert torch.allclose(batchnorm_as_affine_conv(bn)(x), bn(x), atol=1e-5)


class Untraceable(nn.Module):
    """Data-dependent control flow defeats torch.fx; the nn.Sequential fallback must still fold."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.conv = nn.Conv2d(6, 6, 1)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x):
        y = self.body(x)
        if y.sum() > 0:  # data-dependent branch
            y = y * 2
        return self.bn(self.conv(y))


def test_untraceable_model_falls_back_to_sequential_pairs():
    model = randomize_bn(Untraceable(), seed=5)
    folded, report = fold_batchnorm(model, standalone="keep")
    assert report.method == "nn.Sequential adjacency" and report.trace_error
    assert [(p.conv, p.bn) for p in report.folded] == [("body.0", "body.1")]
    assert [item.bn for item in report.left] == ["bn"]
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), rtol=1e-4, atol=1e-5)
    d = report.to_dict()
    assert d["folded"] == 1 and d["left"][0]["bn"] == "bn" and d["left_as_batchnorm"] == 1


_BIG = {"hardnet68", "hardnet85", "resnet50", "densenet121"}  # seconds each just to initialise


def _zoo_names():
    from models.registry import list_models

    return [pytest.param(n, marks=pytest.mark.slow) if n in _BIG else n for n in list_models()]


@pytest.mark.parametrize("name", _zoo_names())
def test_zoo_model_has_no_batchnorm_after_folding(name):
    from models.registry import create_model

    torch.manual_seed(0)
    model = randomize_bn(create_model(name), seed=6)
    folded, report = fold_batchnorm(model)
    assert count_batchnorm(model) > 0
    assert count_batchnorm(folded) == 0
    assert report.n_folded > 0
    if name.startswith(("hardnet", "mobilenet")):
        assert not report.left, report.left   # every BN there follows a conv
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            ref, out = model(x), folded(x)
        scale = float(ref.abs().max())
        assert float((ref - out).abs().max()) <= 1e-4 * max(scale, 1.0)
