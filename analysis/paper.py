"""The HarDNet paper's MobileNetV2 1.4x, as its CIO figure implies it was built.

The paper gives MobileNetV2 1.4x a CIO of 18.5 M at 224x224. torchvision's
``mobilenet_v2(width_mult=1.4)`` (the registered ``mobilenetv2_140``) rounds every width to a
multiple of 8 (stem 48, stages 24/32/48/88/136/224/448) and has 19.2 M. Flooring the widths instead,
``int(c * 1.4)`` (stem 44, stages 22/33/44/89/134/224/448, last conv 1792: the rule of the widely used
pre-torchvision PyTorch MobileNetV2 ports), gives 18.49 M: the paper's 18.5 M. The CIO counting is the
same Eq. 1 in both cases; the difference is the network's channel widths, not a counting convention.

This module builds that variant from torchvision's own blocks, for the reproduction test and docs/analyze.md.
"""
from __future__ import annotations

from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.ops.misc import Conv2dNormActivation

# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2 (Sandler et al. 2018, Table 2)
_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


def mobilenetv2_floor_widths(width_mult: float = 1.4, num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 whose widths are ``int(c * width_mult)`` (floored), last conv ``int(1280 * max(1, w))``."""
    stem = int(32 * width_mult)
    last = int(1280 * max(1.0, width_mult))
    layers: list[nn.Module] = [Conv2dNormActivation(3, stem, stride=2, activation_layer=nn.ReLU6)]
    channels = stem
    for t, c, n, s in _SETTING:
        out = int(c * width_mult)
        for i in range(n):
            layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
            channels = out
    layers.append(Conv2dNormActivation(channels, last, kernel_size=1, activation_layer=nn.ReLU6))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(0.2), nn.Linear(last, num_classes))
