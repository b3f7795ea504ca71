"""ONNX export, graph checks (opset, no BatchNormalization, TensorRT 8.2 allow-list) and onnxsim."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from deploy.errors import ExportError
from deploy.targets import get_target
from export.fold_bn import fold_batchnorm
from export.onnx_export import export_onnx
from export.opset_check import TENSORRT_8_2_OPS, allowed_ops_for, check_graph, op_histogram
from export.simplify import simplify_onnx


def small_net(classes: int = 7) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(8, classes),
    ).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folded, _ = fold_batchnorm(small_net())
    path = str(tmp_path_factory.mktemp("onnx") / "net.onnx")
    return folded, export_onnx(folded, path, input_shape=(1, 3, 32, 32), opset=13)


def test_export_names_opset_no_batchnorm(exported):
    _, record = exported
    model = onnx.load(record.path)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert record.input_shape == [1, 3, 32, 32] and record.output_shape == [1, 7]
    assert record.opset == 13
    ops = check_graph(model, opset=13, allowed=TENSORRT_8_2_OPS, label="net")
    assert "BatchNormalization" not in ops and ops["Conv"] == 2
    assert record.ops == op_histogram(model)
    assert record.sha256 and len(record.sha256) == 64


def test_batchnorm_left_in_graph_is_caught(tmp_path):
    # A BatchNorm after an activation cannot be folded; kept as is, it reaches the graph.
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(1)).eval()
    kept, report = fold_batchnorm(net, standalone="keep")
    assert [item.bn for item in report.left] == ["2"]
    record = export_onnx(kept, str(tmp_path / "raw.onnx"), input_shape=(1, 3, 8, 8), opset=13)
    with pytest.raises(ExportError, match="BatchNormalization"):
        check_graph(onnx.load(record.path), opset=13, allowed=TENSORRT_8_2_OPS, label="raw")
    bn_graph = helper.make_model(
        helper.make_graph(
            [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
            [helper.make_tensor(n, onnx.TensorProto.FLOAT, [2], [1.0, 1.0]) for n in "sbmv"]),
        opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ExportError, match="BatchNormalization"):
        check_graph(bn_graph, opset=13, allowed=TENSORRT_8_2_OPS, label="bn")


def _graph_with(op: str, opset: int = 13):
    node = helper.make_node(op, ["x", "y"] if op == "Mod" else ["x"], ["z"])
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.INT32, [4])]
    if op == "Mod":
        inputs.append(helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [4]))
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("z", onnx.TensorProto.INT32, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_allow_list_names_the_offending_ops():
    model = _graph_with("Mod")
    with pytest.raises(ExportError) as info:
        check_graph(model, opset=13, allowed=TENSORRT_8_2_OPS, label="m")
    assert "Mod" in str(info.value) and "TensorRT 8.2" in str(info.value)
    check_graph(_graph_with("Abs"), opset=13, allowed=TENSORRT_8_2_OPS, label="ok")  # allowed op passes


def test_opset_mismatch_is_caught():
    with pytest.raises(ExportError, match="opset 12"):
        check_graph(_graph_with("Abs", opset=12), opset=13, allowed=None, label="m")


def test_allow_list_follows_the_target():
    allowed, strict = allowed_ops_for(get_target("jetson-nano"))
    assert allowed is TENSORRT_8_2_OPS and strict
    assert "NonZero" not in allowed and "Conv" in allowed
    assert allowed_ops_for(get_target("cpu")) == (None, False)


def test_dynamic_batch_runs_any_batch(tmp_path):
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

    folded, _ = fold_batchnorm(small_net())
    record = export_onnx(folded, str(tmp_path / "dyn.onnx"), input_shape=(1, 3, 32, 32), opset=13,
                         dynamic_batch=True)
    assert record.dynamic_batch and record.input_shape[0] == "batch"
    simplified = simplify_onnx(record.path, str(tmp_path / "dyn.sim.onnx"))
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with OnnxRuntimeRunner(simplified.path) as runner:
        out = runner.infer({"input": x})["logits"]
    with torch.no_grad():
        ref = folded(torch.from_numpy(x)).numpy()
    assert out.shape == (3, 7)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_simplify_reduces_and_checks(exported, tmp_path):
    _, record = exported
    out = simplify_onnx(record.path, str(tmp_path / "sim.onnx"))
    assert out.nodes_before == record.nodes and 0 < out.nodes_after <= out.nodes_before
    assert out.opset == 13
    onnx.checker.check_model(out.path, full_check=True)


class Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("this forward cannot run")


def test_failed_export_leaves_no_file_and_keeps_old_one(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous good file")
    with pytest.raises(ExportError, match="torch.onnx.export failed"):
        export_onnx(Broken(), str(path), input_shape=(1, 3, 8, 8))
    assert path.read_bytes() == b"previous good file"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]
