"""TensorRT API shims, chosen by what the installed module offers (not by parsing its version).

Two API generations matter here:

* TensorRT 8.2 (JetPack 4.6, the Jetson Nano): explicit-batch network flag,
  ``config.max_workspace_size``, binding-index I/O (``num_bindings``, ``get_binding_*``),
  ``context.execute_async_v2(bindings, stream)``.
* TensorRT 8.5+ and 10: ``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)``,
  tensor-name I/O (``num_io_tensors``, ``get_tensor_name``, ``set_tensor_address``),
  ``context.execute_async_v3(stream)``.

Every call is direct, so mypy checks it: ``scripts/check_trt_types.py --api 8.2`` against the
hand-written TensorRT 8.2.1 stubs in ``typings/``, ``--api 10`` against PyPI's tensorrt-stubs,
both with the pycuda 2022.1 stubs. A line that uses a name only one generation has carries a
marker, ``# trt<8.5`` or ``# trt>=8.5``; the checker accepts "has no attribute" errors of the
other generation on those lines only (they run after a capability check).
tensorrt is imported lazily; with no TensorRT installed this module still imports.
Python 3.6-compatible.
"""
import collections
import contextlib
import logging
import re
import threading
from typing import TYPE_CHECKING, Any  # noqa: F401 (Any: type comments)

import numpy as np

from deploy.errors import BackendUnavailableError, PipelineError
from deploy.targets import DeviceInfo

if TYPE_CHECKING:  # pragma: no cover - for mypy against the stubs only
    import pycuda.driver  # noqa: F401 (type comments)
    import tensorrt  # noqa: F401 (type comments)

LOG = logging.getLogger(__name__)

DEVICE_HINT = ("run this on the device, where JetPack provides TensorRT (apt: python3-libnvinfer): "
               "python3 pipeline.py engines BUNDLE")

TensorIO = collections.namedtuple("TensorIO", ["name", "index", "is_input", "shape", "dtype"])
# index: binding index (8.2) or I/O tensor index (8.5+); shape: tuple, -1 for a dynamic dim;
# dtype: numpy dtype.


def dims_tuple(dims):
    """A TensorRT ``Dims`` (or any sequence) as a tuple of ints; -1 marks a dynamic dimension."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def require_tensorrt():
    """Return the ``tensorrt`` module, or raise BackendUnavailableError saying what to do.

    A folder named ``tensorrt`` holding only type stubs (``pip install tensorrt-stubs``) imports
    as an empty namespace package; it is treated as "not installed".
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT's Python bindings do not import here ({})".format(exc), hint=DEVICE_HINT) from exc
    if not hasattr(trt, "Builder"):
        raise BackendUnavailableError(
            "the 'tensorrt' module here has no Builder (only type stubs, or a broken install)",
            hint=DEVICE_HINT)
    return trt


def require_pycuda():
    # type: () -> Any
    """Return ``pycuda.driver`` (initialised), or raise BackendUnavailableError.

    Callers then ``import pycuda.driver as cuda`` themselves, so that mypy checks their calls.
    """
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendUnavailableError(
            "pycuda does not import here ({})".format(exc),
            hint="on the device: pip3 install -r requirements-jetson.txt (see docs/device.md)") from exc
    cuda.init()
    return cuda


_PRIMARY_CONTEXTS = {}  # type: dict  # (pycuda.driver module, device index) -> retained primary context
_PRIMARY_LOCK = threading.Lock()


def primary_context(cuda, device_index=0):
    # type: (Any, int) -> pycuda.driver.Context
    """Device ``device_index``'s primary context, retained once per process and never detached.

    Why not retain and detach per use: in pycuda 2022.1, ``detach()`` of a context that is not
    current pushes it and only releases it (cuDevicePrimaryCtxRelease never pops), and detaching
    it while current leaves it on the driver's stack too (src/cpp/cuda.hpp, context::detach), so
    every detach leaves the context pushed on that thread. The CUDA runtime, which TensorRT uses,
    holds the primary context for the life of the process anyway; one more reference costs nothing.
    Users push it, work, free everything while it is current, and pop it: balanced on every thread.
    """
    key = (cuda, int(device_index))
    with _PRIMARY_LOCK:
        context = _PRIMARY_CONTEXTS.get(key)
        if context is None:
            context = cuda.Device(int(device_index)).retain_primary_context()
            _PRIMARY_CONTEXTS[key] = context
    return context


