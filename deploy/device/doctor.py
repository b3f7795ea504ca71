"""`doctor`: is this machine ready for the next command, and if not, what to do about it.

One check per line, each passed, failed (with the fix) or a warning. On a device (a Jetson, or
any machine where TensorRT imports) the checks cover the board, L4T/JetPack, Python, numpy,
TensorRT, CUDA, cuDNN, pycuda, the GPU and the target profile it matches, power mode, clocks,
memory, swap and disk, the bundle, and a smoke test: the bundle's tiny ONNX model built into a
TensorRT engine and run through the project's TensorRT runner, compared with the host's reference
(deploy/device/smoke.py). On the host: the build tools and the smoke model on ONNX Runtime.

"Required" checks are those the next command needs (`engines` on a device, `build` on the host);
the report passes only when all of them pass. Every probe reads through a small function that
tests replace, so the logic is tested without a Jetson.
Python 3.6-compatible.
"""
import collections
import logging
import os
import platform
import re
import shutil
import sys
import time

from deploy import environment
from deploy.atomic import write_json
from deploy.bundle import check_folder_inside
from deploy.errors import BundleError, PipelineError
from deploy.versions import package_version

LOG = logging.getLogger(__name__)

REPORT_RELPATH = "reports/doctor.json"
OK, FAIL, WARN, INFO = "ok", "fail", "warn", "info"
SUPPORTED_L4T = ("32.6", "32.7")          # JetPack 4.6.x: the Jetson Nano's last JetPack
HOST_TOOLS = ("torch", "onnx", "onnxruntime", "onnxsim")
MIN_TENSORRT = (8, 0)                     # JetPack 4.6's first release (L4T R32.6.1) ships 8.0.1
MAX_TESTED_TENSORRT_MAJOR = 10
MIN_FREE_DISK_MB = 300                    # four Nano engines, their logs and reports, with room
LOW_MEMORY_MB = 1500                      # below this, without swap, four engine builds may be killed
CUDA_VERSION_FILES = ("/usr/local/cuda/version.txt", "/usr/local/cuda/version.json")
CUDNN_HEADERS = ("/usr/include/cudnn_version.h", "/usr/include/aarch64-linux-gnu/cudnn_version_v8.h",
                 "/usr/include/cudnn.h")

Check = collections.namedtuple("Check", ["name", "status", "detail", "fix", "required"])


def _check(name, status, detail, fix=None, required=False):
    return Check(name, status, detail, fix, bool(required))


# ------------------------------------------------------------------------------------------------
# probes (replaced in tests)
# ------------------------------------------------------------------------------------------------
def in_isolated_virtualenv(prefix=None, base_prefix=None, read=None):
    """True in a virtualenv made without --system-site-packages (JetPack's tensorrt is invisible there)."""
    prefix = sys.prefix if prefix is None else prefix
    base_prefix = getattr(sys, "base_prefix", sys.prefix) if base_prefix is None else base_prefix
    if prefix == base_prefix:
        return False
    text = (read or environment._read_text)(os.path.join(prefix, "pyvenv.cfg")) or ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "include-system-site-packages":
            return value.strip().lower() != "true"
    return True


def parse_cuda_version(text):
    """'CUDA Version 10.2.300' (version.txt) or version.json's "cuda": {"version": ...} -> '10.2.300'."""
    match = re.search(r"CUDA Version\s+([\d.]+)", text or "") or \
        re.search(r'"cuda"\s*:\s*\{[^}]*"version"\s*:\s*"([\d.]+)"', text or "")
    return match.group(1) if match else None


def parse_cudnn_version(text):
    """#define CUDNN_MAJOR 8 / MINOR 2 / PATCHLEVEL 1 -> '8.2.1'."""
    parts = [re.search(r"#define\s+CUDNN_{}\s+(\d+)".format(k), text or "") for k in ("MAJOR", "MINOR", "PATCHLEVEL")]
    return ".".join(m.group(1) for m in parts) if all(parts) else None


def parse_meminfo(text):
    """/proc/meminfo -> {"available_mb", "total_mb", "swap_total_mb", "swap_free_mb"} (None where absent)."""
    def mb(key):
        match = re.search(r"^{}:\s+(\d+)\s+kB".format(key), text or "", re.MULTILINE)
        return int(match.group(1)) // 1024 if match else None

    return collections.OrderedDict([("total_mb", mb("MemTotal")), ("available_mb", mb("MemAvailable")),
                                    ("swap_total_mb", mb("SwapTotal")), ("swap_free_mb", mb("SwapFree"))])


def _first_text(paths, read=None):
    for path in paths:
        text = (read or environment._read_text)(path)
        if text:
            return text
    return None


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------
def check_python():
    version = platform.python_version()
    if sys.version_info[:2] < (3, 6):
        return _check("python", FAIL, "Python {}".format(version), "use python3 (3.6 or newer)", required=True)
    return _check("python", OK, "Python {} ({})".format(version, sys.executable))


