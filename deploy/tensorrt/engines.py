"""TensorRT engines from a bundle, on the device: ``python3 pipeline.py engines BUNDLE``.

For each model in the bundle: check the ONNX file against the manifest, then build (or reuse) a
serialized engine ``engines/<name>.<precision>.<trt version>.<device>.engine`` with a sidecar JSON
(``.engine.json``: ONNX sha256, TensorRT version, device, precision, build options, engine sha256).
An engine whose sidecar does not match what would be built now is rebuilt, and the reason is
logged and returned, never silently reused. Engine and sidecar writes are atomic.

Alongside: a timing cache per TensorRT version and device (``engines/timing.<trt>.<device>.cache``),
an INT8 calibration cache per model, calibrator, TensorRT version and device, and in ``reports/``
the build log and the per-layer engine information (engine inspector, TensorRT >= 8.2).

Everything that does not call TensorRT (naming, staleness, options, the report) is plain Python
and tested without TensorRT; the TensorRT calls live in ``build_serialized`` and ``_engine_layers``
(and ``build_log.make_trt_logger``), and are type-checked against the TensorRT 10 stubs.
Python 3.6-compatible; tensorrt and pycuda are imported lazily.
"""
import collections
import contextlib
import hashlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Optional  # noqa: F401 (type comments)

from deploy.atomic import write_bytes, write_json, write_text
from deploy.bundle import Bundle, check_bundle_folders
from deploy.errors import BundleError, CalibrationError, EngineBuildError
from deploy.targets import get_target, local_profile, platform_mismatches, resolve_precision
from deploy.tensorrt.build_log import BuildLog, make_trt_logger
from deploy.tensorrt.calibrator import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CALIBRATOR,
    CalibrationBatchStream,
    CalibrationCache,
    cache_problem,
    make_trt_calibrator,
)
from deploy.tensorrt.engine_files import (
    ENGINE_DIR,
    REPORT_DIR,
    EngineOptions,  # noqa: F401 (type comments)
    calibration_batch,
    calibration_cache_relpath,
    engine_relpath,
    expected_record,
    input_shapes,
    make_options,
    other_engines,
    report_relpath,
    sidecar_relpath,
    slug,
    stale_reason,
    timing_cache_relpath,
)

if TYPE_CHECKING:  # pragma: no cover - for mypy against tensorrt-stubs only
    import tensorrt  # noqa: F401 (type comments)

LOG = logging.getLogger(__name__)

EngineResult = collections.namedtuple(
    "EngineResult", ["model", "precision", "path", "action", "reason", "seconds", "calibration"])
# action: "built" or "reused"; reason: why it was (re)built, or why it was reused.


# ------------------------------------------------------------------------------------------------
# the TensorRT calls (thin)
# ------------------------------------------------------------------------------------------------
def _load_timing_cache(config, path):
    # type: (tensorrt.IBuilderConfig, str) -> str
    """Attach the timing cache at ``path`` (or a new one) to ``config``; return what happened."""
    if not hasattr(config, "create_timing_cache"):
        return "timing cache not supported by this TensorRT"
    blob = b""
    state = "new timing cache"
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            blob = handle.read()
        state = "timing cache read ({} bytes)".format(len(blob))
    try:
        cache = config.create_timing_cache(blob)
    except (RuntimeError, TypeError, ValueError) as exc:
        cache = None
        LOG.warning("timing cache %s is unusable (%s): starting a new one", path, exc)
    if cache is None:
        cache = _new_timing_cache(config)
        state = "timing cache {} unusable: new one".format(os.path.basename(path))
    if not config.set_timing_cache(cache, False):
        cache = _new_timing_cache(config)
        if not config.set_timing_cache(cache, False):
            return "timing cache refused by TensorRT: building without one"
        state = "timing cache {} from another device or version: new one".format(os.path.basename(path))
    return state


def _new_timing_cache(config):
    # type: (tensorrt.IBuilderConfig) -> tensorrt.ITimingCache
    cache = config.create_timing_cache(b"")
    if cache is None:   # TensorRT returns nullptr when it cannot make a cache at all
        raise EngineBuildError("TensorRT could not create an empty timing cache",
                               hint="see the build log in the bundle's reports/engines/")
    return cache


