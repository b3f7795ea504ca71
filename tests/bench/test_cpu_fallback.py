"""bench/cpu_fallback.py end to end on tiny models: a few iterations, real sessions, real reports."""
import json
import os

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the benchmark times it")
pytest.importorskip("onnx", reason="onnx not installed: the tiny models are built with onnx.helper")

from tests.deploy.bench_tiny import tiny_bundle  # noqa: E402


def test_compares_the_variants_and_writes_the_reports(project_script, tmp_path, capsys):
    cpu_fallback = project_script("bench/cpu_fallback.py")
    bundle = tiny_bundle(tmp_path / "bundle")
    out = tmp_path / "reports"
    variants = "ort-plain,ort-all,ort-pad,ort-pad-split,ort-tuned,openvino"
    rc = cpu_fallback.main([bundle, "--iterations", "4", "--rounds", "2", "--warmup", "1", "--pause", "0",
                            "--variants", variants, "--out", str(out)])
    report = json.loads((out / "cpu_fallback.json").read_text())
    timed = [v for v in variants.split(",") if v not in report["skipped"]]
    assert set(report["results"]) == {"hardnet39ds", "mobilenetv2"}
    for model, rows in report["results"].items():
        assert list(rows) == timed
        for variant in timed:
            assert len(report["raw_ms"][model][variant]) == 4               # 2 rounds x 2 iterations
            assert 0 < rows[variant]["median_ms"] and 0 < rows[variant]["floor_share"]
        assert report["protocol"]["input"][model].startswith("1x3x32x32")   # the model's own input size
    # The exit status is the goal check, and it agrees with the report.
    if "openvino" in report["skipped"]:
        assert rc == 0 and report["tuned_at_or_below_openvino"] is None
    else:
        ok = all(r["ort-tuned"]["median_ms"] <= r["openvino"]["median_ms"] for r in report["results"].values())
        assert report["tuned_at_or_below_openvino"] is ok and rc == (0 if ok else 3)
    markdown = (out / "cpu_fallback.md").read_text()
    assert "## Medians (ms)" in markdown and "ort-pad-split vs ort-pad" in markdown
    assert "hardnet39ds" in capsys.readouterr().out
    assert not [f for f in os.listdir(str(out)) if f.endswith(".tmp")]


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
    assert rc == 0 and report["tuned_at_or_below_openvino"] is None      # no comparison, no verdict
    assert "openvino is not installed" in report["skipped"]["openvino"]
    assert list(report["results"]["mobilenetv2"]) == ["ort-tuned"]
    assert "`openvino`: skipped" in (tmp_path / "r" / "cpu_fallback.md").read_text()
