"""torchvision baselines behind the registry: MobileNetV2 1.0x / 1.4x, ResNet-50, DenseNet-121.

The modules are torchvision's own (``weights=None``: never a download), so torchvision-format
checkpoints (``model.state_dict()`` of the same constructor) load unchanged. MobileNetV2 1.0x and
1.4x are the networks the HarDNet authors timed on the Jetson Nano against HarDNet39DS / 68DS;
ResNet-50 and DenseNet-121 are reference points for benchmarks and analysis.
"""
from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from models.registry import ModelCard, register_model

__all__ = ["mobilenetv2", "mobilenetv2_140", "resnet50", "densenet121"]

_HARDNET_README = "PingoLH/Pytorch-HarDNet README, DS results table (commit de9662f)"
_NANO = "Jetson Nano, TensorRT, mean of 500 iterations at 320x320, per " + _HARDNET_README
_MBV2_PAPER = "Sandler et al., MobileNetV2, CVPR 2018 (arXiv:1801.04381), Table 6 / Figure 5"
_HARDNET_PAPER = "Chao et al., HarDNet, ICCV 2019 (arXiv:1909.00948)"
_CIO = _HARDNET_PAPER + ", CIO at 224x224, as quoted by the project issue (not re-checked against the paper)"
_TV_META = "torchvision {} IMAGENET1K_V1 weights meta (acc@1, GFLOPS)"

# Sides: MobileNetV2 and ResNet-50 downsample only with padded stride-2 convs / pools, which run on
# any side (torchvision's meta: min_size (1, 1)); DenseNet-121's 2x2 average-pool transitions floor
# and need a side of 29 (torchvision's meta: min_size (29, 29)). tests/models/test_cards.py checks.


@register_model(ModelCard(
    name="mobilenetv2", family="mobilenetv2",
    description="MobileNetV2 1.0x (torchvision); Nano pair of HarDNet39DS",
    min_size=1, size_multiple=1, total_stride=32,
    published={
        "params": 3_504_872, "params_m": 3.5, "gmacs_224": 0.3, "top1": 72.0, "nano_trt_ms_320": 37.9,
        "cio_224_m": 13.4, "top1_torchvision": 71.878,
        "source": {
            "params": "torchvision MobileNet_V2_Weights meta num_params; 3.5M in " + _HARDNET_README,
            "gmacs_224": _HARDNET_README + " (torchvision meta: 0.301 GFLOPS)",
            "top1": _MBV2_PAPER + "; 72.0 also in " + _HARDNET_README,
            "top1_torchvision": _TV_META.format("MobileNet_V2"),
            "nano_trt_ms_320": _NANO,
            "cio_224_m": _CIO,
        },
    },
))
def mobilenetv2(num_classes: int = 1000) -> nn.Module:
    """torchvision MobileNetV2, width 1.0, randomly initialised."""
    return tvm.mobilenet_v2(weights=None, num_classes=num_classes, width_mult=1.0)


@register_model(ModelCard(
    name="mobilenetv2_140", family="mobilenetv2",
    description="MobileNetV2 1.4x (torchvision, width_mult=1.4); Nano pair of HarDNet68DS",
    min_size=1, size_multiple=1, total_stride=32,
    published={
        "params": 6_108_776, "params_m": 6.1, "gmacs_224": 0.6, "top1": 74.7, "nano_trt_ms_320": 57.8,
        "cio_224_m": 18.5,
        "source": {
            "params": "exact count of torchvision mobilenet_v2(width_mult=1.4); 6.1M in " + _HARDNET_README,
            "gmacs_224": _HARDNET_README + " (the MobileNetV2 paper gives 585M MACs)",
            "top1": _MBV2_PAPER + "; 74.7 also in " + _HARDNET_README,
            "nano_trt_ms_320": _NANO,
            "cio_224_m": _CIO,
        },
    },
))
def mobilenetv2_140(num_classes: int = 1000) -> nn.Module:
    """torchvision MobileNetV2, width 1.4, randomly initialised."""
    return tvm.mobilenet_v2(weights=None, num_classes=num_classes, width_mult=1.4)


@register_model(ModelCard(
    name="resnet50", family="resnet",
    description="ResNet-50 (torchvision); baseline for benchmarks and analysis",
    min_size=1, size_multiple=1, total_stride=32,
    published={
        "params": 25_557_032, "params_m": 25.6, "gmacs_224": 4.1, "top1": 76.2, "top1_torchvision": 76.13,
        "gpu_ms_1024": 31.0,
        "source": {
            "params": "torchvision ResNet50_Weights meta num_params",
            "gmacs_224": "PingoLH/Pytorch-HarDNet README (torchvision meta: 4.089 GFLOPS)",
            "top1": "PingoLH/Pytorch-HarDNet README results table",
            "top1_torchvision": _TV_META.format("ResNet50"),
            "gpu_ms_1024": "GTX 1080 Ti, PyTorch 1.1, 1024x1024, per PingoLH/Pytorch-HarDNet README",
        },
    },
))
def resnet50(num_classes: int = 1000) -> nn.Module:
    """torchvision ResNet-50, randomly initialised."""
    return tvm.resnet50(weights=None, num_classes=num_classes)


@register_model(ModelCard(
    name="densenet121", family="densenet",
    description="DenseNet-121 (torchvision); dense-connection baseline for HarDNet's memory traffic",
    min_size=29, size_multiple=1, total_stride=32,
    published={
        "params": 7_978_856, "params_m": 8.0, "gmacs_224": 2.834, "top1": 74.434,
        "source": {
            "params": "torchvision DenseNet121_Weights meta num_params",
            "gmacs_224": _TV_META.format("DenseNet121"),
            "top1": _TV_META.format("DenseNet121"),
        },
    },
))
def densenet121(num_classes: int = 1000) -> nn.Module:
    """torchvision DenseNet-121, randomly initialised."""
    return tvm.densenet121(weights=None, num_classes=num_classes)
