"""Model registry and model cards.

A model card holds what deployment needs to know about a model (input size, preprocessing,
classes, published reference figures), kept apart from the module as timm keeps its pretrained
configs. The registry refuses unknown and duplicate names.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from deploy.errors import UnknownNameError
from deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str                       # "hardnet", "mobilenetv2", "resnet", "densenet", "user"
    description: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    num_classes: int = 1000
    labels: str | None = "imagenet"  # "imagenet" -> ImageNet-1k names; None -> class indices
    # Published reference figures, each with its source, e.g.
    # {"params": 3488228, "top1": 72.1, "nano_trt_ms_320": 32.5, "source": "HarDNet paper, Table X"}
    published: dict[str, Any] = field(default_factory=dict)
    min_size: int = 32                # smallest square input the network takes
    size_multiple: int = 32           # input side must be a multiple of this (total stride)

    def preprocess_config(self, size: int | None = None) -> PreprocessConfig:
        return PreprocessConfig(
            size=int(size or self.input_size[-1]),
            crop_pct=self.crop_pct,
            mean=tuple(self.mean),
            std=tuple(self.std),
            interpolation=self.interpolation,
        )


ModelFactory = Callable[..., Any]  # (num_classes: int) -> torch.nn.Module

_REGISTRY: dict[str, tuple[ModelCard, ModelFactory]] = {}


def register_model(card: ModelCard) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register ``fn(num_classes=...) -> nn.Module`` under ``card.name``."""

    def decorator(fn: ModelFactory) -> ModelFactory:
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} is already registered")
        _REGISTRY[card.name] = (card, fn)
        return fn

    return decorator


def _ensure_loaded() -> None:
    # Importing the zoo modules runs their @register_model decorators.
    from models import hardnet, torchvision_models  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[ModelCard, ModelFactory]:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown model {name!r}",
            hint=f"choose from: {', '.join(sorted(_REGISTRY))}, or give --model package.module:function",
        ) from None


def get_model_card(name: str) -> ModelCard:
    return _lookup(name)[0]


def create_model(name: str, num_classes: int = 1000, weights: str | None = None):
    """Build a registered model; with ``weights``, load a checkpoint safely into it."""
    card, factory = _lookup(name)
    if weights is not None:
        from models.weights import load_checkpoint_into

        return load_checkpoint_into(name, factory, weights, num_classes=num_classes)
    return factory(num_classes=num_classes)
