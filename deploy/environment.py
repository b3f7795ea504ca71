"""The environment a benchmark ran in: machine, Jetson board, L4T/JetPack, power mode, clocks,
runtime versions. Every report carries it, so numbers are never quoted without their conditions.

Sources on a Jetson: /etc/nv_tegra_release (L4T), /proc/device-tree/model (board),
``nvpmodel -q`` (power mode), ``jetson_clocks --show`` when root, else the cpufreq/devfreq sysfs
files (clocks locked = minimum frequency pinned to the maximum, which is what jetson_clocks does).
Python 3.6-compatible; runtimes are imported lazily and only to read their versions.
"""
import collections
import glob
import logging
import os
import platform
import re
import subprocess

from deploy.cpu_isa import cpuinfo_flags, cpuinfo_model, fast_cpu_precisions, parse_cpu_isa
from deploy.versions import tool_versions

LOG = logging.getLogger(__name__)

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
DEVICE_TREE_MODEL = "/proc/device-tree/model"

# L4T release -> JetPack (NVIDIA's JetPack archive). Unknown releases report None.
L4T_TO_JETPACK = {
    "32.4.3": "4.4", "32.4.4": "4.4.1", "32.5.0": "4.5", "32.5.1": "4.5.1", "32.5.2": "4.5.1",
    "32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4",
    "32.7.5": "4.6.5", "32.7.6": "4.6.6",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "35.6.0": "5.1.4", "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}

RUNTIMES = ("numpy", "tensorrt", "onnxruntime", "torch", "openvino")

# Power modes that run everything at full speed (nvpmodel -m 0 on these boards).
MAX_POWER_MODE_IDS = (0,)


# ------------------------------------------------------------------------------------------------
# parsers (pure functions, tested on sample text)
# ------------------------------------------------------------------------------------------------
def parse_nv_tegra_release(text):
    """'# R32 (release), REVISION: 7.1, GCID: ..., BOARD: t210ref, ...' -> dict, or None."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return None
    release, revision = match.group(1), match.group(2)
    l4t = "{}.{}".format(release, revision)
    parts = l4t.split(".")
    while len(parts) < 3:
        parts.append("0")
    l4t_full = ".".join(parts[:3])
    out = collections.OrderedDict()
    out["l4t"] = l4t_full
    out["jetpack"] = L4T_TO_JETPACK.get(l4t_full)
    for key in ("GCID", "BOARD", "EABI", "DATE"):
        found = re.search(r"{}:\s*([^,\n]+)".format(key), text)
        if found:
            out[key.lower()] = found.group(1).strip()
    return out


def parse_nvpmodel_query(text):
    """``nvpmodel -q`` output ('NV Power Mode: MAXN' then the id) -> {"name", "id"}, or None."""
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not match:
        return None
    mode_id = None
    after = text[match.end():]
    id_match = re.search(r"^\s*(\d+)\s*$", after, re.MULTILINE)
    if id_match:
        mode_id = int(id_match.group(1))
    return collections.OrderedDict([("name", match.group(1)), ("id", mode_id)])


def parse_jetson_clocks_show(text):
    """``jetson_clocks --show`` -> {"cpus": {...}, "gpu": {...}, "cpu_locked", "gpu_locked", "locked"}.

    A clock counts as locked when its minimum frequency equals its maximum (jetson_clocks pins
    the minimum to the maximum). Offline CPUs are ignored. Returns None when nothing parses.
    """
    cpus = collections.OrderedDict()
    for m in re.finditer(r"^(cpu\d+):\s*Online=(\d)\s.*?MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)",
                         text, re.MULTILINE):
        cpus[m.group(1)] = {"online": m.group(2) == "1", "min": int(m.group(3)), "max": int(m.group(4)),
                            "current": int(m.group(5))}
    gpu = None
    g = re.search(r"^GPU\s+MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", text, re.MULTILINE)
    if g:
        gpu = {"min": int(g.group(1)), "max": int(g.group(2)), "current": int(g.group(3))}
    if not cpus and gpu is None:
        return None
    mode = re.search(r"NV Power Mode:\s*(\S+)", text)
    out = _clock_state("jetson_clocks --show", cpus, gpu)
    out["power_mode"] = mode.group(1) if mode else None
    return out


def read_clocks_sysfs(root="/sys"):
    """The same verdict as ``jetson_clocks --show`` from world-readable sysfs files, or None."""
    cpus = collections.OrderedDict()
    for folder in sorted(glob.glob(os.path.join(root, "devices/system/cpu/cpu[0-9]*/cpufreq"))):
        name = os.path.basename(os.path.dirname(folder))
        low = _read_int(os.path.join(folder, "scaling_min_freq"))
        high = _read_int(os.path.join(folder, "scaling_max_freq"))
        if low is not None and high is not None:
            cpus[name] = {"online": True, "min": low, "max": high,
                          "current": _read_int(os.path.join(folder, "scaling_cur_freq"))}
    gpu = None
    for folder in sorted(glob.glob(os.path.join(root, "devices/gpu.0/devfreq/*")) +
                         glob.glob(os.path.join(root, "devices/platform/*.gpu/devfreq/*"))):
        low, high = _read_int(os.path.join(folder, "min_freq")), _read_int(os.path.join(folder, "max_freq"))
        if low is not None and high is not None:
            gpu = {"min": low, "max": high, "current": _read_int(os.path.join(folder, "cur_freq"))}
            break
    if not cpus and gpu is None:
        return None
    return _clock_state("sysfs (cpufreq, devfreq)", cpus, gpu)


def _clock_state(source, cpus, gpu):
    """The clocks record: locked = every online CPU's (and the GPU's) minimum pinned to its maximum."""
    online = [c for c in cpus.values() if c["online"]]
    cpu_locked = bool(online) and all(c["min"] == c["max"] for c in online)
    gpu_locked = gpu is not None and gpu["min"] == gpu["max"]
    out = collections.OrderedDict()
    out["source"] = source
    out["cpus"] = cpus
    out["gpu"] = gpu
    out["cpu_locked"] = cpu_locked
    out["gpu_locked"] = gpu_locked
    out["locked"] = cpu_locked and (gpu is None or gpu_locked)
    return out


def physical_cores(cpuinfo_text=None):
    """Physical cores from /proc/cpuinfo (distinct (physical id, core id)); else os.cpu_count()."""
    if cpuinfo_text is None:
        cpuinfo_text = _read_text("/proc/cpuinfo") or ""
    cores = set()
    physical = core = None
    for line in cpuinfo_text.splitlines() + [""]:
        if not line.strip():
            if core is not None:
                cores.add((physical, core))
            physical = core = None
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
    return len(cores) or (os.cpu_count() or 1)


def cpu_model(cpuinfo_text=None):
    if cpuinfo_text is None:
        cpuinfo_text = _read_text("/proc/cpuinfo") or ""
    return cpuinfo_model(cpuinfo_text) or platform.processor() or platform.machine()


def cpu_flags(cpuinfo_text=None):
    """The vector flags that matter for speed, in a fixed order (the full ISA: deploy.cpu_isa)."""
    if cpuinfo_text is None:
        cpuinfo_text = _read_text("/proc/cpuinfo") or ""
    wanted = ("avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx2", "fma",
              "avx", "asimd", "asimddp", "i8mm", "bf16", "fphp", "asimdhp")
    have = cpuinfo_flags(cpuinfo_text)
    return [f for f in wanted if f in have]


# ------------------------------------------------------------------------------------------------
# collection
# ------------------------------------------------------------------------------------------------
def runtime_versions():
    """Versions of the runtimes that import here (None for those that do not)."""
    return tool_versions(RUNTIMES)


def jetson_info():
    """Board, L4T/JetPack, power mode and clock state on a Jetson; None elsewhere."""
    release_text = _read_text(NV_TEGRA_RELEASE)
    if release_text is None:
        return None
    info = collections.OrderedDict()
    info["board"] = (_read_text(DEVICE_TREE_MODEL) or "").replace("\x00", "").strip() or None
    info["l4t"] = parse_nv_tegra_release(release_text)
    info["power_mode"] = parse_nvpmodel_query(_run(["nvpmodel", "-q"]) or "")
    clocks = None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        clocks = parse_jetson_clocks_show(_run(["jetson_clocks", "--show"]) or "")
    info["clocks"] = clocks or read_clocks_sysfs()
    return info


def collect_environment(backend=None, precision=None, threads=None, extra=None):
    env = collections.OrderedDict()
    env["hostname"] = platform.node()
    env["platform"] = platform.platform()
    env["machine"] = platform.machine()
    cpuinfo = _read_text("/proc/cpuinfo") or ""
    env["cpu"] = cpu_model(cpuinfo)
    env["cpu_flags"] = cpu_flags(cpuinfo)
    env["cpu_isa"] = _isa_record(cpuinfo)
    env["logical_cpus"] = os.cpu_count()
    env["physical_cores"] = physical_cores(cpuinfo)
    env["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    env["versions"] = runtime_versions()
    env["backend"] = backend
    env["precision"] = precision
    env["threads"] = threads
    env["jetson"] = jetson_info()
    env["warnings"] = environment_warnings(env)
    if extra:
        env.update(extra)
    return env


def jetson_power_problems(jetson):
    """[(warning, fix)] for a Jetson not at full, fixed speed: power mode and clock state."""
    out = []
    mode = jetson.get("power_mode")
    if not mode:
        out.append(("power mode unknown (nvpmodel -q failed): numbers may not be at full power",
                    "check it with `sudo nvpmodel -q`, set it with `sudo nvpmodel -m 0`"))
    elif mode.get("id") not in MAX_POWER_MODE_IDS:
        out.append(("power mode is {} (id {}), not the maximum: run `sudo nvpmodel -m 0`".format(
            mode.get("name"), mode.get("id")), "sudo nvpmodel -m 0"))
    clocks = jetson.get("clocks")
    if not clocks:
        out.append(("clock state unknown: run `sudo jetson_clocks` before benchmarking", "sudo jetson_clocks"))
    elif not clocks.get("locked"):
        out.append(("clocks are not locked (DVFS active, latencies vary): run `sudo jetson_clocks`",
                    "sudo jetson_clocks"))
    return out


def environment_warnings(env):
    """Warnings about conditions that make numbers incomparable (power mode, clocks, load)."""
    jetson = env.get("jetson")
    out = [warning for warning, _ in jetson_power_problems(jetson)] if jetson else []
    load = env.get("load_average")
    cpus = env.get("logical_cpus") or 1
    if load and load[0] > 0.5 * cpus:
        out.append("the machine was busy (1-minute load {:.1f} on {} CPUs): CPU timings are pessimistic".format(
            load[0], cpus))
    return out


def _isa_record(cpuinfo):
    """The vector features and the natively fast CPU precisions (deploy.cpu_isa)."""
    isa = parse_cpu_isa(cpuinfo)
    return collections.OrderedDict([("arch", isa.arch), ("features", list(isa.features)),
                                    ("int8_dot", isa.int8_dot), ("bf16_dot", isa.bf16_dot),
                                    ("native_precisions", fast_cpu_precisions(isa))])


# ------------------------------------------------------------------------------------------------
def _read_text(path):
    try:
        with open(path, "r") as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _read_int(path):
    text = _read_text(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _run(argv, timeout=10):
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        out, _ = proc.communicate(timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        LOG.debug("%s failed: %s", argv[0], exc)
        return None
    if proc.returncode != 0:
        LOG.debug("%s exited %s: %s", argv[0], proc.returncode, out.strip()[:200])
        return None
    return out
