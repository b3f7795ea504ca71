"""A strict stand-in for ``tensorrt`` (no GPU, no TensorRT here); ``pycuda.driver``'s is pycuda_fakes, on the
same fake GPU (fake_gpu).

They implement only the calls deploy/ makes, and they refuse what the real ones refuse. Each faked
call cites the binding source it models ("file@tag:line"), read from the local mirrors:

* TensorRT: ``python/src/infer/pyCore.cpp``, ``python/src/infer/pyInt8.cpp``,
  ``python/src/parsers/pyOnnx.cpp``, ``include/NvInfer.h`` at tags 8.2.1, 8.5.3 and v10.13.0.
* pycuda: ``src/cpp/cuda.hpp`` and ``src/wrapper/wrap_cudadrv.cpp`` at v2022.1.

Three TensorRT generations: ``"8.2"`` (JetPack 4.6: binding indices, ``max_workspace_size``,
callbacks called from noexcept C++ without a try, so a Python exception aborts the process),
``"8.5"`` (JetPack 5: both I/O APIs and both workspace APIs exist; callbacks catch, print and
return a failure value) and ``"10"`` (tensor names and memory pools only).

The GPU is modelled as per-stream queues: async copies, events and TensorRT's execute are queued
on the stream whose handle they get and run at ``Stream.synchronize()``; a copy reads or writes
the host buffer when it runs, as DMA does. The fake engine computes
``logits[b, k] = sum(input[b]) + k`` from the fake device memory.
"""
import json
import sys
import types

import numpy as np

from tests.deploy.fake_gpu import CLOCK, EXECUTE_MS, ProcessAborted, enqueue, read_device, write_device

GENERATIONS = ("8.2", "8.5", "10")
FAKE_ONNX_MAGIC = b"FAKEONNX"


# ------------------------------------------------------------------------------------------------
# tensorrt
# ------------------------------------------------------------------------------------------------
class _PybindMeta(type):
    """pybind11 (>= 2.6): a Python subclass whose ``__init__`` does not call the bound base's
    ``__init__`` raises TypeError at construction; older pybind11 crashes later."""

    def __call__(cls, *args, **kwargs):
        obj = type.__call__(cls, *args, **kwargs)
        if not obj.__dict__.get("_pybind_initialised"):
            raise TypeError("{}.__init__() must be called when overriding __init__".format(cls.__mro__[-2].__name__))
        return obj


class _Bound(object):
    """pybind11 objects (no py::dynamic_attr) refuse attributes their class does not bind: setting
    ``config.max_workspace_size`` on TensorRT 10 raises AttributeError instead of doing nothing."""

    def __setattr__(self, name, value):
        if not name.startswith("_") and not hasattr(type(self), name) and name not in getattr(self, "_fields", ()):
            raise AttributeError("'{}' object has no attribute '{}'".format(type(self).__name__, name))
        object.__setattr__(self, name, value)


