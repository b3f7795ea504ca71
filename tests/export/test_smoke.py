"""The smoke model in every bundle: the kinds of layers the real models use, at the target's opset,
and a host reference (torch, float64) that ONNX Runtime reproduces within the FP32 tolerance."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deploy.atomic import sha256_file
from deploy.bundle import Bundle
from deploy.device.smoke import SMOKE_TOLERANCES
from export.smoke import write_smoke


@pytest.fixture
def bundle(tmp_path):
    return Bundle.new(str(tmp_path / "b"), {"name": "jetson-nano"})


@pytest.mark.parametrize("opset", [11, 13])
def test_graph_has_the_real_models_layer_kinds_at_the_opset(bundle, opset):
    record = write_smoke(bundle, opset)
    model = onnx.load(bundle.path(record["onnx"]["path"]))
    assert model.opset_import[0].version == opset == record["opset"]
    ops = [n.op_type for n in model.graph.node]
    assert {"Conv", "Relu", "Clip", "Concat", "GlobalAveragePool", "Gemm"} <= set(ops)
    depthwise = [n for n in model.graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert len(depthwise) == 1


def test_every_file_carries_its_sha256_inside_the_bundle(bundle):
    record = write_smoke(bundle, 13)
    for key in ("onnx", "input", "reference"):
        assert not record[key]["path"].startswith(("/", ".."))
        assert sha256_file(bundle.path(record[key]["path"])) == record[key]["sha256"]


def test_onnxruntime_reproduces_the_torch_reference(bundle):
    record = write_smoke(bundle, 13)
    x = np.load(bundle.path(record["input"]["path"]))
    reference = np.load(bundle.path(record["reference"]["path"]))
    out = ort.InferenceSession(bundle.path(record["onnx"]["path"]),
                               providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    tol = SMOKE_TOLERANCES["fp32"]
    assert out.shape == reference.shape == (1, 10)
    np.testing.assert_allclose(out, reference, atol=tol["atol"], rtol=tol["rtol"])
    assert np.abs(out - reference).max() < 1e-4          # far inside: the tolerance is for TF32/FP16
    assert np.abs(reference).max() > 0.1                 # not a degenerate all-zero network


def test_seeded_so_a_rebuild_gives_the_same_files(bundle, tmp_path):
    first = write_smoke(bundle, 13)
    second = write_smoke(Bundle.new(str(tmp_path / "c"), {"name": "jetson-nano"}), 13)
    assert [first[k]["sha256"] for k in ("onnx", "input", "reference")] == \
           [second[k]["sha256"] for k in ("onnx", "input", "reference")]
