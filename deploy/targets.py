"""Target profiles as data: what each device can run, and the precision policy.

Python 3.6-compatible: read on the Jetson by ``engines`` and ``bench``.
"""
import collections

from deploy.errors import PrecisionUnsupportedError, UnknownNameError

PRECISIONS = ("fp32", "fp16", "int8")
PRECISION_CHOICES = PRECISIONS + ("best",)
# bf16 is a precision of the cpu target only (OpenVINO on a CPU with AVX512_BF16 or AMX-BF16)
CPU_PRECISION_CHOICES = ("fp32", "bf16", "int8", "best")

TargetProfile = collections.namedtuple(
    "TargetProfile",
    [
        "name",
        "description",
        "backend",            # "tensorrt" or "onnxruntime"
        "compute_capability",  # e.g. "5.3"; None when not a CUDA GPU or not known in advance
        "tensorrt",           # TensorRT version the JetPack ships, e.g. "8.2"; None: whatever is installed
        "max_opset",          # highest ONNX opset the target's parser reads
        "fast_fp16",
        "fast_int8",
        "memory_gb",          # device memory (shared with the CPU on Jetsons); None: not fixed
        "workspace_mib",      # default TensorRT builder workspace
        "default_precision",
        "notes",
    ],
)


def _profile(**fields):
    return TargetProfile(**fields)


TARGETS = collections.OrderedDict(
    (p.name, p)
    for p in [
        _profile(
            name="jetson-nano",
            description="Jetson Nano 4 GB, JetPack 4.6 (L4T R32.7): Maxwell sm_53, TensorRT 8.2, CUDA 10.2",
            backend="tensorrt",
            compute_capability="5.3",
            tensorrt="8.2",
            max_opset=13,
            fast_fp16=True,
            fast_int8=False,
            memory_gb=4,
            workspace_mib=256,
            default_precision="fp16",
            notes="Maxwell has fast FP16 but no INT8 tensor path and no DLA.",
        ),
        _profile(
            name="jetson-xavier-nx",
            description="Jetson Xavier NX, JetPack 5.1: Volta sm_72, TensorRT 8.5, CUDA 11.4",
            backend="tensorrt",
            compute_capability="7.2",
            tensorrt="8.5",
            max_opset=17,
            fast_fp16=True,
            fast_int8=True,
            memory_gb=8,
            workspace_mib=1024,
            default_precision="int8",
            notes="INT8 needs calibration data in the bundle (calibration/<model>.npy).",
        ),
        _profile(
            name="jetson-orin-nano",
            description="Jetson Orin Nano 8 GB, JetPack 6: Ampere sm_87, TensorRT 10, CUDA 12",
            backend="tensorrt",
            compute_capability="8.7",
            tensorrt="10",
            max_opset=17,
            fast_fp16=True,
            fast_int8=True,
            memory_gb=8,
            workspace_mib=1024,
            default_precision="int8",
            notes="The Orin Nano has no DLA (the Orin NX and AGX do).",
        ),
        _profile(
            name="x86-gpu",
            description="An x86 machine with an NVIDIA GPU: capabilities read from the local GPU at engine build",
            backend="tensorrt",
            compute_capability=None,
            tensorrt=None,
            max_opset=17,
            fast_fp16=True,
            fast_int8=True,
            memory_gb=None,
            workspace_mib=2048,
            default_precision="fp16",
            notes="Profile values are checked against builder.platform_has_fast_fp16/int8 on the machine.",
        ),
        _profile(
            name="cpu",
            description="No TensorRT: ONNX Runtime on the CPU (the fallback)",
            backend="onnxruntime",
            compute_capability=None,
            tensorrt=None,
            max_opset=17,
            fast_fp16=False,
            fast_int8=True,
            memory_gb=None,
            workspace_mib=0,
            default_precision="fp32",
            notes="INT8 here means an ONNX Runtime QDQ model (models/<name>.int8.onnx); BF16 runs with OpenVINO.",
        ),
    ]
)


def list_targets():
    return list(TARGETS.values())


def get_target(name):
    # type: (str) -> TargetProfile
    try:
        return TARGETS[name]
    except KeyError:
        raise UnknownNameError(
            "unknown target {!r}".format(name),
            hint="choose one of: {}".format(", ".join(TARGETS)),
        ) from None


def supported_precisions(target):
    # type: (TargetProfile) -> list
    out = ["fp32"]
    if target.fast_fp16:
        out.append("fp16")
    if target.fast_int8:
        out.append("int8")
    return out


def resolve_precision(target, requested, isa=None):
    # type: (TargetProfile, str, object) -> str
    """Turn ``--precision`` into a concrete precision, refusing what the target cannot run fast.

    On the ``cpu`` target the CPU's flags decide (``isa``: a deploy.cpu_isa.CpuIsa, default this
    machine's): see ``resolve_precision_choice``.
    """
    return resolve_precision_choice(target, requested, isa).precision


