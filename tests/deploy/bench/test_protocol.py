"""The benchmark loop, the reports and `pipeline.py bench` end to end on tiny models."""
import json
import os
import sys
import types

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the CPU fallback needs it")
pytest.importorskip("onnx", reason="onnx not installed: the tiny test models are built with onnx.helper")

import pipeline  # noqa: E402
from deploy.bench import protocol as bench  # noqa: E402
from deploy.errors import UsageError  # noqa: E402
from deploy.runners.contract import Runner, TensorMeta  # noqa: E402
from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner  # noqa: E402
from tests.deploy.bench_tiny import tiny_bundle, tiny_cnn  # noqa: E402


@pytest.fixture
def bundle(tmp_path):
    return tiny_bundle(tmp_path / "bundle")


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import tensorrt -> ImportError


def _run(argv, capsys):
    code = pipeline.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------
def test_protocol_validation():
    p = bench.make_protocol(iterations=500)
    assert (p.iterations, p.warmup, p.size, p.batch) == (500, 50, 320, 1)
    assert bench.make_protocol(iterations=20).warmup == 10
    for kwargs in ({"iterations": 0}, {"iterations": 5, "warmup": -1}, {"size": 0}, {"batch": 0},
                   {"threads": 0}):
        with pytest.raises(UsageError):
            bench.make_protocol(**kwargs)


def test_seeded_input_is_reproducible():
    a = bench.make_input((1, 3, 8, 8), seed=0)
    assert a.dtype == np.float32 and a.shape == (1, 3, 8, 8)
    np.testing.assert_array_equal(a, bench.make_input((1, 3, 8, 8), seed=0))
    assert not np.array_equal(a, bench.make_input((1, 3, 8, 8), seed=1))


def test_loop_with_the_onnxruntime_runner(tmp_path):
    path = tiny_cnn(tmp_path / "t.onnx")
    with OnnxRuntimeRunner(path, threads=1) as runner:
        timed = bench.time_runner(runner, {"input": bench.make_input((1, 3, 32, 32))}, iterations=7, warmup=2,
                                  progress=False)
    assert timed.latencies_ms.shape == (7,) and np.all(timed.latencies_ms > 0)
    assert timed.compute_ms is None
    assert timed.wall_s * 1000.0 >= timed.latencies_ms.sum() * 0.99


class _GpuLikeRunner(Runner):
    """A runner with the TensorRT runner's benchmark path: set_inputs + execute_timed()."""
    name = "fake-gpu"

    def __init__(self):
        super(_GpuLikeRunner, self).__init__()
        self.calls = 0
        self.inputs = None

    def activate_impl(self):
        pass

    def deactivate_impl(self):
        pass

    def input_metadata_impl(self):
        return [TensorMeta("input", (1, 3, 4, 4), np.dtype(np.float32))]

    def infer_impl(self, feed):
        return {"logits": feed["input"].sum(keepdims=True)}

    def set_inputs(self, feed):
        self.inputs = feed

    def execute_timed(self):
        self.calls += 1
        return 1.0 + self.calls * 1e-3, 2.0 + self.calls * 1e-3


def test_loop_keeps_compute_and_end_to_end_times():
    runner = _GpuLikeRunner()
    with runner:
        timed = bench.time_runner(runner, {"input": np.zeros((1, 3, 4, 4), np.float32)}, 5, 3, progress=False)
    assert runner.inputs is not None and runner.calls == 8      # 3 warm-up + 5 timed, inputs bound once
    np.testing.assert_allclose(timed.compute_ms, 1.0 + np.arange(4, 9) * 1e-3)
    np.testing.assert_allclose(timed.latencies_ms, 2.0 + np.arange(4, 9) * 1e-3)


