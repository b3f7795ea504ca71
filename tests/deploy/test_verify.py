"""verify: every stage against the FP32 reference, on labelled, unlabelled and generic images."""
import json
import os
import shutil
import sys

import numpy as np
import pytest

if sys.version_info < (3, 10):   # every case here exports its bundle with the host's build first
    pytest.skip("needs the host's build (Python 3.10+, torch) to make its bundles", allow_module_level=True)
import pipeline  # noqa: E402
from calibration.images import generic_verify_images  # noqa: E402
from calibration.torch_stages import torch_stages  # noqa: E402
from deploy.bundle import Bundle  # noqa: E402
from deploy.verify import REPORT_JSON, REPORT_MD, compare, cosine, label_index, text_report, verify_bundle  # noqa: E402
from tests.calibration.helpers import export_tiny_bundle, write_images  # noqa: E402

NAME = "mobilenetv2"



def verify_on_host(bundle, **kwargs):
    """verify_bundle with the host's parts, as pipeline.py passes them."""
    return verify_bundle(bundle, make_torch_stages=torch_stages, generic_images=generic_verify_images, **kwargs)

@pytest.fixture(scope="module")
def bundle_template(tmp_path_factory):
    """A bundle with a checkpoint, calibration data and an INT8 model."""
    from calibration.stage import calibrate_bundle

    folder = tmp_path_factory.mktemp("verify")
    bundle, _ = export_tiny_bundle(folder / "bundle", weights_path=folder / "weights.pt")
    write_images(folder / "calib", 8, seed=5)
    calibrate_bundle(bundle, [NAME], images_dir=str(folder / "calib"), count=8, make_int8_onnx=True,
                     progress=False)
    return folder / "bundle"


@pytest.fixture
def bundle(bundle_template, tmp_path):
    dest = tmp_path / "bundle"
    shutil.copytree(str(bundle_template), str(dest))
    return Bundle.open(str(dest))


@pytest.fixture
def labelled(tmp_path):
    root = tmp_path / "heldout"
    for cls in range(3):
        write_images(root / str(cls), 3, seed=10 + cls)
    return root


def stages_by_name(model_report):
    return {row["stage"]: row for row in model_report["stages"]}


def test_labelled_folder_runs_every_stage(bundle, labelled):
    report = verify_on_host(bundle, images_dir=str(labelled), count=50, progress=False)
    model = report["models"][NAME]
    assert model["reference"] == "pytorch" and model["images"] == 9 and model["labelled_images"] == 9
    rows = stages_by_name(model)
    assert list(rows) == ["pytorch", "pytorch-bn-folded", "onnx-fp32", "onnx-int8", "onnx-fp32-fastpre"]
    # predict's fast preprocessing (deploy.predict.decode) on the FP32 model, against the reference preprocessing
    assert rows["onnx-fp32-fastpre"]["cosine_mean"] > 0.99 and rows["onnx-fp32-fastpre"]["images"] == 9
    for name in ("pytorch-bn-folded", "onnx-fp32"):
        assert rows[name]["top1_agreement"] == 1.0 and rows[name]["cosine_min"] > 0.9999
    assert 0.0 <= rows["onnx-int8"]["top1_agreement"] <= 1.0 and rows["onnx-int8"]["cosine_mean"] > 0.5
    for row in rows.values():
        assert row["accuracy"] is not None
    # accuracy of the reference is its agreement with the folder labels, computed independently
    assert rows["pytorch"]["accuracy"] in [k / 9.0 for k in range(10)]
    with open(bundle.path(REPORT_JSON)) as handle:
        assert json.load(handle)["models"][NAME]["stages"][0]["stage"] == "pytorch"
    with open(bundle.path(REPORT_MD)) as handle:
        assert "| onnx-int8 |" in handle.read()
    record = Bundle.open(bundle.root).model(NAME)
    assert record["fidelity"]["stages"]["onnx-fp32"]["top1_agreement"] == 1.0
    assert "onnx-int8" in text_report(report)


def test_openvino_stages_name_the_precision_they_ran(bundle, labelled):
    pytest.importorskip("openvino", reason="openvino not installed: the optional CPU backend (verify --openvino)")
    from deploy.cpu_isa import local_cpu_isa

    report = verify_on_host(bundle, images_dir=str(labelled), count=9, progress=False, openvino=True)
    model = report["models"][NAME]
    rows = stages_by_name(model)
    bf16 = local_cpu_isa().bf16_dot is not None
    assert [s for s in rows if s.startswith("openvino")] == (
        ["openvino-fp32"] + (["openvino-bf16"] if bf16 else []) + ["openvino-int8"])
    assert rows["openvino-fp32"]["precision"] == "fp32" and rows["openvino-fp32"]["cosine_min"] > 0.9999
    assert rows["openvino-int8"]["precision"] == "int8"
    if bf16:
        assert rows["openvino-bf16"]["precision"] == "bf16" and rows["openvino-bf16"]["cosine_min"] > 0.99
    else:
        assert any("openvino-bf16 skipped" in note for note in model["notes"])


