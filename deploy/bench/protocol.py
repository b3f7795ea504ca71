"""The benchmark: the HarDNet authors' protocol (seeded random input, warm-up, N timed iterations
of batch 1 at 320x320 on the Nano), every iteration timed and kept.

    protocol = make_protocol(iterations=500, warmup=50, size=320, batch=1, seed=0)
    results, environment = run_bench(bundle_dir, protocol, backend=None)   # None: TensorRT, else ORT

Per backend:
  tensorrt     engines/<model>.<precision>.*.engine via deploy.tensorrt.runner.TensorRTRunner;
               each iteration gives GPU compute time (CUDA events) and end-to-end host time with the
               copies (``execute_timed``), both kept; stream and buffers are made before the loop.
  onnxruntime  models/<model>.onnx (fp32) or models/<model>.int8.onnx (int8) on the CPU, the
               fallback; tuned runner (deploy.runners.onnxruntime_runner), inputs/outputs pre-bound.
  openvino     the same ONNX files with OpenVINO on the CPU (optional), with the precision hint matching
               --precision (fp32, bf16, int8) and the precision it compiled read back into each row.
  torch        models re-created from the registry (host only): CPU fp32, or CUDA fp16 with
               channels-last and CUDA graphs; also works without a bundle (``models=[...]``).

Python 3.6-compatible; runtimes are imported lazily.
"""
import collections
import importlib
import inspect
import logging
import time

import numpy as np

from deploy.bench import stats as stats_mod
from deploy.errors import BackendUnavailableError, BundleError, PipelineError, PrecisionUnsupportedError, UsageError

LOG = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "onnxruntime", "openvino", "torch")
CPU_BACKENDS = ("onnxruntime", "openvino")

DEFAULT_ITERATIONS = 500
DEFAULT_SIZE = 320
DEFAULT_SEED = 0

BenchProtocol = collections.namedtuple(
    "BenchProtocol", ["iterations", "warmup", "size", "batch", "seed", "threads", "precision", "spinning"])

TimedRun = collections.namedtuple("TimedRun", ["latencies_ms", "compute_ms", "wall_s"])

BackendChoice = collections.namedtuple("BackendChoice", ["name", "fallback", "reason"])


