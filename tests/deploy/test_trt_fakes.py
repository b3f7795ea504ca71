"""Keep the fakes honest: every TensorRT name the TensorRT 10 fake offers exists in PyPI's tensorrt-stubs,
and the 8.2-only names the 8.2 fake offers are really absent from TensorRT 10 (so deploy/ must reach
them through capability checks)."""
import ast
import os
import sys
import tempfile

import pytest

from tests.deploy import trt_fakes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOKKEEPING = {"calls", "last_config", "algorithm", "blob", "shapes", "addresses", "engine", "flags",
               "profiles", "calibration_profile", "timing_cache", "logger", "network", "pool_limits", "shape"}
TRT82_ONLY = {"ICudaEngine": {"num_bindings", "get_binding_name", "binding_is_input", "get_binding_shape",
                              "get_binding_dtype"},
              "IExecutionContext": {"set_binding_shape", "get_binding_shape", "execute_async_v2"},
              "IBuilderConfig": {"max_workspace_size"},
              "Builder": {"max_batch_size"}}


@pytest.fixture(scope="module")
def stub_members():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import check_trt_types
    finally:
        sys.path.pop(0)
    try:
        check_trt_types.find_stub_root()
    except check_trt_types.SetupError as exc:
        if os.environ.get("CI"):  # CI installs the stubs, so their absence there is a failure
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        check_trt_types.patched_stubs(check_trt_types.find_stub_root(), tmp)
        with open(os.path.join(tmp, "tensorrt_bindings", "tensorrt.pyi"), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    members = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.ClassDef):
                    names.add(item.name)
            members[node.name] = names
    return members


def _public(obj):
    names = set(vars(type(obj))) | set(getattr(obj, "__dict__", {}))
    return {n for n in names if not n.startswith("_") and n not in BOOKKEEPING}


def _fake_objects(generation):
    trt = trt_fakes.make_fake_trt(generation)
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(
        builder.build_serialized_network(builder.create_network(0), config))
    return trt, {
        "Builder": builder, "IBuilderConfig": config, "ICudaEngine": engine,
        "IExecutionContext": engine.create_execution_context(), "EngineInspector": engine.create_engine_inspector(),
        "IOptimizationProfile": builder.create_optimization_profile(),
        "ITimingCache": config.create_timing_cache(b""), "OnnxParser": trt.OnnxParser(None, trt.Logger()),
    }


def test_trt10_fake_uses_only_names_in_the_stubs(stub_members):
    trt, objects = _fake_objects("10")
    for stub_class, obj in objects.items():
        missing = _public(obj) - stub_members[stub_class]
        assert not missing, "{} has no {} in TensorRT 10".format(stub_class, sorted(missing))
    for enum_name in ("BuilderFlag", "MemoryPoolType", "TensorIOMode", "LayerInformationFormat",
                      "ProfilingVerbosity", "NetworkDefinitionCreationFlag"):
        fake = getattr(trt, enum_name)
        values = {n for n in vars(fake) if n.isupper()}
        assert values <= stub_members[enum_name], (enum_name, values - stub_members[enum_name])
    for name in ("Builder", "OnnxParser", "Runtime", "ILogger", "Logger", "IInt8EntropyCalibrator2",
                 "IInt8MinMaxCalibrator"):
        assert name in stub_members
    assert "log" in stub_members["ILogger"]
    for method in ("get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache"):
        assert method in stub_members["IInt8EntropyCalibrator2"]


def test_trt82_fake_names_are_really_gone_in_trt10(stub_members):
    _, objects = _fake_objects("8.2")
    for stub_class, names in TRT82_ONLY.items():
        assert names <= _public(objects[stub_class]), (stub_class, names - _public(objects[stub_class]))
        assert not names & stub_members[stub_class], (stub_class, names & stub_members[stub_class])