def resolve_precision_choice(target, requested, isa=None):
    """``resolve_precision`` with the reason: a deploy.cpu_isa.PrecisionChoice."""
    from deploy.cpu_isa import PrecisionChoice

    if target.backend == "onnxruntime":
        return _resolve_cpu_precision(target, requested, isa)
    if requested not in PRECISION_CHOICES:
        if requested == "bf16":
            raise PrecisionUnsupportedError(
                "bf16 is a CPU precision (the cpu target, with OpenVINO); target {} runs {}".format(
                    target.name, ", ".join(supported_precisions(target))),
                hint="use --precision {} (or best) for this target".format(target.default_precision))
        raise UnknownNameError(
            "unknown precision {!r}".format(requested),
            hint="choose one of: {}".format(", ".join(PRECISION_CHOICES)),
        )
    if requested == "best":
        best = supported_precisions(target)[-1]
        return PrecisionChoice(best, requested, "the fastest precision the target profile lists")
    if requested == "int8" and not target.fast_int8:
        if target.name == "jetson-nano":
            why = "the Jetson Nano's Maxwell GPU (sm_53) has no fast INT8 path, so an INT8 engine would run slower than FP16"
        else:
            why = "target {} has no fast INT8".format(target.name)
        raise PrecisionUnsupportedError(why, hint="use --precision fp16 (or best) for this target")
    if requested == "fp16" and not target.fast_fp16:
        raise PrecisionUnsupportedError(
            "target {} has no fast FP16".format(target.name),
            hint="use --precision fp32{}".format(" or int8" if target.fast_int8 else ""),
        )
    return PrecisionChoice(requested, requested, "asked for")


def _resolve_cpu_precision(target, requested, isa):
    from deploy.cpu_isa import check_bf16, choose_cpu_precision, local_cpu_isa

    if requested == "fp16":
        raise PrecisionUnsupportedError("target {} has no fast FP16".format(target.name),
                                        hint="use --precision fp32, bf16 (OpenVINO) or int8")
    if requested not in CPU_PRECISION_CHOICES:
        raise UnknownNameError("unknown precision {!r}".format(requested),
                               hint="choose one of: {}".format(", ".join(CPU_PRECISION_CHOICES)))
    isa = isa or local_cpu_isa()
    if requested == "bf16":
        check_bf16(isa, "openvino")   # the bundle is the same ONNX; bench/verify run it with OpenVINO
    # at build time the INT8 model is made when int8 is chosen; BF16 runs with --backend openvino
    return choose_cpu_precision(isa, requested, backend="openvino", int8_available=True)


# ------------------------------------------------------------------------------------------------
# what the GPU at hand reports (read at engine-build time by deploy.tensorrt.compat.probe_device)
# ------------------------------------------------------------------------------------------------
DeviceInfo = collections.namedtuple(
    "DeviceInfo",
    [
        "name",                # e.g. "NVIDIA Tegra X1"
        "compute_capability",  # e.g. "5.3"; None when pycuda is absent
        "fast_fp16",           # builder.platform_has_fast_fp16
        "fast_int8",           # builder.platform_has_fast_int8
        "tensorrt",            # full version of the tensorrt module, e.g. "8.2.1.8"
    ],
)


def platform_mismatches(target, device):
    # type: (TargetProfile, DeviceInfo) -> list
    """What the GPU reports that differs from the profile, one sentence each (empty: consistent)."""
    out = []
    if target.compute_capability and device.compute_capability and \
            target.compute_capability != device.compute_capability:
        out.append("profile {} expects compute capability sm_{} but this GPU ({}) is sm_{}".format(
            target.name, target.compute_capability.replace(".", ""), device.name,
            device.compute_capability.replace(".", "")))
    for label, want, got in (("FP16", target.fast_fp16, device.fast_fp16),
                             ("INT8", target.fast_int8, device.fast_int8)):
        if bool(want) != bool(got):
            out.append("profile {} says fast {} {} but TensorRT reports platform_has_fast_{} = {}".format(
                target.name, label, "yes" if want else "no", label.lower(), bool(got)))
    if target.tensorrt and device.tensorrt and not str(device.tensorrt).startswith(target.tensorrt + "."):
        out.append("profile {} is for TensorRT {} but TensorRT {} is installed".format(
            target.name, target.tensorrt, device.tensorrt))
    return out


def local_profile(target, device):
    # type: (TargetProfile, DeviceInfo) -> TargetProfile
    """The profile with what the local GPU reports filled in.

    For profiles that leave the GPU open (``x86-gpu``: compute capability None) the reported
    capabilities replace the profile's; a fixed device profile (the Jetsons) keeps its values
    and mismatches are reported by ``platform_mismatches`` instead. Either way a precision the GPU
    itself reports as slow is dropped, so ``best`` never picks it.
    """
    if target.backend != "tensorrt":
        return target
    if target.compute_capability is None:
        return target._replace(
            compute_capability=device.compute_capability,
            tensorrt=device.tensorrt,
            fast_fp16=bool(device.fast_fp16),
            fast_int8=bool(device.fast_int8),
            description="{} (this machine: {})".format(target.description, device.name),
        )
    return target._replace(fast_fp16=bool(target.fast_fp16 and device.fast_fp16),
                           fast_int8=bool(target.fast_int8 and device.fast_int8))