def default_warmup(iterations):
    """Warm-up iterations: 10 % of the timed ones, at least 10 and at most 100."""
    return max(10, min(100, int(iterations) // 10))


def bundle_input_size(bundle, names=None):
    """The input side the bundle's models were exported at, when they share one fixed square size;
    else (no bundle, mixed or dynamic sizes) DEFAULT_SIZE, the authors' 320."""
    if bundle is None:
        return DEFAULT_SIZE
    present = bundle.model_names()
    sides = set()
    for name in [n for n in (names or present) if n in present]:
        shape = (bundle.model(name).get("input") or {}).get("shape") or []
        if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3]:
            sides.add(shape[2])
        else:
            return DEFAULT_SIZE
    return sides.pop() if len(sides) == 1 else DEFAULT_SIZE


MAX_ITERATIONS = 10 ** 7   # every latency is kept: 10 million float64 are 80 MB (a day on the Nano)
MAX_SEED = 2 ** 32 - 1     # numpy RandomState's range
MAX_SIDE = 4096            # input side: the authors' largest is 1024
MAX_BATCH = 1024


def make_protocol(iterations=DEFAULT_ITERATIONS, warmup=None, size=DEFAULT_SIZE, batch=1, seed=DEFAULT_SEED,
                  threads=None, precision=None, spinning=True):
    """Validate the numbers and return a BenchProtocol (UsageError on nonsense).

    ``spinning``: ONNX Runtime's idle worker threads spin (fastest on an idle machine) or park
    (better where other work shares the cores); the other backends ignore it.
    """
    if not 1 <= int(iterations) <= MAX_ITERATIONS:
        raise UsageError("--iterations must be at least 1 and at most {} (got {})".format(MAX_ITERATIONS, iterations),
                         hint="the authors' protocol times 500 iterations: --iterations 500")
    if warmup is not None and not 0 <= int(warmup) <= MAX_ITERATIONS:
        raise UsageError("--warmup must be 0 or more, at most {} (got {})".format(MAX_ITERATIONS, warmup),
                         hint="leave it out for 10 % of --iterations (10 to 100)")
    if not 0 <= int(seed) <= MAX_SEED:
        raise UsageError("--seed must be from 0 to {} (got {})".format(MAX_SEED, seed),
                         hint="numpy's RandomState takes 32-bit seeds; the default is 0")
    if not 1 <= int(size) <= MAX_SIDE:
        raise UsageError("the input side must be from 1 to {} pixels (got {}, from --size or the bundle's input "
                         "shape)".format(MAX_SIDE, size), hint="the protocol uses --size 320")
    if not 1 <= int(batch) <= MAX_BATCH:
        raise UsageError("--batch must be at least 1 and at most {} (got {})".format(MAX_BATCH, batch),
                         hint="the authors' protocol uses --batch 1")
    if threads is not None and int(threads) < 1:
        raise UsageError("--threads must be at least 1 (got {})".format(threads),
                         hint="leave it out for one thread per physical core")
    return BenchProtocol(int(iterations), default_warmup(iterations) if warmup is None else int(warmup), int(size),
                         int(batch), int(seed), int(threads) if threads else None, precision, bool(spinning))


def make_input(shape, seed=DEFAULT_SEED, dtype=np.float32):
    """Seeded standard-normal input, like the authors' torch.randn (numpy RandomState: Python 3.6 numpy)."""
    return np.random.RandomState(seed).standard_normal(tuple(shape)).astype(dtype)


# ------------------------------------------------------------------------------------------------
# the timed loop
# ------------------------------------------------------------------------------------------------
def time_runner(runner, feed, iterations, warmup, desc=None, progress=True):
    """Warm up, then time ``iterations`` single inferences; returns TimedRun (all times kept).

    Three kinds of runner, tried in this order:
      * ``execute_timed([feed])`` -> (compute ms, end-to-end ms) per call (TensorRT, torch on
        CUDA): both kept; the feed is bound first (``prepare`` or one ``infer``) when it takes none;
      * ``infer`` plus a ``last_compute_ms`` attribute: end-to-end timed here, compute read back;
      * otherwise host time around ``run_prepared()`` (buffers bound once by ``prepare``) or
        ``infer(feed)``, measured with ``time.perf_counter`` around the call only.
    """
    step, timed = _steps(runner, feed)
    for _ in range(int(warmup)):
        (timed or step)()

    latencies = np.empty(int(iterations), dtype=np.float64)
    reads_compute = timed is None and hasattr(runner, "last_compute_ms")
    compute = np.empty(int(iterations), dtype=np.float64) if (timed is not None or reads_compute) else None
    bar = _progress(int(iterations), desc) if progress else None
    perf = time.perf_counter
    start = perf()
    try:
        for i in range(int(iterations)):
            if timed is not None:
                compute[i], latencies[i] = timed()
            else:
                t0 = perf()
                step()
                latencies[i] = (perf() - t0) * 1000.0
                if reads_compute:
                    compute[i] = float(runner.last_compute_ms)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    wall = perf() - start
    return TimedRun(latencies, compute, wall)


def _steps(runner, feed):
    """(plain step, timed step or None) for a runner, with the feed bound outside the loop."""
    prepare = getattr(runner, "prepare", None)
    if prepare is not None:
        prepare(feed)
        step = runner.run_prepared
    else:
        def step():
            return runner.infer(feed)
    timed = getattr(runner, "execute_timed", None)
    if timed is None or not getattr(runner, "measures_compute", True):
        return step, None
    try:
        takes_feed = len(inspect.signature(timed).parameters) >= 1
    except (TypeError, ValueError):
        takes_feed = False
    if takes_feed:
        return step, (lambda: timed(feed))
    if prepare is None:
        set_inputs = getattr(runner, "set_inputs", None)
        if set_inputs is not None:
            runner.infer(feed)      # checks the feed once
            set_inputs(feed)        # the page-locked buffers execute_timed() reuses
        else:
            runner.infer(feed)      # binds the input buffers that execute_timed() reuses
    return step, timed


def _progress(total, desc):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="it", leave=False, mininterval=0.5)


