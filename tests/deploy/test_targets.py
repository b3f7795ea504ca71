"""Target profiles and the precision policy."""
import pytest

from deploy.cpu_isa import parse_cpu_isa
from deploy.errors import PrecisionUnsupportedError, UnknownNameError
from deploy.targets import (
    PRECISIONS,
    get_target,
    list_targets,
    resolve_precision,
    resolve_precision_choice,
    supported_precisions,
)
from tests.deploy.test_cpu_isa import EPYC_ZEN2, EPYC_ZEN4, XEON_SPR

VNNI_BF16 = parse_cpu_isa(EPYC_ZEN4, "x86_64")


def test_the_five_profiles():
    names = [t.name for t in list_targets()]
    assert names == ["jetson-nano", "jetson-xavier-nx", "jetson-orin-nano", "x86-gpu", "cpu"]
    nano = get_target("jetson-nano")
    assert (nano.compute_capability, nano.tensorrt, nano.max_opset) == ("5.3", "8.2", 13)
    assert nano.fast_fp16 and not nano.fast_int8 and nano.memory_gb == 4
    assert nano.workspace_mib == 256
    assert get_target("cpu").backend == "onnxruntime"
    assert get_target("x86-gpu").compute_capability is None      # filled from the local GPU


@pytest.mark.parametrize("target", [t.name for t in list_targets()])
def test_every_default_precision_is_one_the_target_supports(target):
    profile = get_target(target)
    assert profile.default_precision in supported_precisions(profile)
    assert resolve_precision(profile, profile.default_precision, VNNI_BF16) == profile.default_precision
    assert resolve_precision(profile, "best", VNNI_BF16) in PRECISIONS


@pytest.mark.parametrize("target, best", [("jetson-nano", "fp16"), ("jetson-xavier-nx", "int8"),
                                          ("jetson-orin-nano", "int8"), ("x86-gpu", "int8"), ("cpu", "int8")])
def test_best_is_the_fastest_supported(target, best):
    assert resolve_precision(get_target(target), "best", VNNI_BF16) == best


@pytest.mark.parametrize("cpuinfo, best", [(EPYC_ZEN2, "fp32"), (EPYC_ZEN4, "int8"), (XEON_SPR, "int8")])
def test_best_on_the_cpu_target_comes_from_the_flags_with_the_reason(cpuinfo, best):
    choice = resolve_precision_choice(get_target("cpu"), "best", parse_cpu_isa(cpuinfo, "x86_64"))
    assert choice.precision == best and "CPU flags" in choice.reason


def test_bf16_is_a_cpu_precision_where_the_cpu_has_it():
    cpu = get_target("cpu")
    assert resolve_precision(cpu, "bf16", VNNI_BF16) == "bf16"
    with pytest.raises(PrecisionUnsupportedError, match="lacks AVX512_BF16 and AMX-BF16") as info:
        resolve_precision(cpu, "bf16", parse_cpu_isa(EPYC_ZEN2, "x86_64"))
    assert info.value.exit_code == 2 and "--precision fp32" in info.value.hint
    with pytest.raises(PrecisionUnsupportedError, match="bf16 is a CPU precision") as info:
        resolve_precision(get_target("jetson-nano"), "bf16")
    assert "--precision fp16" in info.value.hint


def test_int8_on_the_nano_is_refused_with_the_reason_and_the_fix():
    with pytest.raises(PrecisionUnsupportedError) as info:
        resolve_precision(get_target("jetson-nano"), "int8")
    assert "Maxwell" in str(info.value) and "--precision fp16" in info.value.hint
    assert info.value.exit_code == 2


def test_fp16_on_cpu_and_unknown_names():
    with pytest.raises(PrecisionUnsupportedError, match="no fast FP16"):
        resolve_precision(get_target("cpu"), "fp16")
    with pytest.raises(UnknownNameError, match="unknown precision"):
        resolve_precision(get_target("cpu"), "fp8")
    with pytest.raises(UnknownNameError, match="unknown target 'jetson-tx2'") as info:
        get_target("jetson-tx2")
    assert "jetson-nano" in info.value.hint


def test_targets_command_lists_every_profile(capsys):
    import pipeline
    assert pipeline.main(["targets"]) == 0
    out = capsys.readouterr().out
    for target in list_targets():
        assert target.name in out
    assert "256 MiB" in out and "fp32,fp16" in out
    from deploy.cpu_isa import local_cpu_isa
    isa = local_cpu_isa()
    assert "this CPU: {}".format(isa.model) in out and "--precision best on the cpu target" in out
    for feature in isa.features:
        assert feature in out


def test_targets_command_shows_the_local_gpu_when_tensorrt_imports(monkeypatch, capsys):
    import pipeline
    from tests.deploy import pycuda_fakes, trt_fakes
    trt_fakes.install(monkeypatch, trt_fakes.make_fake_trt("10", fast_int8=False),
                      pycuda_fakes.make_fake_pycuda(device_name="NVIDIA GeForce GTX 1080", capability=(6, 1)))
    assert pipeline.main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "this machine: NVIDIA GeForce GTX 1080 (sm 6.1), TensorRT 10.13.0.35: fast precisions fp32,fp16" in out
