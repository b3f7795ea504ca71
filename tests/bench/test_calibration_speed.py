"""bench/calibration_speed.py end to end at 32x32 on 3 generic images (the 60 s goal is not checked here)."""
import pytest

from tests.bench.helpers import number

pytest.importorskip("torch", reason="torch not installed: the benchmark builds the model from PyTorch")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the benchmark quantizes with it")


def test_calibration_speed_reports_its_parts(project_script, capsys):
    calibration_speed = project_script("bench/calibration_speed.py")
    assert calibration_speed.main(["--model", "mobilenetv2", "--size", "32", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert "images 3 (generic)" in out and "method minmax" in out
    parts = [number(out, pattern) for pattern in (r"preprocess .*: +([\d.]+) s", r"quantize_static .*: +([\d.]+) s",
                                                   r"total +: +([\d.]+) s")]
    assert all(p >= 0 for p in parts) and parts[2] >= parts[0] + parts[1] - 0.2