# ------------------------------------------------------------------------------------------------
# the CPU's compute floor
# ------------------------------------------------------------------------------------------------
def measure_matmul_flops(n=1024, repeats=10, threads=None):
    """Best FP32 matrix-multiply rate (FLOP/s) of this machine with numpy's BLAS, n x n x n.

    The floor of a model is ``2 * MACs / rate``: what it would take if every MAC ran at GEMM
    speed. Convolutions (especially depthwise) run below that, so floor / latency <= ~1.
    ``threads`` is informational: numpy's BLAS uses its own thread setting (OPENBLAS_NUM_THREADS).
    """
    a = make_input((n, n), seed=1)
    b = make_input((n, n), seed=2)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(int(repeats)):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n * n * n / best


def significant(value, digits=4):
    """``value`` rounded to ``digits`` significant figures (never to 0.0 for a small positive value)."""
    return float("{:.{}g}".format(value, digits))


def compute_floor_ms(macs, batch, flops_per_s):
    if not macs or not flops_per_s:
        return None
    return 2.0 * float(macs) * batch / flops_per_s * 1000.0


# ------------------------------------------------------------------------------------------------
# backend choice
# ------------------------------------------------------------------------------------------------
_INSTALL_HINTS = {
    "tensorrt": "on a Jetson TensorRT comes with JetPack (python3 -c 'import tensorrt'); elsewhere "
                "run --backend onnxruntime",
    "onnxruntime": "pip install onnxruntime",
    "openvino": "pip install openvino (optional), or use --backend onnxruntime",
    "torch": "the torch backend runs on the host: pip install -r requirements.txt",
}


def import_problem(backend):
    """None when the backend's runtime imports (TensorRT: a real install, see trt_compat), else why not."""
    try:
        if backend == "tensorrt":
            from deploy.tensorrt.compat import require_tensorrt
            require_tensorrt()
        else:
            importlib.import_module(backend)
    except (ImportError, BackendUnavailableError) as exc:
        return str(exc)
    except (OSError, RuntimeError) as exc:
        return "broken install: {}".format(exc)
    return None


def choose_backend(requested=None):
    """The backend to use. None: TensorRT where it imports, else ONNX Runtime (the fallback)."""
    if requested is not None and requested not in BACKENDS:
        raise UsageError("unknown backend {!r}".format(requested), hint="choose one of: {}".format(", ".join(BACKENDS)))
    if requested:
        problem = import_problem(requested)
        if problem:
            raise BackendUnavailableError("backend {} is not installed ({})".format(requested, problem),
                                          hint=_INSTALL_HINTS[requested])
        return BackendChoice(requested, False, None)
    problem = import_problem("tensorrt")
    if problem is None:
        return BackendChoice("tensorrt", False, None)
    if import_problem("onnxruntime") is not None:
        raise BackendUnavailableError("neither TensorRT nor ONNX Runtime is installed",
                                      hint="on a Jetson use JetPack's TensorRT; elsewhere pip install onnxruntime")
    return BackendChoice("onnxruntime", True, "TensorRT is not importable here: {}; ONNX Runtime on the CPU "
                                              "is the fallback".format(problem))


def resolve_bench_precision(backend, requested, bundle=None, device="cpu", isa=None):
    """The precision a backend runs, refusing what it cannot.

    On the CPU backends ``best`` is chosen from the CPU flags (deploy.cpu_isa): INT8 where an INT8
    dot product exists and the bundle has INT8 models, else BF16 with OpenVINO where the CPU has
    BF16, else FP32. ``isa``: a CpuIsa (default: this machine's).
    """
    if backend == "tensorrt":
        if requested == "best":
            requested = None
        from deploy.targets import TARGETS, get_target, resolve_precision
        target_name = bundle.target_name if bundle is not None else ""
        if target_name in TARGETS:
            target = get_target(target_name)
            return resolve_precision(target, requested or target.default_precision)
        return requested or "fp16"
    if backend in CPU_BACKENDS:
        return resolve_cpu_bench_precision(backend, requested, bundle, isa).precision
    if backend == "torch":
        if requested in (None, "best"):
            return "fp16" if device == "cuda" else "fp32"
        if requested in ("fp32", "fp16"):
            return requested
        raise PrecisionUnsupportedError("the torch backend runs fp32 or fp16, not {}".format(requested),
                                        hint="use --precision fp32 on the CPU or fp16 on CUDA")
    raise UsageError("unknown backend {!r}".format(backend), hint="one of: tensorrt, onnxruntime, openvino, torch")


