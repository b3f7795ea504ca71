"""``trtexec`` command lines that build the same engines as ``pipeline.py engines``.

For users who prefer NVIDIA's tool or lack TensorRT's Python bindings. The bundle carries them as
``BUNDLE/trtexec.sh`` (written atomically): on the host by ``build`` (TensorRT version from the
target profile, device name left to a shell variable), and again on the device by ``engines``
with the exact TensorRT version and device in the engine names.

trtexec flags differ by version: TensorRT 8.2 takes ``--workspace=<MiB>``; 8.4 and newer take
``--memPoolSize=workspace:<MiB>`` (``--workspace`` is deprecated, then removed in 10).
trtexec cannot calibrate from the bundle's ``.npy`` batches: for INT8 it reads the calibration
cache that ``pipeline.py engines --precision int8 --calibrator entropy`` writes
(``--calib=<cache>``); without one it would silently calibrate on one batch of random data, so
the script refuses to run unless that cache exists (for that model, TensorRT version and device).
Python 3.6-compatible; no TensorRT needed.
"""
import logging
import os
import re
import shlex

from deploy.atomic import write_text
from deploy.bundle import Bundle
from deploy.targets import get_target, resolve_precision
from deploy.tensorrt.calibrator import DEFAULT_CALIBRATOR, check_calibrator
from deploy.tensorrt.compat import version_tuple

LOG = logging.getLogger(__name__)

SCRIPT_NAME = "trtexec.sh"
_TRT_PLACEHOLDER = "TRTVERSIONPLACEHOLDER"
_DEVICE_PLACEHOLDER = "DEVICENAMEPLACEHOLDER"
BENCH_ITERATIONS = 500     # as pipeline.py bench
BENCH_WARMUP_MS = 2000     # trtexec's --warmUp is in milliseconds


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


def bench_command(engine_path, input_name="input", batch_shape=None, iterations=BENCH_ITERATIONS,
                  warmup_ms=BENCH_WARMUP_MS):
    """The trtexec argument list that benchmarks a built engine like ``pipeline.py bench``.

    trtexec runs until both ``--iterations`` and ``--duration`` (seconds, default 3) are reached,
    so ``--duration=0`` makes it exactly ``iterations``; ``--warmUp`` is in milliseconds
    (sampleOptions.cpp 8.2.1). ``batch_shape``: the input shape to run a dynamic-batch engine with.
    """
    cmd = ["trtexec", "--loadEngine={}".format(engine_path), "--iterations={}".format(int(iterations)),
           "--duration=0", "--warmUp={}".format(int(warmup_ms))]
    if batch_shape:
        cmd.append("--shapes={}:{}".format(input_name, shape_text(batch_shape)))
    return cmd


def sh_quote(arg):
    # type: (str) -> str
    """``arg`` quoted for sh with shlex.quote, except the host script's TensorRT-version and device
    placeholders, which become double-quoted ``"${TRT_VERSION}"``/``"${DEVICE}"`` expansions (a
    value with spaces or quotes stays one word and is never run)."""
    from deploy.tensorrt.engine_files import slug

    variables = {slug(_TRT_PLACEHOLDER): "${TRT_VERSION}", slug(_DEVICE_PLACEHOLDER): "${DEVICE}"}
    pieces = re.split("({})".format("|".join(re.escape(k) for k in variables)), arg)
    out = []
    for piece in pieces:
        if piece in variables:
            out.append('"{}"'.format(variables[piece]))
        elif piece:
            out.append(shlex.quote(piece))
    return "".join(out) or "''"


def comment_text(text):
    # type: (str) -> str
    """``text`` made safe for a one-line sh comment: control characters (a newline would end the
    comment and start a command) and non-ASCII written as escapes."""
    return str(text).encode("unicode_escape").decode("ascii")


_CACHE_CHECK = """# trtexec calibrates on one batch of random data when the --calib cache is missing or empty, and
# reads only entropy-calibrator caches: refuse to build INT8 engines without the right cache.
require_entropy_cache() {
    if [ ! -s "$1" ] || ! head -n 1 "$1" | grep -q '^TRT-[0-9]*-EntropyCalibration2'; then
        echo "trtexec.sh: $2: no entropy-calibrator cache $1 for this model, TensorRT version and device;" \\
             "write it first: python3 pipeline.py engines BUNDLE --precision int8 --calibrator entropy" >&2
        exit 1
    fi
}"""


