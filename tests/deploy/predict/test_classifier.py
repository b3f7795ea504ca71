"""deploy.predict.classifier: open_classifier over a tiny bundle on ONNX Runtime (no torch, no TensorRT)."""
import logging

import numpy as np
import pytest

from deploy import open_classifier
from deploy.bench import protocol as bench
from deploy.errors import BundleError, PipelineError, UsageError
from deploy.predict.classifier import Classifier
from deploy.preprocess import ImageError
from tests.deploy.predict_helpers import LABELS, classifier_bundle, photo, write_photo

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


@pytest.fixture
def bundle(tmp_path):
    return classifier_bundle(str(tmp_path / "bundle"))


def test_classify_path_pil_and_array_give_the_same_top_k(bundle, tmp_path):
    from PIL import Image

    path = write_photo(tmp_path / "a.png", 64, 48, seed=4)   # PNG: lossless, so all three see the same pixels
    with open_classifier(bundle, "hardnet39ds", decoder="pillow") as clf:
        assert clf.backend == "onnxruntime" and clf.fallback_reason   # no TensorRT here
        from_path = clf.classify(path, topk=3)
        from_pil = clf.classify(Image.open(path), topk=3)
        from_array = clf.classify(np.asarray(Image.open(path).convert("RGB")), topk=3)
    assert from_path == from_pil == from_array
    assert len(from_path) == 3 and all(label in LABELS for label, _ in from_path)
    probs = [p for _, p in from_path]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-9


def test_probabilities_are_the_softmax_of_the_reference_logits(bundle, tmp_path):
    from deploy.predict.decode import reference_tensor
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

    path = write_photo(tmp_path / "b.jpg", 96, 80, seed=5)
    with open_classifier(bundle, decoder="reference") as clf:
        top = clf.classify(path, topk=5)
        cfg = clf.cfg
    with OnnxRuntimeRunner(bundle + "/models/hardnet39ds.onnx", pad_channels=False, split_concats=False) as runner:
        logits = runner.infer({"input": reference_tensor(path, cfg)[None]})["logits"][0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    assert [label for label, _ in top] == [LABELS[i] for i in order]
    np.testing.assert_allclose([p for _, p in top], probs[order], rtol=1e-4, atol=1e-6)


def test_batch_equals_one_by_one_and_timing_adds_up(bundle, tmp_path):
    paths = [write_photo(tmp_path / "{}.jpg".format(i), 80, 60, seed=i) for i in range(3)]
    with open_classifier(bundle) as clf:
        single = [clf.classify(p, topk=2) for p in paths]
        batch = clf.classify_batch(paths, topk=2)
        prediction = clf.predict(paths[0])
    assert [[label for label, _ in t] for t in batch] == [[label for label, _ in t] for t in single]
    timing = prediction.timing
    parts = timing.decode_ms + timing.preprocess_ms + timing.network_ms + timing.postprocess_ms
    assert all(v >= 0 for v in timing) and abs(parts - timing.total_ms) < 0.05


def test_labels_fall_back_to_class_indices(tmp_path):
    root = classifier_bundle(str(tmp_path / "b"), labels=False)
    with open_classifier(root) as clf:
        top = clf.classify(photo(40, 40), topk=5)
    assert sorted(label for label, _ in top) == ["0", "1", "2", "3", "4"]


def test_random_weights_warn(tmp_path, caplog):
    root = classifier_bundle(str(tmp_path / "b"), random=True)
    with caplog.at_level(logging.WARNING):
        with open_classifier(root) as clf:
            assert clf.random_weights
    assert "RANDOM weights" in caplog.text


def test_bad_inputs_are_one_line_errors(bundle, tmp_path):
    with open_classifier(bundle) as clf:
        with pytest.raises(ImageError, match="uint8"):
            clf.classify(np.zeros((40, 40, 3), dtype=np.float32))
        with pytest.raises(ImageError, match="cannot classify a int"):
            clf.classify(3)
        with pytest.raises(ImageError, match="cannot read image"):
            clf.classify(str(tmp_path / "missing.jpg"))
        with pytest.raises(UsageError, match="topk"):
            clf.classify(photo(40, 40), topk=0)
    with pytest.raises(PipelineError, match="not open"):
        clf.classify(photo(40, 40))


def test_model_choice_is_checked(tmp_path):
    root = classifier_bundle(str(tmp_path / "two"), names=("hardnet39ds", "mobilenetv2"))
    with pytest.raises(UsageError, match="2 models: name one"):
        Classifier(root)
    with pytest.raises(BundleError, match="'resnet' is not in bundle"):
        Classifier(root, "resnet")
    with pytest.raises(UsageError, match="unknown backend"):
        Classifier(root, "mobilenetv2", backend="cuda")
    with pytest.raises(BundleError, match="no uint8-input graph"):
        Classifier(root, "mobilenetv2", input_kind="uint8")


def test_a_changed_model_file_is_refused(bundle):
    with open(bundle + "/models/hardnet39ds.onnx", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(BundleError, match="does not match the manifest"):
        Classifier(bundle)


def test_auto_uses_onnxruntime_when_tensorrt_has_no_current_engine(bundle, monkeypatch):
    """TensorRT importable but no engine built for this device: auto falls back and says why."""
    import deploy.tensorrt.engine_files

    monkeypatch.setattr(bench, "import_problem", lambda backend: None)

    def no_engine(bundle, name, precision):
        raise BundleError("no {} engine of {} for this device".format(precision, name), hint="run engines")

    monkeypatch.setattr(deploy.tensorrt.engine_files, "find_engine", no_engine)
    clf = Classifier(bundle, backend="auto")
    assert clf.backend == "onnxruntime" and "no current TensorRT engine" in clf.fallback_reason


def test_auto_picks_tensorrt_when_a_current_engine_exists(bundle, monkeypatch):
    import deploy.tensorrt.engine_files

    monkeypatch.setattr(bench, "import_problem", lambda backend: None)
    monkeypatch.setattr(deploy.tensorrt.engine_files, "find_engine", lambda bundle, name, precision: "engines/x.engine")
    clf = Classifier(bundle, backend="auto")
    assert clf.backend == "tensorrt" and clf.model_path.endswith("engines/x.engine")


def test_a_fixed_batch_of_two_is_filled_and_trimmed(tmp_path):
    """A model exported with batch 2: one image is repeated to fill it, three run as two batches."""
    import json

    from tests.deploy.bench_tiny import tiny_cnn

    root = classifier_bundle(str(tmp_path / "b2"))
    model_path = str(tmp_path / "b2" / "models" / "hardnet39ds.onnx")
    tiny_cnn(model_path, size=32)
    import onnx

    model = onnx.load(model_path)
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 2
    onnx.save(model, model_path)
    from deploy.atomic import sha256_file

    manifest = json.load(open(root + "/manifest.json"))
    record = manifest["models"]["hardnet39ds"]
    record["input"]["shape"][0] = 2
    record["onnx"]["sha256"] = sha256_file(model_path)
    json.dump(manifest, open(root + "/manifest.json", "w"))
    images = [photo(50, 40, seed=i) for i in range(3)]
    with open_classifier(root, decoder="pillow") as clf:
        one_by_one = [clf.classify(image) for image in images]
        assert clf.classify_batch(images) == one_by_one


def test_a_manifest_without_preprocessing_is_refused(tmp_path):
    from tests.deploy.bench_tiny import tiny_bundle

    root = tiny_bundle(str(tmp_path / "old"), names=("hardnet39ds",))
    with pytest.raises(BundleError, match="no preprocessing in the manifest"):
        Classifier(root)