def check_package(name, required, fix, version=None):
    version = package_version(name) if version is None else version
    if version is None:
        return _check(name, FAIL if required else WARN, "not installed", fix, required)
    return _check(name, OK, version)


def check_jetson(info):
    """Board and L4T/JetPack from environment.jetson_info()."""
    if info is None:
        return _check("board", INFO, "not a Jetson ({} {})".format(platform.system(), platform.machine()))
    l4t = (info.get("l4t") or {}).get("l4t") or "unknown"
    jetpack = (info.get("l4t") or {}).get("jetpack")
    detail = "{}, L4T {} (JetPack {})".format(info.get("board") or "unknown board", l4t, jetpack or "unknown")
    if not any(l4t.startswith(v + ".") or l4t == v for v in SUPPORTED_L4T):
        return _check("board", WARN, detail + ": this pipeline is written for JetPack 4.6.x (L4T R32.6/R32.7)",
                      "other JetPacks may work; a JetPack 5/6 board uses its own target (pipeline.py targets)")
    return _check("board", OK, detail)


def check_tensorrt(isolated_venv=None):
    from deploy.tensorrt.compat import require_tensorrt, trt_version, version_tuple

    try:
        trt = require_tensorrt()
    except PipelineError as exc:
        isolated = in_isolated_virtualenv() if isolated_venv is None else isolated_venv
        if isolated:
            fix = ("this Python runs in a virtualenv made without --system-site-packages, which hides JetPack's "
                   "tensorrt: use the system python3, or python3 -m venv --system-site-packages")
        else:
            fix = "install JetPack's Python bindings: sudo apt-get install python3-libnvinfer"
        return _check("tensorrt", FAIL, str(exc), fix, required=True)
    version = trt_version(trt)
    known = version_tuple(version)
    if not known or known[:2] < MIN_TENSORRT:
        return _check("tensorrt", FAIL, "TensorRT {} is not supported: the device code needs 8.0 or newer "
                      "(JetPack 4.6 ships 8.2)".format(version), "upgrade to JetPack 4.6.x", required=True)
    if known[0] > MAX_TESTED_TENSORRT_MAJOR:
        return _check("tensorrt", WARN, "TensorRT {}: newer than any this code was checked against (8.2, 8.5, "
                      "10)".format(version), "if a step fails, attach reports/doctor.json to the bug report")
    return _check("tensorrt", OK, version)


