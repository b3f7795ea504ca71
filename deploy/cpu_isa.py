"""What the CPU's instruction set makes fast: FP32, BF16, INT8 on the ``cpu`` target.

The choice of CPU precision comes from the flags Linux reports in /proc/cpuinfo, not from a
benchmark at build time (a benchmark on a shared machine moves 20-30 % in minutes; the flags do
not). What each flag buys:

  INT8  a dot-product instruction on 8-bit integers: AMX-INT8 tiles (``amx_int8``), AVX512_VNNI
        or AVX-VNNI ``vpdpbusd`` (``avx512_vnni``, ``avx_vnni``) on x86; SDOT/UDOT (``asimddp``) on
        ARM. Without one, INT8 kernels chain ``vpmaddubsw``/``vpmaddwd``/``vpaddd`` (or ARM's
        SMULL/SADALP) and keep only part of the gain.
  BF16  AMX-BF16 tiles (``amx_bf16``) or AVX512_BF16 ``vdpbf16ps`` (``avx512_bf16``). Only OpenVINO
        runs convolutions in BF16 on the CPU: ONNX Runtime's CPU provider has no BF16 Conv kernel,
        and its oneDNN provider is not published on PyPI (build-from-source only).
  FP32  always: AVX-512 / AVX2 FMA, or NEON on ARM.

``best`` takes the first native one of INT8, BF16, FP32: an INT8 dot product does four multiply-
adds per 32-bit lane where BF16 does two and FP32 one, and AMX's tile rates keep that order.
Python 3.6-compatible (read on the device by ``targets`` and ``bench``).
"""
import collections
import platform
import re

from deploy.errors import PrecisionUnsupportedError

CPU_PRECISIONS = ("fp32", "bf16", "int8")

# (cpuinfo flag, name shown) in the order they are listed; x86 first, then ARM.
_X86_FEATURES = (
    ("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX512_VNNI"),
    ("avx_vnni", "AVX-VNNI"), ("avx512_bf16", "AVX512_BF16"), ("avx512_fp16", "AVX512_FP16"),
    ("amx_tile", "AMX"), ("amx_bf16", "AMX-BF16"), ("amx_int8", "AMX-INT8"),
)
_ARM_FEATURES = (
    ("asimd", "NEON"), ("asimdhp", "NEON-FP16"), ("asimddp", "dotprod"), ("i8mm", "I8MM"), ("bf16", "BF16"),
    ("sve", "SVE"),
)
# The first present flag names the instruction that makes the precision native.
_INT8_DOT = (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512_VNNI"), ("avx_vnni", "AVX-VNNI"),
             ("asimddp", "dotprod"))
_BF16_DOT = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512_BF16"))

CpuIsa = collections.namedtuple("CpuIsa", [
    "arch",       # "x86", "arm" or "other"
    "model",      # the CPU model string
    "features",   # names of the vector features present, e.g. ["AVX2", "FMA", "AVX-512", ...]
    "int8_dot",   # the instruction that makes INT8 native ("AVX512_VNNI", ...), or None
    "bf16_dot",   # the instruction that makes BF16 native ("AMX-BF16", ...), or None
    "flags",      # every flag /proc/cpuinfo lists (sorted)
])

PrecisionChoice = collections.namedtuple("PrecisionChoice", ["precision", "requested", "reason"])


def cpuinfo_flags(cpuinfo_text):
    """Every flag the first "flags" (x86) or "Features" (ARM) line of /proc/cpuinfo lists, as a set."""
    found = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo_text or "", re.MULTILINE)
    return set(found.group(1).split()) if found else set()


def cpuinfo_model(cpuinfo_text):
    """The CPU model /proc/cpuinfo names ("model name" on x86, "Hardware"/"Processor" on ARM), or None."""
    for key in ("model name", "Hardware", "Processor", "CPU part"):
        found = re.search(r"^{}\s*:\s*(.+)$".format(key), cpuinfo_text or "", re.MULTILINE)
        if found:
            return found.group(1).strip()
    return None


def parse_cpu_isa(cpuinfo_text, machine=None):
    """A CpuIsa from the text of /proc/cpuinfo (``machine``: platform.machine(), for the arch)."""
    flags = cpuinfo_flags(cpuinfo_text)
    model = cpuinfo_model(cpuinfo_text)
    machine = (machine or platform.machine() or "").lower()
    if machine in ("x86_64", "amd64", "i386", "i686") or "sse2" in flags:
        arch, table = "x86", _X86_FEATURES
    elif machine.startswith(("aarch64", "arm")) or "asimd" in flags:
        arch, table = "arm", _ARM_FEATURES
    else:
        arch, table = "other", ()
    features = [name for flag, name in table if flag in flags]
    int8_dot = next((name for flag, name in _INT8_DOT if flag in flags), None)
    # BF16 on ARM (the ``bf16`` flag) exists, but OpenVINO's ARM plugin runs FP16 instead: not offered.
    bf16_dot = next((name for flag, name in _BF16_DOT if flag in flags), None) if arch == "x86" else None
    return CpuIsa(arch, model or platform.processor() or machine or "unknown",
                  features, int8_dot, bf16_dot, sorted(flags))