# ------------------------------------------------------------------------------------------------
def test_cli_fallback_end_to_end(bundle, no_tensorrt, capsys):
    code, out, err = _run(["-q", "bench", bundle, "--iterations", "5", "--warmup", "1", "--size", "32"], capsys)
    assert code == 0, err
    reports = os.path.join(bundle, "reports")
    report = json.load(open(os.path.join(reports, "bench.json")))
    assert set(report) >= {"environment", "protocol", "results"}
    assert report["protocol"]["backend"] == "onnxruntime" and report["protocol"]["fallback"] is True
    assert "TensorRT is not importable" in report["protocol"]["fallback_reason"]
    assert report["environment"]["versions"]["onnxruntime"]
    assert [r["model"] for r in report["results"]] == ["hardnet39ds", "mobilenetv2"]
    for r in report["results"]:
        assert r["backend"] == "onnxruntime" and r["precision"] == "fp32" and r["input_shape"] == [1, 3, 32, 32]
        assert r["iterations"] == 5 and len(r["latencies_ms"]) == 5
        lat = r["latency_ms"]
        assert set(lat) == {"mean", "std", "min", "median", "p90", "p95", "p99", "max"}
        assert lat["min"] <= lat["median"] <= lat["max"]
        assert r["throughput_fps"] == pytest.approx(1000.0 / lat["mean"], rel=1e-2)
        assert r["compute_floor_ms"] > 0 and r["floor_share"] > 0
        assert r["runner"]["graph_optimization"] == "all" and r["runner"]["spinning"] is True
        assert r["runner"]["channel_padding"] is True and r["runner"]["concat_split"] is True
    assert report["protocol"]["spinning"] is True
    # the authors' pair table, with the published Nano figures labelled as published
    pair = report["pairs"]
    assert [p["model"] for p in pair] == ["hardnet39ds", "mobilenetv2"]
    assert pair[0]["published_ms"] == 32.5 and pair[1]["published_ms"] == 37.9
    assert pair[0]["speedup"] == pytest.approx(
        report["results"][1]["latency_ms"]["mean"] / report["results"][0]["latency_ms"]["mean"], rel=2e-2)
    md = open(os.path.join(reports, "bench.md")).read()
    assert "FALLBACK" in md and "published" in md and "| hardnet39ds |" in md
    assert os.path.getsize(os.path.join(reports, "bench.png")) > 1000
    assert "hardnet39ds" in out and "speed-up" in out and "wrote" in out
    assert not [f for f in os.listdir(reports) if f.endswith(".tmp")]


def test_compute_floor_is_kept_on_a_very_fast_cpu(bundle, no_tensorrt, capsys, monkeypatch):
    # CI once ran on a CPU fast enough that the tiny model's floor rounded to 0.000 ms at 3 decimals
    monkeypatch.setattr(bench, "measure_matmul_flops", lambda *a, **k: 5e13)
    code, _, err = _run(["-q", "bench", bundle, "--iterations", "2", "--warmup", "0", "--size", "32", "--no-png"],
                        capsys)
    assert code == 0, err
    for r in json.load(open(os.path.join(bundle, "reports", "bench.json")))["results"]:
        expected = 2.0 * r["macs"] / 5e13 * 1000.0
        assert r["compute_floor_ms"] == pytest.approx(expected, rel=1e-3)
        assert r["floor_share"] == pytest.approx(expected / r["latency_ms"]["median"], rel=1e-2)


def test_significant_figures():
    assert bench.significant(0.000123456) == 0.0001235
    assert bench.significant(1234567.0) == 1235000.0
    assert bench.significant(2.5e-9, digits=2) == 2.5e-9


def test_size_defaults_to_the_bundles(bundle, no_tensorrt, capsys):
    code, _, err = _run(["-q", "bench", bundle, "--iterations", "2", "--warmup", "0", "--no-png"], capsys)
    assert code == 0, err
    report = json.load(open(os.path.join(bundle, "reports", "bench.json")))
    assert report["protocol"]["size"] == 32 and report["results"][0]["input_shape"] == [1, 3, 32, 32]


def test_bundle_input_size_falls_back_to_the_protocols(tmp_path):
    from deploy.bundle import Bundle

    assert bench.bundle_input_size(None) == bench.DEFAULT_SIZE == 320
    mixed = Bundle.open(tiny_bundle(tmp_path / "mixed"))
    assert bench.bundle_input_size(mixed) == 32
    mixed.model("mobilenetv2")["input"]["shape"] = [1, 3, 64, 64]
    assert bench.bundle_input_size(mixed) == 320                     # two sizes: no single answer
    assert bench.bundle_input_size(mixed, ["mobilenetv2"]) == 64     # ... unless one model is asked for
    mixed.model("hardnet39ds")["input"]["shape"] = ["batch", 3, 32, 32]
    assert bench.bundle_input_size(mixed, ["hardnet39ds"]) == 32


