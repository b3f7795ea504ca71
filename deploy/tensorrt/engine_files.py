"""Engine files in a bundle, without TensorRT: their names, the build options, the sidecar records
and when an engine is stale; ``find_engine`` and ``list_engines`` for bench, verify, predict and doctor.

The build itself (which calls TensorRT) is ``deploy.tensorrt.engines``; trtexec scripts
(``deploy.tensorrt.trtexec``) name the same files. Python 3.6; tensorrt imported lazily.
"""
import collections
import json
import os
import re
from typing import Optional  # noqa: F401 (type comments)

from deploy.atomic import sha256_file
from deploy.bundle import Bundle  # noqa: F401 (type comments)
from deploy.errors import BundleError, UsageError
from deploy.tensorrt.calibrator import DEFAULT_BATCH_SIZE, DEFAULT_CALIBRATOR, check_calibrator

ENGINE_DIR = "engines"
REPORT_DIR = "reports/engines"


EngineOptions = collections.namedtuple(
    "EngineOptions", ["precision", "workspace_mib", "calibrator", "calib_batch", "max_batch"])
# precision: "fp32" | "fp16" | "int8" (already resolved); workspace_mib: builder workspace;
# calibrator: "entropy" | "minmax" (int8 only); calib_batch: calibration batch size;
# max_batch: largest batch of the optimization profile for a dynamic-batch input.

# ------------------------------------------------------------------------------------------------
# names
# ------------------------------------------------------------------------------------------------
def slug(text):
    # type: (str) -> str
    """A file-name-safe lower-case form: ``"NVIDIA Tegra X1"`` -> ``"nvidia-tegra-x1"``."""
    out = re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-.")
    return out or "unknown"


def engine_relpath(model, precision, trt_version, device_name):
    # type: (str, str, str, str) -> str
    return "{}/{}.{}.{}.{}.engine".format(ENGINE_DIR, model, precision, slug(trt_version), slug(device_name))


def sidecar_relpath(engine_rel):
    # type: (str) -> str
    return engine_rel + ".json"


def timing_cache_relpath(trt_version, device_name):
    # type: (str, str) -> str
    return "{}/timing.{}.{}.cache".format(ENGINE_DIR, slug(trt_version), slug(device_name))


def calibration_cache_relpath(model, calibrator, trt_version, device_name):
    # type: (str, str, str, str) -> str
    return "{}/{}.int8-{}.{}.{}.calib".format(ENGINE_DIR, model, calibrator, slug(trt_version), slug(device_name))


def report_relpath(engine_rel, suffix):
    # type: (str, str) -> str
    return "{}/{}{}".format(REPORT_DIR, os.path.basename(engine_rel)[:-len(".engine")], suffix)


# ------------------------------------------------------------------------------------------------
# options, sidecar and staleness (no TensorRT)
# ------------------------------------------------------------------------------------------------
def make_options(target, precision, workspace_mib=None, calibrator=DEFAULT_CALIBRATOR,
                 calib_batch=DEFAULT_BATCH_SIZE, max_batch=1):
    """Check and collect the build options; ``precision`` must already be resolved."""
    workspace = target.workspace_mib if workspace_mib is None else int(workspace_mib)
    if workspace < 16:
        raise UsageError("workspace {} MiB is too small".format(workspace),
                         hint="use --workspace 256 (MiB) or more; the {} default is {}".format(
                             target.name, target.workspace_mib))
    if max_batch < 1 or calib_batch < 1:
        raise UsageError("batch sizes must be >= 1 (--calib-batch {}, --max-batch {})".format(calib_batch, max_batch),
                         hint="leave them out for the defaults, or e.g. --calib-batch 8 --max-batch 1")
    return EngineOptions(precision, workspace, check_calibrator(calibrator), int(calib_batch), int(max_batch))


def is_dynamic_batch(record):
    # type: (dict) -> bool
    inp = record.get("input", {})
    shape = inp.get("shape") or []
    return bool(inp.get("dynamic_batch")) or bool(shape) and (shape[0] is None or int(shape[0]) < 1)


def input_shapes(record, max_batch):
    """(name, min, opt, max) shapes of the optimization profile for a dynamic-batch input, else None."""
    if not is_dynamic_batch(record):
        return None
    inp = record["input"]
    chw = tuple(int(d) for d in inp["shape"][1:])
    return (inp.get("name", "input"), (1,) + chw, (int(max_batch),) + chw, (int(max_batch),) + chw)


def calibration_batch(record, options):
    # type: (dict, EngineOptions) -> int
    """How many images TensorRT reads per ``get_batch`` call, so the batch the calibrator must feed.

    An explicit-batch network reads one input's worth of data per call: the input's own shape
    when static, the calibration profile's OPT shape when the batch is dynamic (set to
    ``options.calib_batch`` in ``build_serialized``). ``get_batch_size`` only mattered for implicit
    batch (NvInfer.h, IInt8Calibrator::getBatchSize). Feeding 8 images to a batch-1 input would
    calibrate on the first image of each batch.
    """
    if is_dynamic_batch(record):
        return int(options.calib_batch)
    return int(record["input"]["shape"][0])


