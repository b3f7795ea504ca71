"""``trtexec`` command lines that build the same engines as ``pipeline.py engines``.

For users who prefer NVIDIA's tool or lack TensorRT's Python bindings. The bundle carries them as
``BUNDLE/trtexec.sh`` (written atomically): on the host by ``build`` (TensorRT version from the
target profile, device name left to a shell variable), and again on the device by ``engines``
with the exact TensorRT version and device in the engine names.

trtexec flags differ by version: TensorRT 8.2 takes ``--workspace=<MiB>``; 8.4 and newer take
``--memPoolSize=workspace:<MiB>`` (``--workspace`` is deprecated, then removed in 10).
trtexec cannot calibrate from the bundle's ``.npy`` batches: for INT8 it reads the calibration
cache that ``pipeline.py engines --precision int8`` writes (``--calib=<cache>``).
Python 3.6-compatible; no TensorRT needed.
"""
import logging
import os

from deploy.atomic import write_text
from deploy.bundle import Bundle
from deploy.calibrator import DEFAULT_CALIBRATOR, check_calibrator
from deploy.targets import get_target, resolve_precision
from deploy.trt_compat import version_tuple

LOG = logging.getLogger(__name__)

SCRIPT_NAME = "trtexec.sh"
_TRT_PLACEHOLDER = "TRTVERSIONPLACEHOLDER"
_DEVICE_PLACEHOLDER = "DEVICENAMEPLACEHOLDER"


def workspace_flag(trt_version, workspace_mib):
    # type: (str, int) -> str
    """The workspace flag trtexec of ``trt_version`` reads (unknown version: the current form)."""
    version = version_tuple(trt_version) if trt_version else ()
    if version and version < (8, 4):
        return "--workspace={}".format(int(workspace_mib))
    return "--memPoolSize=workspace:{}".format(int(workspace_mib))


def shape_text(shape):
    return "x".join(str(int(d)) for d in shape)


def trtexec_command(onnx_path, engine_path, precision, trt_version, workspace_mib, timing_cache_path,
                    calib_cache_path=None, input_name="input", dynamic_shapes=None):
    """The trtexec argument list (no shell quoting) for one engine.

    ``dynamic_shapes``: (min, opt, max) batch shapes when the input has a dynamic batch dimension.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError("precision must be resolved first, not {!r}".format(precision))
    cmd = ["trtexec", "--onnx={}".format(onnx_path), "--saveEngine={}".format(engine_path)]
    if precision in ("fp16", "int8"):
        cmd.append("--fp16")
    if precision == "int8":
        cmd.append("--int8")
        if calib_cache_path:
            cmd.append("--calib={}".format(calib_cache_path))
    cmd.append(workspace_flag(trt_version, workspace_mib))
    cmd.append("--timingCacheFile={}".format(timing_cache_path))
    if dynamic_shapes:
        smin, sopt, smax = dynamic_shapes
        cmd += ["--minShapes={}:{}".format(input_name, shape_text(smin)),
                "--optShapes={}:{}".format(input_name, shape_text(sopt)),
                "--maxShapes={}:{}".format(input_name, shape_text(smax))]
    return cmd


def _sh_quote(arg):
    # Keep ${VAR} expandable: double quotes, escaping what double quotes would still interpret.
    if all(c.isalnum() or c in "-_=./:,+${}" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def script_text(bundle, precision, trt_version=None, device_name=None, workspace_mib=None,
                calibrator=DEFAULT_CALIBRATOR, max_batch=1):
    """The text of ``trtexec.sh`` for every model in ``bundle`` at ``precision``."""
    from deploy.engines import calibration_cache_relpath, engine_relpath, input_shapes, slug, timing_cache_relpath

    target = get_target(bundle.target_name)
    precision = resolve_precision(target, precision)
    check_calibrator(calibrator)
    workspace = target.workspace_mib if workspace_mib is None else int(workspace_mib)
    version_for_flags = trt_version or target.tensorrt
    # On the host the version and device are left to shell variables, put in after naming.
    trt_name = trt_version or _TRT_PLACEHOLDER
    device = device_name or _DEVICE_PLACEHOLDER
    lines = [
        "#!/bin/sh",
        "# trtexec equivalents of: python3 pipeline.py engines build/{} --precision {}".format(
            os.path.basename(os.path.abspath(bundle.root)), precision),
        "# Written by the pipeline; run on the device from the bundle folder: sh trtexec.sh",
        "# Engines built this way have no sidecar record, so `pipeline.py engines` rebuilds rather",
        "# than trusts them. trtexec is /usr/src/tensorrt/bin/trtexec on JetPack.",
        "set -e",
        'cd "$(dirname "$0")"',
        'PATH="$PATH:/usr/src/tensorrt/bin"',
    ]
    if not trt_version:
        lines.append("# TensorRT version as the Python bindings report it (the engine names use it)")
        lines.append('TRT_VERSION="${{TRT_VERSION:-$(python3 -c "import tensorrt; print(tensorrt.__version__)" '
                     '2>/dev/null || echo {})}}"'.format(target.tensorrt or "unknown"))
    if not device_name:
        lines.append("# GPU name, lower case with dashes, as pycuda reports it (Jetson Nano: NVIDIA Tegra X1)")
        lines.append('DEVICE="${{DEVICE:-{}}}"'.format(
            "nvidia-tegra-x1" if target.name == "jetson-nano" else "gpu0"))
    if precision == "int8":
        lines.append("# INT8: the --calib cache is written by `python3 pipeline.py engines --precision int8`;")
        lines.append("# trtexec cannot calibrate from the bundle's .npy batches itself.")
    lines.append("mkdir -p engines")
    for model in bundle.model_names():
        record = bundle.model(model)
        shapes = input_shapes(record, max_batch)
        cmd = trtexec_command(
            record["onnx"]["path"], engine_relpath(model, precision, trt_name, device), precision,
            version_for_flags, workspace, timing_cache_relpath(trt_name, device),
            calibration_cache_relpath(model, calibrator, trt_name, device) if precision == "int8" else None,
            input_name=record.get("input", {}).get("name", "input"),
            dynamic_shapes=shapes[1:] if shapes else None)
        text = " ".join(_sh_quote(a) for a in cmd)
        text = text.replace(slug(_TRT_PLACEHOLDER), "${TRT_VERSION}").replace(slug(_DEVICE_PLACEHOLDER), "${DEVICE}")
        lines.append(text)
    return "\n".join(lines) + "\n"


def write_trtexec_script(bundle, precision, trt_version=None, device_name=None, workspace_mib=None,
                         calibrator=DEFAULT_CALIBRATOR, max_batch=1):
    """Write ``BUNDLE/trtexec.sh`` atomically and return its path.

    ``bundle``: a Bundle or its folder. On the host leave ``trt_version``/``device_name`` None:
    the flags follow the target profile's TensorRT and the engine names use shell variables.
    """
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    path = bundle.path(SCRIPT_NAME)
    write_text(path, script_text(bundle, precision, trt_version, device_name, workspace_mib, calibrator, max_batch))
    os.chmod(path, 0o755)
    LOG.info("wrote %s", path)
    return path