def test_no_spin_reaches_the_runner_and_the_report(bundle, no_tensorrt, capsys):
    code, _, err = _run(["-q", "bench", bundle, "--iterations", "2", "--warmup", "0", "--size", "32", "--no-png",
                         "--no-spin"], capsys)
    assert code == 0, err
    report = json.load(open(os.path.join(bundle, "reports", "bench.json")))
    assert report["protocol"]["spinning"] is False
    assert all(r["runner"]["spinning"] is False for r in report["results"])


def test_interrupted_run_keeps_the_previous_report(bundle, no_tensorrt, capsys, monkeypatch):
    assert _run(["-q", "bench", bundle, "--iterations", "3", "--size", "32", "--no-png"], capsys)[0] == 0
    path = os.path.join(bundle, "reports", "bench.json")
    before = open(path).read()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "time_runner", interrupted)
    code, _, err = _run(["-q", "bench", bundle, "--iterations", "3", "--size", "32"], capsys)
    assert code == 130 and "interrupted" in err
    assert open(path).read() == before
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    import deploy.bench.report as bench_report
    monkeypatch.setattr(bench_report, "render_png", interrupted)   # dies while rendering, before writing
    assert _run(["-q", "bench", bundle, "--iterations", "3", "--size", "32"], capsys)[0] == 130
    assert open(path).read() == before
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------
def test_bad_inputs(bundle, tmp_path, no_tensorrt, capsys, monkeypatch):
    code, _, err = _run(["bench", bundle, "--iterations", "0"], capsys)
    assert code == 2 and "--iterations must be at least 1" in err

    code, _, err = _run(["bench", bundle, "--size", "320", "--iterations", "2"], capsys)
    assert code == 2 and "exported for 32x32" in err and "rebuild" in err

    code, _, err = _run(["bench", bundle, "--size", "32", "--precision", "fp16", "--backend", "onnxruntime"], capsys)
    assert code == 2 and "fp16" in err

    code, _, err = _run(["bench", bundle, "--size", "32", "--models", "hardnet39ds,nope"], capsys)
    assert code == 2 and "nope" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"schema_version": 1, "target": {"name": "cpu"}, "models": {}}))
    code, _, err = _run(["bench", str(empty)], capsys)
    assert code == 1 and "has no models" in err

    code, _, err = _run(["bench", str(tmp_path / "missing")], capsys)
    assert code == 1 and "does not exist" in err

    monkeypatch.setitem(sys.modules, "openvino", None)
    code, _, err = _run(["bench", bundle, "--backend", "openvino", "--size", "32"], capsys)
    assert code == 1 and "not installed" in err and "fix:" in err

    code, _, err = _run(["bench", bundle, "--backend", "tensorrt", "--size", "32"], capsys)
    assert code == 1 and "tensorrt is not installed" in err.lower()


