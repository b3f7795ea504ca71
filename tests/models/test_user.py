"""A user's own model given as --model package.module:function."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deploy.errors import UsageError
from models.registry import label_names
from models.user import load_user_model, parse_spec, user_model_card

USER_MODULE = '''
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6))

def not_a_model():
    return 42

def needs_args(width):
    return nn.Linear(width, 2)

CONSTANT = 3
'''


@pytest.fixture()
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pkg = tmp_path / "userpkg_models_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(USER_MODULE)
    (pkg / "broken.py").write_text("import a_module_that_does_not_exist_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "userpkg_models_test"


def test_load_user_model(user_package: str) -> None:
    spec = f"{user_package}.nets:build"
    model = load_user_model(spec)
    assert isinstance(model, nn.Module)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 6)
    card = user_model_card(spec, model)
    assert card.family == "user" and card.num_classes == 6 and card.labels is None
    assert label_names(card) is None
    assert card.mean == (0.485, 0.456, 0.406) and card.input_size == (3, 224, 224)


@pytest.mark.parametrize("spec", ["", "nets", "nets:", ":build", "a..b:c", "a.b:c:d", "a b:c", "1pkg:build"])
def test_bad_spec(spec: str) -> None:
    with pytest.raises(UsageError, match="bad model spec") as info:
        parse_spec(spec)
    assert info.value.exit_code == 2 and "package.module:function" in str(info.value.hint)


def test_missing_module(user_package: str) -> None:
    with pytest.raises(UsageError, match="cannot import module") as info:
        load_user_model(f"{user_package}.absent:build")
    assert "PYTHONPATH" in str(info.value.hint)
    with pytest.raises(UsageError, match="cannot import module"):
        load_user_model("no_such_top_level_pkg_xyz.nets:build")


def test_module_with_broken_import(user_package: str) -> None:
    with pytest.raises(UsageError, match="failed to import") as info:
        load_user_model(f"{user_package}.broken:build")
    assert "a_module_that_does_not_exist_xyz" in str(info.value)


def test_missing_function(user_package: str) -> None:
    with pytest.raises(UsageError, match="has no function 'buld'") as info:
        load_user_model(f"{user_package}.nets:buld")
    assert "build" in str(info.value.hint)


@pytest.mark.parametrize("function, message", [("not_a_model", "returned a int"), ("CONSTANT", "not a function"),
                                               ("needs_args", "without arguments")])
def test_function_that_does_not_give_a_module(user_package: str, function: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_user_model(f"{user_package}.nets:{function}")
