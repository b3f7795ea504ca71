"""deploy/'s TensorRT calls type-check against PyPI's tensorrt-stubs (TensorRT 10), via scripts/check_trt_types.py.

One mypy run checks the device modules and, as a control that the check can fail, a file with
calls TensorRT 10 does not have (8.2-only names used directly, a wrong argument count).
"""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BAD = '''
def build():
    import tensorrt as trt
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    config.max_workspace_size = 1 << 28
    builder.build_serialized_network(config)
    engine = builder.build_serialized_network
    return engine
'''


def test_deploy_type_checks_against_tensorrt_stubs(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import check_trt_types
    finally:
        sys.path.pop(0)
    # In CI (CI=true) the set-up installs both, so a missing one is a failure, not a skip.
    missing = None
    if importlib.util.find_spec("mypy") is None:
        missing = "mypy is not installed: pip install -r requirements-dev.txt"
    else:
        try:
            check_trt_types.find_stub_root()
        except check_trt_types.SetupError as exc:
            missing = str(exc)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    bad = tmp_path / "uses_trt82_names_directly.py"
    bad.write_text(BAD)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "check_trt_types.py")] + check_trt_types.DEFAULT_FILES
        + [str(bad)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    ours = [line for line in errors if not line.startswith(str(bad))]
    assert proc.returncode == 1, proc.stdout
    assert not ours, "\n".join(ours)
    assert any('has no attribute "max_workspace_size"' in line for line in errors), proc.stdout
    assert any("build_serialized_network" in line for line in errors), proc.stdout
    assert "patched stub" in proc.stdout