def make_fake_trt(generation="10", fast_fp16=True, fast_int8=True, parse_ok=True, build_ok=True,
                  version=None, io_shape=(-1, 3, 4, 4), classes=10, output_dtype="FLOAT", timing_key="sm53",
                  real_onnx=False):
    """A fake ``tensorrt`` module.

    ``io_shape``: the input shape of an engine built from a network nothing was parsed into (-1 =
    dynamic batch); a parsed fake ONNX brings its own. ``timing_key``: which GPU a timing cache
    belongs to. ``real_onnx``: the parser also takes a real ONNX model (one input "input", one
    output "logits") and the engine computes it with ONNX Runtime on the host, standing in for the
    GPU, so a test can check real numbers end to end (the doctor's smoke test).
    """
    assert generation in GENERATIONS
    has_v2 = generation in ("8.2", "8.5")      # binding indices, execute_async_v2, max_workspace_size
    has_v3 = generation in ("8.5", "10")       # tensor names, execute_async_v3, memory pools
    callbacks_abort = generation == "8.2"      # pyInt8.cpp@8.2.1 / pyCore.cpp@8.2.1:399: no try/catch
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version or {"8.2": "8.2.1.8", "8.5": "8.5.2.2", "10": "10.13.0.35"}[generation]
    trt.calls = []                 # what the code under test did, for assertions
    trt.stderr = []                # what the 8.5+/10 bindings print when a callback raises
    trt.calibration_images = []    # every image TensorRT read during calibration

    def callback(name, failure, fn, *args):
        """A Python override called from C++ (pyInt8.cpp, pyCore.cpp PyLogger)."""
        try:
            return fn(*args)
        except Exception as exc:   # noqa: BLE001 - modelling the C++ side
            if callbacks_abort:
                raise ProcessAborted("terminate called after an exception in {}(): {!r}".format(name, exc)) from exc
            trt.stderr.append("[ERROR] Exception caught in {}(): {}".format(name, exc))
            return failure

    class _Enum(object):
        def __init__(self, name, value):
            self.name, self.value = name, value

        def __int__(self):
            return self.value

        def __eq__(self, other):
            return type(other) is type(self) and other.value == self.value

        def __hash__(self):
            return hash((type(self).__name__, self.value))

        def __repr__(self):
            return "{}.{}".format(type(self).__name__, self.name)

        __str__ = __repr__

    def enum(cls_name, *names):
        cls = type(cls_name, (_Enum,), {})
        for i, n in enumerate(names):
            setattr(cls, n, cls(n, i))
        return cls

    def check_enum(value, cls, what):
        if not isinstance(value, cls):
            raise TypeError("{}: incompatible function arguments: expected tensorrt.{}, got {!r}".format(
                what, cls.__name__, value))

    # pyCore.cpp@8.2.1:396 PyLogger / ILogger binding (py::init<>, pure virtual log)
    class ILogger(object, metaclass=_PybindMeta):
        Severity = enum("Severity", "INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")

        def __init__(self):
            self._pybind_initialised = True

        def log(self, severity, msg):
            raise RuntimeError("Tried to call pure virtual function \"ILogger::log\"")

    class Logger(ILogger):
        def __init__(self, min_severity=None):
            ILogger.__init__(self)

        def log(self, severity, msg):
            pass

    def require_logger(logger, what):
        if not isinstance(logger, ILogger):
            raise TypeError("{}: incompatible function arguments (logger must be a tensorrt.ILogger)".format(what))

    def log(logger, severity, message):
        callback("log", None, logger.log, severity, message)

    trt.ILogger, trt.Logger = ILogger, Logger
    trt.NetworkDefinitionCreationFlag = enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
    trt.BuilderFlag = enum("BuilderFlag", "FP16", "INT8")
    trt.ProfilingVerbosity = enum("ProfilingVerbosity", "LAYER_NAMES_ONLY", "NONE", "DETAILED")
    trt.LayerInformationFormat = enum("LayerInformationFormat", "ONELINE", "JSON")
    trt.DataType = enum("DataType", "FLOAT", "HALF", "INT8", "INT32", "BOOL")
    if has_v3:
        trt.TensorIOMode = enum("TensorIOMode", "NONE", "INPUT", "OUTPUT")
        trt.MemoryPoolType = enum("MemoryPoolType", "WORKSPACE")

    _NPTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_}

    def nptype(trt_type):
        # python/packaging/tensorrt/__init__.py@8.2.1:150 nptype (a dict lookup; TypeError otherwise)
        if not isinstance(trt_type, trt.DataType):
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return _NPTYPES[trt_type.name]

    trt.nptype = nptype

    # pyInt8.cpp@8.2.1:163 IInt8Calibrator (py::init<>; get_batch_size pure; the rest overridden)
    class IInt8Calibrator(object, metaclass=_PybindMeta):
        def __init__(self):
            self._pybind_initialised = True

        def get_batch_size(self):
            # pyInt8.cpp@8.2.1:35 getBatchSize: pure virtual, the application overrides it
            raise RuntimeError("Tried to call pure virtual function \"IInt8Calibrator::getBatchSize\"")

        def get_batch(self, names):
            # pyInt8.cpp@8.2.1:163 get_batch (documentation binding; overridden)
            return []

        def read_calibration_cache(self):
            # pyInt8.cpp@8.2.1:163 read_calibration_cache (documentation binding; overridden)
            return None

        def write_calibration_cache(self, cache):
            # pyInt8.cpp@8.2.1:163 write_calibration_cache (documentation binding; overridden)
            return None

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        _algorithm = "EntropyCalibration2"

    class IInt8MinMaxCalibrator(IInt8Calibrator):
        _algorithm = "MinMaxCalibration"

    trt.IInt8Calibrator = IInt8Calibrator
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.IInt8MinMaxCalibrator = IInt8MinMaxCalibrator

    class Network(_Bound):
        def __init__(self, flags):
            self._flags = flags
            self._input = None          # (name, shape) once a model is parsed
            self._onnx = None           # the model's bytes, with real_onnx

    class OptimizationProfile(_Bound):
        def __init__(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):
            # pyCore.cpp@8.2.1:509 opt_profile_set_shape: inconsistent shapes raise
            smin, sopt, smax = tuple(min), tuple(opt), tuple(max)
            if not (len(smin) == len(sopt) == len(smax)) or any(
                    not (a <= b <= c) or a < 0 for a, b, c in zip(smin, sopt, smax)):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            self._shapes[input] = (smin, sopt, smax)

    class TimingCache(_Bound):
        def __init__(self, key):
            self._key = key

        def serialize(self):
            # pyCore.cpp@8.2.1:753 ITimingCache.serialize -> IHostMemory
            return memoryview(("TC:" + self._key).encode())   # IHostMemory: a buffer

    class Config(_Bound):
        def __init__(self):
            self._flags = set()
            self._calibrator = None
            self._profiles = []
            self._calibration_profile = None
            self._timing_cache = None
            self._verbosity = None
            self._pool_limits = {}
            self._workspace = 0

        def set_flag(self, flag):
            # pyCore.cpp@8.2.1:771
            check_enum(flag, trt.BuilderFlag, "set_flag")
            self._flags.add(flag.name)

        @property
        def int8_calibrator(self):
            # pyCore.cpp@8.2.1:762
            return self._calibrator

        @int8_calibrator.setter
        def int8_calibrator(self, calibrator):
            # pyCore.cpp@8.2.1:762 (a tensorrt.IInt8Calibrator or None)
            if calibrator is not None and not isinstance(calibrator, IInt8Calibrator):
                raise TypeError("int8_calibrator: incompatible type {}".format(type(calibrator).__name__))
            self._calibrator = calibrator

        @property
        def profiling_verbosity(self):
            # pyCore.cpp@8.2.1:797
            return self._verbosity

        @profiling_verbosity.setter
        def profiling_verbosity(self, value):
            # pyCore.cpp@8.2.1:797
            check_enum(value, trt.ProfilingVerbosity, "profiling_verbosity")
            self._verbosity = value

        def create_timing_cache(self, serialized_timing_cache):
            # pyCore.cpp@8.2.1:229/803: a buffer; a corrupt blob gives nullptr (None) and a log line
            blob = bytes(memoryview(serialized_timing_cache))
            if not blob:
                return TimingCache(timing_key)
            if not blob.startswith(b"TC:"):
                return None
            return TimingCache(blob[3:].decode())

        def set_timing_cache(self, cache, ignore_mismatch):
            # pyCore.cpp@8.2.1:805: False when the cache is from another device and not ignoring
            if not isinstance(cache, TimingCache) or not isinstance(ignore_mismatch, bool):
                raise TypeError("set_timing_cache: incompatible function arguments")
            if cache._key != timing_key and not ignore_mismatch:
                return False
            self._timing_cache = cache
            return True

        def get_timing_cache(self):
            # pyCore.cpp@8.2.1:807 get_timing_cache
            return self._timing_cache

        def add_optimization_profile(self, profile):
            # pyCore.cpp@8.2.1:783: the profile's index, -1 if invalid
            if not profile._shapes:
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def set_calibration_profile(self, profile):
            # pyCore.cpp@8.2.1:785, NvInfer.h@8.2.1:8264 (MIN and MAX are overwritten by OPT)
            if profile is not None and not profile._shapes:
                return False
            self._calibration_profile = profile
            return True

    if has_v3:
        def set_memory_pool_limit(self, pool, pool_size):
            # pyCore.cpp@8.5.3:1058
            check_enum(pool, trt.MemoryPoolType, "set_memory_pool_limit")
            self._pool_limits[pool.name] = int(pool_size)
        Config.set_memory_pool_limit = set_memory_pool_limit
    if has_v2:
        def _get_workspace(self):
            return self._workspace

        def _set_workspace(self, value):
            # pyCore.cpp@8.2.1:765 max_workspace_size (size_t)
            if not isinstance(value, int) or value < 0:
                raise TypeError("max_workspace_size: incompatible value {!r}".format(value))
            self._workspace = value
        Config.max_workspace_size = property(_get_workspace, _set_workspace)

    class OnnxParser(_Bound):
        def __init__(self, network, logger):
            require_logger(logger, "OnnxParser")
            self._network, self._logger = network, logger
            self._errors = []

        @property
        def num_errors(self):
            # pyOnnx.cpp@8.2.1:88 num_errors
            return len(self._errors)

        def parse(self, model, path=None):
            # pyOnnx.cpp@8.2.1:51/80: a buffer; False and errors on a bad model
            data = bytes(memoryview(model))
            trt.calls.append(("parse", len(data)))
            if has_v2 and not self._network._flags & (1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)):
                self._errors.append("Network must have explicit batch dimension (EXPLICIT_BATCH flag)")
                return False
            if real_onnx and not data.startswith(FAKE_ONNX_MAGIC):
                return self._parse_real(data)
            if not data.startswith(FAKE_ONNX_MAGIC):
                self._errors.append("Failed to parse ONNX model: not a ModelProto")
                return False
            if not parse_ok:
                self._errors.append("In node 3 (Conv): unsupported attribute")
                return False
            try:   # what follows the JSON header stands for the graph; its bytes do not matter here
                spec, _ = json.JSONDecoder().raw_decode(data[len(FAKE_ONNX_MAGIC):].decode("utf-8", "replace"))
            except ValueError:
                self._errors.append("Failed to parse ONNX model: truncated header")
                return False
            self._network._input = (spec["input_name"], tuple(spec["input_shape"]))
            return True

        def _parse_real(self, data):
            import onnx

            try:
                model = onnx.load_from_string(data)
                onnx.checker.check_model(model)
            except Exception as exc:   # the real parser reports any defect as a parse error
                self._errors.append("Failed to parse ONNX model: {}".format(exc))
                return False
            if not parse_ok:
                self._errors.append("In node 3 (Conv): unsupported attribute")
                return False
            graph_input = model.graph.input[0]
            shape = tuple(d.dim_value if d.dim_value else -1 for d in graph_input.type.tensor_type.shape.dim)
            self._network._input = (graph_input.name, shape)
            self._network._onnx = data
            return True

        def get_error(self, index):
            # pyOnnx.cpp@8.2.1:89 get_error(index)
            return self._errors[index]

    def calibrate(logger, config, input_name, input_shape):
        """How TensorRT feeds a calibrator of an explicit-batch network: one input's worth of data
        per get_batch (the input shape, or the calibration profile's OPT shape), until get_batch
        returns nothing (NvInfer.h@v10.13.0 IInt8Calibrator::getBatchSize; pyInt8.cpp@8.2.1:39)."""
        calibrator = config._calibrator
        if calibrator is None:
            log(logger, ILogger.Severity.ERROR, "INT8 requested but no calibrator set")
            return False
        if any(d < 0 for d in input_shape):
            # NvInfer.h@8.2.1:8258, @8.5.3:9053, @v10.13.0:9866: "Calibration optimization profile
            # must be set if int8 calibration is used ... for a network with runtime dimensions"
            profile = config._calibration_profile
            if profile is None or input_name not in profile._shapes:
                log(logger, ILogger.Severity.ERROR, "Calibration profile must be set for a network with runtime dimensions")
                return False
            input_shape = profile._shapes[input_name][1]
        cache = callback("read_calibration_cache", None, calibrator.read_calibration_cache)
        if cache is not None:
            # pyInt8.cpp@8.2.1:55: the result must be a buffer (None: calibrate)
            try:
                blob = bytes(memoryview(cache))
            except TypeError as exc:
                if callbacks_abort:
                    raise ProcessAborted("read_calibration_cache returned a non-buffer: {}".format(exc)) from exc
                blob = b""
            if blob:
                trt.calls.append(("calibration_cache_used", len(blob)))
                return True
        batch_size = callback("get_batch_size", -1, calibrator.get_batch_size)
        if not isinstance(batch_size, int):
            raise ProcessAborted("get_batch_size returned {!r}: cannot cast to int".format(batch_size))
        nbytes = int(np.prod(input_shape)) * 4
        batches = 0
        while True:
            result = callback("get_batch", None, calibrator.get_batch, [input_name])
            if result is None or len(result) == 0:
                break
            if not all(isinstance(a, int) for a in result):   # cast<std::vector<size_t>>
                raise ProcessAborted("get_batch returned {!r}: cannot cast to a list of ints".format(result))
            data = np.frombuffer(read_device(result[0], nbytes), dtype=np.float32).reshape(input_shape)
            trt.calibration_images.extend(np.array(image) for image in data)
            batches += 1
        trt.calls.append(("calibrated_batches", batches))
        if not batches:
            log(logger, ILogger.Severity.ERROR, "Calibration failure occurred with no scaling factors detected")
            return False
        text = "TRT-{}-{}\n{}: 3c010a14\nlogits: 3d8f5c29\n".format(
            "".join(trt.__version__.split(".")[:3])[:4].ljust(4, "0"), type(calibrator)._algorithm, input_name)
        # pyInt8.cpp@8.2.1:78 writeCalibrationCache: a memoryview over TensorRT's buffer
        callback("write_calibration_cache", None, calibrator.write_calibration_cache, memoryview(text.encode()))
        return True

    class Builder(_Bound):
        _fields = ("platform_has_fast_fp16", "platform_has_fast_int8", "max_batch_size")

        def __init__(self, logger):
            require_logger(logger, "Builder")
            self._logger = logger
            self.platform_has_fast_fp16 = fast_fp16
            self.platform_has_fast_int8 = fast_int8
            if has_v2:
                self.max_batch_size = 1         # pyCore.cpp@8.2.1:822 (implicit batch; 8.5 too)

        def create_network(self, flags=0):
            # pyCore.cpp@8.2.1:820 createNetworkV2(flags)
            if not isinstance(flags, int):
                raise TypeError("create_network: flags must be an int")
            trt.calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            # pyCore.cpp@8.2.1:811 create_builder_config
            return Config()

        def create_optimization_profile(self):
            # pyCore.cpp@8.2.1:829 create_optimization_profile
            return OptimizationProfile()

        def build_serialized_network(self, network, config):
            # pyCore.cpp@8.2.1:838: IHostMemory, or None (errors go to the logger)
            if not isinstance(network, Network) or not isinstance(config, Config):
                raise TypeError("build_serialized_network: incompatible function arguments")
            trt.last_config = config
            logger = self._logger
            log(logger, ILogger.Severity.INFO, "building with flags {}".format(sorted(config._flags)))
            log(logger, ILogger.Severity.VERBOSE, "tactic chatter")
            name, shape = network._input or ("input", tuple(io_shape))
            profile = None
            if any(d < 0 for d in shape):
                match = [p for p in config._profiles if name in p._shapes]
                if not match:
                    log(logger, ILogger.Severity.ERROR,
                        "Network has dynamic or shape inputs, but no optimization profile has been defined.")
                    return None
                profile = match[0]._shapes[name]
            if "INT8" in config._flags and not calibrate(logger, config, name, shape):
                return None
            if not build_ok:
                log(logger, ILogger.Severity.ERROR, "out of memory for tactic")
                return None
            return memoryview(json.dumps({
                "fake_engine": True, "generation": generation, "flags": sorted(config._flags),
                "input": [name, list(shape)], "profile": [list(s) for s in profile] if profile else None,
                "onnx": network._onnx.hex() if network._onnx else None,
            }).encode())

    trt.Builder = Builder
    trt.OnnxParser = OnnxParser

    # -- runtime ------------------------------------------------------------------------------------
    class Engine(_Bound):
        def __init__(self, blob, logger):
            self._logger = logger
            self._input_name, shape = blob["input"]
            self._shape = tuple(shape)
            self._profile = tuple(tuple(s) for s in blob["profile"]) if blob["profile"] else None
            self._names = [self._input_name, "logits"]
            self._onnx = bytes.fromhex(blob["onnx"]) if blob.get("onnx") else None
            self._classes = _onnx_classes(self._onnx) if self._onnx else classes
            self._shapes = {self._input_name: self._shape, "logits": (self._shape[0], self._classes)}
            self._dtypes = {self._input_name: trt.DataType.FLOAT, "logits": getattr(trt.DataType, output_dtype)}

        def _index(self, index):
            if not isinstance(index, int) or not 0 <= index < len(self._names):
                raise IndexError("binding index {!r} out of range".format(index))
            return index

        def _name(self, name):
            if name not in self._shapes:
                raise KeyError("no tensor named {!r}".format(name))
            return name

        def create_execution_context(self):
            # pyCore.cpp@8.2.1:634 create_execution_context
            return Context(self)

        def create_engine_inspector(self):
            # pyCore.cpp@8.2.1:690 create_engine_inspector
            return Inspector()

    if has_v2:
        # pyCore.cpp@8.2.1:635-667
        Engine.num_bindings = property(lambda self: len(self._names))
        Engine.get_binding_name = lambda self, index: self._names[self._index(index)]
        Engine.binding_is_input = lambda self, index: self._index(index) == 0
        Engine.get_binding_shape = lambda self, index: self._shapes[self._names[self._index(index)]]
        Engine.get_binding_dtype = lambda self, index: self._dtypes[self._names[self._index(index)]]

        def get_profile_shape(self, profile_index, binding):
            # pyCore.cpp@8.2.1:665 get_profile_shape(profile_index, binding) -> [min, opt, max]
            if profile_index != 0 or self._index(binding) != 0:
                raise RuntimeError("get_profile_shape: invalid profile index or binding")
            return list(self._profile or (self._shape,) * 3)
        Engine.get_profile_shape = get_profile_shape
    if has_v3:
        # pyCore.cpp@8.5.3:928-944
        Engine.num_io_tensors = property(lambda self: len(self._names))
        Engine.get_tensor_name = lambda self, index: self._names[self._index(index)]
        Engine.get_tensor_mode = lambda self, name: (
            trt.TensorIOMode.INPUT if self._name(name) == self._input_name else trt.TensorIOMode.OUTPUT)
        Engine.get_tensor_shape = lambda self, name: self._shapes[self._name(name)]
        Engine.get_tensor_dtype = lambda self, name: self._dtypes[self._name(name)]

        def get_tensor_profile_shape(self, name, profile_index):
            # pyCore.cpp@8.5.3:944 get_tensor_profile_shape(name, profile_index)
            if profile_index != 0 or self._name(name) != self._input_name:
                raise RuntimeError("get_tensor_profile_shape: invalid profile index or tensor")
            return list(self._profile or (self._shape,) * 3)
        Engine.get_tensor_profile_shape = get_tensor_profile_shape

    class Context(_Bound):
        def __init__(self, engine):
            self._engine = engine
            self._shapes = dict(engine._shapes)
            self._addresses = {}

        def _set_shape(self, name, shape):
            # IExecutionContext::setBindingDimensions / setInputShape: False outside the profile
            shape = tuple(shape)
            low, _, high = self._engine._profile or (self._engine._shape,) * 3
            if len(shape) != len(low) or any(not (a <= d <= b) for a, d, b in zip(low, shape, high)):
                return False
            self._shapes[name] = shape
            self._shapes["logits"] = (shape[0], self._engine._classes)
            return True

        def _run(self, addresses, stream_handle):
            if not isinstance(stream_handle, int):
                raise TypeError("stream_handle must be an int")
            x_shape, y_shape = self._shapes[self._engine._input_name], self._shapes["logits"]
            if any(d < 0 for d in x_shape):
                log(self._engine._logger, ILogger.Severity.ERROR, "not all input shapes are specified")
                return False
            x_address, y_address = addresses[self._engine._input_name], addresses["logits"]
            out_type = np.dtype(nptype(self._engine._dtypes["logits"]))

            def work():
                x = np.frombuffer(read_device(x_address, int(np.prod(x_shape)) * 4), dtype=np.float32).reshape(x_shape)
                if self._engine._onnx:
                    y = _run_onnx(self._engine._onnx, self._engine._input_name, x)
                else:
                    y = x.reshape(x_shape[0], -1).sum(axis=1, keepdims=True) + np.arange(y_shape[1], dtype=np.float32)
                write_device(y_address, y.astype(out_type).tobytes())
                CLOCK[0] += EXECUTE_MS
            enqueue(stream_handle, "execute", work)
            trt.calls.append(("execute", generation, stream_handle))
            return True

    if has_v2:
        def set_binding_shape(self, binding, shape):
            # pyCore.cpp@8.2.1:615 setBindingDimensions -> bool
            index = self._engine._index(binding)
            if index != 0:
                return False
            return self._set_shape(self._engine._names[index], shape)

        def get_binding_shape(self, binding):
            # pyCore.cpp@8.2.1:617 get_binding_shape(binding)
            return self._shapes[self._engine._names[self._engine._index(binding)]]

        def execute_async_v2(self, bindings, stream_handle, input_consumed=None):
            # pyCore.cpp@8.2.1:118/600: bindings cast to std::vector<size_t>, one per binding
            if len(bindings) != len(self._engine._names) or not all(isinstance(b, int) for b in bindings):
                raise TypeError("execute_async_v2: bindings must be one int address per binding")
            return self._run(dict(zip(self._engine._names, bindings)), stream_handle)

        Context.set_binding_shape, Context.get_binding_shape = set_binding_shape, get_binding_shape
        Context.execute_async_v2 = execute_async_v2
    if has_v3:
        def set_input_shape(self, name, shape):
            # pyCore.cpp@8.5.3:819 setInputShape -> bool
            if self._engine._name(name) != self._engine._input_name:
                return False
            return self._set_shape(name, shape)

        def get_tensor_shape(self, name):
            # pyCore.cpp@8.5.3:821 get_tensor_shape(name)
            return self._shapes[self._engine._name(name)]

        def set_tensor_address(self, name, memory):
            # pyCore.cpp@8.5.3:822 (memory: an int address)
            if not isinstance(memory, int):
                raise TypeError("set_tensor_address: memory must be an int")
            self._addresses[self._engine._name(name)] = memory
            return True

        def execute_async_v3(self, stream_handle):
            # pyCore.cpp@8.5.3:839: every I/O tensor needs an address
            if set(self._addresses) != set(self._engine._names):
                return False
            return self._run(self._addresses, stream_handle)

        Context.set_input_shape, Context.get_tensor_shape = set_input_shape, get_tensor_shape
        Context.set_tensor_address, Context.execute_async_v3 = set_tensor_address, execute_async_v3

    class Inspector(_Bound):
        def get_engine_information(self, format):
            # pyCore.cpp@8.2.1:865
            check_enum(format, trt.LayerInformationFormat, "get_engine_information")
            return json.dumps({"Layers": ["conv1", "fc"], "format": str(format)})

    class Runtime(_Bound):
        def __init__(self, logger):
            require_logger(logger, "Runtime")
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            # pyCore.cpp@8.2.1:149/849: a buffer; None (and a logged error) when it is not an engine
            try:
                blob = json.loads(bytes(memoryview(serialized_engine)).decode())
            except ValueError:
                log(self._logger, ILogger.Severity.ERROR, "magic tag mismatch")
                return None
            if blob.get("generation") != generation:
                log(self._logger, ILogger.Severity.ERROR, "version tag mismatch")
                return None
            return Engine(blob, self._logger)

    trt.Runtime = Runtime
    return trt


