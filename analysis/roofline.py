"""A memory-traffic roofline per target: peak FLOP/s, DRAM bandwidth, and per-layer time bounds.

Hardware figures are kept here, keyed by the target profile's name (deploy/targets.py holds what
a target can *run*; this holds how fast it can compute and move data). Each figure says where it
comes from: an NVIDIA datasheet number, or a number derived from datasheet numbers (cores x clock
x 2 FLOP per fused multiply-add).

The model, per layer (a Conv or a fully connected layer):

    FLOPs      = 2 x MACs
    bytes      = (input elements + output elements + weight elements) x bytes per element
    time bound = max(FLOPs / peak FLOP/s, bytes / DRAM bandwidth)
    bound      = "memory" when the bytes term is the larger, else "compute"

and a model's predicted latency is the sum of its layers' bounds. It is a *lower bound*: it
assumes every layer runs at the roof (perfect kernels, no launch overhead, no cache reuse across
layers, pooling/concat/add layers free). See ``ridge_moc`` for the MoC threshold.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from deploy.errors import UsageError

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2}
PRECISIONS = tuple(BYTES_PER_ELEMENT)


@dataclass(frozen=True)
class Hardware:
    target: str
    description: str
    peak_flops: dict[str, float]        # precision -> FLOP/s
    dram_bandwidth: float               # bytes/s
    sources: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"target": self.target, "description": self.description,
                "peak_gflops": {k: v / 1e9 for k, v in self.peak_flops.items()},
                "dram_gbs": self.dram_bandwidth / 1e9, "sources": list(self.sources)}


_NANO_SHEET = ("NVIDIA Jetson Nano System-on-Module data sheet DA-09366-001: Maxwell GPU, 128 CUDA cores, "
               "max 921.6 MHz; 4 GB 64-bit LPDDR4, 1600 MHz = 25.6 GB/s "
               "(https://developer.nvidia.com/embedded/jetson-nano)")
_NX_SHEET = ("NVIDIA Jetson Xavier NX data sheet DS-09693-001 (v1.x): Volta GPU, 384 CUDA cores, 48 Tensor "
             "cores, max 1100 MHz; 8 GB 128-bit LPDDR4x, max 1600 MHz = 51.2 GB/s (later revisions list "
             "1866 MHz, 59.7 GB/s) (https://developer.nvidia.com/embedded/jetson-xavier-nx)")
_ORIN_SHEET = ("NVIDIA Jetson Orin Nano Series data sheet DS-11105-001: Orin Nano 8GB, Ampere GPU, 1024 CUDA "
               "cores, 32 Tensor cores, max 625 MHz, 40 sparse INT8 TOPS; 8 GB 128-bit LPDDR5 = 68 GB/s "
               "(JetPack 5 clocks; the JetPack 6.1 'Super' mode raises these to 1020 MHz, 102 GB/s) "
               "(https://developer.nvidia.com/embedded/jetson-orin-nano-developer-kit)")

HARDWARE: dict[str, Hardware] = {
    "jetson-nano": Hardware(
        target="jetson-nano",
        description="Jetson Nano: 128-core Maxwell @ 921.6 MHz, 25.6 GB/s LPDDR4",
        peak_flops={"fp32": 128 * 921.6e6 * 2,           # 235.9 GFLOP/s (derived: cores x clock x 2)
                    "fp16": 128 * 921.6e6 * 2 * 2},      # 471.9 GFLOP/s (half2: 2x FP32; NVIDIA: "472 GFLOPS")
        dram_bandwidth=25.6e9,
        sources=(_NANO_SHEET, "FP32 = 128 x 921.6 MHz x 2 = 235.9 GFLOP/s; FP16 (half2) = 2 x FP32 = 471.9 "
                              "GFLOP/s, the '472 GFLOPS' NVIDIA quotes for the Nano")),
    "jetson-xavier-nx": Hardware(
        target="jetson-xavier-nx",
        description="Jetson Xavier NX: 384-core Volta + 48 Tensor cores @ 1100 MHz, 51.2 GB/s LPDDR4x",
        peak_flops={"fp32": 384 * 1100e6 * 2,            # 844.8 GFLOP/s
                    "fp16": 48 * 64 * 2 * 1100e6},       # 6758 GFLOP/s on Tensor cores (64 FMA/clk each)
        dram_bandwidth=51.2e9,
        sources=(_NX_SHEET, "FP32 = 384 x 1100 MHz x 2 = 844.8 GFLOP/s; FP16 = 48 Tensor cores x 64 FMA x 2 "
                            "x 1100 MHz = 6.76 TFLOP/s (TensorRT runs FP16 convolutions on Tensor cores)")),
    "jetson-orin-nano": Hardware(
        target="jetson-orin-nano",
        description="Jetson Orin Nano 8GB: 1024-core Ampere + 32 Tensor cores @ 625 MHz, 68 GB/s LPDDR5",
        peak_flops={"fp32": 1024 * 625e6 * 2,            # 1280 GFLOP/s
                    "fp16": 40e12 / 4},                  # 10 TFLOP/s dense FP16 Tensor = 40 sparse INT8 TOPS / 4
        dram_bandwidth=68e9,
        sources=(_ORIN_SHEET, "FP32 = 1024 x 625 MHz x 2 = 1.28 TFLOP/s; dense FP16 Tensor = 40 sparse INT8 "
                              "TOPS / 2 (dense) / 2 (FP16 is half the INT8 rate) = 10 TFLOP/s")),
}


def get_hardware(target: str, peak_gflops: float | None = None, bandwidth_gbs: float | None = None,
                 precision: str = "fp16") -> Hardware:
    """The target's figures; ``peak_gflops``/``bandwidth_gbs`` override them (or define a custom target)."""
    base = HARDWARE.get(target)
    if base is None and (peak_gflops is None or bandwidth_gbs is None):
        raise UsageError(
            f"no roofline hardware figures for target {target!r}",
            hint=f"use --target {' / '.join(HARDWARE)}, or give this machine's figures with "
                 "--peak-gflops N --bandwidth-gbs N")
    if base is not None and peak_gflops is None and bandwidth_gbs is None:
        return base
    peaks = dict(base.peak_flops) if base else {}
    if peak_gflops is not None:
        if peak_gflops <= 0:
            raise UsageError("--peak-gflops must be positive", hint="give the peak in GFLOP/s, e.g. 471.9")
        peaks[precision] = peak_gflops * 1e9
    bandwidth = base.dram_bandwidth if base else 0.0
    if bandwidth_gbs is not None:
        if bandwidth_gbs <= 0:
            raise UsageError("--bandwidth-gbs must be positive", hint="give the DRAM bandwidth in GB/s, e.g. 25.6")
        bandwidth = bandwidth_gbs * 1e9
    return Hardware(target=target, description=(base.description if base else target) + " (figures overridden)",
                    peak_flops=peaks, dram_bandwidth=bandwidth,
                    sources=(base.sources if base else ()) + ("given on the command line",))