@contextlib.contextmanager
def cuda_context(device_index=0):
    """Make device ``device_index``'s primary context current on this thread, and pop it after.

    The primary context is the one the CUDA runtime (and so TensorRT) uses; pushing it per thread
    lets a runner or a calibrator work outside the main thread, which ``import pycuda.autoinit``
    does not. Free what was allocated inside before leaving the block.
    """
    require_pycuda()
    import pycuda.driver as cuda

    context = primary_context(cuda, device_index)
    context.push()
    try:
        yield context
    finally:
        cuda.Context.pop()


def device_name_and_capability(device_index=0):
    """(name, "major.minor") of the GPU, from pycuda.

    pycuda is required (the runner needs it anyway) so that engines are always named by the same
    device name, e.g. "NVIDIA Tegra X1" on the Jetson Nano.
    """
    require_pycuda()
    import pycuda.driver as cuda

    device = cuda.Device(device_index)
    major, minor = device.compute_capability()
    return str(device.name()), "{}.{}".format(major, minor)


def probe_device(trt, builder):
    # type: (object, tensorrt.Builder) -> DeviceInfo
    """What this machine's GPU and TensorRT report (the ``x86-gpu`` profile is filled from this)."""
    name, capability = device_name_and_capability()
    return DeviceInfo(name=name, compute_capability=capability,
                      fast_fp16=bool(builder.platform_has_fast_fp16),
                      fast_int8=bool(builder.platform_has_fast_int8),
                      tensorrt=trt_version(trt))


def probe_local_device():
    # type: () -> DeviceInfo
    """Create a TensorRT builder just to read what this machine's GPU and TensorRT offer."""
    require_tensorrt()
    import tensorrt as trt

    from deploy.tensorrt.build_log import BuildLog, make_trt_logger

    logger = make_trt_logger(BuildLog())   # kept alive while the builder exists
    builder = trt.Builder(logger)
    try:
        return probe_device(trt, builder)
    finally:
        del builder


def tensorrt_available():
    # type: () -> bool
    try:
        require_tensorrt()
    except BackendUnavailableError:
        return False
    return True


def trt_version(trt):
    # type: (object) -> str
    """``'8.2.1.8'`` style version of the tensorrt module."""
    return str(getattr(trt, "__version__", "unknown"))


def version_tuple(version):
    # type: (str) -> tuple
    return tuple(int(p) for p in re.findall(r"\d+", str(version))[:3])


# ------------------------------------------------------------------------------------------------
# build-side shims
# ------------------------------------------------------------------------------------------------
def network_flags(trt, builder):
    # type: (object, object) -> int
    """Creation flags for an explicit-batch network.

    Builders that still offer implicit batch (``max_batch_size``, TensorRT < 10) need the
    EXPLICIT_BATCH flag for ONNX models; TensorRT 10 is always explicit batch and deprecates it.
    """
    # getattr (noqa B009): a TensorRT < 10 name that the TensorRT 10 stubs lack, so mypy must not look it up
    if hasattr(builder, "max_batch_size"):
        flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag"), "EXPLICIT_BATCH")  # noqa: B009
        return 1 << int(flag)
    return 0


def uses_memory_pools(config):
    # type: (object) -> bool
    return hasattr(config, "set_memory_pool_limit")


def set_workspace(trt, config, nbytes):
    # type: (Any, tensorrt.IBuilderConfig, int) -> str
    """Limit the builder workspace; return which API was used (for the build options record)."""
    if uses_memory_pools(config):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))  # trt>=8.5
        return "set_memory_pool_limit"
    config.max_workspace_size = int(nbytes)  # trt<8.5
    return "max_workspace_size"


