"""The real accuracy harness: scikit-learn's handwritten digits, which ship offline.

No ImageNet weights can be downloaded here, so fidelity is proven on a task with real labels:
train a zoo model (``hardnet39ds``, ``mobilenetv2``) with 10 classes on the 8x8 digits upsampled
to ``size`` (64 by default), then measure held-out accuracy at every stage of the pipeline:
eager PyTorch, BN-folded PyTorch, exported ONNX, simplified ONNX (the bundle's model) and ONNX
Runtime INT8 under each calibration method.

The digits need their own preprocessing (no crop; the digit data's mean/std, not ImageNet's). The
checkpoint is a bare state_dict, so it travels with a sidecar, ``<checkpoint>.card.json``:

    {"model": "hardnet39ds", "num_classes": 10, "labels": ["0", ..., "9"],
     "preprocessing": deploy.preprocess.config_to_dict(...), "heldout_accuracy": ..., ...}

``apply_card_override`` writes that preprocessing and the labels into a bundle's manifest record,
so calibration, verify and predict all use it. The images themselves go through exactly the same
function in training and deployment: each 8x8 digit is a grey PIL image (0..16 scaled to 0..255,
as the PNGs written for ``verify --images`` hold it) fed to ``deploy.preprocess.preprocess_image``.
Host-only.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from deploy.atomic import atomic_path, sha256_file, write_json
from deploy.errors import PipelineError, WeightsError
from deploy.preprocess import PreprocessConfig, config_from_dict, config_to_dict, preprocess_image

LOG = logging.getLogger(__name__)

LABELS = [str(i) for i in range(10)]
SPLIT_SEED = 0
HELDOUT_FRACTION = 0.2
DEFAULT_SIZE = 64
TARGET_ACCURACY = 0.95
SIDECAR_SUFFIX = ".card.json"
HARNESS_VERSION = 1  # bump when training or the split changes: cached checkpoints are then retrained


@dataclass
class DigitsSplit:
    train_images: np.ndarray   # (N, 8, 8) uint8, 0..255
    train_labels: np.ndarray   # (N,) int64
    heldout_images: np.ndarray
    heldout_labels: np.ndarray


def load_split(seed: int = SPLIT_SEED, heldout_fraction: float = HELDOUT_FRACTION) -> DigitsSplit:
    """The fixed, stratified train/held-out split of sklearn's 1797 digits (8x8, 0..16 -> uint8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    tr_x, ho_x, tr_y, ho_y = train_test_split(images, labels, test_size=heldout_fraction, random_state=seed,
                                              stratify=labels)
    return DigitsSplit(tr_x, tr_y, ho_x, ho_y)