def resolve_cpu_bench_precision(backend, requested, bundle=None, isa=None):
    """A cpu_isa.PrecisionChoice for onnxruntime/openvino: fp32, int8, bf16 (OpenVINO, BF16 CPUs) or best."""
    from deploy.cpu_isa import choose_cpu_precision, local_cpu_isa

    requested = requested or "fp32"
    if requested not in ("fp32", "int8", "bf16", "best"):
        raise PrecisionUnsupportedError(
            "{} on the CPU runs fp32, bf16 (OpenVINO) or int8, not {}".format(backend, requested),
            hint="use --precision fp32 (or int8 with models/<name>.int8.onnx in the bundle); fp16 needs TensorRT")
    isa = isa or local_cpu_isa()
    int8_available = bundle is not None and all(
        (bundle.model(name).get("int8_onnx") or {}).get("path") for name in bundle.model_names())
    return choose_cpu_precision(isa, requested, backend, int8_available=int8_available)


# ------------------------------------------------------------------------------------------------
# per-model plan: which file, which shape
# ------------------------------------------------------------------------------------------------
ModelPlan = collections.namedtuple("ModelPlan", ["name", "path", "input_name", "input_shape", "record"])


def plan_models(bundle, names, backend, precision, protocol):
    """Check every model can run as asked and return ModelPlans (errors name the fix)."""
    plans = []
    for name in names:
        record = bundle.model(name) if bundle is not None else {}
        input_rec = record.get("input") or {}
        input_name = input_rec.get("name", "input")
        shape = _requested_shape(name, input_rec, protocol, backend)
        path = None
        if backend in CPU_BACKENDS:
            key = "int8_onnx" if precision == "int8" else "onnx"
            entry = record.get(key)
            if not isinstance(entry, dict) or not entry.get("path"):
                if precision == "int8":
                    raise BundleError("model {} has no INT8 ONNX in bundle {}".format(name, bundle.root),
                                      hint="quantise it on the host (python pipeline.py build --target cpu --precision int8) or "
                                           "use --precision fp32")
                raise BundleError("model {} has no ONNX file in the manifest".format(name),
                                  hint="rebuild the bundle with `python pipeline.py build`")
            path = bundle.verify_file(entry["path"], entry.get("sha256"))   # no sha256: refused
        elif backend == "tensorrt":
            from deploy.tensorrt.engine_files import find_engine

            # Only an engine built for this TensorRT version and GPU from this ONNX: never a stale one.
            path = bundle.path(find_engine(bundle, name, precision))
        plans.append(ModelPlan(name, path, input_name, shape, record))
    return plans


def _requested_shape(name, input_rec, protocol, backend):
    shape = list(input_rec.get("shape") or [])
    want = [protocol.batch, 3, protocol.size, protocol.size]
    if backend == "torch" or not shape:
        return tuple(want)
    fixed_hw = [d for d in shape[2:] if isinstance(d, int)]
    if len(fixed_hw) == 2 and fixed_hw != [protocol.size, protocol.size]:
        raise UsageError(
            "model {} was exported for {}x{} input; --size {} does not fit its fixed-shape ONNX/engine".format(
                name, fixed_hw[0], fixed_hw[1], protocol.size),
            hint="use --size {} or rebuild the bundle at that size (python pipeline.py build --size {}) and, on "
                 "the device, its engines".format(fixed_hw[0], protocol.size))
    batch = shape[0] if shape else 1
    if isinstance(batch, int) and batch != protocol.batch and not input_rec.get("dynamic_batch"):
        raise UsageError(
            "model {} was exported with batch {}; --batch {} needs a dynamic-batch export".format(
                name, batch, protocol.batch),
            hint="use --batch {} or rebuild with a dynamic batch dimension".format(batch))
    return tuple(want)


