"""bench/int8_speed.py end to end at 32x32: real build, calibration, quantization and timing, a few
iterations (the speed goal itself is not checked here)."""
import re

import pytest

from tests.bench.helpers import number

pytest.importorskip("torch", reason="torch not installed: the benchmarks build the models from PyTorch")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the benchmarks time it")
onnx = pytest.importorskip("onnx", reason="onnx not installed")


def test_int8_speed_times_and_profiles_both_precisions(project_script, capsys):
    int8_speed = project_script("bench/int8_speed.py")
    assert int8_speed.main(["--models", "mobilenetv2", "--size", "32", "--iterations", "6", "--warmup", "1",
                            "--rounds", "3", "--calib-count", "2", "--threads", "1", "--profile"]) == 0
    out = capsys.readouterr().out
    row = re.search(r"\| mobilenetv2 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|", out)
    assert row, out
    fp32, int8, speedup, fp32_tuned, int8_tuned, speedup_tuned = (float(v) for v in row.groups())
    for ms, other, ratio in ((fp32, int8, speedup), (fp32_tuned, int8_tuned, speedup_tuned)):
        # the times are printed rounded to 0.1 ms and the ratio to 0.01: it must fit the intervals they allow
        low = (ms - 0.05) / (other + 0.05)
        high = (ms + 0.05) / (other - 0.05) if other > 0.05 else float("inf")
        assert ms > 0 and other > 0 and low - 0.005 <= ratio <= high + 0.005, (ms, other, ratio)
    # each speed-up with its interval over the rounds, and a verdict that follows the interval
    intervals = re.findall(r"([\d.]+)x \(([\d.]+)-([\d.]+)\) (faster|slower|no difference shown)", out)
    assert len(intervals) == 2, out
    for ratio, low, high, verdict in intervals:
        assert float(low) <= float(ratio) <= float(high)
        assert verdict == ("faster" if float(low) > 1 else "slower" if float(high) < 1 else "no difference shown") \
            or abs(float(low) - 1) < 0.01 or abs(float(high) - 1) < 0.01            # printed rounded to 0.01
    assert "CPU ISA: " in out
    for kind in ("pointwise", "depthwise"):   # MobileNetV2 has both, at both precisions
        assert number(out, r"\| mobilenetv2 \| {} \| ([\d.]+) \|".format(kind)) > 0
        assert number(out, r"\| mobilenetv2 \| {} \| [\d.]+ \| ([\d.]+) \|".format(kind)) > 0


def _nodes():
    from onnx import helper
    shapes = {"pw": [16, 8, 1, 1], "dw": [8, 1, 3, 3], "stem": [8, 3, 3, 3], "qw": [16, 8, 1, 1]}
    conv = helper.make_node("Conv", ["x", "pw"], ["y"])
    depthwise = helper.make_node("Conv", ["x", "dw"], ["y"], group=8)
    stem = helper.make_node("Conv", ["x", "stem"], ["y"])
    quantized = helper.make_node("QLinearConv", ["x", "s", "z", "qw", "ws", "wz", "ys", "yz"], ["y"])
    add = helper.make_node("Add", ["a", "b"], ["c"])
    return conv, depthwise, stem, quantized, add, shapes


def test_layer_kind_names_each_kind(project_script):
    layer_kind = project_script("bench/int8_speed.py").layer_kind
    conv, depthwise, stem, quantized, add, shapes = _nodes()
    assert [layer_kind(n, shapes) for n in (conv, depthwise, stem, quantized, add)] == [
        "pointwise", "depthwise", "other conv", "pointwise", "other"]


def test_int8_speed_refuses_bad_arguments(project_script):
    with pytest.raises(SystemExit) as exc:
        project_script("bench/int8_speed.py").main(["--iterations", "0"])
    assert exc.value.code == 2