def check_pycuda():
    from deploy.tensorrt.compat import require_pycuda

    try:
        cuda = require_pycuda()
    except PipelineError as exc:
        return _check("pycuda", FAIL, str(exc), exc.hint, required=True)
    except Exception as exc:   # cuInit failing raises pycuda's own LogicError/RuntimeError
        return _check("pycuda", FAIL, "CUDA does not initialise: {}".format(exc),
                      "check the GPU driver (nvidia-smi, or tegrastats on a Jetson) and that this user is in "
                      "the video group", required=True)
    version = cuda.get_driver_version() if hasattr(cuda, "get_driver_version") else None   # e.g. 10020
    driver = "{}.{}".format(version // 1000, version % 1000 // 10) if version else "?"
    return _check("pycuda", OK, "{} (CUDA driver {})".format(package_version("pycuda") or "installed", driver))


def check_cuda_versions(read=None):
    cuda = parse_cuda_version(_first_text(CUDA_VERSION_FILES, read))
    cudnn = parse_cudnn_version(_first_text(CUDNN_HEADERS, read))
    detail = "CUDA {}, cuDNN {}".format(cuda or "not found", cudnn or "not found")
    return _check("cuda", OK if cuda else INFO, detail)


def check_gpu(device, bundle_target=None):
    """The GPU TensorRT sees, its fast precisions and the target profile that matches it."""
    from deploy.targets import list_targets

    matches = [t.name for t in list_targets() if t.compute_capability == device.compute_capability]
    detail = "{} (sm {}), fast FP16 {}, fast INT8 {}; target: {}".format(
        device.name, device.compute_capability, "yes" if device.fast_fp16 else "no",
        "yes" if device.fast_int8 else "no", ", ".join(matches) or "x86-gpu")
    if bundle_target is not None and bundle_target.compute_capability and \
            bundle_target.compute_capability != device.compute_capability:
        return _check("gpu", FAIL, detail + "; the bundle is for {} (sm {})".format(
            bundle_target.name, bundle_target.compute_capability),
            "build a bundle for this GPU on the host: python pipeline.py build --target {}".format(
                matches[0] if matches else "x86-gpu"), required=True)
    return _check("gpu", OK, detail)


def check_power(info):
    if info is None:
        return None
    problems = environment.jetson_power_problems(info)
    mode = info.get("power_mode") or {}
    clocks = info.get("clocks") or {}
    detail = "power mode {} (id {}), clocks {}".format(mode.get("name", "unknown"), mode.get("id"),
                                                       "locked" if clocks.get("locked") else "not locked")
    if problems:
        return _check("power", WARN, detail, "; ".join(fix for _, fix in problems))
    return _check("power", OK, detail)


def check_memory(meminfo_text, on_small_device):
    mem = parse_meminfo(meminfo_text)
    if mem["available_mb"] is None:
        return _check("memory", INFO, "unknown (no /proc/meminfo)")
    detail = "{} MB available of {} MB, swap {} MB".format(mem["available_mb"], mem["total_mb"],
                                                          mem["swap_total_mb"] or 0)
    if on_small_device and mem["available_mb"] < LOW_MEMORY_MB and not mem["swap_total_mb"]:
        return _check("memory", WARN, detail + ": engine builds may be killed for memory",
                      "close the desktop (sudo systemctl isolate multi-user.target) or add swap "
                      "(sudo fallocate -l 4G /swapfile && sudo mkswap /swapfile && sudo swapon /swapfile)")
    return _check("memory", OK, detail)


def check_disk(path, usage=None):
    try:
        free_mb = (usage or shutil.disk_usage)(path).free // (1 << 20)
    except OSError as exc:
        return _check("disk", FAIL, "cannot read free space of {}: {}".format(path, exc), required=True)
    if free_mb < MIN_FREE_DISK_MB:
        return _check("disk", FAIL, "{} MB free under {}".format(free_mb, path),
                      "free at least {} MB (engines, logs and reports are written there)".format(MIN_FREE_DISK_MB),
                      required=True)
    return _check("disk", OK, "{} MB free under {}".format(free_mb, os.path.abspath(path)))


def check_bundle(bundle_dir):
    """(check, bundle or None): manifest readable, every file present with its sha256."""
    from deploy.bundle import Bundle

    try:
        bundle = Bundle.open(bundle_dir)
        names = bundle.require_models()
        bundle.verify(names)
    except PipelineError as exc:
        return _check("bundle", FAIL, str(exc), exc.hint, required=True), None
    smoke = "with smoke model" if isinstance(bundle.manifest.get("smoke"), dict) else "no smoke model"
    return _check("bundle", OK, "{}: target {}, {} model(s), every sha256 matches, {}".format(
        bundle.root, bundle.target_name, len(names), smoke)), bundle


def check_writable(bundle):
    """Can the next command write into the bundle? (a probe file of our own, removed at once)."""
    folder = bundle.path("reports")
    try:
        check_folder_inside(bundle.root, folder)
    except BundleError as exc:
        return _check("writable", FAIL, str(exc), exc.hint, required=True)
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder)
        probe = os.path.join(folder, ".doctor-write-test.{}".format(os.getpid()))
        with open(probe, "w") as handle:
            handle.write("probe")
        os.unlink(probe)
    except OSError as exc:
        return _check("writable", FAIL, "cannot write into {} ({})".format(bundle.root, exc.strerror or exc),
                      "copy the bundle to a writable folder (cp -r {} ~/bundle) and run there".format(bundle.root),
                      required=True)
    return _check("writable", OK, "{} is writable".format(bundle.root))


def check_engines(bundle, device):
    """Which engines in the bundle are current for this TensorRT and GPU."""
    from deploy.tensorrt.engine_files import identity_mismatch, list_engines

    engines = list_engines(bundle)
    if not engines:
        return _check("engines", INFO, "none yet: python3 pipeline.py engines {}".format(bundle.root))
    current, stale = [], []
    for rel, sidecar in engines:
        model = sidecar.get("model")
        if model not in bundle.model_names():
            stale.append("{} (model not in the manifest)".format(rel))
            continue
        problem = identity_mismatch(sidecar, {
            "tensorrt": device.tensorrt, "device": device.name, "compute_capability": device.compute_capability,
            "onnx_sha256": bundle.model(model)["onnx"]["sha256"]})
        (stale if problem else current).append(rel if not problem else "{} ({})".format(rel, problem))
    detail = "{} current".format(len(current)) + ("; stale: " + "; ".join(stale) if stale else "")
    if stale:
        return _check("engines", WARN, detail,
                      "python3 pipeline.py engines {} rebuilds the stale ones".format(bundle.root))
    return _check("engines", OK, detail)


def check_smoke(run, label):
    """Run one smoke test (a callable returning deploy.device.smoke's result dict)."""
    from deploy.device.smoke import SmokeTestError

    try:
        result = run()
    except SmokeTestError as exc:
        return _check(label, FAIL, str(exc), exc.hint, required=True), {"ok": False, "step": exc.step,
                                                                          "error": str(exc)}
    except PipelineError as exc:
        return _check(label, FAIL, exc.one_line(), exc.hint, required=True), {"ok": False, "error": str(exc)}
    return _check(label, OK, "{} in {:.1f} s".format(result["detail"], result["seconds"])), result


