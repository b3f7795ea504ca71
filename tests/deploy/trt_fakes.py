"""Small, honest stand-ins for ``tensorrt`` and ``pycuda.driver`` (no GPU, no TensorRT here).

They implement only the calls deploy/ makes, with the names and argument orders of the real APIs
(TensorRT 8.2 for ``generation="8.2"``, TensorRT 10 for ``"10"``; test_trt_fakes_match_stubs checks
the TensorRT 10 names against the published stubs). The fake engine computes
``logits[b, k] = sum(input[b]) + k`` from the fake device memory, so data really flows through the
host buffers, the copies and the bindings.
"""
import itertools
import json
import sys
import threading
import types

import numpy as np

# ------------------------------------------------------------------------------------------------
# pycuda.driver
# ------------------------------------------------------------------------------------------------
MEMORY = {}
_ADDRESSES = itertools.count(0x1000, 0x1000)


class DeviceAllocation(object):
    def __init__(self, nbytes):
        self.address = next(_ADDRESSES)
        MEMORY[self.address] = bytearray(nbytes)
        self.freed = False

    def __int__(self):
        return self.address

    def free(self):
        self.freed = True
        MEMORY.pop(self.address, None)


def make_fake_pycuda(device_name="NVIDIA Tegra X1", capability=(5, 3)):
    driver = types.ModuleType("pycuda.driver")
    local = threading.local()        # CUDA keeps one context stack per thread; so does this fake

    def context_stack():
        return local.__dict__.setdefault("stack", [])

    driver.context_stack = context_stack
    driver.allocations = []

    def mem_alloc(nbytes):
        allocation = DeviceAllocation(nbytes)
        driver.allocations.append(allocation)
        return allocation

    def _require_context():
        assert context_stack(), "no current CUDA context on this thread"

    def memcpy_htod(dest, src):
        _require_context()
        MEMORY[int(dest)][:] = np.ascontiguousarray(src).tobytes()

    def memcpy_htod_async(dest, src, stream=None):
        memcpy_htod(dest, src)

    def memcpy_dtoh_async(dest, src, stream=None):
        _require_context()
        np.copyto(dest, np.frombuffer(bytes(MEMORY[int(src)]), dtype=dest.dtype).reshape(dest.shape))

    class Stream(object):
        handle = 0xCAFE

        def synchronize(self):
            _require_context()

    class Event(object):
        def record(self, stream=None):
            _require_context()

        def time_till(self, other):
            return 0.25

    class PrimaryContext(object):
        def push(self):
            context_stack().append(self)

        def detach(self):
            self.detached = True

    class Context(object):
        @staticmethod
        def pop():
            context_stack().pop()

    class Device(object):
        def __init__(self, index):
            self.index = index

        def name(self):
            return device_name

        def compute_capability(self):
            return capability

        def retain_primary_context(self):
            return PrimaryContext()

    driver.init = lambda: None
    driver.mem_alloc = mem_alloc
    driver.memcpy_htod = memcpy_htod
    driver.memcpy_htod_async = memcpy_htod_async
    driver.memcpy_dtoh_async = memcpy_dtoh_async
    driver.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)
    driver.Stream, driver.Event, driver.Context, driver.Device = Stream, Event, Context, Device
    package = types.ModuleType("pycuda")
    package.driver = driver
    return package, driver