def test_bf16_is_refused_with_the_backend_or_the_missing_instructions(bundle, no_tensorrt, capsys, monkeypatch):
    from deploy import cpu_isa
    from tests.deploy.test_cpu_isa import EPYC_ZEN2, EPYC_ZEN4

    monkeypatch.setattr(cpu_isa, "local_cpu_isa", lambda: cpu_isa.parse_cpu_isa(EPYC_ZEN4, "x86_64"))
    code, _, err = _run(["bench", bundle, "--size", "32", "--precision", "bf16", "--backend", "onnxruntime"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no BF16 convolutions" in err and "--backend openvino" in err
    monkeypatch.setattr(cpu_isa, "local_cpu_isa", lambda: cpu_isa.parse_cpu_isa(EPYC_ZEN2, "x86_64"))
    monkeypatch.setitem(sys.modules, "openvino", types.ModuleType("openvino"))   # "installed"
    code, _, err = _run(["bench", bundle, "--size", "32", "--precision", "bf16", "--backend", "openvino"], capsys)
    assert code == 2 and "lacks AVX512_BF16 and AMX-BF16" in err and "AMD EPYC 7B12" in err


def test_best_on_the_cpu_comes_from_the_flags_and_is_recorded(tmp_path, no_tensorrt, capsys, monkeypatch):
    from deploy import cpu_isa
    from tests.deploy.test_cpu_isa import EPYC_ZEN2, EPYC_ZEN4

    both = tiny_bundle(tmp_path / "int8", names=("mobilenetv2",), int8=True)
    monkeypatch.setattr(cpu_isa, "local_cpu_isa", lambda: cpu_isa.parse_cpu_isa(EPYC_ZEN4, "x86_64"))
    code, _, err = _run(["-q", "bench", both, "--precision", "best", "--iterations", "2", "--warmup", "0",
                         "--no-png"], capsys)
    assert code == 0, err
    report = json.load(open(os.path.join(both, "reports", "bench.json")))
    choice = report["protocol"]["precision_choice"]
    assert choice["precision"] == "int8" and choice["requested"] == "best" and "AVX512_VNNI" in choice["reason"]
    assert report["results"][0]["precision"] == "int8"
    assert "precision int8 chosen for --precision best" in open(os.path.join(both, "reports", "bench.md")).read()
    monkeypatch.setattr(cpu_isa, "local_cpu_isa", lambda: cpu_isa.parse_cpu_isa(EPYC_ZEN2, "x86_64"))
    assert _run(["-q", "bench", both, "--precision", "best", "--iterations", "2", "--warmup", "0", "--no-png"],
                capsys)[0] == 0
    report = json.load(open(os.path.join(both, "reports", "bench.json")))
    assert report["results"][0]["precision"] == "fp32" and "no VNNI" in report["protocol"]["precision_choice"]["reason"]


def test_openvino_rows_name_the_precision_it_compiled(bundle, no_tensorrt, capsys, monkeypatch):
    from tests.deploy.openvino_fakes import make_openvino

    monkeypatch.setitem(sys.modules, "openvino", make_openvino(has_bf16=True))
    code, _, err = _run(["-q", "bench", bundle, "--backend", "openvino", "--precision", "fp32", "--iterations", "2",
                         "--warmup", "0", "--no-png", "--size", "32"], capsys)
    assert code == 0, err
    report = json.load(open(os.path.join(bundle, "reports", "bench.json")))
    for r in report["results"]:
        assert r["precision"] == "fp32" and r["runner"]["inference_precision_hint"] == "f32"
        assert r["runner"]["convolutions"] == {"f32": 3}


def test_tensorrt_engine_errors(tmp_path, capsys, monkeypatch):
    """No engine, a stale engine (another TensorRT version), and one that fails to load: one line each."""
    from tests.deploy import pycuda_fakes, trt_fakes

    trt_fakes.install(monkeypatch, trt_fakes.make_fake_trt("8.2"), pycuda_fakes.make_fake_pycuda())
    bundle = trt_fakes.make_bundle(tmp_path / "b", models=("hardnet39ds", "mobilenetv2"))   # 4x4 inputs
    argv = ["bench", bundle.root, "--size", "4", "--iterations", "2", "--precision", "fp16", "--no-png"]
    code, _, err = _run(argv, capsys)
    assert code == 1 and "no fp16 engine of hardnet39ds" in err and "pipeline.py engines" in err

    assert pipeline.main(["-q", "engines", bundle.root, "--precision", "fp16"]) == 0
    capsys.readouterr()
    sidecars = [os.path.join(root, f) for root, _, files in os.walk(os.path.join(bundle.root, "engines"))
                for f in files if f.startswith("hardnet39ds.") and f.endswith(".json")]
    assert sidecars
    with open(sidecars[0]) as handle:
        meta = json.load(handle)
    meta["tensorrt"] = "8.0.1.6"
    with open(sidecars[0], "w") as handle:
        json.dump(meta, handle)
    code, _, err = _run(argv, capsys)
    assert code == 1 and "stale" in err and "8.0.1.6" in err and "pipeline.py engines" in err

    assert pipeline.main(["-q", "engines", bundle.root, "--precision", "fp16"]) == 0  # rebuilds the stale one
    capsys.readouterr()

    class Broken(Runner):
        def __init__(self, engine_path, **kwargs):
            super(Broken, self).__init__()

        def activate_impl(self):
            raise RuntimeError("deserializeCudaEngine failed: version tag does not match")

    module = types.ModuleType("deploy.tensorrt.runner")
    module.TensorRTRunner = Broken
    monkeypatch.setitem(sys.modules, "deploy.tensorrt.runner", module)
    code, _, err = _run(argv, capsys)
    assert code == 1 and "TensorRT cannot load engine" in err and "rebuild" in err


def test_torch_backend_without_a_bundle(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch", reason="torch not installed: the torch backend runs on the host")
    monkeypatch.chdir(tmp_path)   # no build/ folder here
    out_dir = str(tmp_path / "torch-reports")
    code, out, err = _run(["-q", "bench", "--backend", "torch", "--device", "cpu", "--models", "mobilenetv2",
                           "--size", "64", "--iterations", "3", "--warmup", "1", "--threads", "1",
                           "--out", out_dir, "--no-png"], capsys)
    assert code == 0, err
    report = json.load(open(os.path.join(out_dir, "bench.json")))
    assert report["results"][0]["backend"] == "torch" and report["results"][0]["input_shape"] == [1, 3, 64, 64]
    assert report["results"][0]["macs"] > 0   # scaled from the model card's published GMACs


def test_with_the_real_tensorrt_runner_on_fake_tensorrt(tmp_path, monkeypatch, capsys):
    """engines then bench through deploy.tensorrt.runner, with the team's TensorRT/pycuda fakes."""
    from tests.deploy import pycuda_fakes, trt_fakes

    trt_fakes.install(monkeypatch, trt_fakes.make_fake_trt("8.2"), pycuda_fakes.make_fake_pycuda())
    bundle = trt_fakes.make_bundle(tmp_path / "b", models=("hardnet39ds", "mobilenetv2"))   # 4x4 inputs
    assert pipeline.main(["-q", "engines", bundle.root, "--precision", "fp16"]) == 0
    capsys.readouterr()
    code, out, err = _run(["-q", "bench", bundle.root, "--size", "4", "--iterations", "6", "--no-png"], capsys)
    assert code == 0, err
    report = json.load(open(os.path.join(bundle.root, "reports", "bench.json")))
    assert report["protocol"]["backend"] == "tensorrt" and report["protocol"]["precision"] == "fp16"
    for r in report["results"]:
        assert len(r["latencies_ms"]) == 6 and len(r["compute_latencies_ms"]) == 6
        assert r["compute_ms"]["mean"] >= 0 and r["latency_ms"]["mean"] > 0
    assert "GPU compute ms" in out


@pytest.mark.parametrize("generation", ["8.2", "8.5", "10"])
def test_tensorrt_bench_with_a_batch_on_a_dynamic_batch_engine(tmp_path, monkeypatch, capsys, generation):
    """--batch N reaches the TensorRT runner, which sets it within the engine's profile."""
    from tests.deploy import pycuda_fakes, trt_fakes

    trt = trt_fakes.make_fake_trt(generation)
    trt_fakes.install(monkeypatch, trt, pycuda_fakes.make_fake_pycuda())
    bundle = trt_fakes.make_bundle(tmp_path / "b", dynamic=True)
    assert pipeline.main(["-q", "engines", bundle.root, "--precision", "fp16", "--max-batch", "4"]) == 0
    capsys.readouterr()
    code, _, err = _run(["-q", "bench", bundle.root, "--size", "4", "--batch", "3", "--iterations", "4",
                         "--no-png"], capsys)
    assert code == 0, err
    report = json.load(open(os.path.join(bundle.root, "reports", "bench.json")))
    assert report["results"][0]["input_shape"] == [3, 3, 4, 4]
    code, _, err = _run(["-q", "bench", bundle.root, "--size", "4", "--batch", "5", "--iterations", "4",
                         "--no-png"], capsys)
    assert code == 1 and "batch 5 is outside" in err and "--max-batch 5" in err
