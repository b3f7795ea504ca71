"""The PyTorch stages of ``verify`` (host only): eager FP32 (the reference) and BN-folded FP32.

The model is re-created from the manifest: the registered model name, the weights source path and
the number of classes, through ``models.create_model``. Random weights cannot be re-created (the
bundle's ONNX was exported from one random draw), so those bundles get no PyTorch stage.
"""
from __future__ import annotations

import logging
import os

from deploy.errors import PipelineError
from deploy.runners.torch_runner import TorchRunner

LOG = logging.getLogger(__name__)


def _weights_path(record: dict) -> tuple[str | None, str | None]:
    weights = record.get("weights") or {}
    source = weights.get("source")
    if weights.get("random") or not source or source == "random":
        return None, ("weights are random: PyTorch cannot re-create the exported draw, so the PyTorch "
                      "stages are skipped and the FP32 ONNX model is the reference")
    if not os.path.isfile(source):
        return None, f"PyTorch stages skipped: the checkpoint {source} recorded in the manifest is not here"
    return source, None


def torch_stages(record: dict, name: str):
    """-> (list of deploy.verify.Stage, list of notes)."""
    from deploy.verify import Stage

    path, note = _weights_path(record)
    if path is None:
        return [], [note]
    model_name = record.get("model") or name
    input_name = (record.get("input") or {}).get("name", "input")
    output_name = (record.get("output") or {}).get("name", "logits")
    shape = (record.get("input") or {}).get("shape") or [1, 3, 224, 224]
    try:
        from models import create_model

        model = create_model(model_name, num_classes=record.get("num_classes"), weights=path).eval()
    except PipelineError as exc:
        return [], [f"PyTorch stages skipped: cannot re-create {model_name}: {exc.one_line()}"]
    def runner(module):
        return lambda: TorchRunner(module, shape, device="cpu", channels_last=False, input_name=input_name,
                                   output_name=output_name)

    stages = [Stage("pytorch", "fp32", "torch eager", path, runner(model))]
    notes = []
    try:
        from export.fold_bn import fold_batchnorm
    except ImportError as exc:
        notes.append(f"BN-folded stage skipped: export.fold_bn is not available ({exc})")
    else:
        folded, report = fold_batchnorm(model)
        stages.append(Stage("pytorch-bn-folded", "fp32", f"torch eager, {report.n_folded} BN folded", path,
                            runner(folded)))
    return stages, notes