def test_verify_openvino_without_openvino_says_so(bundle, labelled, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    report = verify_on_host(bundle, images_dir=str(labelled), count=2, progress=False, openvino=True)
    model = report["models"][NAME]
    assert not [s for s in stages_by_name(model) if s.startswith("openvino")]
    assert any("OpenVINO stages skipped: openvino is not installed" in note for note in model["notes"])


def test_random_weights_use_the_onnx_model_as_reference(tmp_path):
    bundle, _ = export_tiny_bundle(tmp_path / "bundle")
    write_images(tmp_path / "imgs", 3)
    report = verify_on_host(bundle, images_dir=str(tmp_path / "imgs"), count=3, progress=False)
    model = report["models"][NAME]
    assert model["reference"] == "onnx-fp32"
    assert any("random" in note for note in model["notes"])
    assert model["labelled_images"] == 0 and stages_by_name(model)["onnx-fp32"]["accuracy"] is None


def test_without_torch_the_onnx_model_is_the_reference(bundle, labelled):
    report = verify_bundle(bundle, images_dir=str(labelled), count=4, progress=False)   # as on the Jetson: no host parts
    model = report["models"][NAME]
    assert model["reference"] == "onnx-fp32" and list(stages_by_name(model)) == ["onnx-fp32", "onnx-int8",
                                                                                             "onnx-fp32-fastpre"]
    assert any("torch or the model zoo is not available" in note for note in model["notes"])
    assert any("reference is onnx-fp32" in note for note in model["notes"])


def test_generic_images_give_agreement_only(bundle):
    report = verify_on_host(bundle, count=4, progress=False)
    assert report["images"]["generic"] is True
    model = report["models"][NAME]
    assert model["images"] == 4 and all(row["accuracy"] is None for row in model["stages"])


def test_folder_names_that_are_not_classes_are_noted(bundle, tmp_path):
    write_images(tmp_path / "imgs" / "cats", 2)
    report = verify_on_host(bundle, images_dir=str(tmp_path / "imgs"), progress=False)
    assert any("accuracy not computed" in note for note in report["models"][NAME]["notes"])


def test_cli_verify(bundle, labelled, capsys):
    assert pipeline.main(["-q", "verify", bundle.root, "--images", str(labelled), "--count", "4"]) == 0
    out = capsys.readouterr().out
    assert "pytorch-bn-folded" in out and "wrote" in out
    assert os.path.isfile(bundle.path(REPORT_MD))


def test_cli_verify_errors(bundle, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert pipeline.main(["-q", "verify", bundle.root, "--images", str(tmp_path / "empty")]) == 1
    assert "no JPEG/PNG images" in capsys.readouterr().err
    assert pipeline.main(["-q", "verify", str(tmp_path / "nowhere")]) == 1
    assert pipeline.main(["-q", "verify", bundle.root, "--count", "0"]) == 2
    assert pipeline.main(["-q", "verify", bundle.root, "--model", "nope"]) == 2   # as bench --models
    assert not os.path.exists(bundle.path(REPORT_JSON))


def test_tampered_bundle_is_refused(bundle, labelled, capsys):
    with open(bundle.path("models/mobilenetv2.int8.onnx"), "ab") as handle:
        handle.write(b"x")
    assert pipeline.main(["-q", "verify", bundle.root, "--images", str(labelled)]) == 1
    assert "does not match the manifest" in capsys.readouterr().err


def test_a_stage_that_cannot_load_is_reported_not_fatal(bundle, labelled):
    from deploy.atomic import sha256_file

    path = bundle.path("models/mobilenetv2.int8.onnx")
    with open(path, "wb") as handle:
        handle.write(b"not an onnx model")
    bundle.model(NAME)["int8_onnx"]["sha256"] = sha256_file(path)
    bundle.save()
    report = verify_on_host(bundle, images_dir=str(labelled), count=3, progress=False)
    rows = stages_by_name(report["models"][NAME])
    assert "error" in rows["onnx-int8"] and rows["onnx-fp32"]["top1_agreement"] == 1.0
    assert "error:" in text_report(report)


def test_metrics():
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    other = np.array([[1.0, 0.1, 0.0], [3.0, 2.0, 0.0], [0.0, 0.0, -3.0]])
    assert np.allclose(cosine(ref, ref), 1.0)
    out = compare(ref, other, [0, 1, None])
    assert out["top1_agreement"] == pytest.approx(1 / 3.0) and out["disagreements"] == 2
    assert out["cosine_min"] == pytest.approx(-1.0) and out["labelled_images"] == 2
    assert out["accuracy"] == pytest.approx(0.5)
    assert compare(ref, ref, [None] * 3)["accuracy"] is None


def test_label_index():
    assert label_index("7", None, 10) == 7
    assert label_index("12", None, 10) is None
    assert label_index("cat", ["dog", "cat"], 2) == 1
    assert label_index("cat", None, 2) is None
    assert label_index(None, None, 10) is None


def test_cli_count_default_is_the_library_default():
    # pipeline.py cannot import deploy.verify (numpy) just to build its parser, so the figure is written twice.
    import pipeline
    from deploy.verify import DEFAULT_COUNT

    assert pipeline.make_parser().parse_args(["verify"]).count == DEFAULT_COUNT


def test_without_the_host_parts_the_generic_set_is_a_one_line_usage_error(bundle):
    from deploy.errors import UsageError

    with pytest.raises(UsageError, match="no --images given, and the generic sample set needs the host"):
        verify_bundle(bundle, count=2, progress=False)


def test_the_cli_passes_the_host_parts_it_can_import(monkeypatch):
    import sys

    from cli import verify as cli_verify

    assert cli_verify.host_parts() == (torch_stages, generic_verify_images)
    monkeypatch.setitem(sys.modules, "calibration.torch_stages", None)   # as on a host without the package
    assert cli_verify.host_parts() == (None, generic_verify_images)