def _onnx_classes(data):
    import onnx

    return onnx.load_from_string(data).graph.output[0].type.tensor_type.shape.dim[-1].dim_value


def _run_onnx(data, input_name, x):
    """The "GPU" of a real_onnx engine: ONNX Runtime on the host."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {input_name: x})[0]


def install(monkeypatch, trt=None, pycuda=None):
    """Put fakes in sys.modules (None: make the import fail)."""
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    if pycuda is None:
        monkeypatch.setitem(sys.modules, "pycuda", None)
        monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    else:
        monkeypatch.setitem(sys.modules, "pycuda", pycuda[0])
        monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda[1])


def fake_onnx_bytes(input_shape, input_name="input"):
    """What the fake parser accepts (it refuses anything else, as the real one refuses non-ONNX)."""
    return FAKE_ONNX_MAGIC + json.dumps({"input_name": input_name, "input_shape": list(input_shape)}).encode()


def engine_bytes(trt, input_shape=(-1, 3, 4, 4), max_batch=4):
    """A serialized fake engine (what ``engines`` would build), with a profile for a dynamic batch."""
    logger = trt.Logger()
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if hasattr(builder, "max_batch_size") else 0
    network = builder.create_network(flags)
    assert trt.OnnxParser(network, logger).parse(fake_onnx_bytes(input_shape))
    config = builder.create_builder_config()
    if input_shape[0] < 0:
        profile = builder.create_optimization_profile()
        chw = tuple(input_shape[1:])
        profile.set_shape("input", (1,) + chw, (max_batch,) + chw, (max_batch,) + chw)
        config.add_optimization_profile(profile)
    return bytes(builder.build_serialized_network(network, config))


# ------------------------------------------------------------------------------------------------
# a small bundle
# ------------------------------------------------------------------------------------------------
def make_bundle(root, target_name="jetson-nano", models=("tiny",), calib_count=20, dynamic=False,
                input_hw=(4, 4)):
    """A bundle with fake ONNX files (what the fake parser reads) and calibration images."""
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
            handle.write(fake_onnx_bytes([-1 if dynamic else 1, 3] + list(input_hw)))
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
