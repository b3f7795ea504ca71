"""Environment parsing from sample files: /etc/nv_tegra_release, nvpmodel -q, jetson_clocks --show, sysfs.

The jetson_clocks --show samples follow the format of the emulator in rbonghi/jetson_stats
(tests/jetson_clocks), which mirrors the real tool's output.
"""
import os

from deploy import environment as envmod

NANO_RELEASE = ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
                "DATE: Sat Feb 19 17:05:08 UTC 2022\n"
                "# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\nTARGET_USERSPACE_LIB_DIR_PATH=usr/lib/"
                "aarch64-linux-gnu/nvidia\n")
ORIN_RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n"

CLOCKS_OFF = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=1224000 IdleStates: WFI=1 c7=1
cpu2: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=1224000 IdleStates: WFI=1 c7=1
cpu3: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=921600 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=921600000 CurrentFreq=76800000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: speed=0
NV Power Mode: MAXN
"""
CLOCKS_ON = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
cpu0: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu2: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu3: Online=0 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=102000 IdleStates: WFI=0 c7=0
GPU MinFreq=921600000 MaxFreq=921600000 CurrentFreq=921600000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: speed=255
NV Power Mode: MAXN
"""


def test_l4t_and_jetpack_from_nv_tegra_release():
    info = envmod.parse_nv_tegra_release(NANO_RELEASE)
    assert info["l4t"] == "32.7.1" and info["jetpack"] == "4.6.1"
    assert info["board"] == "t210ref" and info["eabi"] == "aarch64"
    orin = envmod.parse_nv_tegra_release(ORIN_RELEASE)
    assert orin["l4t"] == "36.4.3" and orin["jetpack"] == "6.2"
    assert envmod.parse_nv_tegra_release("not a release file") is None
    unknown = envmod.parse_nv_tegra_release("# R99 (release), REVISION: 1, GCID: 1, BOARD: x")
    assert unknown["l4t"] == "99.1.0" and unknown["jetpack"] is None


def test_nvpmodel_query():
    assert envmod.parse_nvpmodel_query("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert envmod.parse_nvpmodel_query("NVPM WARN: fan mode is not set!\nNV Power Mode: 5W\n1\n") == \
        {"name": "5W", "id": 1}
    assert envmod.parse_nvpmodel_query("nvpmodel: command not found") is None


def test_jetson_clocks_show_locked_and_not():
    off = envmod.parse_jetson_clocks_show(CLOCKS_OFF)
    assert not off["locked"] and not off["cpu_locked"] and not off["gpu_locked"]
    assert len(off["cpus"]) == 4 and off["power_mode"] == "MAXN"
    on = envmod.parse_jetson_clocks_show(CLOCKS_ON)
    assert on["locked"] and on["cpu_locked"] and on["gpu_locked"]   # the offline cpu3 is ignored
    assert on["gpu"]["current"] == 921600000
    assert envmod.parse_jetson_clocks_show("Please run as root") is None


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def test_clocks_from_sysfs(tmp_path):
    root = str(tmp_path)
    for cpu in range(2):
        base = os.path.join(root, "devices/system/cpu/cpu{}/cpufreq".format(cpu))
        _write(os.path.join(base, "scaling_min_freq"), "1479000\n")
        _write(os.path.join(base, "scaling_max_freq"), "1479000\n")
        _write(os.path.join(base, "scaling_cur_freq"), "1479000\n")
    gpu = os.path.join(root, "devices/gpu.0/devfreq/57000000.gpu")
    _write(os.path.join(gpu, "min_freq"), "76800000\n")
    _write(os.path.join(gpu, "max_freq"), "921600000\n")
    clocks = envmod.read_clocks_sysfs(root)
    assert clocks["cpu_locked"] and not clocks["gpu_locked"] and not clocks["locked"]
    _write(os.path.join(gpu, "min_freq"), "921600000\n")
    assert envmod.read_clocks_sysfs(root)["locked"]
    assert envmod.read_clocks_sysfs(str(tmp_path / "empty")) is None


def test_physical_cores_and_cpu_model_from_cpuinfo():
    smt = "".join("processor\t: {}\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t\t: {}\n"
                  "flags\t\t: fpu avx avx2 fma\n\n".format(i, i // 2) for i in range(4))
    assert envmod.physical_cores(smt) == 2
    assert envmod.cpu_model(smt) == "Test CPU"
    assert envmod.cpu_flags(smt) == ["avx2", "fma", "avx"]
    arm = "processor\t: 0\nFeatures\t: fp asimd\n\nprocessor\t: 1\nFeatures\t: fp asimd\n\n"
    assert envmod.physical_cores(arm) == (os.cpu_count() or 1)   # no core ids: the logical count


def test_warnings_for_a_jetson_not_at_full_speed():
    env = {"jetson": {"power_mode": {"name": "5W", "id": 1},
                      "clocks": envmod.parse_jetson_clocks_show(CLOCKS_OFF)},
           "load_average": [0.1, 0.1, 0.1], "logical_cpus": 4}
    warnings = envmod.environment_warnings(env)
    assert any("nvpmodel -m 0" in w for w in warnings)
    assert any("jetson_clocks" in w for w in warnings)
    env["jetson"] = {"power_mode": {"name": "MAXN", "id": 0}, "clocks": envmod.parse_jetson_clocks_show(CLOCKS_ON)}
    assert envmod.environment_warnings(env) == []
    env["load_average"] = [3.5, 1.0, 1.0]
    assert any("busy" in w for w in envmod.environment_warnings(env))


def test_collect_environment_here():
    env = envmod.collect_environment(backend="onnxruntime", precision="fp32", threads=2)
    assert env["backend"] == "onnxruntime" and env["threads"] == 2
    try:
        import onnxruntime
        have_ort = onnxruntime.__version__
    except ImportError:   # e.g. a Python 3.6 test run without it
        have_ort = None
    assert env["versions"]["numpy"] and env["versions"]["onnxruntime"] == have_ort
    assert env["physical_cores"] >= 1
    assert env["jetson"] is None or "l4t" in env["jetson"]
