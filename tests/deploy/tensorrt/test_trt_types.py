"""deploy/'s TensorRT and pycuda calls type-check against TensorRT 10 (PyPI's tensorrt-stubs) and
TensorRT 8.2.1 (typings/tensorrt-8.2), both with the pycuda 2022.1 stubs (typings/pycuda), via
scripts/check_trt_types.py.

Each mypy run checks the device modules and, as a control that the check can fail, a file with
calls the API does not have: the other generation's names used without a marker (or with the
wrong one), a wrong argument count, a misspelled pycuda call, a missing pycuda argument.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

COMMON_BAD = '''
def copy(buffer, host):
    import pycuda.driver as cuda
    stream = cuda.Stream()
    cuda.memcpy_htod_async(buffer)
    stream.synchronise()
'''

BAD = {
    "10": '''
def build():
    import tensorrt as trt
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    config.max_workspace_size = 1 << 28
    config.max_workspace_size = 1 << 28  # trt>=8.5
    builder.build_serialized_network(config)
    engine = builder.build_serialized_network
    return engine
''' + COMMON_BAD,
    "8.2": '''
def build():
    import tensorrt as trt
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    runtime = trt.Runtime(trt.Logger())
    engine = runtime.deserialize_cuda_engine(b"")
    engine.get_tensor_name(0)  # trt<8.5
    builder.build_serialized_network(config)
''' + COMMON_BAD,
}

EXPECTED_BAD = {
    "10": ['has no attribute "max_workspace_size"', "build_serialized_network"],
    "8.2": ['has no attribute "set_memory_pool_limit"', 'has no attribute "get_tensor_name"',
            "build_serialized_network"],
}


def _check_types():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import check_trt_types
    finally:
        sys.path.pop(0)
    return check_trt_types


@pytest.mark.parametrize("api", ["10", "8.2"])
def test_deploy_type_checks_against_tensorrt_and_pycuda_stubs(tmp_path, api):
    check_trt_types = _check_types()
    # In CI (CI=true) the set-up installs both, so a missing one is a failure, not a skip.
    missing = None
    if importlib.util.find_spec("mypy") is None:
        missing = "mypy is not installed: pip install -r requirements-dev.txt"
    elif api == "10":
        try:
            check_trt_types.find_stub_root()
        except check_trt_types.SetupError as exc:
            missing = str(exc)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    bad = tmp_path / "uses_the_wrong_api.py"
    bad.write_text(BAD[api])
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "check_trt_types.py"), "--api", api]
        + check_trt_types.DEFAULT_FILES + [str(bad)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line and not line.startswith("expected")]
    ours = [line for line in errors if not line.startswith(str(bad))]
    expected = [line for line in proc.stdout.splitlines() if line.startswith("expected")]
    assert proc.returncode == 1, proc.stdout
    assert not ours, "\n".join(ours)
    for needle in EXPECTED_BAD[api] + ['"memcpy_htod_async"', 'has no attribute "synchronise"']:
        assert any(needle in line for line in errors), (needle, proc.stdout)
    if api == "10":
        # the wrongly marked line is an error, not "expected"
        assert sum('has no attribute "max_workspace_size"' in line for line in errors) == 2, proc.stdout
        assert "patched stub" in proc.stdout
    else:
        assert any('"get_tensor_name"' in line and str(bad) in line for line in errors)   # marked trt<8.5: wrong
    # deploy/'s own other-generation calls are all marked, and there are some on each side
    assert len([line for line in expected if "deploy/" in line]) >= 10, proc.stdout
