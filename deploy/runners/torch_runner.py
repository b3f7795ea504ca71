"""PyTorch runner (host): the authors' other protocol, and a reference on a GPU without TensorRT.

CPU: FP32, eval mode, ``torch.inference_mode``, intra-op threads = physical cores (optional
channels-last). CUDA: FP16 weights and activations where asked, channels-last memory format, and a
CUDA graph captured once so that each timed iteration is one graph launch; ``execute_timed`` gives
the GPU compute time from CUDA events and the end-to-end time with the copies, as the TensorRT
runner does. The model is either an ``nn.Module`` or a registry name with ``create_model`` (the host's
``models.create_model``, passed in: deploy/ imports no host package).

Lives under deploy/ so that it shares the runner contract, but only the host runs it: Python 3.6
syntax, torch imported lazily.
"""
import logging
import time

import numpy as np

from deploy.errors import BackendUnavailableError, PipelineError, PrecisionUnsupportedError
from deploy.runners.contract import Runner, TensorMeta, check_feed

LOG = logging.getLogger(__name__)


def import_torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            "torch is not installed", hint="the torch backend runs on the host: pip install -r requirements.txt") from None
    return torch


def cuda_available():
    try:
        torch = import_torch()
    except BackendUnavailableError:
        return False
    return bool(torch.cuda.is_available())


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, model, input_shape, device="cpu", precision="fp32", channels_last=None, cuda_graphs=None,
                 threads=None, input_name="input", output_name="logits", create_model=None):
        super(TorchRunner, self).__init__()
        self.model_spec = model
        self.input_shape = tuple(int(d) for d in input_shape)
        self.device = device
        self.precision = precision
        self.channels_last = (device == "cuda") if channels_last is None else bool(channels_last)
        self.cuda_graphs = (device == "cuda") if cuda_graphs is None else bool(cuda_graphs)
        self.threads = int(threads) if threads else None
        self.input_name = input_name
        self.output_name = output_name
        self.create_model = create_model
        self.model = None
        self._torch = None
        self._static_in = None
        self._static_out = None
        self._host_in = None
        self._host_out = None
        self._graph = None
        self._events = None

    @property
    def measures_compute(self):
        return self.device == "cuda"

    def describe(self):
        torch = import_torch()
        out = {"runtime": "torch {}".format(torch.__version__), "device": self.device,
               "precision": self.precision, "channels_last": self.channels_last,
               "cuda_graphs": self.cuda_graphs and self.device == "cuda"}
        if self.device == "cpu":
            out["threads"] = torch.get_num_threads()
        else:
            out["gpu"] = torch.cuda.get_device_name(0)
        return out

    def activate_impl(self):
        torch = import_torch()
        self._torch = torch
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("CUDA is not available to torch here",
                                          hint="use --device cpu, or a CUDA build of torch on a machine with a GPU")
        if self.precision not in ("fp32", "fp16"):
            raise PrecisionUnsupportedError("the torch backend runs fp32 or fp16, not {}".format(self.precision),
                                            hint="use --precision fp32 (CPU) or fp16 (CUDA)")
        if self.precision == "fp16" and self.device != "cuda":
            raise PrecisionUnsupportedError("fp16 with torch needs a CUDA GPU",
                                            hint="use --precision fp32 on the CPU")
        if self.device == "cpu":
            from deploy.environment import physical_cores
            torch.set_num_threads(self.threads or physical_cores())
        model = self.model_spec
        if isinstance(model, str):
            if self.create_model is None:
                raise BackendUnavailableError("the model zoo (models/) is not available here to create {}".format(model),
                                              hint="the torch backend runs on the host with requirements.txt installed")
            model = self.create_model(model)
        model = model.eval().to(self.device)
        if self.precision == "fp16":
            model = model.half()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self._static_in = torch.zeros(self.input_shape, dtype=dtype, device=self.device)
        if self.channels_last:
            self._static_in = self._static_in.contiguous(memory_format=torch.channels_last)
        if self.device == "cuda":
            self._host_in = torch.zeros(self.input_shape, dtype=torch.float32).pin_memory()
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            if self.cuda_graphs:
                self._capture()

    def _forward(self):
        with self._torch.inference_mode():
            return self.model(self._static_in)

    def _capture(self):
        torch = self._torch
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):   # warm-up on a side stream before capture, as the CUDA graphs docs ask
                self._forward()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_out = self._forward()
        self._graph = graph
        self._host_out = torch.zeros(tuple(self._static_out.shape), dtype=self._static_out.dtype).pin_memory()

    def deactivate_impl(self):
        self.model = None
        self._graph = None
        self._static_in = self._static_out = self._host_in = self._host_out = None
        if self._torch is not None and self.device == "cuda":
            self._torch.cuda.empty_cache()

    def input_metadata_impl(self):
        return [TensorMeta(self.input_name, self.input_shape, np.dtype(np.float32))]

    def _load(self, array):
        torch = self._torch
        if self.device == "cuda":
            self._host_in.copy_(torch.from_numpy(array))
            self._static_in.copy_(self._host_in, non_blocking=True)
        else:
            self._static_in.copy_(torch.from_numpy(array))

    def _run(self):
        if self._graph is not None:
            self._graph.replay()
            return self._static_out
        return self._forward()

    def infer_impl(self, feed):
        self._load(feed[self.input_name])
        out = self._run()
        return {self.output_name: out.float().cpu().numpy()}

    # -- the timed loop's fast path -------------------------------------------------------------
    def prepare(self, feed):
        self._require_active()
        check_feed(self._input_meta, feed)
        self._load(feed[self.input_name])   # on CUDA also fills the pinned _host_in that execute_timed copies
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def run_prepared(self):
        out = self._run()
        if self.device == "cuda":
            self._torch.cuda.synchronize()
        return out

    def execute_timed(self):
        """CUDA only: (GPU compute ms from CUDA events, end-to-end host ms with both copies)."""
        if self.device != "cuda":
            raise PipelineError("execute_timed needs the CUDA device", hint="time CPU runs with infer(), or use --device cuda")
        torch = self._torch
        start, end = self._events
        t0 = time.perf_counter()
        self._static_in.copy_(self._host_in, non_blocking=True)
        start.record()
        out = self._run()
        end.record()
        if self._host_out is None or tuple(self._host_out.shape) != tuple(out.shape):
            self._host_out = torch.zeros(tuple(out.shape), dtype=out.dtype).pin_memory()
        self._host_out.copy_(out, non_blocking=True)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        return start.elapsed_time(end), (t1 - t0) * 1000.0
