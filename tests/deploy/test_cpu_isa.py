"""The CPU's instruction set decides the CPU precisions: parsing /proc/cpuinfo and the choice of `best`."""
import pytest

from deploy.cpu_isa import (
    check_bf16,
    choice_record,
    choose_cpu_precision,
    cpu_target_precisions,
    fast_cpu_precisions,
    isa_summary,
    parse_cpu_isa,
    precision_support,
)
from deploy.errors import PrecisionUnsupportedError

# flag lines trimmed from real /proc/cpuinfo files of each kind of machine
EPYC_ZEN2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse sse2 avx fma avx2 bmi2\n"
EPYC_ZEN4 = ("model name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw avx512_vnni "
             "avx512_bf16\n")
XEON_SPR = ("model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: sse2 avx fma avx2 avx512f avx512_vnni "
            "avx_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8\n")
CORE_ADL = "model name\t: 12th Gen Intel(R) Core(TM) i7-1265U\nflags\t\t: sse2 avx fma avx2 avx_vnni\n"
ARM_A57 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\nCPU part\t: 0xd07\n"
ARM_N1 = "processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp cpuid bf16 i8mm\nCPU part\t: 0xd0c\n"


def test_x86_features_and_native_precisions():
    zen2 = parse_cpu_isa(EPYC_ZEN2, "x86_64")
    assert zen2.arch == "x86" and zen2.features == ["AVX2", "FMA"] and zen2.model == "AMD EPYC 7B12"
    assert (zen2.int8_dot, zen2.bf16_dot) == (None, None) and fast_cpu_precisions(zen2) == ["fp32"]
    zen4 = parse_cpu_isa(EPYC_ZEN4, "x86_64")
    assert zen4.features == ["AVX2", "FMA", "AVX-512", "AVX512_VNNI", "AVX512_BF16"]
    assert (zen4.int8_dot, zen4.bf16_dot) == ("AVX512_VNNI", "AVX512_BF16")
    spr = parse_cpu_isa(XEON_SPR, "x86_64")
    assert (spr.int8_dot, spr.bf16_dot) == ("AMX-INT8", "AMX-BF16")   # AMX first: the faster path
    assert fast_cpu_precisions(spr) == ["fp32", "bf16", "int8"]
    adl = parse_cpu_isa(CORE_ADL, "x86_64")
    assert adl.int8_dot == "AVX-VNNI" and adl.bf16_dot is None
    assert cpu_target_precisions(adl) == ["fp32", "int8"] and cpu_target_precisions(spr) == ["fp32", "bf16", "int8"]


def test_arm_features():
    a57 = parse_cpu_isa(ARM_A57, "aarch64")      # the Jetson Nano's cores: NEON, no dot product
    assert a57.arch == "arm" and a57.features == ["NEON"] and a57.int8_dot is None
    n1 = parse_cpu_isa(ARM_N1, "aarch64")
    assert n1.features == ["NEON", "NEON-FP16", "dotprod", "I8MM", "BF16"] and n1.int8_dot == "dotprod"
    assert n1.bf16_dot is None      # OpenVINO's ARM plugin has no BF16 path: not offered
    assert dict((p, native) for p, native, _ in precision_support(n1)) == {"fp32": True, "bf16": False, "int8": True}
    assert "arm: NEON" in isa_summary(a57) and "native fp32" in isa_summary(a57)


def test_unreadable_cpuinfo_gives_an_empty_isa():
    isa = parse_cpu_isa("", "riscv64")
    assert isa.arch == "other" and isa.features == [] and fast_cpu_precisions(isa) == ["fp32"]


@pytest.mark.parametrize("text, backend, int8_available, precision, why", [
    (XEON_SPR, "onnxruntime", True, "int8", "AMX-INT8"),
    (EPYC_ZEN4, "openvino", True, "int8", "AVX512_VNNI"),
    (EPYC_ZEN4, "openvino", False, "bf16", "bundle has no INT8 model"),
    (EPYC_ZEN4, "onnxruntime", False, "fp32", "bf16 needs --backend openvino"),
    (EPYC_ZEN2, "openvino", True, "fp32", "no VNNI"),
    (ARM_N1, "onnxruntime", True, "int8", "dotprod"),
    (ARM_A57, "onnxruntime", True, "fp32", "fp32 on NEON"),
])
def test_best_is_chosen_from_the_flags_and_says_why(text, backend, int8_available, precision, why):
    isa = parse_cpu_isa(text, "aarch64" if "asimd" in text else "x86_64")
    choice = choose_cpu_precision(isa, "best", backend, int8_available)
    assert choice.precision == precision and choice.requested == "best"
    assert why in choice.reason and "CPU flags" in choice.reason
    record = choice_record(choice, isa)
    assert record["precision"] == precision and record["features"] == isa.features and record["cpu"] == isa.model


def test_bf16_needs_openvino_and_the_instructions():
    zen2, zen4 = parse_cpu_isa(EPYC_ZEN2, "x86_64"), parse_cpu_isa(EPYC_ZEN4, "x86_64")
    with pytest.raises(PrecisionUnsupportedError, match="no BF16 convolutions") as info:
        check_bf16(zen4, "onnxruntime")
    assert "--backend openvino" in info.value.hint and info.value.exit_code == 2
    with pytest.raises(PrecisionUnsupportedError, match="lacks AVX512_BF16 and AMX-BF16") as info:
        choose_cpu_precision(zen2, "bf16", "openvino")
    assert "AMD EPYC 7B12" in str(info.value) and "--precision fp32" in info.value.hint
    assert choose_cpu_precision(zen4, "bf16", "openvino").precision == "bf16"
    assert choose_cpu_precision(zen2, "int8", "onnxruntime").precision == "int8"   # runs, just slower