def expected_record(record, model, options, device):
    """What the sidecar of an engine built now would say (less the engine's own hash and timing)."""
    build = collections.OrderedDict([("workspace_mib", options.workspace_mib)])
    if options.precision == "int8":
        calib = record.get("calibration") or {}
        build["calibrator"] = options.calibrator
        build["calib_batch"] = calibration_batch(record, options)
        build["calibration_sha256"] = calib.get("sha256")
        build["fp16_fallback"] = True
    if is_dynamic_batch(record):
        build["max_batch"] = options.max_batch
    out = collections.OrderedDict()
    out["model"] = model
    out["precision"] = options.precision
    out["onnx_sha256"] = record["onnx"]["sha256"]
    out["tensorrt"] = device.tensorrt
    out["device"] = device.name
    out["compute_capability"] = device.compute_capability
    out["build_options"] = build
    return out


def read_sidecar(path):
    """The sidecar dict, or None when absent; a sidecar that is not JSON reads as {} (stale)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "r") as handle:
            data = json.load(handle)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def identity_mismatch(sidecar, expected):
    # type: (dict, dict) -> Optional[str]
    """Why an engine's sidecar is not for this TensorRT version, GPU and ONNX model; None when it is.

    ``expected`` needs the keys tensorrt, device, compute_capability and onnx_sha256.
    """
    if sidecar.get("tensorrt") != expected["tensorrt"]:
        return "built with TensorRT {}, this is TensorRT {}".format(sidecar.get("tensorrt"), expected["tensorrt"])
    if sidecar.get("device") != expected["device"] or \
            sidecar.get("compute_capability") != expected["compute_capability"]:
        return "built on {} (sm {}), this is {} (sm {})".format(
            sidecar.get("device"), sidecar.get("compute_capability"),
            expected["device"], expected["compute_capability"])
    if sidecar.get("onnx_sha256") != expected["onnx_sha256"]:
        return "the ONNX model changed since the engine was built (sha256 {}... -> {}...)".format(
            str(sidecar.get("onnx_sha256"))[:12], str(expected["onnx_sha256"])[:12])
    return None


def stale_reason(bundle, engine_rel, expected):
    # type: (Bundle, str, dict) -> Optional[str]
    """None when the engine at ``engine_rel`` can be reused as is; else why it must be rebuilt."""
    path = bundle.path(engine_rel)
    if not os.path.isfile(path):
        return "no engine yet"
    sidecar = read_sidecar(bundle.path(sidecar_relpath(engine_rel)))
    if sidecar is None:
        return "the engine has no sidecar record (an interrupted build, or copied from elsewhere)"
    if not sidecar:
        return "the engine's sidecar record is not valid JSON"
    mismatch = identity_mismatch(sidecar, expected)
    if mismatch:
        return mismatch
    if sidecar.get("precision") != expected["precision"]:
        return "built for {}, not {}".format(sidecar.get("precision"), expected["precision"])
    old = sidecar.get("build_options") or {}
    new = expected["build_options"]
    changed = ["{} {} -> {}".format(k, old.get(k), new.get(k))
               for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed:
        return "build options changed: {}".format(", ".join(changed))
    if sidecar.get("engine_sha256") != sha256_file(path):
        return "the engine file does not match its sidecar's sha256 (truncated or replaced)"
    return None


def other_engines(bundle, model, precision, engine_rel):
    """Engines of this model and precision built for other TensorRT versions or devices."""
    folder = bundle.path(ENGINE_DIR)
    if not os.path.isdir(folder):
        return []
    prefix = "{}.{}.".format(model, precision)
    mine = os.path.basename(engine_rel)
    return sorted("{}/{}".format(ENGINE_DIR, f) for f in os.listdir(folder)
                  if f.startswith(prefix) and f.endswith(".engine") and f != mine)


def list_engines(bundle):
    """Sidecar records of all engines in the bundle (for bench/verify): [(engine relpath, record)]."""
    folder = bundle.path(ENGINE_DIR)
    out = []
    if os.path.isdir(folder):
        for f in sorted(os.listdir(folder)):
            if f.endswith(".engine"):
                rel = "{}/{}".format(ENGINE_DIR, f)
                out.append((rel, read_sidecar(bundle.path(sidecar_relpath(rel))) or {}))
    return out


def find_engine(bundle, model, precision):
    # type: (Bundle, str, str) -> str
    """The engine of ``model`` at ``precision`` built for this machine's TensorRT and GPU (relpath).

    For bench/verify: raises BundleError when there is none, or when it is stale (its sidecar names
    another ONNX file, TensorRT version or device), with the command that builds it.
    """
    from deploy.tensorrt.compat import device_name_and_capability, require_tensorrt, trt_version

    version = trt_version(require_tensorrt())
    name, capability = device_name_and_capability()
    rel = engine_relpath(model, precision, version, name)
    fix = "python3 pipeline.py engines {} --precision {}".format(bundle.root, precision)
    if not os.path.isfile(bundle.path(rel)):
        raise BundleError("no {} engine of {} for TensorRT {} on {} ({} missing)".format(
            precision, model, version, name, rel), hint=fix)
    sidecar = read_sidecar(bundle.path(sidecar_relpath(rel))) or {}
    problem = identity_mismatch(sidecar, {"tensorrt": version, "device": name, "compute_capability": capability,
                                          "onnx_sha256": bundle.model(model)["onnx"]["sha256"]})
    if problem:
        raise BundleError("engine {} is stale: {}".format(rel, problem), hint=fix)
    return rel
