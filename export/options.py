"""What a host build is asked to do (``BuildOptions``), and the checks of those options that need no model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy.bundle import MAX_BATCH
from deploy.errors import UsageError


@dataclass(frozen=True)
class BuildOptions:
    target: Any                                   # deploy.targets.TargetProfile
    out_dir: str
    models: tuple[str, ...] = ()                  # registry names
    user_model: str | None = None                 # "package.module:function"
    weights: dict[str, str] = field(default_factory=dict)  # model name -> checkpoint path
    num_classes: int | None = None
    size: int = 320
    batch: int = 1
    dynamic_batch: bool = False
    force: bool = False
    precision: str | None = None                  # resolved precision, recorded in the manifest
    precision_choice: dict | None = None          # cpu target: why that precision (deploy.cpu_isa.choice_record)
    threads: int = 1                              # torch / ONNX Runtime threads for the parity runs
    preprocess: dict[str, Any] | None = None      # overrides the card's mean/std/crop_pct/interpolation
    input_kind: str = "float32"                   # "uint8": also write models/<name>.uint8.onnx (export/uint8_input.py)


MAX_SIZE = 2048   # the largest input side built: the authors' largest is 1024; 100000 would need 100+ GB
# MAX_BATCH (1024) is what bench accepts and what a manifest may record (deploy.bundle): a build must not
# write a bundle every reader refuses. Above it torch allocates tens of GB (--batch 100000 at --size 64
# reached ~23 GB and the kernel's OOM killer ended the build without a word).
# The classifier is features x classes float32 weights: 100000 classes is 410 MB for HarDNet68's 1024
# features, and 4.6x the largest label set in use (ImageNet-21k, 21841 classes); 1e8 asks for 410 GB.
MAX_NUM_CLASSES = 100_000


def check_shape_options(options: BuildOptions) -> None:
    if not 1 <= options.size <= MAX_SIZE:
        raise UsageError(f"--size must be a number of pixels from 1 to {MAX_SIZE}, got {options.size}",
                         hint="e.g. --size 320 (the Jetson Nano protocol) or 224")
    if not 1 <= options.batch <= MAX_BATCH:
        raise UsageError(f"--batch must be from 1 to {MAX_BATCH}, got {options.batch}",
                         hint="e.g. --batch 1 (the Jetson Nano protocol); the limit is bench's")
    if options.num_classes is not None and not 1 <= options.num_classes <= MAX_NUM_CLASSES:
        raise UsageError(f"--num-classes must be from 1 to {MAX_NUM_CLASSES}, got {options.num_classes}",
                         hint="pass the class count of your checkpoint, or leave it out")
