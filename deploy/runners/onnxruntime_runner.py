"""ONNX Runtime runner on the CPU: the fallback wherever TensorRT is absent. Tuned for latency.

What it does, and why (numbers in docs/performance.md and docs/cpu-precision.md, from bench/cpu_fallback.py):
  * graph optimisation ORT_ENABLE_ALL: besides the fusions of BASIC/EXTENDED this turns on the
    NCHWc layout transformer on x86 (convolutions in blocked channel layout, MLAS kernels); it
    is the one setting that moves latency by tens of percent. EXTENDED alone is no faster than
    BASIC here.
  * intra-op threads = physical cores (hyper-threads share the FMA units and only add sync);
    inter-op parallelism off (ORT_SEQUENTIAL): these CNNs are one chain of operators.
  * spinning worker threads kept on (``session.intra_op.allow_spinning=1``, the default) for a
    dedicated machine: a parked pool costs a wake-up per operator. ``spinning=False`` is for a
    machine shared with other work, where spinning threads steal each other's cores.
  * the optimised graph can be saved once (``optimized_model_dir``) and loaded with
    optimisation disabled next time: faster session start, same kernels. The file is specific to
    this ORT version and CPU (NCHWc blocks depend on the vector width), so its name carries the
    ORT version, a hash of the CPU flags and the source ONNX hash; a stale file is never reused.
  * convolution channels padded to the NCHWc block (deploy/runners/ort_channel_pad.py) so that
    HarDNet, whose growth rates leave most channel counts unaligned, runs entirely in the blocked
    layout instead of switching layout around every Concat; exact (zero padding), x86 only.
  * each "Concat -> 1x1 Conv" rewritten as partial convolutions summed into one buffer
    (deploy/runners/ort_concat_split.py): the Concat copies disappear; exact up to summation
    order; with the padding, on x86 only.
  * inputs and outputs are pre-bound for the timed loop (``prepare``/``run_prepared``): the
    input array is wrapped once, the output is written into a buffer allocated once.

Python 3.6-compatible; onnxruntime is imported lazily.
"""
import hashlib
import logging
import os
import shutil
import tempfile

import numpy as np

from deploy.atomic import atomic_path, sha256_file
from deploy.errors import BackendUnavailableError, PipelineError
from deploy.runners.contract import Runner, TensorMeta, check_feed

LOG = logging.getLogger(__name__)

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "layout", "all")


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(
            "onnxruntime is not installed",
            hint="pip install onnxruntime (on a Jetson, use NVIDIA's onnxruntime-gpu wheel for JetPack 4.6)",
        ) from None
    return onnxruntime


def default_threads():
    from deploy.environment import physical_cores
    return physical_cores()