def make_runner(backend, plan, precision, protocol, device="cpu", optimized_model_dir=None, model_zoo=None):
    """The runner of ``plan``; ``model_zoo`` (the host's ``models`` package, passed in by cli/bench.py)
    re-creates the model for the torch backend."""
    if backend == "onnxruntime":
        from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner
        return OnnxRuntimeRunner(plan.path, threads=protocol.threads, optimized_model_dir=optimized_model_dir,
                                 spinning=protocol.spinning)
    if backend == "openvino":
        from deploy.runners.openvino_runner import OpenVinoRunner
        return OpenVinoRunner(plan.path, threads=protocol.threads, precision=precision)
    if backend == "torch":
        from deploy.runners.torch_runner import TorchRunner
        return TorchRunner(plan.name, plan.input_shape, device=device, precision=precision,
                           threads=protocol.threads, input_name=plan.input_name,
                           create_model=model_zoo.create_model if model_zoo is not None else None)
    if backend == "tensorrt":
        try:
            from deploy.tensorrt.runner import TensorRTRunner
        except ImportError as exc:
            raise BackendUnavailableError("the TensorRT runner cannot be imported ({})".format(exc),
                                          hint="install TensorRT's Python bindings and pycuda, or use "
                                               "--backend onnxruntime") from exc
        return TensorRTRunner(plan.path, batch_size=protocol.batch)
    raise UsageError("unknown backend {!r}".format(backend), hint="one of: tensorrt, onnxruntime, openvino, torch")


def activate_runner(runner, backend, plan):
    try:
        runner.activate()
    except PipelineError:
        raise
    except Exception as exc:  # runtimes raise their own types; name the file and the fix
        if backend == "tensorrt":
            raise PipelineError("TensorRT cannot load engine {}: {}".format(plan.path, str(exc).splitlines()[0]),
                                hint="the engine is stale or from another device/TensorRT: rebuild it with "
                                     "python pipeline.py engines BUNDLE --force") from exc
        raise PipelineError("{} cannot load {}: {}".format(backend, plan.path or plan.name, exc),
                        hint="rebuild the bundle on the host, or try another --backend") from exc


# ------------------------------------------------------------------------------------------------
# the whole run
# ------------------------------------------------------------------------------------------------
def model_figures(name, record, size, model_zoo=None):
    """(params, macs, macs_note, published) from the manifest, else from the model card (``model_zoo``:
    the host's ``models`` package; None on the device, where the figures are optional)."""
    params = record.get("params") if record else None
    macs = record.get("macs") if record else None
    published = dict(record.get("published") or {}) if record else {}
    note = "manifest" if macs else None
    if params is None or macs is None or not published:
        card = _card(name, model_zoo)
        if card is not None:
            published = published or dict(card.published)
            params = params if params is not None else published.get("params")
            if macs is None and published.get("gmacs_224"):
                macs = published["gmacs_224"] * 1e9 * (float(size) / 224.0) ** 2
                note = "published GMACs at 224 scaled to {}".format(size)
    return params, macs, note, published


def _card(name, model_zoo):
    if model_zoo is None:
        return None
    try:
        return model_zoo.get_model_card(name)
    except Exception:  # an unknown name (a user's model): figures optional
        return None


def run_bench(protocol, backend_choice, bundle=None, names=None, device="cpu", progress=True,
              optimized_model_dir=None, power=True, floor=True, model_zoo=None):
    """Benchmark every model; returns (results list, extras dict). Writes nothing.

    ``model_zoo``: the host's ``models`` package (cli/bench.py passes it where it imports; deploy/ never
    imports it), for the torch backend's models and the published figures of the model cards."""
    from deploy.bench.tegrastats import TegrastatsSampler, tegrastats_available
    from deploy.environment import physical_cores

    backend = backend_choice.name
    choice = None
    if backend in CPU_BACKENDS:
        from deploy.cpu_isa import choice_record, local_cpu_isa

        isa = local_cpu_isa()
        choice = resolve_cpu_bench_precision(backend, protocol.precision, bundle, isa)
        precision = choice.precision
        choice = choice_record(choice, isa)
    else:
        precision = resolve_bench_precision(backend, protocol.precision, bundle, device)
    if names is None:
        if bundle is None:
            raise UsageError("no models to benchmark", hint="give a bundle folder or --models a,b")
        names = bundle.require_models()
    plans = plan_models(bundle, names, backend, precision, protocol)

    flops = None
    if floor and (backend in CPU_BACKENDS or (backend == "torch" and device == "cpu")):
        flops = measure_matmul_flops()
        LOG.info("FP32 matmul rate of this machine: %.1f GFLOP/s (numpy)", flops / 1e9)

    sampler = None
    if power and tegrastats_available():
        sampler = TegrastatsSampler(interval_ms=100)
        sampler.start()
    results = []
    try:
        for plan in plans:
            runner = make_runner(backend, plan, precision, protocol, device, optimized_model_dir, model_zoo)
            activate_runner(runner, backend, plan)
            try:
                meta = runner.input_metadata()
                input_name = plan.input_name if plan.input_name in meta else list(meta)[0]
                feed = {input_name: make_input(plan.input_shape, protocol.seed)}
                t_start = time.monotonic()
                timed = time_runner(runner, feed, protocol.iterations, protocol.warmup,
                                    desc="{} {}".format(plan.name, backend), progress=progress)
                t_end = time.monotonic()
                settings = runner.describe() if hasattr(runner, "describe") else {}
            finally:
                runner.deactivate()
            results.append(_result(plan, backend, precision, protocol, timed, settings, flops, sampler,
                                   t_start, t_end, model_zoo))
    finally:
        if sampler is not None:
            sampler.stop()
    extras = {"backend": backend, "fallback": backend_choice.fallback, "fallback_reason": backend_choice.reason,
              "precision": precision, "precision_choice": choice, "device": device,
              "threads": protocol.threads or (physical_cores() if backend != "tensorrt" else None),
              "matmul_gflops": round(flops / 1e9, 2) if flops else None,
              "power_sampling": ("tegrastats" if sampler is not None else None)}
    if sampler is not None and sampler.error:
        extras["power_error"] = sampler.error
    return results, extras


