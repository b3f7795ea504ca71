"""TensorRT runner with pycuda: the runner contract over a serialized engine.

* Page-locked host buffers and device buffers for every I/O tensor are allocated once, in
  ``activate``; one CUDA stream; two CUDA events time the execute call (``last_compute_ms``).
* The CUDA context: the device's primary context (the one TensorRT's runtime API uses), retained
  once per process (deploy.tensorrt.compat.primary_context), is pushed and popped around every call;
  everything is allocated and freed while it is current, so activation and deactivation leave the
  thread's context stack as they found it, from any thread (``import pycuda.autoinit`` would bind
  it to the importing thread).
* Both TensorRT API generations, chosen by what the engine offers (deploy.tensorrt.compat): tensor names
  + ``execute_async_v3`` (8.5+/10) or binding indices + ``execute_async_v2`` (8.2, JetPack 4.6).
* ``infer(feed)`` checks the feed and returns copies of the outputs; ``set_inputs(feed)`` +
  ``execute_timed()`` is the benchmark loop: no checks, returns (GPU compute ms, end-to-end ms
  including both copies).

Not run on hardware in this project (no GPU here): the logic is tested with fake tensorrt and
pycuda modules for both API generations; the TensorRT calls are type-checked against the stubs.
Python 3.6-compatible; tensorrt and pycuda are imported in ``activate``.
"""
import logging
import os
import time
from typing import TYPE_CHECKING, Any  # noqa: F401 (type comments)

import numpy as np

from deploy.runners.contract import Runner, RunnerError, TensorMeta

if TYPE_CHECKING:  # pragma: no cover - for mypy against the stubs only
    import pycuda.driver  # noqa: F401 (type comments)