# ------------------------------------------------------------------------------------------------
# tensorrt
# ------------------------------------------------------------------------------------------------
def make_fake_trt(generation="10", fast_fp16=True, fast_int8=True, parse_ok=True, build_ok=True,
                  version=None, io_shape=(-1, 3, 4, 4), classes=10):
    """A fake ``tensorrt`` module. ``io_shape``: the engine's input shape (-1 = dynamic batch)."""
    assert generation in ("8.2", "10")
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version or ("8.2.1.8" if generation == "8.2" else "10.13.0.35")
    trt.calls = []   # what the code under test did, for assertions

    class _Enum(object):
        def __init__(self, name, value):
            self.name, self.value = name, value

        def __int__(self):
            return self.value

        def __repr__(self):
            return "{}.{}".format(type(self).__name__, self.name)

        __str__ = __repr__

    def enum(cls_name, *names):
        cls = type(cls_name, (_Enum,), {})
        for i, n in enumerate(names):
            setattr(cls, n, cls(n, i))
        return cls

    class ILogger(object):
        Severity = enum("Severity", "INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")

        def __init__(self):
            pass

    class Logger(ILogger):
        def __init__(self, min_severity=None):
            ILogger.__init__(self)

        def log(self, severity, msg):
            pass

    trt.ILogger, trt.Logger = ILogger, Logger
    trt.NetworkDefinitionCreationFlag = enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
    trt.BuilderFlag = enum("BuilderFlag", "FP16", "INT8")
    trt.ProfilingVerbosity = enum("ProfilingVerbosity", "LAYER_NAMES_ONLY", "NONE", "DETAILED")
    trt.LayerInformationFormat = enum("LayerInformationFormat", "ONELINE", "JSON")
    trt.TensorIOMode = enum("TensorIOMode", "NONE", "INPUT", "OUTPUT")
    trt.DataType = enum("DataType", "FLOAT", "HALF")
    trt.nptype = lambda dtype: np.float32
    if generation == "10":
        trt.MemoryPoolType = enum("MemoryPoolType", "WORKSPACE")

    class IInt8Calibrator(object):
        def __init__(self):
            pass

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        algorithm = "EntropyCalibration2"

    class IInt8MinMaxCalibrator(IInt8Calibrator):
        algorithm = "MinMaxCalibration"

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.IInt8MinMaxCalibrator = IInt8MinMaxCalibrator

    class Network(object):
        def __init__(self, flags):
            self.flags = flags

    class OptimizationProfile(object):
        def set_shape(self, input, min, opt, max):
            self.shape = (input, tuple(min), tuple(opt), tuple(max))

    class TimingCache(object):
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return self.blob + b"+t"

    class Config(object):
        def __init__(self):
            self.flags = set()
            self.int8_calibrator = None
            self.profiles = []
            self.calibration_profile = None
            self.timing_cache = None
            self.profiling_verbosity = None

        def set_flag(self, flag):
            self.flags.add(flag.name)

        def create_timing_cache(self, blob):
            if bytes(blob) and not bytes(blob).startswith(b"TC"):
                raise RuntimeError("timing cache corrupt")
            return TimingCache(blob or b"TC")

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile):
            self.calibration_profile = profile
            return True

    if generation == "10":
        def set_memory_pool_limit(self, pool, pool_size):
            self.pool_limits = {pool.name: pool_size}
        Config.set_memory_pool_limit = set_memory_pool_limit
    else:
        Config.max_workspace_size = 0

    class OnnxParser(object):
        def __init__(self, network, logger):
            self.network, self.logger = network, logger
            self.num_errors = 0

        def parse(self, model):
            trt.calls.append(("parse", len(model)))
            if not parse_ok:
                self.num_errors = 1
            return parse_ok

        def get_error(self, index):
            return "In node 3 (Conv): unsupported attribute"

    class Builder(object):
        def __init__(self, logger):
            self.logger = logger
            self.platform_has_fast_fp16 = fast_fp16
            self.platform_has_fast_int8 = fast_int8
            if generation == "8.2":
                self.max_batch_size = 1

        def create_network(self, flags=0):
            trt.calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return OptimizationProfile()

        def build_serialized_network(self, network, config):
            trt.last_config = config
            self.logger.log(ILogger.Severity.INFO, "building with flags {}".format(sorted(config.flags)))
            self.logger.log(ILogger.Severity.VERBOSE, "tactic chatter")
            if "INT8" in config.flags:
                calibrator = config.int8_calibrator
                cache = calibrator.read_calibration_cache()
                if not cache:
                    fed = 0
                    while calibrator.get_batch(["input"]) is not None:
                        fed += 1
                    trt.calls.append(("calibrated_batches", fed))
                    if fed:
                        calibrator.write_calibration_cache(
                            "TRT-{}-{}\ninput: 3c010a14\nlogits: 3d8f5c29\n".format(
                                trt.__version__.replace(".", "")[:4], type(calibrator).algorithm).encode())
                else:
                    trt.calls.append(("calibration_cache_used", len(cache)))
            if not build_ok:
                self.logger.log(ILogger.Severity.ERROR, "out of memory for tactic")
                return None
            return json.dumps({"fake_engine": True, "generation": generation,
                               "flags": sorted(config.flags)}).encode()

    trt.Builder = Builder
    trt.OnnxParser = OnnxParser

    class Context(object):
        def __init__(self, engine):
            self.engine = engine
            self.shapes = {"input": tuple(io_shape), "logits": (io_shape[0], classes)}
            self.addresses = {}

        def _set_shape(self, name, shape):
            self.shapes[name] = tuple(shape)
            self.shapes["logits"] = (shape[0], classes)
            return True

        def _run(self, addresses):
            x_shape, y_shape = self.shapes["input"], self.shapes["logits"]
            x = np.frombuffer(bytes(MEMORY[addresses["input"]]), dtype=np.float32).reshape(x_shape)
            y = x.reshape(x_shape[0], -1).sum(axis=1, keepdims=True) + np.arange(y_shape[1], dtype=np.float32)
            MEMORY[addresses["logits"]][:] = y.astype(np.float32).tobytes()
            trt.calls.append(("execute", generation))
            return True

    names = ["input", "logits"]
    if generation == "10":
        def set_input_shape(self, name, shape):
            return self._set_shape(name, shape)

        def get_tensor_shape(self, name):
            return self.shapes[name]

        def set_tensor_address(self, name, memory):
            self.addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle):
            return self._run(self.addresses)

        Context.set_input_shape, Context.get_tensor_shape = set_input_shape, get_tensor_shape
        Context.set_tensor_address, Context.execute_async_v3 = set_tensor_address, execute_async_v3
    else:
        def set_binding_shape(self, index, shape):
            return self._set_shape(names[index], shape)

        def get_binding_shape(self, index):
            return self.shapes[names[index]]

        def execute_async_v2(self, bindings, stream_handle):
            return self._run(dict(zip(names, bindings)))

        Context.set_binding_shape, Context.get_binding_shape = set_binding_shape, get_binding_shape
        Context.execute_async_v2 = execute_async_v2

    class Inspector(object):
        def get_engine_information(self, format):
            return json.dumps({"Layers": ["conv1", "fc"], "format": str(format)})

    class Engine(object):
        def __init__(self, blob):
            self.blob = blob

        def create_execution_context(self):
            return Context(self)

        def create_engine_inspector(self):
            return Inspector()

    shapes = {"input": tuple(io_shape), "logits": (io_shape[0], classes)}
    if generation == "10":
        Engine.num_io_tensors = 2
        Engine.get_tensor_name = lambda self, i: names[i]
        Engine.get_tensor_mode = lambda self, n: trt.TensorIOMode.INPUT if n == "input" else trt.TensorIOMode.OUTPUT
        Engine.get_tensor_shape = lambda self, n: shapes[n]
        Engine.get_tensor_dtype = lambda self, n: trt.DataType.FLOAT
    else:
        Engine.num_bindings = 2
        Engine.get_binding_name = lambda self, i: names[i]
        Engine.binding_is_input = lambda self, i: i == 0
        Engine.get_binding_shape = lambda self, i: shapes[names[i]]
        Engine.get_binding_dtype = lambda self, i: trt.DataType.FLOAT

    class Runtime(object):
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            try:
                blob = json.loads(bytes(serialized_engine).decode())
            except ValueError:
                self.logger.log(ILogger.Severity.ERROR, "magic tag mismatch")
                return None
            if blob.get("generation") != generation:
                self.logger.log(ILogger.Severity.ERROR, "version tag mismatch")
                return None
            return Engine(blob)

    trt.Runtime = Runtime
    return trt