def check_precision(hw: Hardware, precision: str) -> None:
    if precision not in BYTES_PER_ELEMENT or precision not in hw.peak_flops:
        raise UsageError(f"no roofline figures for precision {precision!r} on {hw.target}",
                         hint=f"use --precision {' or '.join(p for p in PRECISIONS if p in hw.peak_flops)}")


def ridge_moc(hw: Hardware, precision: str) -> float:
    """The MoC threshold: MACs per element moved at which compute time equals DRAM time.

    peak MAC/s = peak FLOP/s / 2; elements/s = bandwidth / bytes per element; the ridge is their
    ratio. A layer whose MoC (MACs / CIO) is below it cannot keep the arithmetic units busy: it is
    memory-bound, and its latency is set by the bytes it moves, not by its MACs.
    """
    check_precision(hw, precision)
    return (hw.peak_flops[precision] / 2.0) / (hw.dram_bandwidth / BYTES_PER_ELEMENT[precision])


def layer_time(hw: Hardware, precision: str, macs: float, elements_moved: float) -> tuple[float, float, float]:
    """(compute seconds, memory seconds, bound seconds) for one layer."""
    compute = 2.0 * macs / hw.peak_flops[precision]
    memory = elements_moved * BYTES_PER_ELEMENT[precision] / hw.dram_bandwidth
    return compute, memory, max(compute, memory)
