"""The bundle build as a library call: contents, manifest fields, reuse, --force, failure safety."""
from __future__ import annotations

import json
import os

import onnx
import pytest

from deploy.bundle import Bundle
from deploy.errors import ExportError, UsageError
from deploy.targets import get_target
from export import build as build_mod
from export.build import BuildOptions, build_bundle, parse_weights_args
from export.sources import Source

SIZE = 64  # small and fast; MobileNetV2 takes any side


def options(out_dir, **kw) -> BuildOptions:
    base = dict(target=get_target("jetson-nano"), out_dir=str(out_dir), models=("mobilenetv2",), size=SIZE,
                precision="fp16")
    base.update(kw)
    return BuildOptions(**base)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    result = build_bundle(options(out), progress=False)
    return out, result


def test_bundle_files_and_manifest(built):
    out, result = built
    assert [m.name for m in result.models] == ["mobilenetv2"] and not result.models[0].reused
    assert sorted(os.listdir(out)) == ["manifest.json", "models", "smoke"]   # no temporary files left
    assert os.listdir(out / "models") == ["mobilenetv2.onnx"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["target"]["name"] == "jetson-nano" and manifest["target"]["max_opset"] == 13
    assert manifest["precision"] == "fp16"
    assert {"torch", "onnx", "onnxruntime", "onnxsim", "python"} <= set(manifest["tool_versions"])
    rec = manifest["models"]["mobilenetv2"]
    assert rec["onnx"]["path"] == "models/mobilenetv2.onnx" and rec["onnx"]["opset"] == 13
    assert rec["onnx"]["nodes"] < rec["onnx"]["nodes_before_simplify"]
    assert rec["input"] == {"name": "input", "shape": [1, 3, SIZE, SIZE], "dtype": "float32", "dynamic_batch": False}
    assert rec["output"] == {"name": "logits", "shape": [1, 1000]}
    assert rec["preprocessing"]["size"] == SIZE and rec["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert rec["num_classes"] == 1000 and len(rec["labels"]) == 1000
    assert rec["weights"]["random"] is True and rec["weights"]["note"] == "random weights: latency artifacts only"
    assert rec["params"] == 3_504_872
    # conv + linear MACs at 64x64 scale as (64/224)^2 of the ~300M at 224 (a loose, independent check)
    assert 0.8 * 300e6 * (SIZE / 224) ** 2 < rec["macs"] < 1.2 * 300e6 * (SIZE / 224) ** 2
    assert rec["family"] == "mobilenetv2" and rec["published"]["params"] == 3_504_872
    assert rec["bn_folding"]["folded"] == 52 and rec["bn_folding"]["batchnorm_modules_left"] == 0
    assert set(rec["parity"]["stages"]) == {"folded_pytorch", "onnx", "onnx_simplified"}
    assert rec["parity"]["passed"] and all(s["passed"] for s in rec["parity"]["stages"].values())
    assert rec["simplify"]["nodes_after"] == rec["onnx"]["nodes"]
    graph = onnx.load(str(out / "models" / "mobilenetv2.onnx"))
    assert "BatchNormalization" not in {n.op_type for n in graph.graph.node}
    Bundle.open(str(out)).verify()   # every file matches its sha256


def test_rerun_reuses_and_force_rebuilds(built, monkeypatch):
    out, _ = built
    before = (out / "models" / "mobilenetv2.onnx").stat().st_mtime_ns
    again = build_bundle(options(out), progress=False)
    assert again.models[0].reused
    assert (out / "models" / "mobilenetv2.onnx").stat().st_mtime_ns == before
    forced = build_bundle(options(out, force=True), progress=False)
    assert not forced.models[0].reused
    # random weights are seeded: a forced rebuild writes the same ONNX
    assert forced.models[0].record["onnx"]["sha256"] == again.models[0].record["onnx"]["sha256"]


def test_changed_option_is_not_reused(built, tmp_path):
    out, result = built
    other = build_bundle(options(tmp_path, size=96), progress=False)
    assert not other.models[0].reused
    assert other.models[0].record["build"]["key"] != result.models[0].record["build"]["key"]


def test_failure_mid_build_leaves_bundle_intact(built, monkeypatch):
    out, _ = built
    snapshot = {p: (out / p).read_bytes() for p in ("manifest.json", "models/mobilenetv2.onnx")}

    def broken_simplify(in_path, out_path):
        raise ExportError("simulated onnxsim failure")

    monkeypatch.setattr("export.simplify.simplify_onnx", broken_simplify)
    with pytest.raises(ExportError, match="simulated"):
        build_bundle(options(out, force=True), progress=False)
    assert {p: (out / p).read_bytes() for p in snapshot} == snapshot
    assert sorted(os.listdir(out)) == ["manifest.json", "models", "smoke"]


def test_dynamic_batch_build(tmp_path):
    result = build_bundle(options(tmp_path, dynamic_batch=True, models=("hardnet39ds",)), progress=False)
    rec = result.models[0].record
    assert rec["input"]["dynamic_batch"] is True
    assert rec["parity"]["inputs"]["shape"][0] == 2   # parity exercises a batch other than the export's
    graph = onnx.load(str(tmp_path / "models" / "hardnet39ds.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_user_model(tmp_path, monkeypatch):
    pkg = tmp_path / "usernets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tiny.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(8, 5))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    result = build_bundle(options(out, models=(), user_model="usernets.tiny:build", size=32), progress=False)
    rec = result.models[0].record
    assert result.models[0].name == "usernets.tiny.build"
    assert rec["onnx"]["path"] == "models/usernets.tiny.build.onnx" and rec["num_classes"] == 5
    assert rec["family"] == "user" and rec["labels"] is None and rec["bn_folding"]["folded"] == 1


def test_parse_weights_args():
    assert parse_weights_args(["a=x.pth"], ["a", "b"]) == {"a": "x.pth"}
    assert parse_weights_args(["x.pth"], ["a"]) == {"a": "x.pth"}
    with pytest.raises(UsageError, match="no model name"):
        parse_weights_args(["x.pth"], ["a", "b"])
    with pytest.raises(UsageError, match="not one of the models"):
        parse_weights_args(["c=x.pth"], ["a", "b"])


def test_cache_key_depends_on_inputs():
    target = get_target("jetson-nano")
    source = Source(name="m", card=None, weights_path=None, weights_sha256=None, code_hash=None,
                    load=lambda: None)
    versions = {"torch": "1"}
    base = build_mod.cache_key(source, options("o", target=target), versions)
    assert base == build_mod.cache_key(source, options("elsewhere", target=target), versions)
    assert base != build_mod.cache_key(source, options("o", size=96), versions)
    assert base != build_mod.cache_key(source, options("o", dynamic_batch=True), versions)
    assert base != build_mod.cache_key(source, options("o", num_classes=10), versions)
    assert base != build_mod.cache_key(source, options("o"), {"torch": "2"})
    assert base != build_mod.cache_key(source, options("o", target=get_target("cpu")), versions)


def test_stage_breaking_parity_fails_the_build(built, monkeypatch):
    from deploy.errors import ParityError
    from export import simplify

    out, _ = built
    snapshot = {p: (out / p).read_bytes() for p in ("manifest.json", "models/mobilenetv2.onnx")}
    real = simplify.simplify_onnx

    def sabotaged(in_path, out_path):   # simplifies, then scales the classifier: numbers change
        record = real(in_path, out_path)
        model = onnx.load(out_path)
        for init in model.graph.initializer:
            if len(init.dims) == 2:
                array = onnx.numpy_helper.to_array(init) * 2.0
                init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
        onnx.save(model, out_path)
        return record

    monkeypatch.setattr(simplify, "simplify_onnx", sabotaged)
    with pytest.raises(ParityError) as info:
        build_bundle(options(out, force=True), progress=False)
    assert "mobilenetv2: stage 'simplified ONNX (ONNX Runtime)' breaks parity" in str(info.value)
    assert {p: (out / p).read_bytes() for p in snapshot} == snapshot


def test_library_refuses_an_unwritable_output_folder_before_any_work(tmp_path):
    from deploy.errors import PipelineError
    from export.build import check_output_dir

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PipelineError, match="output folder .* cannot be written"):
        check_output_dir(str(blocker / "out"))
    assert os.listdir(tmp_path) == ["file"]   # nothing was created