def local_cpu_isa(path="/proc/cpuinfo"):
    """This machine's CpuIsa (an empty flag set where /proc/cpuinfo cannot be read)."""
    try:
        with open(path, "r") as handle:
            text = handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        text = ""
    return parse_cpu_isa(text)


def fp32_path(isa):
    if "AVX-512" in isa.features:
        return "AVX-512 FMA"
    if "AVX2" in isa.features:
        return "AVX2 FMA" if "FMA" in isa.features else "AVX2"
    if "NEON" in isa.features:
        return "NEON"
    return "scalar/SSE"


def precision_support(isa):
    """[(precision, native, why)] for fp32, bf16 and int8 on this CPU, one sentence each."""
    out = [("fp32", True, fp32_path(isa))]
    if isa.bf16_dot:
        out.append(("bf16", True, "{}, OpenVINO only".format(isa.bf16_dot)))
    else:
        out.append(("bf16", False, "no AVX512_BF16 or AMX-BF16"))
    if isa.int8_dot:
        out.append(("int8", True, isa.int8_dot))
    else:
        out.append(("int8", False, "no VNNI/dotprod: INT8 runs, with limited gains"))
    return out


def fast_cpu_precisions(isa):
    return [precision for precision, native, _ in precision_support(isa) if native]


def cpu_target_precisions(isa):
    """What the cpu target runs here: fp32, bf16 where native (OpenVINO), int8 (fast or not)."""
    return ["fp32"] + (["bf16"] if isa.bf16_dot else []) + ["int8"]


def isa_summary(isa):
    """One line: 'x86: AVX2, FMA, AVX-512, ...; native fp32, bf16, int8'."""
    return "{}: {}; native {}".format(isa.arch, ", ".join(isa.features) or "no vector extensions found",
                                      ", ".join(fast_cpu_precisions(isa)))


def check_bf16(isa, backend):
    """Raise PrecisionUnsupportedError unless BF16 can run on ``backend`` on this CPU."""
    if backend != "openvino":
        raise PrecisionUnsupportedError(
            "{} cannot run bf16: ONNX Runtime's CPU provider has no BF16 convolutions".format(backend),
            hint="use --backend openvino for bf16 (pip install openvino), or --precision fp32/int8")
    if not isa.bf16_dot:
        raise PrecisionUnsupportedError(
            "this CPU ({}) has no BF16 instructions (it lacks AVX512_BF16 and AMX-BF16)".format(isa.model),
            hint="use --precision fp32{}".format(" or int8" if isa.int8_dot else ""))


def choose_cpu_precision(isa, requested, backend="onnxruntime", int8_available=True):
    """Resolve ``requested`` (fp32, bf16, int8 or best) for the CPU; returns a PrecisionChoice.

    ``best``: INT8 where an INT8 dot product exists (and the bundle has, or will get, an INT8 model),
    else BF16 where the CPU has BF16 and the backend is OpenVINO, else FP32. The reason names the
    flags that decided.
    """
    flags = ", ".join(isa.features) or "none"
    if requested == "bf16":
        check_bf16(isa, backend)
        return PrecisionChoice("bf16", requested, "{} present; CPU flags: {}".format(isa.bf16_dot, flags))
    if requested != "best":
        return PrecisionChoice(requested, requested, "asked for")
    if isa.int8_dot and int8_available:
        return PrecisionChoice("int8", requested, "{} gives a native INT8 dot product; CPU flags: {}".format(
            isa.int8_dot, flags))
    skipped = []
    if isa.int8_dot:
        skipped.append("int8 skipped: the bundle has no INT8 model")
    else:
        skipped.append("int8 not native (no VNNI/AMX-INT8/dotprod)")
    if isa.bf16_dot and backend == "openvino":
        return PrecisionChoice("bf16", requested, "{}; {} gives native BF16; CPU flags: {}".format(
            "; ".join(skipped), isa.bf16_dot, flags))
    if isa.bf16_dot:
        skipped.append("bf16 needs --backend openvino")
    else:
        skipped.append("bf16 not native (no AVX512_BF16/AMX-BF16)")
    return PrecisionChoice("fp32", requested, "{}; fp32 on {}; CPU flags: {}".format(
        "; ".join(skipped), fp32_path(isa), flags))


def choice_record(choice, isa):
    """The manifest/report record of a precision choice."""
    return collections.OrderedDict([
        ("precision", choice.precision), ("requested", choice.requested), ("reason", choice.reason),
        ("cpu", isa.model), ("arch", isa.arch), ("features", list(isa.features)),
        ("native", fast_cpu_precisions(isa)),
    ])