# ------------------------------------------------------------------------------------------------
# run-side shims: I/O tensors and execution
# ------------------------------------------------------------------------------------------------
class NamedTensorIO(object):
    """TensorRT 8.5+/10: tensors addressed by name; ``execute_async_v3``."""

    api = "tensor-name"

    def __init__(self, trt, engine):
        # type: (Any, tensorrt.ICudaEngine) -> None
        self.trt = trt
        self.engine = engine

    def tensors(self):
        # type: () -> list
        engine = self.engine
        out = []
        input_mode = self.trt.TensorIOMode.INPUT
        for i in range(engine.num_io_tensors):  # trt>=8.5
            name = engine.get_tensor_name(i)  # trt>=8.5
            is_input = engine.get_tensor_mode(name) == input_mode  # trt>=8.5
            shape = engine.get_tensor_shape(name)  # trt>=8.5
            dtype = engine.get_tensor_dtype(name)  # trt>=8.5
            out.append(TensorIO(name, i, is_input, dims_tuple(shape), np.dtype(self.trt.nptype(dtype))))
        return out

    def set_input_shape(self, context, tensor, shape):
        # type: (tensorrt.IExecutionContext, TensorIO, tuple) -> None
        if not context.set_input_shape(tensor.name, tuple(int(d) for d in shape)):  # trt>=8.5
            raise PipelineError("TensorRT refused input shape {} for {!r}".format(tuple(shape), tensor.name),
                                hint="use a batch within the engine's profile (engines --max-batch N rebuilds it)")

    def output_shape(self, context, tensor):
        # type: (tensorrt.IExecutionContext, TensorIO) -> tuple
        return dims_tuple(context.get_tensor_shape(tensor.name))  # trt>=8.5

    def profile_shapes(self, tensor):
        # type: (TensorIO) -> tuple
        """(min, opt, max) shapes of optimization profile 0 for input ``tensor``."""
        shapes = self.engine.get_tensor_profile_shape(tensor.name, 0)  # trt>=8.5
        return tuple(dims_tuple(d) for d in shapes)

    def bind(self, context, tensors, addresses):
        # type: (tensorrt.IExecutionContext, list, dict) -> None
        for tensor in tensors:
            context.set_tensor_address(tensor.name, int(addresses[tensor.name]))  # trt>=8.5

    def execute(self, context, stream_handle):
        # type: (tensorrt.IExecutionContext, int) -> bool
        return bool(context.execute_async_v3(int(stream_handle)))  # trt>=8.5


class IndexedTensorIO(object):
    """TensorRT 8.2 and older: binding indices; ``execute_async_v2(bindings, stream)``."""

    api = "binding-index"

    def __init__(self, trt, engine):
        # type: (Any, tensorrt.ICudaEngine) -> None
        self.trt = trt
        self.engine = engine
        self._bindings = []  # type: list

    def tensors(self):
        # type: () -> list
        engine = self.engine
        out = []
        for i in range(int(engine.num_bindings)):  # trt<8.5
            name = engine.get_binding_name(i)  # trt<8.5
            is_input = bool(engine.binding_is_input(i))  # trt<8.5
            shape = engine.get_binding_shape(i)  # trt<8.5
            dtype = engine.get_binding_dtype(i)  # trt<8.5
            out.append(TensorIO(name, i, is_input, dims_tuple(shape), np.dtype(self.trt.nptype(dtype))))
        return out

    def set_input_shape(self, context, tensor, shape):
        # type: (tensorrt.IExecutionContext, TensorIO, tuple) -> None
        if not context.set_binding_shape(tensor.index, tuple(int(d) for d in shape)):  # trt<8.5
            raise PipelineError("TensorRT refused input shape {} for {!r}".format(tuple(shape), tensor.name),
                                hint="use a batch within the engine's profile (engines --max-batch N rebuilds it)")

    def output_shape(self, context, tensor):
        # type: (tensorrt.IExecutionContext, TensorIO) -> tuple
        return dims_tuple(context.get_binding_shape(tensor.index))  # trt<8.5

    def profile_shapes(self, tensor):
        # type: (TensorIO) -> tuple
        shapes = self.engine.get_profile_shape(0, tensor.index)  # trt<8.5
        return tuple(dims_tuple(d) for d in shapes)

    def bind(self, context, tensors, addresses):
        # type: (tensorrt.IExecutionContext, list, dict) -> None
        bindings = [0] * len(tensors)
        for tensor in tensors:
            bindings[tensor.index] = int(addresses[tensor.name])
        self._bindings = bindings

    def execute(self, context, stream_handle):
        # type: (tensorrt.IExecutionContext, int) -> bool
        return bool(context.execute_async_v2(bindings=self._bindings, stream_handle=int(stream_handle)))  # trt<8.5


def tensor_io_for(trt, engine):
    """Pick the I/O API the engine offers: tensor names (8.5+) or binding indices (8.2)."""
    if hasattr(engine, "num_io_tensors"):
        return NamedTensorIO(trt, engine)
    if hasattr(engine, "num_bindings"):
        return IndexedTensorIO(trt, engine)
    raise BackendUnavailableError(
        "this TensorRT engine offers neither tensor-name nor binding-index I/O",
        hint="use TensorRT 8.2 or newer")
