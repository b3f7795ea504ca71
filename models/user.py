"""A user's own model: ``--model package.module:function`` returning an ``nn.Module``.

The module is imported from ``sys.path`` (the current directory included when running
``python pipeline.py``) and the function is called with no arguments. The model gets a card of
family ``"user"`` with ImageNet preprocessing defaults and no label names; its class count is read
from its last ``nn.Linear`` where it has one.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from typing import Any

from torch import nn

from deploy.errors import UsageError
from models.registry import ModelCard

LOG = logging.getLogger(__name__)

__all__ = ["parse_spec", "load_user_model", "user_model_card"]

_SPEC = re.compile(r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):(?P<function>[A-Za-z_][\w]*)$")
_FORM = "give --model package.module:function, e.g. --model mypkg.nets:build_net"


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``"package.module:function"`` into its module and function names (``UsageError`` if malformed)."""
    match = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        raise UsageError(f"bad model spec {spec!r}: expected package.module:function", hint=_FORM)
    return match.group("module"), match.group("function")


def load_user_model(spec: str) -> nn.Module:
    """Import ``package.module`` and return what ``function()`` builds, which must be an ``nn.Module``."""
    module_name, function_name = parse_spec(spec)
    # `python pipeline.py` puts the script's folder on sys.path, not the current one: add it, so a
    # package in the folder the user runs from imports, as the hint below tells them.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        parts = module_name.split(".")
        if exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise UsageError(
                f"cannot import module {module_name!r} for --model {spec}: no module named {exc.name!r}",
                hint="run from the folder that holds the package, or add it to PYTHONPATH",
            ) from exc
        raise UsageError(
            f"module {module_name!r} for --model {spec} failed to import: it needs {exc.name!r}",
            hint=f"install {exc.name!r} or fix the import in {module_name}",
        ) from exc
    except ImportError as exc:
        raise UsageError(f"module {module_name!r} for --model {spec} failed to import: {exc}",
                         hint=f"fix the import error in {module_name}") from exc
    except SyntaxError as exc:
        raise UsageError(f"module {module_name!r} for --model {spec} has a syntax error: {exc.msg} "
                         f"({exc.filename}, line {exc.lineno})", hint="fix the syntax error") from None
    except Exception as exc:  # noqa: BLE001 - the user's module-level code can raise anything
        raise UsageError(f"module {module_name!r} for --model {spec} raised {type(exc).__name__} on import: "
                         f"{_first_line(exc)}", hint=f"fix the code of {module_name}") from None
    function: Any = getattr(module, function_name, None)
    if function is None:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        shown = ", ".join(public[:8]) or "none"
        raise UsageError(f"module {module_name!r} has no function {function_name!r}",
                         hint=f"name one of its callables: {shown}")
    if not callable(function):
        raise UsageError(f"{spec} is a {type(function).__name__}, not a function",
                         hint="point --model at a function that returns an nn.Module")
    try:
        model = function()
    except TypeError as exc:
        raise UsageError(f"{spec}() cannot be called without arguments: {exc}",
                         hint="wrap it in a function that takes no arguments") from exc
    except Exception as exc:  # noqa: BLE001 - the user's function can raise anything
        raise UsageError(f"{spec}() raised {type(exc).__name__}: {_first_line(exc)}",
                         hint=f"fix {spec} so that it returns the network (run it in Python to see the traceback)") \
            from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module",
                         hint="make the function return the network (an nn.Module instance)")
    LOG.info("user model %s: %s", spec, type(model).__name__)
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _num_outputs(model: nn.Module) -> int | None:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else int(last.out_features)


def user_model_card(spec: str, model: nn.Module | None = None, input_size: int = 224) -> ModelCard:
    """A card for a user model: ImageNet preprocessing defaults, no label names.

    The class count comes from ``model``'s last ``nn.Linear`` when there is one (else 1000, the
    ImageNet default); the size limits are unknown, so ``min_size`` is 1 and export finds out.
    """
    classes = _num_outputs(model) if model is not None else None
    return ModelCard(
        name=spec, family="user",
        description=f"user model {spec}" + (f" ({type(model).__name__})" if model is not None else ""),
        input_size=(3, input_size, input_size),
        num_classes=classes or 1000,
        labels=None,
        min_size=1, size_multiple=1, total_stride=1,
        published={},
    )
