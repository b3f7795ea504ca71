"""Helpers shared by tests/calibration and tests/deploy: a tiny real bundle and image folders."""
import collections
import os

import numpy as np

from deploy.atomic import sha256_file
from deploy.bundle import Bundle, onnx_relpath
from deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, config_to_dict

SIZE = 32


def export_tiny_bundle(root, name="mobilenetv2", size=SIZE, num_classes=10, seed=0, weights_path=None):
    """Export a small torchvision MobileNetV2 into a minimal bundle (stand-in for `build`)."""
    import torch

    from models import create_model

    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes).eval()
    if weights_path is not None:
        torch.save(model.state_dict(), str(weights_path))
        weights_path = str(weights_path)
    bundle = Bundle.open_or_new(str(root), {"name": "cpu", "backend": "onnxruntime"})
    rel = onnx_relpath(name)
    os.makedirs(bundle.path("models"), exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 3, size, size), bundle.path(rel), input_names=["input"],
                      output_names=["logits"], opset_version=13, dynamo=False)
    cfg = PreprocessConfig(size=size, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                           interpolation="bilinear")
    record = collections.OrderedDict()
    record["model"] = name
    record["onnx"] = {"path": rel, "sha256": sha256_file(bundle.path(rel)), "opset": 13}
    record["input"] = {"name": "input", "shape": [1, 3, size, size], "dtype": "float32", "dynamic_batch": False}
    record["output"] = {"name": "logits", "shape": [1, num_classes]}
    record["preprocessing"] = config_to_dict(cfg)
    record["num_classes"] = num_classes
    record["labels"] = None
    record["weights"] = {"source": weights_path or "random", "random": weights_path is None}
    bundle.set_model(name, record)
    bundle.save()
    return bundle, model


def write_images(folder, count, size=(48, 40), seed=0, mode="RGB", ext="png"):
    from PIL import Image

    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        array = rng.randint(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(array, "RGB").convert(mode)
        path = os.path.join(str(folder), "img{:03d}.{}".format(i, ext))
        image.save(path)
        paths.append(path)
    return paths