def _result(plan, backend, precision, protocol, timed, settings, flops, sampler, t_start, t_end, model_zoo=None):
    summary = stats_mod.summarize(timed.latencies_ms, batch=protocol.batch)
    params, macs, macs_note, published = model_figures(plan.name, plan.record, protocol.size, model_zoo)
    r = collections.OrderedDict()
    r["model"] = plan.name
    r["backend"] = backend
    # the precision that ran, as the runtime reports it (OpenVINO: read back from the compiled model)
    r["precision"] = settings.get("precision_ran") or precision
    r["precision_requested"] = precision
    r["input_shape"] = list(plan.input_shape)
    r["iterations"] = protocol.iterations
    r["warmup"] = protocol.warmup
    r["latency_ms"] = stats_mod.latency_dict(summary)
    r["latency_kind"] = "end-to-end host latency (with copies)" if timed.compute_ms is not None else \
        "host latency of one synchronous inference"
    r["throughput_fps"] = round(summary.throughput_fps, 3)
    r["cov"] = round(summary.cov, 5)
    r["unstable"] = summary.unstable
    r["warning"] = stats_mod.instability_message(summary)
    if timed.compute_ms is not None:
        cs = stats_mod.summarize(timed.compute_ms, batch=protocol.batch)
        r["compute_ms"] = stats_mod.latency_dict(cs)
        r["compute_cov"] = round(cs.cov, 5)
        r["compute_throughput_fps"] = round(cs.throughput_fps, 3)
        if cs.unstable:
            r["compute_warning"] = stats_mod.instability_message(cs, what="GPU compute time")
    r["wall_s"] = round(timed.wall_s, 3)
    r["params"] = params
    r["macs"] = int(macs) if macs else None
    r["macs_source"] = macs_note
    r["published"] = published
    floor = compute_floor_ms(macs, protocol.batch, flops)
    if floor:
        # significant figures, not decimals: a tiny model on a fast CPU has a floor well under 1 us
        r["compute_floor_ms"] = significant(floor)
        r["floor_share"] = significant(floor / summary.median)   # floor / median: 1.0 = at GEMM speed
    r["power"] = None
    if sampler is not None:
        from deploy.bench.tegrastats import energy_per_inference_mj
        ps = sampler.summary(t_start, t_end)
        if ps is not None:
            r["power"] = collections.OrderedDict([
                ("rail", ps.rail), ("samples", ps.samples), ("average_w", round(ps.average_w, 3)),
                ("min_w", round(ps.min_w, 3)), ("max_w", round(ps.max_w, 3)),
                ("mj_per_inference", round(energy_per_inference_mj(ps.average_w, timed.wall_s / protocol.iterations), 3)),
            ])
    r["runner"] = settings
    r["latencies_ms"] = [round(float(v), 5) for v in timed.latencies_ms]
    if timed.compute_ms is not None:
        r["compute_latencies_ms"] = [round(float(v), 5) for v in timed.compute_ms]
    return r
