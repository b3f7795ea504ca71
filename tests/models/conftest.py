"""Shared fixtures for the model zoo tests: each zoo model is built once per session."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from models.registry import create_model


@pytest.fixture(scope="session")
def zoo_model() -> Callable[[str], nn.Module]:
    """``zoo_model(name)``: a randomly initialised 1000-class model in eval mode, built once.

    Treat the returned model as read-only; tests that load weights build their own.
    """
    cache: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = create_model(name).eval()
        return cache[name]

    return get
