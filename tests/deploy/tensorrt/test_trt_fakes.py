"""Keep the fakes honest: every TensorRT name the TensorRT 10 fake offers exists in PyPI's tensorrt-stubs,
the 8.2-only names the 8.2 fake offers are really absent from TensorRT 10 (so deploy/ must reach
them through capability checks), the 8.5 fake offers both generations, every faked call cites its
binding source, and the fakes refuse what the real calls refuse."""
import ast
import os
import sys
import tempfile

import pytest

from tests.deploy import pycuda_fakes, trt_fakes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BOOKKEEPING = set()      # the fakes keep their own state in _underscored attributes
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
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(trt_fakes.engine_bytes(trt))
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


def test_trt85_fake_offers_both_generations():
    _, new = _fake_objects("10")
    _, old = _fake_objects("8.2")
    _, both = _fake_objects("8.5")
    for stub_class in TRT82_ONLY:
        assert TRT82_ONLY[stub_class] <= _public(both[stub_class])
        assert _public(new[stub_class]) <= _public(both[stub_class]), stub_class


def test_every_faked_call_cites_its_binding_source():
    """Each method or function of the fakes that stands for a binding call names the source file@tag
    it models, in its docstring, a comment on its first lines, or its class's docstring."""
    import inspect
    import re
    source = inspect.getsource(trt_fakes).splitlines()
    cite = re.compile(r"(pyCore|pyInt8|pyOnnx|cuda|wrap_cudadrv|NvInfer|__init__)\.(cpp|hpp|h|py)@(8\.2\.1|8\.5\.3|v10\.13\.0|v2022\.1)"
                      r"|pybind11|@8\.2\.1|@8\.5\.3|@v2022\.1")
    uncited = []
    class_cited = False
    for number, line in enumerate(source):
        stripped = line.strip()
        if stripped.startswith("class "):
            class_cited = any(cite.search(l) for l in source[number:number + 3])
        match = re.match(r"def ([a-z][a-z0-9_]*)\(", stripped)
        if not match or stripped.startswith("def _") or line.startswith("def "):
            continue
        if match.group(1) in HELPERS:
            continue
        if not any(cite.search(l) for l in source[number + 1:number + 4]) and not class_cited:
            uncited.append("{}: {}".format(number + 1, match.group(1)))
    assert not uncited, "faked calls without a binding-source citation: {}".format(uncited)


# Functions of the fakes that are bookkeeping or the model of the GPU, not a binding call.
HELPERS = {"context_stack", "driver_stack", "current_context", "require_current", "is_pinned", "host_bytes",
           "work", "run_queue", "alive", "callback", "enum", "check_enum", "require_logger", "log", "calibrate",
           "install", "fake_onnx_bytes", "engine_bytes", "make_bundle"}


# -- the fakes refuse what the real calls refuse ------------------------------------------------------
@pytest.fixture
def cuda():
    _, driver = pycuda_fakes.make_fake_pycuda()
    driver.init()
    return driver


def test_pycuda_objects_need_a_current_context(cuda):
    for make in (lambda: cuda.mem_alloc(16), cuda.Stream, cuda.Event, lambda: cuda.pagelocked_empty((2,), "f4")):
        with pytest.raises(cuda.LogicError, match="no currently active context"):
            make()
    context = cuda.Device(0).retain_primary_context()
    context.push()
    buffer = cuda.mem_alloc(16)
    buffer.free()
    cuda.Context.pop()
    assert cuda.context_stack() == [] and cuda.driver_stack() == []
    with pytest.raises(cuda.LogicError, match="cannot pop non-current context"):
        cuda.Context.pop()


def test_pycuda_detach_of_a_context_that_is_not_current_leaves_it_pushed(cuda):
    """cuda.hpp@v2022.1 context::detach: push, release, no pop; buffers freed after it leak."""
    context = cuda.Device(0).retain_primary_context()
    context.push()
    buffer = cuda.mem_alloc(16)
    cuda.Context.pop()
    context.detach()
    assert cuda.driver_stack() == [context]          # the driver's stack keeps it
    buffer.free()
    assert cuda.leaks == [("DeviceAllocation", "cannot activate dead context")]
    with pytest.raises(cuda.LogicError, match="invalid context"):
        context.detach()


def test_pycuda_detach_from_another_thread_releases_nothing(cuda):
    import threading
    context = cuda.Device(0).retain_primary_context()
    worker = threading.Thread(target=context.detach)
    worker.start()
    worker.join()
    assert cuda.primary_refs[0] == 1 and not context.valid


def test_pycuda_copies_check_sizes_pinning_and_streams(cuda):
    import numpy as np
    context = cuda.Device(0).retain_primary_context()
    context.push()
    try:
        buffer = cuda.mem_alloc(16)
        with pytest.raises(AssertionError, match="writing 32 bytes into a 16-byte allocation"):
            cuda.memcpy_htod(buffer, np.zeros(8, np.float32))
        stream = cuda.Stream()
        with pytest.raises(cuda.LogicError, match="not page-locked"):
            cuda.memcpy_htod_async(buffer, np.zeros(4, np.float32), stream)
        host = cuda.pagelocked_empty((4,), np.float32)
        host[:] = [1, 2, 3, 4]
        out = cuda.pagelocked_empty((4,), np.float32)
        out[:] = 0
        start, end = cuda.Event(), cuda.Event()
        start.record(stream)
        cuda.memcpy_htod_async(buffer, host, stream)
        cuda.memcpy_dtoh_async(out, buffer, stream)
        end.record(stream)
        assert not out.any()                               # queued, not run: no synchronize yet
        with pytest.raises(cuda.LogicError, match="not ready"):
            start.time_till(end)
        stream.synchronize()
        assert out.tolist() == [1, 2, 3, 4]
        assert start.time_till(end) == 0.0 and not cuda.is_pinned(out.copy())
        buffer.free()
        del stream, start, end
    finally:
        cuda.Context.pop()
    assert cuda.leaks == []