LOG = logging.getLogger(__name__)


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path, batch_size=None, device_index=0, copy_outputs=True):
        """``batch_size``: the batch to run; a dynamic batch dimension is set to it (within the
        engine's optimization profile), a static one must equal it; None: the engine's static
        batch, or 1. ``copy_outputs=False`` makes ``infer`` return the page-locked output buffers
        themselves (valid until the next call)."""
        super(TensorRTRunner, self).__init__()
        self.engine_path = str(engine_path)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.device_index = int(device_index)
        self.copy_outputs = bool(copy_outputs)
        self.last_compute_ms = None  # type: Any
        self.io_api = None  # type: Any
        self._cuda = None  # type: Any
        self._cuda_context = None  # type: Any
        self._engine = None  # type: Any
        self._context = None  # type: Any
        self._io = None  # type: Any
        self._tensors = []  # type: list
        self._host = {}  # type: dict
        self._device = {}  # type: dict
        self._stream = None  # type: Any
        self._start = None  # type: Any
        self._end = None  # type: Any
        self._log = None  # type: Any
        self._runtime = None  # type: Any
        self._trt_logger = None  # type: Any

    # -- lifecycle ---------------------------------------------------------------------------------
    def activate_impl(self):
        from deploy.tensorrt.build_log import BuildLog, make_trt_logger
        from deploy.tensorrt.compat import primary_context, require_pycuda, require_tensorrt, tensor_io_for

        require_tensorrt()
        require_pycuda()
        import pycuda.driver as cuda
        import tensorrt as trt

        if not os.path.isfile(self.engine_path):
            raise RunnerError("engine {} does not exist".format(self.engine_path),
                              hint="build it on this device: python3 pipeline.py engines BUNDLE")
        self._cuda = cuda
        # Retained once per process (see trt_compat.primary_context); pushed and popped per call.
        self._cuda_context = primary_context(cuda, self.device_index)
        self._cuda_context.push()
        try:
            self._log = BuildLog()
            self._trt_logger = make_trt_logger(self._log)   # must outlive the runtime and engine
            runtime = trt.Runtime(self._trt_logger)
            with open(self.engine_path, "rb") as handle:
                engine = runtime.deserialize_cuda_engine(handle.read())
            self._log.raise_if_callback_failed("loading engine {}".format(self.engine_path))
            if engine is None:
                raise RunnerError(
                    "TensorRT {} could not load {}: {}".format(
                        trt.__version__, self.engine_path, "; ".join(self._log.errors()) or "no details"),
                    hint="engines only load on the TensorRT version and GPU that built them: "
                         "rebuild with python3 pipeline.py engines BUNDLE")
            self._runtime = runtime
            self._engine = engine
            self._context = engine.create_execution_context()
            self._io = tensor_io_for(trt, engine)
            self.io_api = self._io.api
            self._allocate()
        except BaseException:
            self._release()        # everything freed while the context is current, then popped
            cuda.Context.pop()
            self._cuda_context = None
            raise
        cuda.Context.pop()

    def _batch_for(self, tensor):
        """The batch to run ``tensor`` (an input) with, checked against the engine."""
        if tensor.shape and tensor.shape[0] >= 0:
            if self.batch_size is not None and self.batch_size != tensor.shape[0]:
                raise RunnerError(
                    "engine {} has a static batch of {} for {!r}; batch {} was asked for".format(
                        self.engine_path, tensor.shape[0], tensor.name, self.batch_size),
                    hint="use --batch {} or export the model with a dynamic batch and rebuild its engine".format(
                        tensor.shape[0]))
            return tensor.shape[0]
        batch = 1 if self.batch_size is None else self.batch_size
        low, _, high = self._io.profile_shapes(tensor)
        if not low[0] <= batch <= high[0]:
            raise RunnerError(
                "batch {} is outside engine {}'s optimization profile for {!r} (batch {} to {})".format(
                    batch, self.engine_path, tensor.name, low[0], high[0]),
                hint="rebuild the engine for it: python3 pipeline.py engines BUNDLE --max-batch {} --force".format(batch))
        return batch

    def _allocate(self):
        import pycuda.driver as cuda

        tensors = self._io.tensors()
        for tensor in tensors:   # inputs first: output shapes follow from them
            if tensor.is_input:
                batch = self._batch_for(tensor)
                if any(d < 0 for d in tensor.shape):
                    self._io.set_input_shape(self._context, tensor, (batch,) + tuple(tensor.shape[1:]))
        resolved = []
        for tensor in tensors:
            shape = tensor.shape
            if any(d < 0 for d in shape):
                shape = self._io.output_shape(self._context, tensor)
            if any(d < 0 for d in shape):
                raise RunnerError("cannot resolve the shape of {!r}: {}".format(tensor.name, shape))
            tensor = tensor._replace(shape=tuple(shape))
            host = cuda.pagelocked_empty(tensor.shape, tensor.dtype)
            self._host[tensor.name] = host
            self._device[tensor.name] = cuda.mem_alloc(max(int(host.nbytes), 1))
            resolved.append(tensor)
        self._tensors = resolved
        self._io.bind(self._context, resolved, dict((n, int(d)) for n, d in self._device.items()))
        self._stream = cuda.Stream()
        self._start = cuda.Event()
        self._end = cuda.Event()
        LOG.info("TensorRT runner: %s, %s I/O, %s", os.path.basename(self.engine_path), self._io.api,
                 ", ".join("{}{}".format(t.name, list(t.shape)) for t in resolved))

    def _release(self):
        """Free every CUDA object; call with the context current (pycuda frees through it)."""
        for buffer in self._device.values():
            buffer.free()
        self._device = {}
        self._host = {}
        self._start = None
        self._end = None
        self._stream = None
        self._context = None   # destroyed in this order, while the CUDA context is current
        self._engine = None
        self._runtime = None

    def deactivate_impl(self):
        self._cuda_context.push()
        try:
            self._release()
        finally:
            self._cuda.Context.pop()
            self._cuda_context = None

    # -- contract --------------------------------------------------------------------------------
    def input_metadata_impl(self):
        return [TensorMeta(t.name, t.shape, t.dtype) for t in self._tensors if t.is_input]

    def output_metadata(self):
        self._require_active()
        return [TensorMeta(t.name, t.shape, t.dtype) for t in self._tensors if not t.is_input]

    def infer_impl(self, feed):
        self.set_inputs(feed)
        self.execute_timed()
        return self.outputs()

    def outputs(self):
        """The outputs of the last execute: copies, or with ``copy_outputs=False`` the page-locked buffers."""
        outputs = {}
        for tensor in self._tensors:
            if not tensor.is_input:
                host = self._host[tensor.name]
                outputs[tensor.name] = host.copy() if self.copy_outputs else host
        return outputs

    # -- benchmark path --------------------------------------------------------------------------
    def set_inputs(self, feed):
        """Copy ``feed`` into the page-locked input buffers (no checks: ``infer`` checks)."""
        for name, array in feed.items():
            np.copyto(self._host[name], array)

    def execute_timed(self):
        """One inference on the inputs already set: (GPU compute ms, end-to-end ms).

        End to end = host->device copies + execute + device->host copies, stream synchronised.
        """
        import pycuda.driver as cuda

        stream = self._stream  # type: pycuda.driver.Stream
        start = self._start  # type: pycuda.driver.Event
        end = self._end  # type: pycuda.driver.Event
        self._cuda_context.push()
        try:
            started = time.perf_counter()
            for tensor in self._tensors:
                if tensor.is_input:
                    cuda.memcpy_htod_async(self._device[tensor.name], self._host[tensor.name], stream)
            start.record(stream)
            ok = self._io.execute(self._context, stream.handle)
            end.record(stream)
            for tensor in self._tensors:
                if not tensor.is_input:
                    cuda.memcpy_dtoh_async(self._host[tensor.name], self._device[tensor.name], stream)
            stream.synchronize()
            end_to_end_ms = (time.perf_counter() - started) * 1000.0
            compute_ms = float(start.time_till(end))
        finally:
            cuda.Context.pop()
        if not ok:
            raise RunnerError("TensorRT's execute call failed for {}".format(self.engine_path),
                              hint="see the TensorRT errors logged above")
        self.last_compute_ms = compute_ms
        return compute_ms, end_to_end_ms
