"""Registry, model cards, labels and input-size checks."""
from __future__ import annotations

import dataclasses

import pytest

from deploy.errors import UnknownNameError, UsageError
from models import registry
from models.registry import (
    ModelCard,
    check_input_size,
    create_model,
    get_model_card,
    label_names,
    list_models,
    load_model,
    register_model,
)

ZOO = ["densenet121", "hardnet39ds", "hardnet68", "hardnet68ds", "hardnet85", "mobilenetv2", "mobilenetv2_140",
       "resnet50"]
NANO_MODELS = {"hardnet39ds": 32.5, "mobilenetv2": 37.9, "hardnet68ds": 52.6, "mobilenetv2_140": 57.8}


def test_list_models_is_the_zoo() -> None:
    assert list_models() == ZOO


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_model_card("hardnet39")
    err = info.value
    assert "hardnet39" in str(err)
    assert err.exit_code == 2
    for name in ZOO:
        assert name in str(err.hint)
    with pytest.raises(UnknownNameError):
        create_model("nope")


def test_duplicate_registration_is_refused() -> None:
    card = ModelCard(name="_test_duplicate", family="test", description="registry test")
    try:
        register_model(card)(lambda num_classes=1000: None)
        with pytest.raises(ValueError, match="already registered"):
            register_model(card)(lambda num_classes=1000: None)
        with pytest.raises(ValueError, match="already registered"):
            register_model(get_model_card("hardnet39ds"))(lambda num_classes=1000: None)
    finally:
        registry._REGISTRY.pop("_test_duplicate", None)


@pytest.mark.parametrize("name", ZOO)
def test_cards_are_complete(name: str) -> None:
    card = get_model_card(name)
    assert card.name == name
    assert card.input_size == (3, 224, 224)
    assert card.num_classes == 1000 and card.labels == "imagenet"
    assert card.interpolation in ("bilinear", "bicubic") and 0 < card.crop_pct <= 1
    pub = card.published
    for figure in ("params", "gmacs_224", "top1"):
        assert figure in pub, f"{name} card lacks published {figure}"
        assert figure in pub["source"], f"{name} card gives no source for {figure}"
    for figure in pub:
        if figure not in ("source", "params_m"):
            assert figure in pub["source"], f"{name}: published {figure} has no source"
    cfg = card.preprocess_config(320)
    assert cfg.size == 320 and cfg.mean == card.mean


def test_nano_reference_latencies() -> None:
    for name, ms in NANO_MODELS.items():
        assert get_model_card(name).published["nano_trt_ms_320"] == ms
        assert "Jetson Nano" in get_model_card(name).published["source"]["nano_trt_ms_320"]


def test_imagenet_label_names() -> None:
    names = label_names(get_model_card("mobilenetv2"))
    assert names is not None and len(names) == 1000
    assert names[0] == "tench" and names[-1] == "toilet tissue"
    assert label_names(get_model_card("hardnet39ds")) == names


def test_fine_tuned_card_has_no_imagenet_labels() -> None:
    card = get_model_card("hardnet39ds").with_num_classes(10)
    assert card.num_classes == 10 and card.labels is None
    assert label_names(card) is None
    # A card naming ImageNet with another class count gives no names rather than wrong ones.
    odd = dataclasses.replace(get_model_card("hardnet39ds"), num_classes=10)
    assert label_names(odd) is None


def test_load_model_records_random_weights() -> None:
    loaded = load_model("mobilenetv2", num_classes=7)
    assert loaded.card.num_classes == 7 and loaded.card.labels is None
    manifest = loaded.weights.to_manifest()
    assert manifest["random"] is True and manifest["source"] == "random" and manifest["sha256"] is None
    assert manifest["note"] == "random weights: latency artifacts only"
    assert loaded.weights.num_classes_from == "argument"


def test_bad_num_classes_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="num-classes"):
        load_model("mobilenetv2", num_classes=0)


def test_check_input_size_refuses_what_the_network_cannot_take() -> None:
    with pytest.raises(UsageError) as info:
        check_input_size(get_model_card("hardnet68"), 16)
    assert "16x16" in str(info.value) and "29" in str(info.value)
    assert "--size" in str(info.value.hint)
    check_input_size(get_model_card("hardnet68"), 320)
    check_input_size(get_model_card("hardnet39ds"), 300)  # runs; only a warning about the stride
    strict = dataclasses.replace(get_model_card("hardnet39ds"), size_multiple=32)
    with pytest.raises(UsageError, match="multiple of 32") as info:
        check_input_size(strict, 300)
    assert "288" in str(info.value.hint) and "320" in str(info.value.hint)
