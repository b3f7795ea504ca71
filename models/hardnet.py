"""HarDNet: Harmonic DenseNet (Chao et al., "HarDNet: A Low Memory Traffic Network", ICCV 2019).

Written in this project from the paper. The module tree (``base``, ``layers``, ``layer1`` /
``layer2``, ``conv`` / ``dwconv``, ``norm``) is laid out so that ``state_dict()`` keys and shapes
are exactly those of the authors' released ImageNet checkpoints (github.com/PingoLH/Pytorch-HarDNet),
so the official ``.pth`` files load unchanged, e.g. ``base.0.conv.weight``,
``base.0.norm.running_var``, ``base.3.layers.0.layer1.conv.weight`` (DS models).

The architecture in brief:

* Harmonic links: inside a block, layer ``k`` (1-based; layer 0 is the block input) takes the
  concatenation of layers ``k - 2**n`` for every ``n`` with ``2**n`` dividing ``k``.
* Layer ``k`` outputs ``growth * m**n`` channels (``n`` the largest such exponent), rounded to an
  even number; ``m`` is 1.6 for HarDNet39DS and 1.7 otherwise.
* The block outputs the concatenation of its odd layers and its last layer (not its input).
* Every layer is Conv-BN-ReLU6 (3x3); in the depthwise-separable (DS) variants a layer is a 1x1
  Conv-BN-ReLU6 followed by a 3x3 depthwise conv with BN and no activation.
* A 1x1 Conv-BN-ReLU6 transition follows every block; downsampling is a stride-2 depthwise conv
  with BN (DS) or max-pooling (68 / 85).
* Head: global average pool to 1x1, flatten, dropout, linear.

The forward pass is a fixed sequence over static lists (no data-dependent control flow), so it
traces and exports to ONNX cleanly; BatchNorm modules sit directly after each convolution so that
``export/`` can fold them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.registry import ModelCard, register_model

__all__ = [
    "HarDNet",
    "HarDNetConfig",
    "HARDNET_CONFIGS",
    "harmonic_links",
    "harmonic_width",
    "hardnet39ds",
    "hardnet68ds",
    "hardnet68",
    "hardnet85",
]


# ------------------------------------------------------------------------------------------------
# Harmonic connectivity
# ------------------------------------------------------------------------------------------------
def harmonic_links(k: int) -> list[int]:
    """Indices of the earlier layers that layer ``k`` (>= 1) of a block reads, nearest first.

    Layer ``k`` takes layer ``k - 2**n`` for every ``n >= 0`` with ``2**n`` dividing ``k``;
    index 0 is the block's input.
    """
    if k < 1:
        raise ValueError(f"harmonic layer index must be >= 1, got {k}")
    links = []
    step = 1
    while step <= k:
        if k % step == 0:
            links.append(k - step)
        step *= 2
    return links


def harmonic_width(k: int, growth: int, multiplier: float) -> int:
    """Output channels of layer ``k``: ``growth * multiplier**n`` rounded to an even number.

    ``n`` is the exponent of the largest power of two dividing ``k``. The multiplication is
    repeated (not ``multiplier**n``) and rounded as the released models were, so that
    floating-point ties fall the same way and the checkpoints' shapes are reproduced.
    """
    width = float(growth)
    for _ in harmonic_links(k)[1:]:
        width *= multiplier
    return int(int(width + 1) / 2) * 2


def _block_widths(in_channels: int, growth: int, multiplier: float, n_layers: int) -> list[int]:
    """Channel count of every layer of a block, index 0 being the block input."""
    return [in_channels] + [harmonic_width(k, growth, multiplier) for k in range(1, n_layers + 1)]


def _block_outputs(n_layers: int) -> list[int]:
    """Layers concatenated into a block's output: the odd ones and the last (never the input)."""
    return [k for k in range(1, n_layers + 1) if k % 2 == 1 or k == n_layers]


# ------------------------------------------------------------------------------------------------
# Layers (module and attribute names fixed by the released checkpoints)
# ------------------------------------------------------------------------------------------------
class ConvBNReLU6(nn.Sequential):
    """``conv`` (no bias) -> ``norm`` (BatchNorm) -> ``relu`` (ReLU6)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU6(inplace=True)


class DepthwiseConvBN(nn.Sequential):
    """3x3 depthwise ``dwconv`` (no bias) -> ``norm`` (BatchNorm), no activation."""

    def __init__(self, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)
        self.norm = nn.BatchNorm2d(channels)


class SeparableLayer(nn.Sequential):
    """A DS harmonic layer: ``layer1`` 1x1 Conv-BN-ReLU6, then ``layer2`` 3x3 depthwise Conv-BN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layer1 = ConvBNReLU6(in_channels, out_channels, kernel_size=1)
        self.layer2 = DepthwiseConvBN(out_channels)


