"""Safe checkpoint loading: wrappers, prefixes, fine-tuned heads, mismatches, unsafe and corrupt files."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from deploy.errors import WeightsError
from models.hardnet import HarDNet
from models.registry import create_model, load_model
from models.weights import classifier_key, infer_num_classes, load_weights_info, load_weights_into, read_checkpoint


class NotATensor:
    """A custom class: unpickling it needs code, so weights_only loading must refuse it."""

    def __init__(self) -> None:
        self.payload = "arbitrary object"


def _trained(name: str = "hardnet39ds", num_classes: int = 1000, seed: int = 1) -> nn.Module:
    """A model with non-default weights and running statistics (so a reload is checkable)."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    return model.eval()


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    return _trained()


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "model_state_dict", "module_prefix",
                                  "wrapped_module_prefix"])
def test_checkpoint_round_trip(wrap: str, trained: nn.Module, tmp_path: Path) -> None:
    state = trained.state_dict()
    if "module_prefix" in wrap:
        state = {f"module.{k}": v for k, v in state.items()}
    obj: object = state
    if wrap in ("state_dict", "model", "model_state_dict"):
        obj = {wrap: state, "epoch": 90, "arch": "hardnet39ds"}
    elif wrap == "wrapped_module_prefix":
        obj = {"state_dict": state, "best_acc1": 72.1}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    loaded = load_model("hardnet39ds", weights=path)
    _assert_same_state(loaded.model, trained)
    assert loaded.card.num_classes == 1000 and loaded.card.labels == "imagenet"
    record = loaded.weights.to_manifest()
    assert record == {"source": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                      "random": False}
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert torch.equal(loaded.model.eval()(x), trained(x))


def test_load_weights_info_gives_hash(trained: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(trained.state_dict(), path)
    state, digest = load_weights_info(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(state) == set(trained.state_dict())


def test_fine_tuned_head_sets_num_classes(tmp_path: Path) -> None:
    tuned = _trained(num_classes=10, seed=2)
    path = tmp_path / "tuned.pth"
    torch.save({"state_dict": tuned.state_dict()}, path)
    loaded = load_model("hardnet39ds", weights=path)  # no num_classes: taken from the checkpoint
    assert loaded.weights.num_classes == 10 and loaded.weights.num_classes_from == "checkpoint"
    assert loaded.card.num_classes == 10 and loaded.card.labels is None
    _assert_same_state(loaded.model, tuned)
    with torch.no_grad():
        assert loaded.model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    # Explicitly the same count works; another count names the fix.
    same = create_model("hardnet39ds", num_classes=10, weights=path)
    assert isinstance(same, HarDNet) and same.classifier.out_features == 10
    with pytest.raises(WeightsError, match="shape mismatch") as info:
        create_model("hardnet39ds", num_classes=1000, weights=path)
    assert "base.14.3.weight" in str(info.value) and "--num-classes 10" in str(info.value.hint)


def test_torchvision_format_checkpoint_loads(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = create_model("mobilenetv2", num_classes=5)
    path = tmp_path / "mbv2.pth"
    torch.save(source.state_dict(), path)
    loaded = create_model("mobilenetv2", weights=path)
    _assert_same_state(loaded, source)
    assert classifier_key(loaded) == "classifier.1.weight"


def test_other_architecture_names_keys(tmp_path: Path) -> None:
    path = tmp_path / "mbv2.pth"
    torch.save(create_model("mobilenetv2").state_dict(), path)
    with pytest.raises(WeightsError) as info:
        create_model("hardnet39ds", weights=path)
    text = str(info.value)
    assert "does not fit hardnet39ds" in text
    assert "missing keys (base.0.conv.weight" in text
    assert "unexpected keys (features.0.0.weight" in text
    assert "more)" in text  # long lists are cut, with counts
    assert "\n" not in text and info.value.hint


def test_sibling_architecture_names_shape_mismatches(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(create_model("mobilenetv2_140").state_dict(), path)
    with pytest.raises(WeightsError, match=r"shape mismatches \(features\.0\.0\.weight: checkpoint 48x3x3x3 vs "
                                           r"model 32x3x3x3"):
        create_model("mobilenetv2", weights=path)


def test_pickle_needing_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": create_model("hardnet39ds").state_dict(), "extra": NotATensor()}, path)
    with pytest.raises(WeightsError, match="needs code to load") as info:
        create_model("hardnet39ds", weights=path)
    assert "state_dict()" in str(info.value.hint)


def test_whole_pickled_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(WeightsError, match="needs code to load"):
        read_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist") as info:
        create_model("hardnet39ds", weights=tmp_path / "absent.pth")
    assert "--weights" in str(info.value.hint)
    with pytest.raises(WeightsError, match="not a file"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_corrupt_file(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="corrupt or not a PyTorch checkpoint"):
        create_model("hardnet39ds", weights=path)


def test_truncated_checkpoint(trained: nn.Module, tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(trained.state_dict(), good)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="corrupt"):
        read_checkpoint(bad)


@pytest.mark.parametrize("obj", [[1, 2, 3], {"epoch": 3}, {"state_dict": {"a": 1}}])
def test_no_state_dict_inside(obj: object, tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match="state_dict"):
        read_checkpoint(path)


def test_infer_num_classes_without_a_model() -> None:
    state = {"conv.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(7, 8), "fc.bias": torch.zeros(7)}
    assert infer_num_classes(state) == 7
    assert infer_num_classes(state, "fc.weight") == 7
    assert infer_num_classes(state, "head.weight") is None
    assert infer_num_classes({"conv.weight": torch.zeros(8, 3, 3, 3)}) is None


def test_load_into_plain_module(tmp_path: Path) -> None:
    torch.manual_seed(4)
    src = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    path = tmp_path / "user.pth"
    torch.save({"model": src.state_dict()}, path)
    dst = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    record = load_weights_into(dst, path, model_name="user model")
    _assert_same_state(dst, src)
    assert record.num_classes == 4 and not record.random
    with pytest.raises(WeightsError, match="does not fit user model"):
        load_weights_into(nn.Sequential(nn.Linear(12, 4)), path, model_name="user model")
