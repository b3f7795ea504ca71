"""Parity figures and failures: a deliberately broken stage must fail with a clear message."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from deploy.errors import ParityError
from export import parity as par
from export.fold_bn import fold_batchnorm
from export.onnx_export import export_onnx


def test_identical_outputs_pass():
    ref = np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32)
    result = par.compare_outputs(ref, ref.copy(), "same")
    assert result.passed and result.max_abs == 0 and result.top1_agreement == 1.0
    assert result.cosine == pytest.approx(1.0)
    assert par.check_parity(result) is result


def test_small_noise_within_tolerance_passes_and_large_fails():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((4, 100)) * 5
    out_range = ref.max() - ref.min()
    small = ref + rng.uniform(-1, 1, ref.shape) * par.RTOL * out_range * 0.1
    assert par.compare_outputs(ref, small, "small").passed
    large = ref + rng.uniform(-1, 1, ref.shape) * par.RTOL * out_range * 20
    result = par.compare_outputs(ref, large, "large")
    assert not result.passed
    with pytest.raises(ParityError) as info:
        par.check_parity(result, "net")
    text = info.value.one_line()
    assert "net" in text and "'large'" in text and "max abs error" in text and "fix:" in text


def test_top1_flip_on_a_tie_is_not_a_break_but_a_decisive_flip_is():
    ref = np.array([[1.0, 1.0 + 1e-9, 0.0], [3.0, 0.0, 0.0]])
    tie = np.array([[1.0 + 1e-9, 1.0, 0.0], [3.0, 0.0, 0.0]])
    result = par.compare_outputs(ref, tie, "tie")
    assert result.top1_agreement == 0.5 and result.decisive_top1_mismatches == 0 and result.passed
    flip = np.array([[1.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    result = par.compare_outputs(ref, flip, "flip")
    assert result.decisive_top1_mismatches == 1 and not result.passed


def test_non_finite_and_shape_mismatch_fail():
    ref = np.ones((1, 4))
    bad = ref.copy()
    bad[0, 2] = np.nan
    with pytest.raises(ParityError, match="non-finite"):
        par.check_parity(par.compare_outputs(ref, bad, "nan"))
    with pytest.raises(ParityError, match="shape"):
        par.compare_outputs(ref, np.ones((1, 5)), "shape")


def test_inputs_are_seeded():
    a = par.parity_inputs((1, 3, 8, 8), count=2)
    b = par.parity_inputs((1, 3, 8, 8), count=2)
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1]) and a[0].dtype == np.float32


def test_broken_onnx_stage_is_caught(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(8, 10)).eval()
    folded, _ = fold_batchnorm(model)
    record = export_onnx(folded, str(tmp_path / "good.onnx"), input_shape=(1, 3, 16, 16))
    inputs = par.parity_inputs((1, 3, 16, 16), count=2)
    reference = par.run_torch(model, inputs)
    good = par.stage_parity(reference, par.run_onnx(record.path, inputs), "exported ONNX", "net")
    assert good.passed and good.max_rel_range < 1e-5

    broken = onnx.load(record.path)   # sabotage: scale the classifier weight by 1.5
    for init in broken.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim == 2:
            init.CopyFrom(numpy_helper.from_array(array * 1.5, init.name))
    bad_path = str(tmp_path / "broken.onnx")
    onnx.save(broken, bad_path)
    with pytest.raises(ParityError) as info:
        par.stage_parity(reference, par.run_onnx(bad_path, inputs), "simplified ONNX", "net")
    assert "stage 'simplified ONNX' breaks parity" in str(info.value)
