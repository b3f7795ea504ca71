"""The OpenVINO runner asks for the precision it is given and reports the one OpenVINO compiled.

The logic runs against a fake ``openvino`` (tests/deploy/openvino_fakes.py, which cites what it
models); one test runs the real library on a tiny model when it is installed."""
import logging
import sys

import numpy as np
import pytest

from deploy.errors import BackendUnavailableError, UsageError
from deploy.runners.openvino_runner import OpenVinoRunner
from tests.deploy.openvino_fakes import make_openvino


@pytest.fixture
def fake_openvino(monkeypatch):
    def install(has_bf16=True):
        module = make_openvino(has_bf16=has_bf16)
        monkeypatch.setitem(sys.modules, "openvino", module)
        return module
    return install


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"onnx")
    int8 = tmp_path / "m.int8.onnx"
    int8.write_bytes(b"onnx")
    return str(path), str(int8)


@pytest.mark.parametrize("precision, hint", [("fp32", "f32"), ("bf16", "bf16"), ("int8", "f32")])
def test_the_hint_matches_the_precision_and_what_ran_is_read_back(fake_openvino, model_file, precision, hint):
    ov = fake_openvino(has_bf16=True)
    path = model_file[1] if precision == "int8" else model_file[0]
    with OpenVinoRunner(path, threads=2, precision=precision) as runner:
        assert ov.compiled[-1].config == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint,
                                          "INFERENCE_NUM_THREADS": 2}
        assert runner.precision_ran == precision
        settings = runner.describe()
        out = runner.infer({"input": np.ones((1, 3, 32, 32), np.float32)})
    assert settings["inference_precision_hint"] == hint and settings["precision_requested"] == precision
    assert settings["convolutions"] == {"u8" if precision == "int8" else hint: 3}
    assert list(out) == ["logits"]


def test_without_a_hint_openvino_runs_bf16_on_a_bf16_cpu_and_the_runner_says_so(fake_openvino, model_file):
    """The mislabel this fixes: the old runner set no hint and reported an FP32 run."""
    fake_openvino(has_bf16=True)
    with OpenVinoRunner(model_file[0], precision="fp32", set_precision_hint=False) as runner:
        assert runner.precision_ran == "bf16"
        assert runner.describe()["inference_precision"] == "bf16"
    fake_openvino(has_bf16=False)
    with OpenVinoRunner(model_file[0], precision="fp32", set_precision_hint=False) as runner:
        assert runner.precision_ran == "fp32"


def test_a_compiled_precision_other_than_asked_is_logged(fake_openvino, model_file, caplog):
    fake_openvino(has_bf16=True)
    with caplog.at_level(logging.WARNING, logger="deploy.runners.openvino_runner"):
        with OpenVinoRunner(model_file[1], precision="fp32") as runner:   # a QDQ file asked to run fp32
            assert runner.precision_ran == "int8"
    assert "asked for fp32 but compiled int8" in caplog.text


def test_unknown_precision_and_missing_library(monkeypatch, model_file):
    with pytest.raises(UsageError, match="not fp16"):
        OpenVinoRunner(model_file[0], precision="fp16")
    monkeypatch.setitem(sys.modules, "openvino", None)      # import fails, as when not installed
    with pytest.raises(BackendUnavailableError, match="openvino is not installed") as info:
        OpenVinoRunner(model_file[0]).activate()
    assert "pip install openvino" in info.value.hint


def test_the_real_openvino_reports_the_precision_it_compiled(tmp_path):
    pytest.importorskip("openvino", reason="openvino not installed: the optional CPU backend")
    pytest.importorskip("onnx", reason="onnx not installed: the tiny model is built with onnx.helper")
    from deploy.cpu_isa import local_cpu_isa
    from tests.deploy.bench_tiny import tiny_cnn

    path = tiny_cnn(tmp_path / "tiny.onnx")
    x = np.random.RandomState(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with OpenVinoRunner(path, precision="fp32") as runner:
        assert runner.precision_ran == "fp32" and runner.describe()["convolutions"].get("f32", 0) >= 3
        fp32 = runner.infer({"input": x})["logits"]
    if not local_cpu_isa().bf16_dot:
        pytest.skip("this CPU has no AVX512_BF16/AMX-BF16: the bf16 half of the test needs one")
    with OpenVinoRunner(path, precision="bf16") as runner:
        assert runner.precision_ran == "bf16"
        bf16 = runner.infer({"input": x})["logits"]
    assert np.allclose(bf16, fp32, rtol=0.05, atol=0.05) and not np.array_equal(bf16, fp32)