def build_serialized(onnx_path, options, record, timing_cache_path, calibrator, trt_logger,
                     check_callbacks=None):
    """Parse ``onnx_path`` and build a serialized engine. Returns (engine bytes, info dict).

    ``timing_cache_path``: read before and written after the build; None builds without one (the
    doctor's smoke test, which must not change the bundle). ``check_callbacks()`` raises what a
    Python callback (logger, calibrator) recorded during the build; it runs as soon as TensorRT
    returns, before any generic "build failed" message. Failures are EngineBuildError whose
    ``step`` says "parse" or "build".
    """
    import tensorrt as trt

    from deploy.tensorrt.compat import network_flags, set_workspace

    builder = trt.Builder(trt_logger)
    network = builder.create_network(network_flags(trt, builder))
    parser = trt.OnnxParser(network, trt_logger)
    with open(onnx_path, "rb") as handle:
        parsed = parser.parse(handle.read())
    if not parsed:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            "TensorRT could not parse {}: {}".format(os.path.basename(onnx_path), "; ".join(errors) or "no details"),
            hint="check the bundle's opset against the target (python pipeline.py targets) and rebuild it",
            step="parse")
    config = builder.create_builder_config()
    info = collections.OrderedDict()
    info["workspace_api"] = set_workspace(trt, config, options.workspace_mib << 20)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)   # INT8 engines keep non-INT8 layers in FP16, not FP32
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    verbosity = getattr(getattr(trt, "ProfilingVerbosity", None), "DETAILED", None)   # 8.2+; 8.0 calls it VERBOSE
    if verbosity is not None:
        config.profiling_verbosity = verbosity   # layer names + tactics for the engine inspector
    shapes = input_shapes(record, options.max_batch)
    if shapes is not None:
        name, smin, sopt, smax = shapes
        profile = builder.create_optimization_profile()
        profile.set_shape(name, smin, sopt, smax)
        if config.add_optimization_profile(profile) < 0:
            raise EngineBuildError("TensorRT refused the optimization profile {} for {}".format(
                (smin, sopt, smax), os.path.basename(onnx_path)), hint="check --max-batch")
        if options.precision == "int8":
            # TensorRT reads the calibration profile's OPT shape per get_batch: the calibration batch.
            calib = (calibration_batch(record, options),) + smin[1:]
            calib_profile = builder.create_optimization_profile()
            calib_profile.set_shape(name, calib, calib, calib)
            if not config.set_calibration_profile(calib_profile):
                raise EngineBuildError("TensorRT refused the calibration profile {} for {}".format(
                    calib, os.path.basename(onnx_path)), hint="try a smaller --calib-batch")
    info["timing_cache"] = _load_timing_cache(config, timing_cache_path) if timing_cache_path else "none asked for"
    serialized = builder.build_serialized_network(network, config)
    if check_callbacks is not None:
        check_callbacks()
    if serialized is None:
        raise EngineBuildError(
            "TensorRT failed to build an engine from {}".format(os.path.basename(onnx_path)),
            hint="see the build log in the bundle's reports/engines/; a larger --workspace may help")
    if timing_cache_path and hasattr(config, "get_timing_cache"):
        write_bytes(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), info


def _engine_layers(serialized, trt_logger):
    """Per-layer engine information as JSON text (engine inspector), or None where not offered."""
    import tensorrt as trt

    runtime = trt.Runtime(trt_logger)
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None or not hasattr(engine, "create_engine_inspector"):
        return None
    inspector = engine.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