# ------------------------------------------------------------------------------------------------
# the whole run
# ------------------------------------------------------------------------------------------------
def on_device(jetson, tensorrt_imports):
    """A device is a Jetson, or any machine where TensorRT imports (the x86-gpu target)."""
    return jetson is not None or tensorrt_imports


def run_doctor(bundle_dir=None, jetson=None, meminfo=None, device_role=None, progress=None):
    """Run every check that applies here. Returns the report (an OrderedDict).

    ``jetson``/``meminfo``/``device_role``: probes, read from this machine when None (tests pass them).
    ``progress``: called with each Check as it finishes, so the CLI prints one line at a time.
    """
    from deploy.tensorrt.compat import tensorrt_available

    started = time.time()
    jetson = environment.jetson_info() if jetson is None else jetson or None
    meminfo = environment._read_text("/proc/meminfo") if meminfo is None else meminfo
    device_role = on_device(jetson, tensorrt_available()) if device_role is None else device_role
    checks, smoke_results = [], collections.OrderedDict()

    def add(check):
        if check is None:
            return
        checks.append(check)
        if progress:
            progress(check)

    add(check_jetson(jetson))
    add(check_python())
    add(check_package("numpy", True, "pip3 install --user -r requirements-jetson.txt"))
    bundle = None
    if bundle_dir is not None:
        bundle_check, bundle = check_bundle(bundle_dir)
        add(bundle_check)
    if device_role:
        _device_checks(add, jetson, meminfo, bundle, smoke_results)
    else:
        for name in HOST_TOOLS:
            add(check_package(name, True, "pip install -r requirements.txt (README, 'Two commands')"))
        add(check_memory(meminfo, on_small_device=False))
        if bundle is not None and package_version("onnxruntime"):
            from deploy.device.smoke import run_smoke_onnxruntime

            check, result = check_smoke(lambda: run_smoke_onnxruntime(bundle), "smoke onnxruntime fp32")
            add(check)
            smoke_results["onnxruntime fp32"] = result
    if bundle is not None:
        add(check_writable(bundle))
    add(check_disk(bundle.root if bundle is not None else "."))

    report = collections.OrderedDict()
    report["role"] = "device" if device_role else "host"
    report["ok"] = all(c.status != FAIL for c in checks if c.required)
    report["failed"] = [c.name for c in checks if c.status == FAIL]
    report["checks"] = [c._asdict() for c in checks]
    report["smoke"] = smoke_results
    report["environment"] = environment.collect_environment()
    report["seconds"] = round(time.time() - started, 2)
    report["written"] = None
    if bundle is not None and any(c.name == "writable" and c.status == OK for c in checks):
        write_json(bundle.path(REPORT_RELPATH), report)
        report["written"] = bundle.path(REPORT_RELPATH)
    return report


def _device_checks(add, jetson, meminfo, bundle, smoke_results):
    from deploy.targets import get_target

    tensorrt = check_tensorrt()
    add(tensorrt)
    add(check_cuda_versions())
    pycuda = check_pycuda()
    add(pycuda)
    device = None
    if tensorrt.status == OK and pycuda.status == OK:
        from deploy.tensorrt.compat import probe_local_device

        try:
            device = probe_local_device()
        except Exception as exc:   # a driver or TensorRT failure, whatever its type: report it, go on
            add(_check("gpu", FAIL, "TensorRT cannot read the GPU: {}".format(exc),
                       "check the GPU driver and that this user is in the video group", required=True))
    bundle_target = None
    if bundle is not None:
        try:
            bundle_target = get_target(bundle.target_name)
        except PipelineError as exc:
            add(_check("target", FAIL, str(exc), exc.hint, required=True))
    if device is not None:
        add(check_gpu(device, bundle_target))
    add(check_power(jetson))
    add(check_memory(meminfo, on_small_device=jetson is not None))
    if bundle is None or device is None:
        return
    add(check_engines(bundle, device))
    if "smoke" not in bundle.manifest:
        add(_check("smoke", FAIL, "the bundle has no smoke model (built by an older version)",
                   "rebuild the bundle on the host: python pipeline.py build", required=True))
        return
    from deploy.device.smoke import run_smoke_tensorrt

    precisions = ["fp32"] + (["fp16"] if device.fast_fp16 else [])
    for precision in precisions:
        check, result = check_smoke(lambda p=precision: run_smoke_tensorrt(bundle, p),
                                    "smoke tensorrt {}".format(precision))
        add(check)
        smoke_results["tensorrt " + precision] = result