def script_text(bundle, precision, trt_version=None, device_name=None, workspace_mib=None,
                calibrator=DEFAULT_CALIBRATOR, max_batch=1):
    """The text of ``trtexec.sh`` for every model in ``bundle`` at ``precision``.

    Every argument is quoted (shlex.quote), so a bundle path or model name with a newline, a
    quote or ``$(...)`` cannot run a command. ``sh trtexec.sh`` builds the engines; ``sh trtexec.sh
    bench`` benchmarks the built ones. ``calibrator`` is accepted for symmetry with ``engines``,
    but trtexec reads only entropy caches, so INT8 lines always name the entropy cache.
    """
    from deploy.tensorrt.engine_files import (
        calibration_cache_relpath,
        engine_relpath,
        input_shapes,
        timing_cache_relpath,
    )

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
            comment_text(os.path.basename(os.path.abspath(bundle.root))), precision),
        "# Written by the pipeline; run on the device from the bundle folder: sh trtexec.sh",
        "# (builds the engines), then sh trtexec.sh bench ({} iterations each, {} ms warm-up).".format(
            BENCH_ITERATIONS, BENCH_WARMUP_MS),
        "# Engines built this way have no sidecar record, so `pipeline.py engines` rebuilds rather",
        "# than trusts them. trtexec is /usr/src/tensorrt/bin/trtexec on JetPack.",
        "set -e",
        "# (the '; echo .' keeps a folder name that ends in a newline intact)",
        'HERE="$(dirname "$0"; echo .)"',
        'cd "${HERE%??}"',
        'PATH="$PATH:/usr/src/tensorrt/bin"',
        'MODE="${1:-build}"',
    ]
    if not trt_version:
        lines.append("# TensorRT version as the Python bindings report it (the engine names use it)")
        lines.append('TRT_VERSION="${{TRT_VERSION:-$(python3 -c "import tensorrt; print(tensorrt.__version__)" '
                     '2>/dev/null || echo {})}}"'.format(shlex.quote(target.tensorrt or "unknown")))
    if not device_name:
        lines.append("# GPU name, lower case with dashes, as pycuda reports it (Jetson Nano: NVIDIA Tegra X1)")
        lines.append('DEVICE="${{DEVICE:-{}}}"'.format(
            "nvidia-tegra-x1" if target.name == "jetson-nano" else "gpu0"))
    models = []
    for model in bundle.model_names():
        record = bundle.model(model)
        shapes = input_shapes(record, max_batch)
        models.append((model, record, shapes, engine_relpath(model, precision, trt_name, device)))
    checks, build, bench = [], [], []
    if precision == "int8":
        lines.append(_CACHE_CHECK)
    for model, record, shapes, engine in models:
        input_name = record.get("input", {}).get("name", "input")
        calib = calibration_cache_relpath(model, "entropy", trt_name, device) if precision == "int8" else None
        if calib:   # all checked before anything is built
            checks.append("    require_entropy_cache {} {}".format(sh_quote(calib), sh_quote(model)))
        cmd = trtexec_command(
            record["onnx"]["path"], engine, precision, version_for_flags, workspace,
            timing_cache_relpath(trt_name, device), calib, input_name=input_name,
            dynamic_shapes=shapes[1:] if shapes else None)
        build.append(cmd)
        run_shape = (1,) + tuple(int(d) for d in record["input"]["shape"][1:]) if shapes else None
        bench.append(bench_command(engine, input_name, run_shape))
    lines.append('if [ "$MODE" = build ]; then')
    lines += checks
    lines.append("    mkdir -p engines")
    lines += [line if isinstance(line, str) else "    " + " ".join(sh_quote(a) for a in line) for line in build]
    lines.append('elif [ "$MODE" = bench ]; then')
    lines += ["    " + " ".join(sh_quote(a) for a in cmd) for cmd in bench]
    lines.append("else")
    lines.append('    echo "usage: sh trtexec.sh [build|bench]" >&2; exit 2')
    lines.append("fi")
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