class HarmonicBlock(nn.Module):
    """A HarDNet block: ``layers[k-1]`` computes layer ``k`` from its harmonic links."""

    def __init__(self, in_channels: int, growth: int, multiplier: float, n_layers: int,
                 depthwise: bool = False) -> None:
        super().__init__()
        widths = _block_widths(in_channels, growth, multiplier, n_layers)
        # Static lists, fixed at construction: the forward pass unrolls identically every call.
        self.links: list[list[int]] = [harmonic_links(k) for k in range(1, n_layers + 1)]
        self.outputs: list[int] = _block_outputs(n_layers)
        self.out_channels: int = sum(widths[k] for k in self.outputs)
        layers = []
        for k, links in enumerate(self.links, start=1):
            width_in = sum(widths[j] for j in links)
            layers.append(SeparableLayer(width_in, widths[k]) if depthwise else ConvBNReLU6(width_in, widths[k]))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer, links in zip(self.layers, self.links):
            inputs = [features[j] for j in links]
            features.append(layer(torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]))
        return torch.cat([features[k] for k in self.outputs], 1)


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HarDNetConfig:
    """One HarDNet variant, as in the paper's architecture tables and the authors' code."""

    stem: tuple[int, int]             # channels of the two stem convolutions
    growth: tuple[int, ...]           # growth rate k of each block
    n_layers: tuple[int, ...]         # harmonic layers per block
    transition: tuple[int, ...]       # channels of the 1x1 transition after each block
    downsample: tuple[bool, ...]      # downsample after the transition of each block
    multiplier: float = 1.7           # channel weighting factor m
    depthwise: bool = False           # DS variant: separable layers, depthwise-conv downsampling
    drop_rate: float = 0.1            # dropout before the classifier
    pre_transition_dropout: float = 0.0  # dropout before the last transition (HarDNet85 only)


HARDNET_CONFIGS: dict[str, HarDNetConfig] = {
    "hardnet39ds": HarDNetConfig(
        stem=(24, 48), growth=(16, 20, 64, 160), n_layers=(4, 16, 8, 4),
        transition=(96, 320, 640, 1024), downsample=(True, True, True, False),
        multiplier=1.6, depthwise=True, drop_rate=0.05),
    "hardnet68ds": HarDNetConfig(
        stem=(32, 64), growth=(14, 16, 20, 40, 160), n_layers=(8, 16, 16, 16, 4),
        transition=(128, 256, 320, 640, 1024), downsample=(True, False, True, True, False),
        depthwise=True, drop_rate=0.05),
    "hardnet68": HarDNetConfig(
        stem=(32, 64), growth=(14, 16, 20, 40, 160), n_layers=(8, 16, 16, 16, 4),
        transition=(128, 256, 320, 640, 1024), downsample=(True, False, True, True, False)),
    "hardnet85": HarDNetConfig(
        stem=(48, 96), growth=(24, 24, 28, 36, 48, 256), n_layers=(8, 16, 16, 16, 16, 4),
        transition=(192, 256, 320, 480, 720, 1280), downsample=(True, False, True, False, True, False),
        drop_rate=0.2, pre_transition_dropout=0.1),
}


class HarDNet(nn.Module):
    """HarDNet classifier; every stage lives in the ``nn.ModuleList`` ``base`` and runs in order."""

    def __init__(self, config: HarDNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        c = config
        stages: list[nn.Module] = [
            ConvBNReLU6(3, c.stem[0], kernel_size=3, stride=2),
            # DS variants use a 1x1 second stem conv; 68/85 a 3x3.
            ConvBNReLU6(c.stem[0], c.stem[1], kernel_size=1 if c.depthwise else 3),
            DepthwiseConvBN(c.stem[1], stride=2) if c.depthwise else nn.MaxPool2d(3, stride=2, padding=1),
        ]
        channels = c.stem[1]
        last = len(c.n_layers) - 1
        for i, (growth, n_layers, transition, down) in enumerate(
                zip(c.growth, c.n_layers, c.transition, c.downsample)):
            block = HarmonicBlock(channels, growth, c.multiplier, n_layers, depthwise=c.depthwise)
            stages.append(block)
            if i == last and c.pre_transition_dropout > 0:
                stages.append(nn.Dropout(c.pre_transition_dropout))
            stages.append(ConvBNReLU6(block.out_channels, transition, kernel_size=1))
            channels = transition
            if down:
                stages.append(DepthwiseConvBN(channels, stride=2) if c.depthwise else nn.MaxPool2d(2, stride=2))
        stages.append(nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(1),
            nn.Dropout(c.drop_rate),
            nn.Linear(channels, num_classes),
        ))
        self.base = nn.ModuleList(stages)

    @property
    def classifier(self) -> nn.Linear:
        """The final linear layer (replace it to fine-tune on another label set)."""
        head = self.base[-1]
        assert isinstance(head, nn.Sequential)
        linear = head[-1]
        assert isinstance(linear, nn.Linear)
        return linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.base:
            x = stage(x)
        return x