# ------------------------------------------------------------------------------------------------
# one model, and the whole bundle
# ------------------------------------------------------------------------------------------------
def _calibration_for(bundle, model, record, options, device):
    """(stream or None, cache) for an INT8 build; the stream may be None when a valid cache exists."""
    entry = record.get("calibration") or {}
    source = collections.OrderedDict([("calibration_sha256", entry.get("sha256")),
                                      ("batch_size", calibration_batch(record, options)),
                                      ("onnx_sha256", record["onnx"]["sha256"])])
    cache = CalibrationCache(
        bundle.path(calibration_cache_relpath(model, options.calibrator, device.tensorrt, device.name)),
        options.calibrator, source)
    try:
        if not entry.get("path"):
            raise CalibrationError(
                "model {} has no calibration data in the bundle".format(model),
                hint="rebuild the bundle on the host with calibration images, or use --precision fp16")
        batch = calibration_batch(record, options)
        if batch != options.calib_batch:
            LOG.info("%s: the input has a static batch of %d, so TensorRT reads %d image(s) per calibration "
                     "batch: calibrating in batches of %d (not --calib-batch %d)",
                     model, batch, batch, batch, options.calib_batch)
        stream = CalibrationBatchStream(bundle.path(entry["path"]), record["input"]["shape"], batch)
    except CalibrationError:
        if os.path.isfile(cache.path):
            with open(cache.path, "rb") as handle:
                if cache_problem(handle.read(), options.calibrator) is None:
                    LOG.info("%s: no usable calibration data, but a valid calibration cache: using it", model)
                    return None, cache
        raise
    return stream, cache