def digit_image(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L")


def preprocess_digits(images: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """(N, 8, 8) uint8 -> (N, 3, size, size) float32 through the deployment preprocessing."""
    return np.stack([preprocess_image(digit_image(x), cfg) for x in images]).astype(np.float32)


def digits_config(train_images: np.ndarray, size: int = DEFAULT_SIZE) -> PreprocessConfig:
    """No crop (crop_pct 1.0), bilinear upsampling, mean/std of the upsampled training digits."""
    plain = PreprocessConfig(size=size, crop_pct=1.0, mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bilinear")
    pixels = preprocess_digits(train_images[:400], plain)[:, 0]
    mean, std = float(pixels.mean()), float(pixels.std())
    rounded = (round(mean, 4),) * 3, (round(std, 4),) * 3
    return PreprocessConfig(size=size, crop_pct=1.0, mean=rounded[0], std=rounded[1], interpolation="bilinear")


# ------------------------------------------------------------------------------------------------
# image folders for `verify --images` and `build --calib-images`
# ------------------------------------------------------------------------------------------------
def write_image_folders(images: np.ndarray, labels: np.ndarray, folder: str) -> str:
    """One sub-folder per class of 8x8 grey PNGs. Written into a temporary folder, then renamed."""
    import shutil
    import tempfile

    folder = str(folder)
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(folder) + ".", dir=parent)
    try:
        for index, (image, label) in enumerate(zip(images, labels)):
            sub = os.path.join(tmp, LABELS[int(label)])
            os.makedirs(sub, exist_ok=True)
            digit_image(image).save(os.path.join(sub, f"{index:04d}.png"))
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
@dataclass
class TrainSettings:
    model: str = "hardnet39ds"
    size: int = DEFAULT_SIZE
    epochs: int = 12             # at most; stops early once held-out accuracy >= target after min_epochs
    min_epochs: int = 4
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    target: float = TARGET_ACCURACY
    train_limit: int | None = None   # use only the first N training digits (the short test chain)

    def key(self) -> dict:
        return dict(self.__dict__, harness_version=HARNESS_VERSION)


def evaluate_torch(model, x: np.ndarray, batch: int = 128) -> np.ndarray:
    """Logits of ``model`` (eval mode) on ``x``."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            chunk = torch.from_numpy(x[start:start + batch]).contiguous(memory_format=torch.channels_last)
            out.append(model(chunk).numpy())
    return np.concatenate(out)


def train(settings: TrainSettings, split: DigitsSplit, progress: bool = True, threads: int | None = 1):
    """Train ``settings.model`` on the digits. Returns (model, cfg, history list of dicts).

    ``threads``: torch intra-op threads. 1 by default: on a small shared machine, OpenMP threads
    spinning against other processes made a training step 4-6x slower than one thread.
    """
    import torch
    from torch import nn
    from tqdm import tqdm

    from models import create_model

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(settings.seed)
    rng = np.random.RandomState(settings.seed)
    tr_images, tr_labels = split.train_images, split.train_labels
    if settings.train_limit:
        tr_images, tr_labels = tr_images[:settings.train_limit], tr_labels[:settings.train_limit]
    cfg = digits_config(split.train_images, settings.size)
    x_train = preprocess_digits(tr_images, cfg)
    x_held = preprocess_digits(split.heldout_images, cfg)
    y_train = torch.from_numpy(tr_labels)
    model = create_model(settings.model, num_classes=10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    steps = (len(x_train) + settings.batch - 1) // settings.batch
    for epoch in range(settings.epochs):
        model.train()
        order = rng.permutation(len(x_train))
        started = time.perf_counter()
        total = 0.0
        for step in tqdm(range(steps), desc=f"{settings.model} epoch {epoch + 1}", leave=False,
                         disable=not progress):
            idx = order[step * settings.batch:(step + 1) * settings.batch]
            batch = torch.from_numpy(_shift(x_train[idx], rng)).to(memory_format=torch.channels_last)
            optimizer.zero_grad()
            loss = loss_fn(model(batch), y_train[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        scheduler.step()
        accuracy = float((evaluate_torch(model, x_held).argmax(1) == split.heldout_labels).mean())
        history.append({"epoch": epoch + 1, "loss": round(total / len(x_train), 4),
                        "heldout_accuracy": round(accuracy, 4),
                        "seconds": round(time.perf_counter() - started, 1)})
        LOG.info("%s epoch %d: loss %.4f, held-out accuracy %.2f%%", settings.model, epoch + 1,
                 total / len(x_train), 100 * accuracy)
        if accuracy >= settings.target and epoch + 1 >= settings.min_epochs:
            break
    return model.to(memory_format=torch.contiguous_format).eval(), cfg, history


def _shift(batch: np.ndarray, rng: np.random.RandomState, max_shift: int = 4) -> np.ndarray:
    """Augment: shift every image by up to ``max_shift`` pixels (background filled with the edge)."""
    out = np.empty_like(batch)
    for i, image in enumerate(batch):
        dy, dx = rng.randint(-max_shift, max_shift + 1, size=2)
        out[i] = np.roll(image, (dy, dx), axis=(1, 2))
    return out


def sidecar_path(checkpoint: str) -> str:
    return str(checkpoint) + SIDECAR_SUFFIX


def save_checkpoint(model, checkpoint: str, cfg: PreprocessConfig, settings: TrainSettings,
                    history: list) -> dict:
    """Write the state_dict and its sidecar (both atomic). Returns the sidecar dict."""
    import torch

    with atomic_path(checkpoint) as tmp:
        torch.save(model.state_dict(), tmp)
    card = collections.OrderedDict([
        ("model", settings.model), ("num_classes", 10), ("labels", LABELS),
        ("preprocessing", config_to_dict(cfg)),
        ("heldout_accuracy", history[-1]["heldout_accuracy"] if history else None),
        ("dataset", "sklearn.datasets.load_digits: 8x8 grey, 0..16 scaled to 0..255, upsampled bilinear; "
                    f"stratified split, {int(HELDOUT_FRACTION * 100)}% held out, random_state={SPLIT_SEED}"),
        ("training", settings.key()), ("history", history),
        ("checkpoint_sha256", sha256_file(checkpoint)),
    ])
    write_json(sidecar_path(checkpoint), card)
    return card


def read_sidecar(checkpoint: str) -> dict | None:
    """The sidecar of ``checkpoint``, or None when there is none."""
    path = sidecar_path(checkpoint)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc})", hint="delete it and retrain") from None


def cached_checkpoint(checkpoint: str, settings: TrainSettings) -> dict | None:
    """The sidecar when ``checkpoint`` exists, is intact and was trained with ``settings``; else None."""
    card = read_sidecar(checkpoint) if os.path.isfile(checkpoint) else None
    if not card or card.get("training") != settings.key():
        return None
    if card.get("checkpoint_sha256") != sha256_file(checkpoint):
        LOG.warning("%s changed since training: retraining", checkpoint)
        return None
    return card


def train_or_load(settings: TrainSettings, checkpoint: str, split: DigitsSplit | None = None,
                  progress: bool = True, threads: int | None = 1) -> dict:
    """Train and save, unless a checkpoint trained with the same settings is cached. -> sidecar dict."""
    card = cached_checkpoint(checkpoint, settings)
    if card is not None:
        LOG.info("reusing %s (held-out accuracy %.2f%%)", checkpoint, 100 * card["heldout_accuracy"])
        return card
    split = split or load_split()
    model, cfg, history = train(settings, split, progress=progress, threads=threads)
    card = save_checkpoint(model, checkpoint, cfg, settings, history)
    if card["heldout_accuracy"] < settings.target:
        LOG.warning("%s reached only %.2f%% held-out accuracy (target %.0f%%)", settings.model,
                    100 * card["heldout_accuracy"], 100 * settings.target)
    return card


# ------------------------------------------------------------------------------------------------
# the bundle and the chain
# ------------------------------------------------------------------------------------------------
def apply_card_override(bundle, name: str, card: dict) -> None:
    """Record the sidecar's preprocessing and labels in the bundle's manifest for ``name``; save.

    The bundle's ONNX does not depend on preprocessing, so only the manifest changes; calibration
    data made with other preprocessing is then recalibrated (its record no longer matches).
    """
    record = bundle.model(name)
    cfg = config_from_dict(card["preprocessing"])
    size = int(record["input"]["shape"][-1])
    if cfg.size != size:
        raise PipelineError(f"{name} was trained at {cfg.size}x{cfg.size} but the bundle takes {size}x{size}",
                            hint=f"build with --size {cfg.size}")
    record["preprocessing"] = config_to_dict(cfg)
    record["labels"] = list(card.get("labels") or LABELS)
    record["preprocessing_source"] = "model card override (checkpoint sidecar)"
    bundle.save()


def build_digits_bundle(checkpoint: str, out_dir: str, size: int, progress: bool = True):
    """``pipeline.py build --target cpu --models M --weights CKPT --num-classes 10 --size S
    --preprocess CKPT.card.json``, then the digit labels recorded in the manifest."""
    from deploy.bundle import Bundle
    from deploy.targets import get_target
    from export.build import BuildOptions, build_bundle

    card = read_sidecar(checkpoint)
    if card is None:
        raise WeightsError(f"{checkpoint} has no sidecar {sidecar_path(checkpoint)}",
                           hint="train it with scripts/train_digits.py")
    name = card["model"]
    options = BuildOptions(target=get_target("cpu"), out_dir=out_dir, models=(name,),
                           weights={name: checkpoint}, num_classes=10, size=size, precision="int8",
                           preprocess=card["preprocessing"])
    build_bundle(options, progress=progress)
    bundle = Bundle.open(out_dir)
    apply_card_override(bundle, name, card)
    return bundle, name


def _onnx_logits(path: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    batch = meta.shape[0] if isinstance(meta.shape[0], int) else 64
    out = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        if len(chunk) < batch:  # fixed batch: pad the last one
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        out.append(session.run(None, {meta.name: np.ascontiguousarray(chunk)})[0])
    return np.concatenate(out)[:len(x)]


def evaluate_chain(checkpoint: str, out_dir: str, *, methods=("minmax", "entropy", "percentile"),
                   calib_count: int = 500, split: DigitsSplit | None = None, progress: bool = True) -> dict:
    """Build the bundle and measure held-out accuracy at every stage. Returns the results table."""
    import tempfile

    from calibration.stage import calibrate_bundle
    from export.fold_bn import fold_batchnorm
    from export.onnx_export import export_onnx
    from models import create_model

    split = split or load_split()
    card = read_sidecar(checkpoint)
    if card is None:
        raise WeightsError(f"{checkpoint} has no sidecar {sidecar_path(checkpoint)}",
                           hint="train it with scripts/train_digits.py")
    cfg = config_from_dict(card["preprocessing"])
    bundle, name = build_digits_bundle(checkpoint, out_dir, cfg.size, progress=progress)
    x_held = preprocess_digits(split.heldout_images, cfg)
    y_held = split.heldout_labels
    model = create_model(name, num_classes=10, weights=checkpoint).eval()
    folded, _ = fold_batchnorm(model)
    logits = collections.OrderedDict()
    logits["eager PyTorch"] = evaluate_torch(model, x_held)
    logits["BN-folded PyTorch"] = evaluate_torch(folded, x_held)
    with tempfile.TemporaryDirectory(prefix="digits.") as scratch:
        raw = os.path.join(scratch, "exported.onnx")
        export_onnx(folded, raw, input_shape=(1, 3, cfg.size, cfg.size), opset=bundle.manifest["target"]["max_opset"])
        logits["ONNX (exported)"] = _onnx_logits(raw, x_held)
    record = bundle.model(name)
    logits["ONNX (simplified, bundle)"] = _onnx_logits(bundle.path(record["onnx"]["path"]), x_held)
    calib_dir = os.path.join(out_dir, "digits-train-images")
    write_image_folders(split.train_images, split.train_labels, calib_dir)
    timings = {}
    for method in methods:
        started = time.perf_counter()
        calibrate_bundle(bundle, [name], images_dir=calib_dir, count=calib_count, method=method,
                         make_int8_onnx=True, progress=progress)
        timings[method] = round(time.perf_counter() - started, 1)
        int8 = bundle.model(name)["int8_onnx"]
        logits[f"ONNX Runtime INT8 ({method})"] = _onnx_logits(bundle.path(int8["path"]), x_held)
    reference = logits["eager PyTorch"].argmax(1)
    rows = []
    for stage, out in logits.items():
        top = out.argmax(1)
        rows.append(collections.OrderedDict([
            ("stage", stage), ("accuracy", float((top == y_held).mean())),
            ("agreement", float((top == reference).mean())), ("disagreements", int((top != reference).sum())),
        ]))
    return {"model": name, "bundle": out_dir, "heldout": int(len(y_held)), "size": cfg.size,
            "calibration_images": calib_count, "calibration_seconds": timings,
            "train_heldout_accuracy": card.get("heldout_accuracy"), "rows": rows}
