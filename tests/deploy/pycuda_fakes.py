"""A strict stand-in for ``pycuda.driver`` (pycuda 2022.1, the calls deploy/ makes), on the fake GPU.

Each faked call cites the binding source it models (``src/cpp/cuda.hpp``, ``src/wrapper/wrap_cudadrv.cpp``
at v2022.1, "file@tag:line"). See trt_fakes for the fake TensorRT that shares its GPU.
"""
import threading
import types

import numpy as np

from tests.deploy.fake_gpu import (
    _ADDRESSES,
    _HANDLES,
    CLOCK,
    MEMORY,
    STREAMS,
    enqueue,
    read_device,
    write_device,
)


# ------------------------------------------------------------------------------------------------
# pycuda.driver
# ------------------------------------------------------------------------------------------------
def make_fake_pycuda(device_name="NVIDIA Tegra X1", capability=(5, 3)):
    """A fake ``pycuda`` package and its ``driver``; returns (package, driver)."""
    driver = types.ModuleType("pycuda.driver")
    local = threading.local()
    driver.primary_refs = {}     # device -> cuDevicePrimaryCtxRetain count
    driver.leaks = []            # objects whose destructor could not activate their context
    driver.allocations = []
    driver.live = {}             # id -> (kind) of context-dependent objects not yet destroyed
    driver.calls = []            # (async operation, stream handle) in the order they were issued
    driver.initialised = [False]

    class Error(Exception):
        pass

    class LogicError(Error):
        pass

    driver.Error, driver.LogicError = Error, LogicError

    def context_stack():
        """pycuda's own per-thread stack (cuda.hpp@v2022.1:541 context_stack)."""
        return local.__dict__.setdefault("py_stack", [])

    def driver_stack():
        """The CUDA driver's per-thread stack of current contexts (cuCtxPushCurrent/PopCurrent)."""
        return local.__dict__.setdefault("driver_stack", [])

    driver.context_stack, driver.driver_stack = context_stack, driver_stack

    def current_context(except_=None):
        # cuda.hpp@v2022.1:749 context::current_context: drops invalid entries from the top
        stack = context_stack()
        while stack:
            top = stack[-1]
            if top is not except_ and top.valid:
                return top
            stack.pop()
        return None

    def require_current(what):
        # cuda.hpp@v2022.1:919 context_dependent::acquire_context ("no currently active context?")
        context = current_context()
        if context is None or not driver_stack() or not context.alive():
            raise LogicError("{} failed: explicit_context_dependent failed: no currently active context?".format(what))
        return context

    class ContextDependent(object):
        """cuda.hpp@v2022.1:946 context_dependent; destruction: cuda.hpp@v2022.1:950
        scoped_context_activation (a dead or out-of-thread context leaks the object)."""

        def __init__(self, what):
            self._context = require_current(what)
            self._destroyed = False
            driver.live[id(self)] = type(self).__name__

        def _destroy(self, release):
            if self._destroyed:
                return
            self._destroyed = True
            driver.live.pop(id(self), None)
            context = self._context
            if not context.valid or not context.alive():
                driver.leaks.append((type(self).__name__, "cannot activate dead context"))
                return
            if current_context() is not context and threading.current_thread() is not context.thread:
                driver.leaks.append((type(self).__name__, "cannot activate out-of-thread context"))
                return
            release()

        def __del__(self):
            try:
                self._destroy(lambda: None)
            except Exception:   # interpreter shutdown
                pass

    class DeviceAllocation(ContextDependent):
        """cuda.hpp@v2022.1:1561 device_allocation; wrap_cudadrv.cpp@v2022.1:1437 mem_alloc."""

        def __init__(self, nbytes):
            ContextDependent.__init__(self, "cuMemAlloc")
            self.address = next(_ADDRESSES)
            self.nbytes = int(nbytes)
            MEMORY[self.address] = bytearray(self.nbytes)

        def __int__(self):
            return self.address

        __index__ = __int__

        @property
        def freed(self):
            return self._destroyed

        def free(self):
            # cuda.hpp@v2022.1:1574 device_allocation::free (scoped_context_activation, cuMemFree)
            address = self.address
            self._destroy(lambda: MEMORY.pop(address, None))

        def __del__(self):
            try:
                self._destroy(lambda: MEMORY.pop(self.address, None))
            except Exception:
                pass

    def mem_alloc(nbytes):
        # wrap_cudadrv.cpp@v2022.1:1437 mem_alloc (a context_dependent device_allocation)
        allocation = DeviceAllocation(nbytes)
        driver.allocations.append(allocation)
        return allocation

    PINNED = {}    # id -> bytearray backing a page-locked array

    def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
        # wrap_cudadrv.cpp@v2022.1:1415 (pagelocked_host_allocation is context_dependent)
        require_current("cuMemHostAlloc")
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if len(tuple(shape)) else 1
        backing = bytearray(max(count * dtype.itemsize, 1))
        PINNED[id(backing)] = backing
        return np.frombuffer(backing, dtype=dtype, count=count).reshape(shape, order=order)

    def is_pinned(array):
        base = array
        while isinstance(base, np.ndarray):
            base = base.base
        if isinstance(base, memoryview):
            base = base.obj
        return base is not None and PINNED.get(id(base)) is base

    def host_bytes(src, what):
        # wrap_cudadrv.cpp@v2022.1:194 py_buffer_wrapper.get(src, PyBUF_ANY_CONTIGUOUS)
        view = memoryview(src)
        if not (view.c_contiguous or view.f_contiguous):
            raise TypeError("{}: object is not contiguous".format(what))
        return view.tobytes()

    def memcpy_htod(dest, src):
        # wrap_cudadrv.cpp@v2022.1:194 py_memcpy_htod: copies len(src) bytes, synchronous
        require_current("cuMemcpyHtoD")
        write_device(int(dest), host_bytes(src, "cuMemcpyHtoD"))

    def memcpy_htod_async(dest, src, stream=None):
        # wrap_cudadrv.cpp@v2022.1:206; pycuda documents async copies as needing page-locked memory
        require_current("cuMemcpyHtoDAsync")
        if not is_pinned(src):
            raise LogicError("cuMemcpyHtoDAsync: source is not page-locked (pagelocked_empty)")
        host_bytes(src, "cuMemcpyHtoDAsync")
        address = int(dest)
        driver.calls.append(("memcpy_htod_async", stream.handle if stream is not None else 0))
        enqueue(stream.handle if stream is not None else 0, "memcpy_htod_async",
                lambda: write_device(address, host_bytes(src, "cuMemcpyHtoDAsync")))

    def memcpy_dtoh_async(dest, src, stream=None):
        # wrap_cudadrv.cpp@v2022.1:1478 (PyBUF_ANY_CONTIGUOUS | PyBUF_WRITABLE)
        require_current("cuMemcpyDtoHAsync")
        if not is_pinned(dest):
            raise LogicError("cuMemcpyDtoHAsync: destination is not page-locked (pagelocked_empty)")
        if not dest.flags["WRITEABLE"] or not dest.flags["C_CONTIGUOUS"]:
            raise TypeError("cuMemcpyDtoHAsync: destination is not a writable contiguous buffer")
        address = int(src)

        def work():
            data = read_device(address, dest.nbytes)
            np.copyto(dest, np.frombuffer(data, dtype=dest.dtype).reshape(dest.shape))
        driver.calls.append(("memcpy_dtoh_async", stream.handle if stream is not None else 0))
        enqueue(stream.handle if stream is not None else 0, "memcpy_dtoh_async", work)

    class Stream(ContextDependent):
        """cuda.hpp@v2022.1:994 stream; wrap_cudadrv.cpp@v2022.1:1209 (``handle``: the CUstream)."""

        def __init__(self, flags=0):
            ContextDependent.__init__(self, "cuStreamCreate")
            self.handle = next(_HANDLES)
            self.queue = []
            STREAMS[self.handle] = self

        def run_queue(self):
            while self.queue:
                _, work = self.queue.pop(0)
                work()

        def synchronize(self):
            # cuda.hpp@v2022.1:1013 stream::synchronize (cuStreamSynchronize)
            require_current("cuStreamSynchronize")
            self.run_queue()

        def __del__(self):
            try:
                self._destroy(lambda: STREAMS.pop(self.handle, None))
            except Exception:
                pass

    class Event(ContextDependent):
        """cuda.hpp@v2022.1:2112 event; wrap_cudadrv.cpp@v2022.1:1598."""

        def __init__(self, flags=0):
            ContextDependent.__init__(self, "cuEventCreate")
            self.time = None       # set when the recorded work runs

        def record(self, stream=None):
            # cuda.hpp@v2022.1:2135 event::record (cuEventRecord on the stream)
            require_current("cuEventRecord")
            self.time = None

            def work():
                self.time = CLOCK[0]
            driver.calls.append(("event record", stream.handle if stream is not None else 0))
            enqueue(stream.handle if stream is not None else 0, "event record", work)
            return self

        def time_till(self, end):
            # cuda.hpp@v2022.1:2176 time_till(end) = cuEventElapsedTime(self, end): both must have
            # completed (CUDA_ERROR_NOT_READY otherwise)
            require_current("cuEventElapsedTime")
            if self.time is None or end.time is None:
                raise LogicError("cuEventElapsedTime failed: device not ready (an event has not completed)")
            return float(end.time - self.time)

    class PrimaryContext(object):
        """cuda.hpp@v2022.1:835 primary_context (a context whose detach releases the retain)."""

        def __init__(self, device):
            self.device = device
            self.valid = True
            self.thread = threading.current_thread()   # cuda.hpp@v2022.1:598 m_thread

        def alive(self):
            return driver.primary_refs.get(self.device, 0) > 0

        def push(self):
            # cuda.hpp@v2022.1:879 context_push: prepare_context_switch pops the driver's current
            # context when pycuda's stack is not empty, then cuCtxPushCurrent
            if context_stack() and driver_stack():
                driver_stack().pop()
            driver_stack().append(self)
            context_stack().append(self)

        def detach(self):
            # cuda.hpp@v2022.1:658 context::detach
            if not self.valid:
                raise LogicError("context::detach failed: cannot detach from invalid context")
            active = current_context() is self
            if active:
                self._release()
            elif threading.current_thread() is self.thread:
                driver_stack().append(self)      # cuCtxPushCurrent, then the release, no pop
                self._release()
            # another thread: nothing is released (cuda.hpp@v2022.1:672)
            self.valid = False
            if active:
                new_active = current_context(except_=self)
                if new_active is not None:
                    driver_stack().append(new_active)

        def _release(self):
            # cuda.hpp@v2022.1:846 detach_internal: cuDevicePrimaryCtxRelease (never pops)
            driver.primary_refs[self.device] -= 1

    class Context(object):
        @staticmethod
        def pop():
            # cuda.hpp@v2022.1:719 context::pop
            if context_stack() and driver_stack():
                driver_stack().pop()        # prepare_context_switch
            if not context_stack():
                raise LogicError("context::pop failed: cannot pop non-current context")
            context_stack().pop()
            current = current_context()
            if current is not None:
                driver_stack().append(current)

    class Device(object):
        """wrap_cudadrv.cpp@v2022.1:1118 Device."""

        def __init__(self, index):
            if not driver.initialised[0]:
                raise LogicError("cuDeviceGet failed: initialization error (call pycuda.driver.init())")
            self.index = index

        def name(self):
            # wrap_cudadrv.cpp@v2022.1:1118 Device.name
            return device_name

        def compute_capability(self):
            # wrap_cudadrv.cpp@v2022.1:1118 Device.compute_capability -> (major, minor)
            return capability

        def retain_primary_context(self):
            # cuda.hpp@v2022.1:867 (cuDevicePrimaryCtxRetain; not pushed)
            driver.primary_refs[self.index] = driver.primary_refs.get(self.index, 0) + 1
            return PrimaryContext(self.index)

    def init(flags=0):
        # wrap_cudadrv.cpp@v2022.1:1112 init (Device() before it fails)
        driver.initialised[0] = True

    driver.init = init
    driver.mem_alloc = mem_alloc
    driver.memcpy_htod = memcpy_htod
    driver.memcpy_htod_async = memcpy_htod_async
    driver.memcpy_dtoh_async = memcpy_dtoh_async
    driver.pagelocked_empty = pagelocked_empty
    driver.is_pinned = is_pinned
    driver.Stream, driver.Event, driver.Context, driver.Device = Stream, Event, Context, Device
    package = types.ModuleType("pycuda")
    package.driver = driver
    return package, driver