# ------------------------------------------------------------------------------------------------
# Model cards and registration
# ------------------------------------------------------------------------------------------------
_README = "PingoLH/Pytorch-HarDNet README, ImageNet results tables (commit de9662f)"
_PAPER = "Chao et al., HarDNet, ICCV 2019 (arXiv:1909.00948)"
# CIO (convolutional input/output, millions of elements at 224x224) is the paper's memory-traffic
# metric; the figures were quoted from the paper by this project's issue and could not be re-read
# from the paper text here, so the card says so.
_CIO = _PAPER + ", CIO at 224x224, as quoted by the project issue (not re-checked against the paper)"
_NANO = ("Jetson Nano, TensorRT, mean of 500 iterations at 320x320, per " + _README)

# Smallest square side each variant runs on (measured: tests/models/test_cards.py sweeps it). The DS
# variants downsample only with padded stride-2 convolutions, which never reach zero; 68 and 85 end
# with floor-ing 2x2 max-pools. Any side at or above the minimum works (no multiple needed); the
# total stride is 32, so sides that are multiples of 32 avoid truncated borders.
_CARDS = {
    "hardnet39ds": ModelCard(
        name="hardnet39ds", family="hardnet",
        description="HarDNet39DS: depthwise-separable HarDNet, m=1.6 (Nano pair of MobileNetV2 1.0x)",
        min_size=1, size_multiple=1, total_stride=32,
        published={
            "params": 3_488_228, "params_m": 3.5, "gmacs_224": 0.44, "top1": 72.1, "nano_trt_ms_320": 32.5,
            "cio_224_m": 8.2,
            "source": {
                "params": "exact count of the released checkpoint; 3.5M in " + _README,
                "gmacs_224": _README, "top1": _README, "nano_trt_ms_320": _NANO,
                "cio_224_m": _CIO,
            },
        }),
    "hardnet68ds": ModelCard(
        name="hardnet68ds", family="hardnet",
        description="HarDNet68DS: depthwise-separable HarDNet68 (Nano pair of MobileNetV2 1.4x)",
        min_size=1, size_multiple=1, total_stride=32,
        published={
            "params": 4_180_602, "params_m": 4.2, "gmacs_224": 0.8, "top1": 74.3, "nano_trt_ms_320": 52.6,
            "cio_224_m": 15.3,
            "source": {
                "params": "exact count of the released checkpoint; 4.2M in " + _README,
                "gmacs_224": _README, "top1": _README, "nano_trt_ms_320": _NANO,
                "cio_224_m": _CIO,
            },
        }),
    "hardnet68": ModelCard(
        name="hardnet68", family="hardnet",
        description="HarDNet68: Conv3x3 HarDNet, m=1.7, max-pool downsampling",
        min_size=29, size_multiple=1, total_stride=32,
        published={
            "params": 17_565_348, "params_m": 17.6, "gmacs_224": 4.3, "top1": 76.5, "cio_224_m": 11.5,
            "gpu_ms_1024": 22.5,
            "source": {
                "params": "exact count of the released checkpoint; 17.6M in " + _README,
                "gmacs_224": _README, "top1": _README,
                "gpu_ms_1024": "GTX 1080 Ti, PyTorch 1.1, 1024x1024, per " + _README,
                "cio_224_m": _CIO,
            },
        }),
    "hardnet85": ModelCard(
        name="hardnet85", family="hardnet",
        description="HarDNet85: the largest Conv3x3 HarDNet, m=1.7, max-pool downsampling",
        min_size=29, size_multiple=1, total_stride=32,
        published={
            "params": 36_670_212, "params_m": 36.7, "gmacs_224": 9.1, "top1": 78.0, "gpu_ms_1024": 38.0,
            "source": {
                "params": "exact count of the released checkpoint; 36.7M in " + _README,
                "gmacs_224": _README, "top1": _README,
                "gpu_ms_1024": "GTX 1080 Ti, PyTorch 1.1, 1024x1024, per " + _README,
            },
        }),
}


def _factory(name: str):
    config = HARDNET_CONFIGS[name]

    @register_model(_CARDS[name])
    def build(num_classes: int = 1000) -> HarDNet:
        return HarDNet(config, num_classes=num_classes)

    build.__name__ = name
    build.__qualname__ = name
    build.__doc__ = f"{_CARDS[name].description}; randomly initialised."
    return build


hardnet39ds = _factory("hardnet39ds")
hardnet68ds = _factory("hardnet68ds")
hardnet68 = _factory("hardnet68")
hardnet85 = _factory("hardnet85")
