"""A tiny classification bundle (onnx.helper CNN, no torch) and test photographs for predict's tests."""
import json
import os

import numpy as np

from deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, config_to_dict
from tests.deploy.bench_tiny import tiny_bundle

SIZE = 32
LABELS = ["cat", "dog", "bird", "fish", "frog"]


def classifier_bundle(root, size=SIZE, labels=True, random=False, names=("hardnet39ds",)):
    """tiny_bundle plus what predict reads: preprocessing, labels, weights."""
    root = tiny_bundle(root, names=names, size=size)
    path = os.path.join(root, "manifest.json")
    with open(path) as handle:
        manifest = json.load(handle)
    cfg = PreprocessConfig(size=size, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")
    for record in manifest["models"].values():
        record["preprocessing"] = config_to_dict(cfg)
        record["num_classes"] = 5
        record["labels"] = list(LABELS) if labels else None
        record["weights"] = {"source": "random" if random else "test.pt", "random": bool(random)}
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    return root


def photo(width, height, seed=0):
    """A smooth, photograph-like uint8 RGB image (blurred noise plus gradients): JPEG-friendly."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, size=(max(2, height // 16), max(2, width // 16), 3)).astype(np.uint8)
    from PIL import Image

    image = Image.fromarray(small, "RGB").resize((width, height), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    return np.clip(array * 0.8 + ramp, 0, 255).astype(np.uint8)


def write_photo(path, width, height, seed=0, quality=90):
    from PIL import Image

    Image.fromarray(photo(width, height, seed), "RGB").save(str(path), quality=quality)
    return str(path)
