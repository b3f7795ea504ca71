"""The zoo's networks: exact parameter counts, HarDNet's checkpoint layout, forward passes, sizes."""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
import torch
from torch import nn

from models.hardnet import HARDNET_CONFIGS, HarDNet, harmonic_links, harmonic_width
from models.registry import get_model_card, list_models

# Exact counts with 1000 classes: the released HarDNet checkpoints (PingoLH/Pytorch-HarDNet) and
# torchvision's MobileNetV2 / ResNet-50 / DenseNet-121 weights metadata.
PARAMS = {
    "hardnet39ds": 3_488_228,
    "hardnet68ds": 4_180_602,
    "hardnet68": 17_565_348,
    "hardnet85": 36_670_212,
    "mobilenetv2": 3_504_872,
    "mobilenetv2_140": 6_108_776,
    "resnet50": 25_557_032,
    "densenet121": 7_978_856,
}

# sha256 of the "key:shape" lines (state_dict order, shape as AxBxC) of the authors' own HarDNet
# (PingoLH/Pytorch-HarDNet hardnet.py at commit de9662f, pretrained=False) -- the layout of the
# released .pth files. Our module must reproduce it exactly for the official weights to load.
AUTHORS_LAYOUT_SHA256 = {
    "hardnet39ds": ("b0fa1a7b817938084b43f6f0dcba51f80530964b639aa4949863236843fc14c1", 446),
    "hardnet68ds": ("5bf2a1bb2c2e8936f49f9e2a237554cbbb6d313bcdad228f2fc8e20cb81397ab", 788),
    "hardnet68": ("548263b495ba716b5f9fa54633b7971cfe84015e22d8932aa328e4912bce0249", 404),
    "hardnet85": ("ad0c520996368887ed11a2a16bb2a11d1dc613c7ac25fb06c72080ac5155f39c", 506),
}

# Sample keys and shapes of the released checkpoints.
KEY_SAMPLES = {
    "hardnet39ds": {"base.0.conv.weight": (24, 3, 3, 3), "base.0.norm.running_var": (24,),
                    "base.2.dwconv.weight": (48, 1, 3, 3),
                    "base.3.layers.0.layer1.conv.weight": (16, 48, 1, 1),
                    "base.3.layers.0.layer2.dwconv.weight": (16, 1, 3, 3),
                    "base.14.3.weight": (1000, 1024)},
    "hardnet68ds": {"base.0.conv.weight": (32, 3, 3, 3), "base.0.norm.running_var": (32,),
                    "base.3.layers.0.layer1.conv.weight": (14, 64, 1, 1),
                    "base.16.3.weight": (1000, 1024)},
    "hardnet68": {"base.0.conv.weight": (32, 3, 3, 3), "base.1.conv.weight": (64, 32, 3, 3),
                  "base.3.layers.0.conv.weight": (14, 64, 3, 3), "base.16.3.weight": (1000, 1024)},
    "hardnet85": {"base.0.conv.weight": (48, 3, 3, 3), "base.3.layers.0.conv.weight": (24, 96, 3, 3),
                  "base.19.3.weight": (1000, 1280)},
}

HARDNETS = list(HARDNET_CONFIGS)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts_are_exact(name: str, zoo_model: Callable[[str], nn.Module]) -> None:
    assert _count(zoo_model(name)) == PARAMS[name]
    assert get_model_card(name).published["params"] == PARAMS[name]


def test_every_registered_model_has_a_count() -> None:
    assert sorted(PARAMS) == list_models()


def test_harmonic_links_follow_the_paper() -> None:
    assert harmonic_links(1) == [0]
    assert harmonic_links(2) == [1, 0]
    assert harmonic_links(3) == [2]
    assert harmonic_links(4) == [3, 2, 0]
    assert harmonic_links(6) == [5, 4]
    assert harmonic_links(8) == [7, 6, 4, 0]
    assert harmonic_links(12) == [11, 10, 8]
    with pytest.raises(ValueError):
        harmonic_links(0)


def test_harmonic_width_rounds_to_even() -> None:
    assert harmonic_width(1, 16, 1.6) == 16                 # odd layer: growth
    assert harmonic_width(2, 16, 1.6) == 26                 # 25.6 -> 26
    assert harmonic_width(4, 16, 1.6) == 40                 # 40.96 -> 40
    assert harmonic_width(8, 14, 1.7) == 68                 # 68.782 -> 68
    assert all(harmonic_width(k, 20, 1.7) % 2 == 0 for k in range(1, 17))


@pytest.mark.parametrize("name", HARDNETS)
def test_hardnet_state_dict_layout_is_the_released_one(name: str, zoo_model: Callable[[str], nn.Module]) -> None:
    state = zoo_model(name).state_dict()
    for key, shape in KEY_SAMPLES[name].items():
        assert key in state, f"{name} lacks {key}"
        assert tuple(state[key].shape) == shape, key
    text = "\n".join(f"{k}:{'x'.join(str(d) for d in v.shape)}" for k, v in state.items())
    digest, count = AUTHORS_LAYOUT_SHA256[name]
    assert len(state) == count
    assert hashlib.sha256(text.encode()).hexdigest() == digest


@pytest.mark.parametrize("name", HARDNETS)
def test_hardnet_layers_are_conv_bn_pairs(name: str, zoo_model: Callable[[str], nn.Module]) -> None:
    """Every convolution is followed directly by its BatchNorm (export/ folds the pairs)."""
    model = zoo_model(name)
    modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    assert len(modules) == 2 * len(convs)
    for conv, norm in zip(modules[::2], modules[1::2]):
        assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
        assert conv.bias is None and norm.num_features == conv.out_channels
    acts = {type(m) for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))}
    assert acts == {nn.ReLU6}
    if HARDNET_CONFIGS[name].depthwise:
        assert any(c.groups == c.in_channels > 1 and c.stride == (2, 2) for c in convs)
        assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    else:
        assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) >= 2


@pytest.mark.parametrize("name", ["hardnet39ds", "hardnet68ds", "mobilenetv2", "mobilenetv2_140"])
@pytest.mark.parametrize("size", [224, 320])
def test_forward_shape(name: str, size: int, zoo_model: Callable[[str], nn.Module]) -> None:
    model = zoo_model(name)
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


def test_hardnet_head_follows_num_classes() -> None:
    model = HarDNet(HARDNET_CONFIGS["hardnet39ds"], num_classes=10).eval()
    assert model.classifier.out_features == 10
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(ValueError):
        HarDNet(HARDNET_CONFIGS["hardnet39ds"], num_classes=0)


@pytest.mark.parametrize("name", list(PARAMS))
def test_min_size_is_the_real_limit(name: str, zoo_model: Callable[[str], nn.Module]) -> None:
    """The card's min_size runs, one less does not, and a side that is no multiple of 32 runs."""
    card = get_model_card(name)
    model = zoo_model(name)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, card.min_size, card.min_size)).shape == (1, 1000)
        assert model(torch.zeros(1, 3, 45, 45)).shape == (1, 1000)
        if card.min_size > 1:
            with pytest.raises(RuntimeError):
                model(torch.zeros(1, 3, card.min_size - 1, card.min_size - 1))
    assert card.size_multiple == 1 and card.total_stride == 32


def test_hardnet_traces_without_python_branches(zoo_model: Callable[[str], nn.Module]) -> None:
    """The forward pass is static: torch.fx traces it symbolically (no data-dependent branches)."""
    model = zoo_model("hardnet39ds")
    graph = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        x = torch.randn(1, 3, 96, 96)
        assert torch.equal(graph(x), model(x))
