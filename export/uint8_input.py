"""Preprocessing in the graph (build --input uint8): a second ONNX per model that takes the decoded,
resized image as uint8 NHWC and does the cast, layout change and normalisation itself.

    image uint8 [N, H, W, 3] -> Cast(float) -> Transpose(0, 3, 1, 2) -> Mul(1 / (255 std)) -> Add(-mean / std)
          -> the bundle's float model, unchanged

so the device only decodes and resizes (deploy.predict.decode); ONNX Runtime runs the four elementwise
operators on 3 x H x W values (a fraction of a millisecond at 320, measured in docs/predict.md).
Written next to the float model as models/<name>.uint8.onnx with its own manifest entry
("uint8_onnx": path, sha256, the float model's sha256 it was made from, input, parity). The float
model stays the bundle's main model: TensorRT engines, calibration, bench and verify use it
(TensorRT 8.2, JetPack 4.6's, has no uint8 tensors: DataType gains kUINT8 only in 8.5).

Parity, like every build stage: the uint8 graph on seeded uint8 images against the float model on
the same images normalised by deploy.predict.decode's lookup table, with export.parity's FP32 tolerances.
"""
from __future__ import annotations

import collections
import logging
import os
from typing import Any

import numpy as np

from deploy.atomic import atomic_path, sha256_file
from deploy.bundle import Bundle
from deploy.errors import ParityError

LOG = logging.getLogger(__name__)

INPUT_NAME = "image"
PARITY_IMAGES = 4
PARITY_SEED = 20240613


def uint8_relpath(model_name: str) -> str:
    return f"models/{model_name}.uint8.onnx"


def add_uint8_input(model, mean, std, input_name: str = INPUT_NAME):
    """A copy of ``model`` (float NCHW input) whose input is uint8 NHWC, normalised inside the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ParityError(f"the model has {len(inputs)} inputs; --input uint8 needs exactly one image input",
                          hint="build without --input uint8")
    old = inputs[0]
    dims = old.type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise ParityError("--input uint8 needs an (N, 3, H, W) input", hint="build without --input uint8")

    def dim(d):
        return d.dim_param if d.dim_param else d.dim_value

    new_input = helper.make_tensor_value_info(input_name, TensorProto.UINT8,
                                              [dim(dims[0]), dim(dims[2]), dim(dims[3]), 3])
    std = np.asarray(std, dtype=np.float32)
    scale = (1.0 / (255.0 * std)).reshape(1, 3, 1, 1).astype(np.float32)
    bias = (-np.asarray(mean, dtype=np.float32) / std).reshape(1, 3, 1, 1).astype(np.float32)
    prefix = input_name + "_"
    nodes = [
        helper.make_node("Cast", [input_name], [prefix + "float"], to=TensorProto.FLOAT, name=prefix + "cast"),
        helper.make_node("Transpose", [prefix + "float"], [prefix + "nchw"], perm=[0, 3, 1, 2], name=prefix + "nchw"),
        helper.make_node("Mul", [prefix + "nchw", prefix + "scale"], [prefix + "scaled"], name=prefix + "scale"),
        helper.make_node("Add", [prefix + "scaled", prefix + "bias"], [old.name], name=prefix + "normalise"),
    ]
    graph.initializer.extend([numpy_helper.from_array(scale, prefix + "scale"),
                              numpy_helper.from_array(bias, prefix + "bias")])
    position = list(graph.input).index(old)
    graph.input.remove(old)
    graph.input.insert(position, new_input)
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    onnx.checker.check_model(model)
    return model


def parity_images(height: int, width: int, batch: int, count: int = PARITY_IMAGES) -> list[np.ndarray]:
    """Seeded uint8 NHWC images: uniform noise (every level) and smooth gradients (natural-image-like)."""
    rng = np.random.default_rng(PARITY_SEED)
    out = []
    for i in range(count):
        if i % 2 == 0:
            out.append(rng.integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8))
        else:
            ramp = np.linspace(0, 255, width, dtype=np.float32)[None, None, :, None]
            tint = rng.uniform(0.3, 1.0, size=(batch, 1, 1, 3)).astype(np.float32)
            out.append(np.broadcast_to(ramp * tint, (batch, height, width, 3)).round().astype(np.uint8))
    return out


def check_uint8_parity(float_path: str, uint8_path: str, cfg, batch: int, name: str, float_input: str,
                       threads: int | None = None) -> dict[str, Any]:
    """Run both graphs; raise ParityError unless the uint8 graph matches the float model within tolerances."""
    from deploy.predict.decode import normalise_table, to_tensor
    from export.parity import TOLERANCES, compare_outputs

    images = parity_images(cfg.size, cfg.size, batch)
    table = normalise_table(cfg)
    floats = [np.stack([to_tensor(img, table) for img in batch_images]) for batch_images in images]
    reference = _run(float_path, float_input, floats, threads)
    candidate = _run(uint8_path, INPUT_NAME, images, threads)
    result = compare_outputs(reference, candidate, "uint8 input graph")
    LOG.info("%s parity uint8 input vs float model: %s", name, result.describe())
    if not result.passed:
        raise ParityError(f"{name}: the uint8-input graph differs from the float model ({result.describe()})",
                          hint="build without --input uint8 and report it")
    return {"reference": "the bundle's float ONNX on the same images normalised by deploy.predict.decode",
            "inputs": {"seed": PARITY_SEED, "count": len(images), "kind": "uint8 noise and gradients"},
            "tolerances": TOLERANCES, **result.to_dict()}


def _run(path, input_name, inputs, threads):
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(path, threads=threads) as runner:
        return np.concatenate([list(runner.infer({input_name: x}).values())[0] for x in inputs], axis=0)


def ensure_uint8_model(bundle: Bundle, name: str, threads: int | None = None) -> dict[str, Any]:
    """Make (or keep, when current) models/<name>.uint8.onnx from the bundle's float model; save the manifest."""
    import onnx

    from deploy.preprocess import config_from_dict

    record = bundle.model(name)
    source = record["onnx"]
    existing = record.get("uint8_onnx")
    if isinstance(existing, dict) and existing.get("source_sha256") == source["sha256"] and \
            os.path.isfile(bundle.path(existing["path"])) and sha256_file(bundle.path(existing["path"])) == existing["sha256"]:
        LOG.info("%s: uint8-input graph is current: reusing %s", name, existing["path"])
        return existing
    cfg = config_from_dict(record["preprocessing"])
    float_path = bundle.verify_file(source["path"], source["sha256"])
    model = add_uint8_input(onnx.load(float_path), cfg.mean, cfg.std)
    rel = uint8_relpath(name)
    shape = record["input"]["shape"]
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    with atomic_path(bundle.path(rel)) as tmp:
        onnx.save(model, tmp)
        parity = check_uint8_parity(float_path, tmp, cfg, batch, name, record["input"]["name"], threads)
    entry = collections.OrderedDict([
        ("path", rel), ("sha256", sha256_file(bundle.path(rel))), ("source_sha256", source["sha256"]),
        ("input", {"name": INPUT_NAME, "shape": [shape[0], cfg.size, cfg.size, 3], "dtype": "uint8",
                   "layout": "NHWC RGB", "resized": True,
                   "dynamic_batch": bool(record["input"].get("dynamic_batch"))}),
        ("in_graph", "Cast, Transpose NHWC->NCHW, Mul 1/(255 std), Add -mean/std"),
        ("parity", parity)])
    record["uint8_onnx"] = entry
    bundle.save()
    return entry