@pytest.mark.parametrize("generation", trt_fakes.GENERATIONS)
def test_trt_bases_need_their_init_and_nptype_follows_the_type(generation):
    import numpy as np
    trt = trt_fakes.make_fake_trt(generation)

    class Logger(trt.ILogger):
        def __init__(self):     # forgets trt.ILogger.__init__(self)
            pass

        def log(self, severity, msg):
            pass

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            pass

    for cls in (Logger, Calibrator):
        with pytest.raises(TypeError, match="must be called when overriding __init__"):
            cls()
    assert trt.nptype(trt.DataType.HALF) == np.float16 and trt.nptype(trt.DataType.FLOAT) == np.float32
    with pytest.raises(TypeError):
        trt.nptype("float32")


@pytest.mark.parametrize("generation", trt_fakes.GENERATIONS)
def test_trt_refuses_bad_models_shapes_and_caches(generation):
    trt = trt_fakes.make_fake_trt(generation)
    logger = trt.Logger()
    builder = trt.Builder(logger)
    flags = 0 if generation == "10" else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    parser = trt.OnnxParser(builder.create_network(flags), logger)
    assert not parser.parse(b"not an onnx model") and parser.num_errors == 1
    if generation != "10":   # implicit-batch networks cannot hold an ONNX model
        assert not trt.OnnxParser(builder.create_network(0), logger).parse(trt_fakes.fake_onnx_bytes((1, 3, 4, 4)))
    profile = builder.create_optimization_profile()
    with pytest.raises(RuntimeError, match="inconsistent"):
        profile.set_shape("input", (4, 3, 4, 4), (1, 3, 4, 4), (4, 3, 4, 4))
    config = builder.create_builder_config()
    other_gpu = config.create_timing_cache(b"TC:sm87")
    assert config.set_timing_cache(other_gpu, False) is False and config.set_timing_cache(other_gpu, True) is True
    assert config.create_timing_cache(b"garbage") is None
    engine = trt.Runtime(logger).deserialize_cuda_engine(trt_fakes.engine_bytes(trt, max_batch=4))
    context = engine.create_execution_context()
    if generation == "8.2":
        assert context.set_binding_shape(0, (5, 3, 4, 4)) is False and context.set_binding_shape(0, (4, 3, 4, 4))
    else:
        assert context.set_input_shape("input", (5, 3, 4, 4)) is False
        assert context.set_input_shape("input", (3, 3, 4)) is False
        assert context.execute_async_v3(0) is False      # no tensor addresses set


@pytest.mark.parametrize("generation", trt_fakes.GENERATIONS)
def test_calibrator_callbacks_as_the_binding_calls_them(generation, monkeypatch):
    """TensorRT reads one input's worth per get_batch, writes the cache as a memoryview, and an
    exception in a callback aborts 8.2 (pyInt8.cpp@8.2.1) or is printed and ends calibration (8.5+)."""
    import numpy as np
    trt = trt_fakes.make_fake_trt(generation)
    pycuda = pycuda_fakes.make_fake_pycuda()
    trt_fakes.install(monkeypatch, trt, pycuda)
    cuda = pycuda[1]
    cuda.init()
    context = cuda.Device(0).retain_primary_context()
    context.push()
    try:
        images = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
        buffer = cuda.mem_alloc(images[:1].nbytes)
        written = []

        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self, fail=False):
                trt.IInt8EntropyCalibrator2.__init__(self)
                self.fed, self.fail = 0, fail

            def get_batch_size(self):
                return 8          # ignored with explicit batch: TensorRT reads the input's shape

            def get_batch(self, names):
                if self.fed == len(images):
                    return None
                if self.fail:
                    raise ValueError("bad batch")
                cuda.memcpy_htod(buffer, images[self.fed:self.fed + 1])
                self.fed += 1
                return [int(buffer)]

            def read_calibration_cache(self):
                return None

            def write_calibration_cache(self, cache):
                written.append(cache)

        def build(calibrator):
            logger = trt.Logger()
            builder = trt.Builder(logger)
            network = builder.create_network(0 if generation == "10" else 1)
            assert trt.OnnxParser(network, logger).parse(trt_fakes.fake_onnx_bytes((1, 3, 4, 4)))
            config = builder.create_builder_config()
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = calibrator
            return builder.build_serialized_network(network, config)

        assert build(Calibrator()) is not None
        np.testing.assert_array_equal(np.stack(trt.calibration_images), images)
        assert isinstance(written[0], memoryview) and bytes(written[0]).startswith(b"TRT-")
        if generation == "8.2":
            with pytest.raises(trt_fakes.ProcessAborted):
                build(Calibrator(fail=True))
        else:
            assert build(Calibrator(fail=True)) is None
            assert trt.stderr == ["[ERROR] Exception caught in get_batch(): bad batch"]
        buffer.free()
    finally:
        cuda.Context.pop()
