"""Which models a build makes: names, weights files and input sizes are checked before any work."""
import os

import pytest

from deploy.errors import UnknownNameError, UsageError, WeightsError
from export.sources import resolve_sources
from tests.export.test_build import options


def test_resolve_sources_refuses_bad_input_before_any_work(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown model 'nosuchnet'"):
        resolve_sources(options(tmp_path, models=("mobilenetv2", "nosuchnet")))
    with pytest.raises(UsageError, match="cannot take a 8x8 input") as info:
        resolve_sources(options(tmp_path, models=("densenet121",), size=8))
    assert info.value.hint and info.value.exit_code == 2
    with pytest.raises(WeightsError, match="does not exist") as info:
        resolve_sources(options(tmp_path, weights={"mobilenetv2": str(tmp_path / "missing.pth")}))
    assert info.value.exit_code == 1
    with pytest.raises(UsageError, match="given twice"):
        resolve_sources(options(tmp_path, models=("mobilenetv2", "mobilenetv2")))
    assert os.listdir(tmp_path) == []   # nothing was created


def test_resolve_sources_returns_registry_models_unloaded(tmp_path):
    sources = resolve_sources(options(tmp_path, models=("mobilenetv2",)))
    assert [(s.name, s.weights_path, s.code_hash) for s in sources] == [("mobilenetv2", None, None)]
    assert callable(sources[0].load) and os.listdir(tmp_path) == []
