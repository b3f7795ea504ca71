import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def project_script():
    """Import a script of the project (bench/*.py, scripts/*.py: folders of scripts, not packages)."""
    def load(relative_path):
        name = "script_" + relative_path.replace("/", "_").replace(".py", "")
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relative_path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
