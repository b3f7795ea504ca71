"""Parity: each build stage's outputs against the eager PyTorch model on the same seeded inputs.

Figures per stage (outputs flattened over all samples and classes):
  max_abs        max |candidate - reference|
  max_rel_range  max_abs / (max(reference) - min(reference))    -- error relative to the output range
  cosine         cosine similarity of the flattened outputs
  top1           fraction of samples whose arg-max class agrees

A stage passes when all of these hold (the tolerances are FP32 ones: every stage here is FP32):
  max_abs <= ATOL + RTOL * output range
  cosine  >= MIN_COSINE
  no top-1 disagreement on a sample whose reference top-1 margin is above the same
  ATOL + RTOL * range bound (a flip between two classes tied within numerical noise is not a break)
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from deploy.errors import ParityError

LOG = logging.getLogger(__name__)

ATOL = 1e-12         # absolute floor, in logit units: only matters for (near) constant outputs. Kept tiny on
                     # purpose: randomly initialised nets can have logits of ~1e-9, and float error scales
                     # with the values, so the relative bound is the one that means something
RTOL = 1e-3          # relative to the reference output range (max - min over all logits)
MIN_COSINE = 0.99999
PARITY_SEED = 20240613
PARITY_SAMPLES = 2   # inputs per stage; small on purpose: FP32 stages agree to ~1e-6 or break loudly

TOLERANCES = {"atol": ATOL, "rtol_of_range": RTOL, "min_cosine": MIN_COSINE,
              "top1": "all samples whose reference top-1 margin exceeds atol + rtol * range"}


@dataclass
class ParityResult:
    stage: str
    samples: int
    max_abs: float
    output_range: float
    max_rel_range: float
    cosine: float
    top1_agreement: float
    decisive_top1_mismatches: int
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"max abs error {self.max_abs:.3g} ({self.max_rel_range:.3g} of the output range "
                f"{self.output_range:.3g}), cosine {self.cosine:.7f}, top-1 agreement {self.top1_agreement:.0%}")


def parity_inputs(input_shape: Sequence[int], *, count: int = PARITY_SAMPLES, seed: int = PARITY_SEED) -> list[np.ndarray]:
    """``count`` seeded standard-normal float32 arrays of ``input_shape``."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(int(v) for v in input_shape)).astype(np.float32) for _ in range(count)]


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, stage: str) -> ParityResult:
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ParityError(f"{stage}: output shape {cand.shape} differs from the PyTorch model's {ref.shape}",
                          hint="the stage changed the model's output; rebuild with --force and report it")
    ref2 = ref.reshape(ref.shape[0], -1) if ref.ndim > 1 else ref.reshape(1, -1)
    cand2 = cand.reshape(ref2.shape)
    finite = bool(np.isfinite(cand2).all())
    diff = np.abs(cand2 - ref2)
    max_abs = float(diff.max()) if finite else float("inf")
    out_range = float(ref2.max() - ref2.min())
    bound = ATOL + RTOL * out_range
    norm = float(np.linalg.norm(ref2) * np.linalg.norm(cand2))
    cosine = min(1.0, float(np.sum(ref2 * cand2) / norm)) if finite and norm > 0 else (1.0 if finite and max_abs == 0 else 0.0)
    ref_top = ref2.argmax(axis=1)
    cand_top = cand2.argmax(axis=1) if finite else np.full_like(ref_top, -1)
    agree = ref_top == cand_top
    if ref2.shape[1] > 1:
        top2 = np.sort(ref2, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    else:
        margin = np.full(ref2.shape[0], np.inf)
    decisive_bad = int(np.sum(~agree & (margin > bound)))
    passed = finite and max_abs <= bound and cosine >= MIN_COSINE and decisive_bad == 0
    return ParityResult(
        stage=stage, samples=int(ref2.shape[0]), max_abs=max_abs, output_range=out_range,
        max_rel_range=(max_abs / out_range) if out_range > 0 else (0.0 if max_abs == 0 else float("inf")),
        cosine=cosine, top1_agreement=float(agree.mean()), decisive_top1_mismatches=decisive_bad,
        passed=bool(passed),
    )


def check_parity(result: ParityResult, model_name: str = "model") -> ParityResult:
    """Raise ParityError naming the stage and the figure that broke; return ``result`` if it passed."""
    if result.passed:
        return result
    bound = ATOL + RTOL * result.output_range
    reasons = []
    if not np.isfinite(result.max_abs):
        reasons.append("non-finite outputs")
    elif result.max_abs > bound:
        reasons.append(f"max abs error {result.max_abs:.3g} > {bound:.3g} (atol {ATOL:g} + rtol {RTOL:g} x range "
                       f"{result.output_range:.3g})")
    if result.cosine < MIN_COSINE:
        reasons.append(f"cosine {result.cosine:.6f} < {MIN_COSINE}")
    if result.decisive_top1_mismatches:
        reasons.append(f"top-1 differs on {result.decisive_top1_mismatches} of {result.samples} samples")
    raise ParityError(f"{model_name}: stage '{result.stage}' breaks parity with eager PyTorch: {'; '.join(reasons)}",
                      hint="the stage changed the model's numbers; rebuild with `python pipeline.py -v build --force ...` "
                           "and report it")


def run_torch(model, inputs: Sequence[np.ndarray]) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for x in inputs:
            outs.append(model(torch.from_numpy(x)).detach().cpu().numpy())
    return np.concatenate(outs, axis=0)


def run_onnx(path: str, inputs: Sequence[np.ndarray], *, input_name: str = "input",
             output_name: str = "logits", threads: int | None = None) -> np.ndarray:
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(path, threads=threads) as runner:
        outs = [runner.infer({input_name: x})[output_name] for x in inputs]
    return np.concatenate(outs, axis=0)


def stage_parity(reference: np.ndarray, candidate: np.ndarray, stage: str, model_name: str = "model") -> ParityResult:
    """compare_outputs + check_parity, logging the figures."""
    result = compare_outputs(reference, candidate, stage)
    LOG.info("%s parity %s: %s", model_name, stage, result.describe())
    return check_parity(result, model_name)
