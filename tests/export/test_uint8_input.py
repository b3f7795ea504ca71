"""build --input uint8: the uint8 NHWC graph, its parity check, and predict/verify using it."""
import numpy as np
import pytest

from deploy.bundle import Bundle
from deploy.errors import ParityError
from deploy.predict.classifier import open_classifier
from deploy.runners.contract import RunnerError
from export.uint8_input import add_uint8_input, check_uint8_parity, ensure_uint8_model
from tests.deploy.predict_helpers import classifier_bundle, photo, write_photo

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


@pytest.fixture
def bundle(tmp_path):
    return Bundle.open(classifier_bundle(str(tmp_path / "bundle")))


def test_uint8_graph_is_written_with_passed_parity_and_reused(bundle, caplog):
    import logging

    entry = ensure_uint8_model(bundle, "hardnet39ds")
    assert entry["path"] == "models/hardnet39ds.uint8.onnx"
    assert entry["input"] == {"name": "image", "shape": [1, 32, 32, 3], "dtype": "uint8", "layout": "NHWC RGB",
                              "resized": True, "dynamic_batch": False}
    assert entry["parity"]["passed"] and entry["parity"]["cosine"] > 0.99999
    bundle.verify_file(entry["path"], entry["sha256"])
    assert Bundle.open(bundle.root).model("hardnet39ds")["uint8_onnx"]["sha256"] == entry["sha256"]   # saved
    with caplog.at_level(logging.INFO):
        assert ensure_uint8_model(bundle, "hardnet39ds") == entry
    assert "reusing" in caplog.text


def test_predict_uses_the_uint8_graph_and_agrees_with_the_float_path(bundle, tmp_path):
    ensure_uint8_model(bundle, "hardnet39ds")
    paths = [write_photo(tmp_path / "{}.jpg".format(i), 90, 70, seed=i) for i in range(4)]
    with open_classifier(bundle.root, decoder="pillow") as u8, \
            open_classifier(bundle.root, decoder="pillow", input_kind="float32") as f32:
        assert u8.input_kind == "uint8" and f32.input_kind == "float32"
        for path in paths:
            np.testing.assert_allclose(u8.logits(path), f32.logits(path), rtol=1e-4, atol=1e-5)
        # the runner refuses a float array fed to the uint8 graph, in one line naming the fix
        with pytest.raises(RunnerError, match="dtype float32, the model takes uint8"):
            u8._runner.infer({"image": np.zeros((1, 32, 32, 3), dtype=np.float32)})


def test_parity_catches_a_wrong_normalisation(bundle, tmp_path):
    import onnx

    from deploy.preprocess import config_from_dict

    record = bundle.model("hardnet39ds")
    cfg = config_from_dict(record["preprocessing"])
    float_path = bundle.path(record["onnx"]["path"])
    wrong = add_uint8_input(onnx.load(float_path), mean=(0.5, 0.5, 0.5), std=cfg.std)
    path = str(tmp_path / "wrong.onnx")
    onnx.save(wrong, path)
    with pytest.raises(ParityError, match="uint8-input graph differs"):
        check_uint8_parity(float_path, path, cfg, 1, "hardnet39ds", "input")


def test_float_only_bundle_refuses_uint8_input(bundle):
    with pytest.raises(Exception, match="no uint8-input graph"):
        open_classifier(bundle.root, input_kind="uint8")


def test_verify_reports_the_fast_rows(bundle, tmp_path):
    from deploy.verify import verify_bundle

    ensure_uint8_model(bundle, "hardnet39ds")
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        write_photo(folder / "{}.jpg".format(i), 200, 120, seed=i)
    report = verify_bundle(bundle, images_dir=str(folder), count=4, progress=False)
    rows = {r["stage"]: r for r in report["models"]["hardnet39ds"]["stages"]}
    for name in ("onnx-fp32-fastpre", "onnx-uint8-fastpre"):
        assert rows[name]["images"] == 4 and rows[name]["cosine_min"] > 0.99
    # the uint8 graph on the fast path's pixels is the float model on the same pixels
    assert abs(rows["onnx-uint8-fastpre"]["cosine_mean"] - rows["onnx-fp32-fastpre"]["cosine_mean"]) < 1e-5


def test_build_input_uint8_with_a_dynamic_batch(tmp_path):
    import onnx

    from export.build import build_bundle
    from tests.export.test_build import options

    result = build_bundle(options(tmp_path, dynamic_batch=True, models=("hardnet39ds",), input_kind="uint8"),
                          progress=False)
    entry = result.models[0].record["uint8_onnx"]
    assert entry["parity"]["passed"] and entry["input"]["shape"] == [1, 64, 64, 3] and entry["input"]["dynamic_batch"]
    graph = onnx.load(str(tmp_path / entry["path"])).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 64, 64, 3]
    with open_classifier(str(tmp_path), decoder="pillow") as clf:   # a batch of 3 through the dynamic uint8 graph
        assert clf.input_kind == "uint8" and len(clf.classify_batch([photo(80, 60, seed=i) for i in range(3)])) == 3


def test_the_uint8_prologue_keeps_the_nchwc_channel_padding(bundle):
    """ONNX Runtime's channel padding (deploy/runners/ort_channel_pad.py) must not give up on the
    Cast/Transpose/Mul/Add in front: without it HarDNet39DS ran ~25 % slower on the uint8 graph."""
    import onnx
    import onnxruntime as ort

    from deploy.runners.ort_channel_pad import pad_channels

    record = bundle.model("hardnet39ds")
    model = add_uint8_input(onnx.load(bundle.path(record["onnx"]["path"])), (0.485, 0.456, 0.406),
                            (0.229, 0.224, 0.225))
    padded = pad_channels(model, 16)
    assert padded is not None
    image = np.random.RandomState(0).randint(0, 256, size=(1, 32, 32, 3)).astype(np.uint8)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"image": image})[0]

    np.testing.assert_allclose(run(padded), run(model), rtol=1e-5, atol=1e-6)
    # a graph that already takes NHWC images is refused rather than wrapped twice
    with pytest.raises(ParityError, match=r"needs an \(N, 3, H, W\) input"):
        add_uint8_input(model, (0.5,) * 3, (0.5,) * 3, input_name="again")