def build_one(bundle, model, options, device, force=False, keep_verbose=False):
    # type: (Bundle, str, EngineOptions, Any, bool, bool) -> EngineResult
    """Build (or reuse) the engine of one model; returns an EngineResult."""
    record = bundle.model(model)
    engine_rel = engine_relpath(model, options.precision, device.tensorrt, device.name)
    expected = expected_record(record, model, options, device)
    reason = "--force" if force else stale_reason(bundle, engine_rel, expected)
    for other in other_engines(bundle, model, options.precision, engine_rel):
        LOG.info("%s: %s is for another TensorRT version or device: not used", model, other)
    if reason is None:
        LOG.info("%s: %s is up to date", model, engine_rel)
        return EngineResult(model, options.precision, engine_rel, "reused", "up to date", 0.0, None)
    LOG.info("%s: building %s (%s)", model, engine_rel, reason)

    build_log = BuildLog(keep_verbose)
    trt_logger = make_trt_logger(build_log)
    calibrator = core = cache = None
    started = time.time()

    def check_callbacks():
        if core is not None:
            core.raise_if_failed(model)
        build_log.raise_if_callback_failed("{}: building the engine".format(model))

    try:
        with _cuda_for(options):
            try:
                if options.precision == "int8":
                    stream, cache = _calibration_for(bundle, model, record, options, device)
                    if stream is None:
                        stream = _CacheOnlyStream(calibration_batch(record, options))
                    calibrator, core = make_trt_calibrator(stream, cache)
                serialized, info = build_serialized(
                    bundle.path(record["onnx"]["path"]), options, record,
                    bundle.path(timing_cache_relpath(device.tensorrt, device.name)), calibrator, trt_logger,
                    check_callbacks)
                layers = _engine_layers(serialized, trt_logger)
                build_log.raise_if_callback_failed("{}: reading the engine's layers".format(model))
            finally:
                if core is not None:
                    core.free()     # while the CUDA context is still current
    finally:
        write_text(bundle.path(report_relpath(engine_rel, ".build.log")), build_log.text())
    seconds = time.time() - started

    write_bytes(bundle.path(engine_rel), serialized)
    sidecar = collections.OrderedDict(expected)
    sidecar["engine_sha256"] = hashlib.sha256(serialized).hexdigest()  # the bytes just written
    sidecar["engine_bytes"] = len(serialized)
    sidecar["build_seconds"] = round(seconds, 1)
    sidecar["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sidecar["rebuilt_because"] = reason
    sidecar.update(info)
    if cache is not None:
        sidecar["calibration"] = cache.status
        sidecar["calibration_images"] = cache.images   # None: a cache of unknown origin (e.g. trtexec)
    if layers:
        write_text(bundle.path(report_relpath(engine_rel, ".layers.json")), layers)
        sidecar["layers_report"] = report_relpath(engine_rel, ".layers.json")
    write_json(bundle.path(sidecar_relpath(engine_rel)), sidecar)
    LOG.info("%s: wrote %s in %.1f s", model, engine_rel, seconds)
    return EngineResult(model, options.precision, engine_rel, "built", reason, seconds,
                        cache.status if cache is not None else None)


class _CacheOnlyStream(object):
    """Stands in for the batch stream when a valid calibration cache makes the data unnecessary."""

    def __init__(self, batch_size):
        self.batch_size = batch_size
        self.batch_shape = (batch_size,)

    def next_batch(self):
        return None


@contextlib.contextmanager
def _cuda_for(options):
    """INT8 calibration copies batches with pycuda: make the primary CUDA context current."""
    if options.precision != "int8":
        yield None
        return
    from deploy.tensorrt.compat import cuda_context

    with cuda_context() as context:
        yield context


def check_bundle_for_engines(bundle_dir, target_name=None):
    """Open and check a bundle that engines can be built from. Returns (bundle, target profile)."""
    bundle = Bundle.open(bundle_dir)
    if target_name:
        bundle.check_target(target_name)
    target = get_target(bundle.target_name)
    if target.backend != "tensorrt":
        raise BundleError(
            "bundle {} is for target {!r}, which runs ONNX Runtime, not TensorRT engines".format(
                bundle.root, target.name),
            hint="build a bundle for a TensorRT target: python pipeline.py build --target jetson-nano")
    return bundle, target


def build_engines(bundle_dir, precision="best", workspace_mib=None, calibrator=DEFAULT_CALIBRATOR,
                  force=False, names=None, target_name=None, calib_batch=DEFAULT_BATCH_SIZE, max_batch=1,
                  keep_verbose=False):
    """Build every model's engine in the bundle. Returns (results, summary dict).

    Order: bundle and target are checked and the precision resolved before TensorRT is touched,
    so a bad request (a precision the target lacks, a missing bundle) fails before any work.
    """
    from deploy.tensorrt.compat import probe_local_device

    bundle, target = check_bundle_for_engines(bundle_dir, target_name)
    check_bundle_folders(bundle.root, (ENGINE_DIR, "reports", REPORT_DIR))   # before anything is written
    resolved = resolve_precision(target, precision)
    options = make_options(target, resolved, workspace_mib, calibrator, calib_batch, max_batch)
    models = list(names) if names else bundle.require_models()
    bundle.verify(models)

    device = probe_local_device()
    mismatches = platform_mismatches(target, device) if target.compute_capability else []
    for line in mismatches:
        LOG.warning("%s", line)
    if target.compute_capability and device.compute_capability and \
            target.compute_capability != device.compute_capability:
        raise BundleError(
            "bundle {} is for {} but this GPU is {} (sm_{})".format(
                bundle.root, target.name, device.name, device.compute_capability.replace(".", "")),
            hint="build a bundle for this device's target on the host (python pipeline.py targets lists them)")
    here = local_profile(target, device)
    resolved = resolve_precision(here, precision if precision == "best" else resolved)
    options = options._replace(precision=resolved)

    results = []
    for index, model in enumerate(models, start=1):
        LOG.info("engine %d/%d: %s (%s)", index, len(models), model, resolved)
        results.append(build_one(bundle, model, options, device, force=force, keep_verbose=keep_verbose))

    from deploy.tensorrt.trtexec import write_trtexec_script

    script = write_trtexec_script(bundle, resolved, trt_version=device.tensorrt, device_name=device.name,
                                  workspace_mib=options.workspace_mib, calibrator=options.calibrator,
                                  max_batch=options.max_batch)
    summary = collections.OrderedDict()
    summary["target"] = target.name
    summary["device"] = device._asdict()
    summary["platform_mismatches"] = mismatches
    summary["precision_requested"] = precision
    summary["precision"] = resolved
    summary["options"] = options._asdict()
    summary["trtexec_script"] = os.path.relpath(script, bundle.root)
    summary["engines"] = [r._asdict() for r in results]
    summary_rel = "reports/engines.{}.{}.json".format(slug(device.tensorrt), slug(device.name))
    write_json(bundle.path(summary_rel), summary)
    summary["report"] = summary_rel
    return results, summary
