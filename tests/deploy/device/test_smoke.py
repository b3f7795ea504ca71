"""deploy/device/smoke.py: the comparison rule, tamper checks and ONNX Runtime's run of the smoke model."""
import os
import sys

import numpy as np
import pytest

from deploy.bundle import Bundle
from deploy.device.smoke import SmokeTestError, compare, load_smoke, run_smoke_onnxruntime


@pytest.fixture
def bundle(tmp_path):
    if sys.version_info < (3, 10):
        pytest.skip("the smoke model is made by the host's build (Python 3.10+, onnx, torch)")
    pytest.importorskip("onnxruntime", reason="onnxruntime runs the smoke model on the host")
    from export.smoke import write_smoke

    b = Bundle.new(str(tmp_path / "b"), {"name": "jetson-nano"})
    b.manifest["smoke"] = write_smoke(b, 13)
    return b


def test_compare_uses_allclose_rule_and_rejects_nan_and_shape():
    ref = np.array([[1.0, -2.0]])
    assert compare(ref + 0.011, ref, atol=0.01, rtol=0.001)["ok"] is True      # 0.011 <= 0.01 + 0.001
    assert compare(ref + 0.02, ref, atol=0.01, rtol=0.001)["ok"] is False
    assert compare(np.array([[np.nan, -2.0]]), ref, 1.0, 1.0)["ok"] is False
    shape = compare(np.zeros((2, 2)), ref, 1.0, 1.0)
    assert shape["ok"] is False and "shape" in shape["detail"]


def test_onnxruntime_smoke_passes(bundle):
    result = run_smoke_onnxruntime(bundle)
    assert result["ok"] and result["backend"] == "onnxruntime" and result["max_abs_diff"] < 1e-4


def test_tampered_file_fails_at_the_bundle_step(bundle):
    with open(bundle.path("smoke/reference.npy"), "ab") as handle:
        handle.write(b"x")
    with pytest.raises(SmokeTestError) as err:
        load_smoke(bundle)
    assert err.value.step == "bundle" and "does not match the manifest" in str(err.value)


def test_wrong_reference_fails_at_the_compare_step(bundle):
    from deploy.atomic import sha256_file

    path = bundle.path("smoke/reference.npy")
    np.save(path, np.load(path) + 1.0)
    bundle.manifest["smoke"]["reference"]["sha256"] = sha256_file(path)
    with pytest.raises(SmokeTestError) as err:
        run_smoke_onnxruntime(bundle)
    assert err.value.step == "compare" and "max |diff| 1.00e+00" in str(err.value)


def test_bundle_without_smoke_model_names_the_fix(tmp_path):
    b = Bundle.new(str(tmp_path), {"name": "jetson-nano"})
    with pytest.raises(SmokeTestError) as err:
        load_smoke(b)
    assert err.value.step == "bundle" and "pipeline.py build" in err.value.hint
    assert not os.path.exists(os.path.join(str(tmp_path), "reports"))
