"""Model registry and model cards.

A model card holds what deployment needs to know about a model (input size, preprocessing,
classes, the input sizes it can take, published reference figures), kept apart from the module as
timm keeps its pretrained configs. The registry refuses unknown and duplicate names.

Entry points:

* ``list_models()`` / ``get_model_card(name)``: what is registered.
* ``create_model(name, num_classes=None, weights=None) -> nn.Module``: build (and load) a model.
* ``load_model(name, num_classes=None, weights=None) -> LoadedModel``: the same, plus the card
  adjusted to the classes actually built and a record of the weights (path, sha256, random or not)
  for the bundle manifest.
* ``label_names(card)``: the class names a card's ``labels`` stands for.
* ``check_input_size(card, size)``: refuse a square input side the network cannot take.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from deploy.errors import UnknownNameError, UsageError
from deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

if TYPE_CHECKING:  # torch is imported by the zoo modules, not needed to read cards
    from torch import nn

    from models.weights import WeightsRecord

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
    # Published reference figures, with a "source" dict naming where each figure comes from, e.g.
    # {"params": 3488228, "top1": 72.1, "nano_trt_ms_320": 32.5, "source": {"top1": "..."}}
    published: dict[str, Any] = field(default_factory=dict)
    min_size: int = 32                # smallest square input side the network runs on (measured)
    size_multiple: int = 1            # the side must be a multiple of this (1: any side >= min_size)
    total_stride: int = 32            # input side / final feature map side; multiples avoid cropped borders

    def preprocess_config(self, size: int | None = None) -> PreprocessConfig:
        return PreprocessConfig(
            size=int(size or self.input_size[-1]),
            crop_pct=self.crop_pct,
            mean=tuple(self.mean),
            std=tuple(self.std),
            interpolation=self.interpolation,
        )

    def with_num_classes(self, num_classes: int) -> ModelCard:
        """This card for a model built with ``num_classes`` outputs (ImageNet names only fit 1000)."""
        if num_classes == self.num_classes:
            return self
        labels = self.labels if (self.labels != "imagenet" or num_classes == 1000) else None
        return dataclasses.replace(self, num_classes=num_classes, labels=labels)


ModelFactory = Callable[..., Any]  # (num_classes: int) -> torch.nn.Module

_REGISTRY: dict[str, tuple[ModelCard, ModelFactory]] = {}


def register_model(card: ModelCard) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register ``fn(num_classes=...) -> nn.Module`` under ``card.name``.

    Registering a name twice is a programming error and raises ``ValueError``.
    """

    def decorator(fn: ModelFactory) -> ModelFactory:
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} is already registered")
        _REGISTRY[card.name] = (card, fn)
        return fn

    return decorator


def _ensure_loaded() -> None:
    # Importing the zoo modules runs their @register_model decorators.
    for module in ("models.hardnet", "models.torchvision_models"):
        importlib.import_module(module)


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


@dataclass(frozen=True)
class LoadedModel:
    """A built model with the card that describes it as built and where its weights came from."""

    model: nn.Module
    card: ModelCard          # num_classes / labels adjusted to the model actually built
    weights: WeightsRecord   # .to_manifest() gives the bundle's "weights" record


def load_model(name: str, num_classes: int | None = None, weights: str | Path | None = None) -> LoadedModel:
    """Build registered model ``name``, loading ``weights`` (a checkpoint path) safely if given.

    ``num_classes=None`` means: the checkpoint's classifier width when ``weights`` is given, else
    the card's default. Raises ``UnknownNameError`` (unknown name), ``UsageError`` (bad
    ``num_classes``) and ``WeightsError`` (missing, corrupt, unsafe or mismatched checkpoint).
    """
    from models.weights import load_weights_into_factory, random_weights_record

    card, factory = _lookup(name)
    if num_classes is not None and num_classes < 1:
        raise UsageError(f"--num-classes must be at least 1, got {num_classes}", hint="pass a positive class count")
    if weights is None:
        classes = card.num_classes if num_classes is None else num_classes
        model = factory(num_classes=classes)
        record = random_weights_record(classes, "card" if num_classes is None else "argument")
    else:
        model, record = load_weights_into_factory(name, factory, weights, num_classes=num_classes)
        classes = record.num_classes
    return LoadedModel(model=model, card=card.with_num_classes(classes), weights=record)


def create_model(name: str, num_classes: int | None = None, weights: str | Path | None = None) -> nn.Module:
    """Build registered model ``name``; with ``weights``, load a checkpoint safely into it.

    ``num_classes=None``: the checkpoint's when ``weights`` is given, else the card's (1000).
    """
    return load_model(name, num_classes=num_classes, weights=weights).model


# ------------------------------------------------------------------------------------------------
# Labels and input sizes
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _imagenet_categories() -> tuple[str, ...]:
    # Bundled with torchvision (no download): the 1000 ImageNet-1k class names in index order.
    from torchvision.models import MobileNet_V2_Weights

    return tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def label_names(card: ModelCard) -> list[str] | None:
    """The class names for ``card`` in output-index order, or None when it has none.

    ``"imagenet"`` gives torchvision's bundled ImageNet-1k names (only when the card has 1000
    classes); ``None`` (a fine-tuned head, a user model) gives None: report class indices.
    """
    if card.labels is None:
        return None
    if card.labels == "imagenet":
        names = list(_imagenet_categories())
        if card.num_classes != len(names):
            LOG.warning("%s has %d classes, not ImageNet's %d: no label names", card.name,
                        card.num_classes, len(names))
            return None
        return names
    raise ValueError(f"model card {card.name!r} names unknown label set {card.labels!r}")


def check_input_size(card: ModelCard, size: int) -> None:
    """Refuse a square input side that ``card``'s network cannot take (``UsageError``).

    Sides that run but are not a multiple of the total stride only log a warning: the last
    feature map then covers a truncated border.
    """
    if size < card.min_size:
        raise UsageError(
            f"{card.name} cannot take a {size}x{size} input: the smallest side it runs on is {card.min_size}",
            hint=f"pass --size {max(card.min_size, card.total_stride)} or more (its model card's side, the "
                 f"paper's, is {card.input_size[-1]})",
        )
    if size % card.size_multiple:
        lower = size - size % card.size_multiple
        raise UsageError(
            f"{card.name} cannot take a {size}x{size} input: the side must be a multiple of {card.size_multiple}",
            hint=f"pass --size {max(lower, card.min_size)} or {lower + card.size_multiple}",
        )
    if size % card.total_stride:
        LOG.warning("%s: input side %d is not a multiple of the total stride %d; borders are truncated",
                    card.name, size, card.total_stride)