def install(monkeypatch, trt=None, pycuda=None):
    """Put fakes in sys.modules (None: make the import fail)."""
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    if pycuda is None:
        monkeypatch.setitem(sys.modules, "pycuda", None)
        monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    else:
        monkeypatch.setitem(sys.modules, "pycuda", pycuda[0])
        monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda[1])


# ------------------------------------------------------------------------------------------------
# a small bundle
# ------------------------------------------------------------------------------------------------
def make_bundle(root, target_name="jetson-nano", models=("tiny",), calib_count=20, dynamic=False,
                input_hw=(4, 4)):
    """A bundle with fake ONNX bytes (the fake parser reads any bytes) and calibration batches."""
    import os

    from deploy.atomic import sha256_file
    from deploy.bundle import Bundle
    from deploy.targets import get_target

    bundle = Bundle.open_or_new(str(root), dict(get_target(target_name)._asdict()))
    for name in models:
        onnx_rel = "models/{}.onnx".format(name)
        path = bundle.path(onnx_rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"fake onnx " + name.encode())
        record = {
            "onnx": {"path": onnx_rel, "sha256": sha256_file(path), "opset": 13},
            "input": {"name": "input", "shape": [1, 3] + list(input_hw), "dtype": "float32",
                      "dynamic_batch": dynamic},
            "output": {"name": "logits", "shape": [1, 10]},
        }
        if calib_count:
            calib_rel = "calibration/{}.npy".format(name)
            os.makedirs(bundle.path("calibration"), exist_ok=True)
            data = np.random.RandomState(0).rand(calib_count, 3, *input_hw).astype(np.float32)
            np.save(bundle.path(calib_rel), data)
            record["calibration"] = {"path": calib_rel, "sha256": sha256_file(bundle.path(calib_rel)),
                                     "count": calib_count, "source": "test", "generic": True}
        bundle.set_model(name, record)
    bundle.save()
    return bundle
