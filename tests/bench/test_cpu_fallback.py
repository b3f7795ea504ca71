"""bench/cpu_fallback.py end to end on tiny models: a few iterations, real sessions, real reports."""
import json
import os

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the benchmark times it")
pytest.importorskip("onnx", reason="onnx not installed: the tiny models are built with onnx.helper")

from deploy.cpu_isa import local_cpu_isa  # noqa: E402
from tests.deploy.bench_tiny import tiny_bundle  # noqa: E402


def test_compares_the_variants_and_writes_the_reports(project_script, tmp_path, capsys):
    cpu_fallback = project_script("bench/cpu_fallback.py")
    bundle = tiny_bundle(tmp_path / "bundle", int8=True)
    out = tmp_path / "reports"
    variants = "ort-plain,ort-all,ort-pad,ort-pad-split,ort-tuned,ort-int8,openvino,openvino-bf16,openvino-int8"
    rc = cpu_fallback.main([bundle, "--iterations", "6", "--rounds", "3", "--warmup", "1", "--pause", "0",
                            "--variants", variants, "--out", str(out)])
    report = json.loads((out / "cpu_fallback.json").read_text())
    timed = [v for v in variants.split(",") if v not in report["skipped"]]
    assert set(report["results"]) == {"hardnet39ds", "mobilenetv2"}
    for model, rows in report["results"].items():
        assert list(rows) == timed
        for variant in timed:
            assert len(report["raw_ms"][model][variant]) == 6               # 3 rounds x 2 iterations
            assert 0 < rows[variant]["median_ms"] and 0 < rows[variant]["floor_share"]
        # every row names the precision that ran
        assert rows["ort-tuned"]["precision"] == "fp32" and rows["ort-int8"]["precision"] == "int8"
        if "openvino" in rows:
            assert rows["openvino"]["precision"] == "fp32" and rows["openvino-int8"]["precision"] == "int8"
        if "openvino-bf16" in rows:
            assert rows["openvino-bf16"]["precision"] == "bf16"
        assert report["protocol"]["input"][model].startswith("1x3x32x32")   # the model's own input size
        # each comparison whose variants both ran has a ratio, an interval around it and a verdict
        pairs = {(c["a"], c["b"]): c for c in report["comparisons"][model]}
        assert ("ort-int8", "ort-tuned") in pairs
        for c in pairs.values():
            assert c["ci_low"] <= c["ratio"] <= c["ci_high"] and c["rounds"] == 3
            assert c["verdict"] == ("faster" if c["ci_low"] > 1 else "slower" if c["ci_high"] < 1
                                    else "no difference shown")
    assert report["cpu_isa"]["features"] == list(local_cpu_isa().features)
    assert report["environment"]["cpu"] and "cpu_flags" in report["environment"]
    # The exit status is the goal check, and it agrees with the report.
    if "openvino" in report["skipped"]:
        assert rc == 0 and report["fp32_goal_met"] is None
        assert "not installed" in report["skipped"]["openvino"]
    else:
        ok = all(c["ratio"] <= cpu_fallback.FP32_GOAL for m in report["comparisons"].values() for c in m
                 if (c["a"], c["b"]) == ("openvino", "ort-tuned"))
        assert report["fp32_goal_met"] is ok and rc == (0 if ok else 3)
    if not local_cpu_isa().bf16_dot:
        assert "AVX512_BF16" in report["skipped"]["openvino-bf16"]
    markdown = (out / "cpu_fallback.md").read_text()
    assert "## Medians (ms" in markdown and "95% CI" in markdown and "ort-int8" in markdown
    assert "ISA: " in markdown
    assert "hardnet39ds" in capsys.readouterr().out
    assert not [f for f in os.listdir(str(out)) if f.endswith(".tmp")]


def test_int8_variants_are_skipped_without_an_int8_model(project_script, tmp_path):
    cpu_fallback = project_script("bench/cpu_fallback.py")
    bundle = tiny_bundle(tmp_path / "bundle", names=("mobilenetv2",))
    rc = cpu_fallback.main([bundle, "--iterations", "2", "--rounds", "2", "--warmup", "0", "--pause", "0",
                            "--variants", "ort-tuned,ort-int8", "--out", str(tmp_path / "r")])
    report = json.loads((tmp_path / "r" / "cpu_fallback.json").read_text())
    assert rc == 0 and "no INT8 model" in report["skipped"]["ort-int8"]
    assert list(report["results"]["mobilenetv2"]) == ["ort-tuned"]


def test_bad_arguments_are_refused(project_script, tmp_path):
    cpu_fallback = project_script("bench/cpu_fallback.py")
    bundle = tiny_bundle(tmp_path / "bundle")
    for argv in (["--iterations", "0"], ["--variants", "ort-fastest"]):
        with pytest.raises(SystemExit) as exc:
            cpu_fallback.main([bundle] + argv)
        assert exc.value.code == 2


def test_a_backend_that_is_not_installed_is_skipped_and_said_so(project_script, tmp_path, monkeypatch):
    from deploy.errors import BackendUnavailableError

    cpu_fallback = project_script("bench/cpu_fallback.py")

    def not_installed(*args):
        raise BackendUnavailableError("openvino is not installed", hint="pip install openvino")

    monkeypatch.setitem(cpu_fallback.VARIANTS, "openvino", not_installed)
    bundle = tiny_bundle(tmp_path / "bundle", names=("mobilenetv2",))
    rc = cpu_fallback.main([bundle, "--iterations", "2", "--rounds", "1", "--warmup", "0", "--pause", "0",
                            "--variants", "ort-tuned,openvino", "--out", str(tmp_path / "r")])
    report = json.loads((tmp_path / "r" / "cpu_fallback.json").read_text())
    assert rc == 0 and report["fp32_goal_met"] is None      # no comparison, no verdict
    assert "openvino is not installed" in report["skipped"]["openvino"]
    assert list(report["results"]["mobilenetv2"]) == ["ort-tuned"]
    assert "`openvino`: skipped" in (tmp_path / "r" / "cpu_fallback.md").read_text()
