"""ruff (pyflakes, import order, bugbear; settings in pyproject.toml) is clean over the project."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ruff(*args, cwd=ROOT):
    pytest.importorskip("ruff", reason="ruff is not installed (pip install -r requirements-dev.txt)")
    return subprocess.run([sys.executable, "-m", "ruff"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)


def test_the_project_is_ruff_clean():
    proc = _ruff("check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout


def test_the_configuration_catches_each_rule_set(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\n\ndef f(x=[]):\n    try:\n        return os.sep\n"
                   "    except OSError:\n        raise ValueError('no')\n")
    proc = _ruff("check", "--no-cache", "--config", os.path.join(ROOT, "pyproject.toml"), str(bad), cwd=str(tmp_path))
    assert proc.returncode != 0
    for code in ("F401", "I001", "B006", "B904"):
        assert code in proc.stdout, proc.stdout