def _loads(ort, model_bytes):
    """Whether ONNX Runtime accepts the model (no optimisation: only a kernel/schema check)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime's own exception types; any failure means "not this graph"
        return False
    return True


def _level(ort, name):
    levels = {
        "disable": "ORT_DISABLE_ALL",
        "basic": "ORT_ENABLE_BASIC",
        "extended": "ORT_ENABLE_EXTENDED",
        "layout": "ORT_ENABLE_LAYOUT",   # ORT >= 1.20; older versions fall back to ALL
        "all": "ORT_ENABLE_ALL",
    }
    if name not in levels:
        raise PipelineError("unknown ONNX Runtime optimisation level {!r}".format(name),
                            hint="choose one of: {}".format(", ".join(OPTIMIZATION_LEVELS)))
    attr = levels[name]
    if not hasattr(ort.GraphOptimizationLevel, attr):
        LOG.info("this onnxruntime has no %s; using ORT_ENABLE_ALL", attr)
        attr = "ORT_ENABLE_ALL"
    return getattr(ort.GraphOptimizationLevel, attr)


def optimized_model_name(model_path, ort_version, padded=False, split=False):
    """Cache file name: <stem>.ort<version>.<cpu hash>.<onnx hash>[.pad][.split].opt.onnx."""
    from deploy.environment import cpu_flags, cpu_model
    cpu = hashlib.sha256("{}|{}".format(cpu_model(), ",".join(cpu_flags())).encode("utf-8")).hexdigest()[:8]
    stem = os.path.basename(str(model_path))
    if stem.endswith(".onnx"):
        stem = stem[:-5]
    return "{}.ort{}.{}.{}{}{}.opt.onnx".format(stem, ort_version, cpu, sha256_file(model_path)[:12],
                                                ".pad" if padded else "", ".split" if split else "")


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model_path, threads=None, optimization="all", spinning=True, optimized_model_dir=None,
                 io_binding=True, pad_channels=True, split_concats=True):
        super(OnnxRuntimeRunner, self).__init__()
        self.model_path = str(model_path)
        self.threads = int(threads) if threads else None
        self.optimization = optimization
        self.spinning = bool(spinning)
        self.optimized_model_dir = optimized_model_dir
        self.io_binding = bool(io_binding)
        self.pad_channels = bool(pad_channels)
        self.split_concats = bool(split_concats)
        self.session = None
        self.loaded_from = None  # the file the session was made from (the cached optimised model or the ONNX)
        self._output_names = None
        self._binding = None
        self._bound_outputs = None
        self._prepared_feed = None

    # -- settings as a record for reports -------------------------------------------------------
    def describe(self):
        ort = import_onnxruntime()
        return {
            "runtime": "onnxruntime {}".format(ort.__version__),
            "provider": "CPUExecutionProvider",
            "graph_optimization": self.optimization,
            "intra_op_threads": self.threads or default_threads(),
            "execution_mode": "sequential",
            "spinning": self.spinning,
            "io_binding": self.io_binding,
            "channel_padding": self.pad_channels,
            "concat_split": self.split_concats,
            "optimized_model": self.loaded_from if self.loaded_from != self.model_path else None,
        }

    def _options(self, ort, level):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads = self.threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.log_severity_level = 3
        return options

    def activate_impl(self):
        ort = import_onnxruntime()
        if not os.path.isfile(self.model_path):
            raise PipelineError("ONNX model {} does not exist".format(self.model_path),
                                hint="rebuild the bundle with `python pipeline.py build`")
        providers = ["CPUExecutionProvider"]
        level = _level(ort, self.optimization)
        full = self.optimization in ("all", "layout")
        source = self.model_path
        cached = None
        if self.optimized_model_dir and full:
            cached = os.path.join(str(self.optimized_model_dir), optimized_model_name(
                self.model_path, ort.__version__, padded=self.pad_channels, split=self.split_concats))
        if cached and os.path.isfile(cached):
            source, level = cached, _level(ort, "disable")
        else:
            model = self._rewritten_model(ort) if (full and (self.pad_channels or self.split_concats)) else None
            if model is not None:
                source = model
            if cached:
                LOG.info("saving the optimised graph of %s to %s", os.path.basename(self.model_path), cached)
                options = self._options(ort, level)
                try:
                    with atomic_path(cached) as tmp:
                        options.optimized_model_filepath = tmp
                        self._session(ort, source, options, providers)
                    source, level = cached, _level(ort, "disable")
                except (PipelineError, OSError) as exc:
                    # The save may be what failed (a full disk, a read-only bundle), not the model: a
                    # session without the save tells them apart (and raises the load error if it is the model).
                    self.session = self._session(ort, source, self._options(ort, level), providers)
                    # the model loaded without the save, so ONNX Runtime's error (it blames the model) is not quoted
                    LOG.warning("could not save the optimised graph of %s to %s (%s): running without the cache; "
                                "free some space there, or make it writable, to keep it next time",
                                os.path.basename(self.model_path), cached,
                                exc.strerror if isinstance(exc, OSError) else "a full disk or a read-only folder")
        if self.session is None:
            self.session = self._session(ort, source, self._options(ort, level), providers)
        self.loaded_from = source if isinstance(source, str) else "{} (rewritten for NCHWc in memory)".format(
            self.model_path)
        self._output_names = [o.name for o in self.session.get_outputs()]

    def _session(self, ort, source, options, providers):
        try:
            return ort.InferenceSession(source, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise PipelineError("ONNX Runtime cannot load {}: {}".format(self.model_path, str(exc).splitlines()[0]),
                                hint="check the file (python -c \"import onnx; onnx.checker.check_model('{}')\") "
                                     "or rebuild the bundle".format(self.model_path)) from exc

    def _rewritten_model(self, ort):
        """The BASIC-optimised graph with channels padded to the NCHWc block and/or its Concats split,
        as bytes; None when neither applies (no NCHWc on this CPU, nothing to do, onnx missing)."""
        from deploy.runners.ort_channel_pad import nchwc_block_size, pad_channels
        from deploy.runners.ort_concat_split import fuse_sum_activations, split_concat_convs
        block = nchwc_block_size()
        if block <= 1:
            return None
        try:
            import onnx
        except ImportError:
            LOG.info("onnx is not installed: running %s without the NCHWc rewrites", self.model_path)
            return None
        name = os.path.basename(self.model_path)
        folder = tempfile.mkdtemp(prefix="ort-pad-")
        try:
            basic = os.path.join(folder, "basic.onnx")
            options = self._options(ort, _level(ort, "basic"))
            options.optimized_model_filepath = basic
            self._session(ort, self.model_path, options, ["CPUExecutionProvider"])
            model = onnx.load(basic)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        padded = pad_channels(model, block) if self.pad_channels else None
        if padded is not None:
            LOG.info("%s: convolution channels padded to multiples of %d for the NCHWc layout", name, block)
        result = padded
        if self.split_concats:
            split = split_concat_convs(padded if padded is not None else model)
            if split is not None:
                fused = fuse_sum_activations(split)
                if _loads(ort, split.SerializeToString()):
                    LOG.info("%s: Concat -> 1x1 Conv rewritten as partial convolutions (%d with fused activation)",
                             name, fused)
                    result = split
                else:  # an ONNX Runtime build without the contrib FusedConv: keep the padded graph
                    LOG.warning("%s: this ONNX Runtime cannot load the split graph; using it without", name)
        return None if result is None else result.SerializeToString()

    def deactivate_impl(self):
        self.session = None
        self._binding = None
        self._bound_outputs = None

    def input_metadata_impl(self):
        metas = []
        for node in self.session.get_inputs():
            shape = tuple(d if isinstance(d, int) else None for d in node.shape)
            metas.append(TensorMeta(node.name, shape, np.dtype(_ORT_DTYPES.get(node.type, np.float32))))
        return metas

    def infer_impl(self, feed):
        values = self.session.run(self._output_names, feed)
        return dict(zip(self._output_names, values))

    # -- the timed loop's fast path -------------------------------------------------------------
    def prepare(self, feed):
        """Bind ``feed`` and pre-allocated outputs once; then ``run_prepared()`` runs one inference."""
        self._require_active()
        check_feed(self._input_meta, feed)
        if not self.io_binding:
            self._prepared_feed = feed
            return
        ort = import_onnxruntime()
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array)))
        # One run to learn the output shapes, then bind buffers of exactly those shapes.
        first = self.session.run(self._output_names, feed)
        self._bound_outputs = []
        for name, value in zip(self._output_names, first):
            out = ort.OrtValue.ortvalue_from_shape_and_type(list(value.shape), value.dtype)
            binding.bind_ortvalue_output(name, out)
            self._bound_outputs.append(out)
        self._binding = binding

    def run_prepared(self):
        if self._binding is None:
            return self.session.run(self._output_names, self._prepared_feed)
        self.session.run_with_iobinding(self._binding)
        return self._bound_outputs

    def prepared_outputs(self):
        """The outputs of the last ``run_prepared`` as numpy arrays (copies)."""
        if self._binding is None:
            return None
        return dict(zip(self._output_names, (v.numpy() for v in self._bound_outputs)))
