"""The host build: registry model -> BN folded -> ONNX (target opset) -> onnxsim -> parity -> bundle.

``build_bundle(options)`` is the library entry point (``python pipeline.py build`` is a thin CLI
over it). Per model, in order:

1. load   the model (registry name, or a user's ``pkg.mod:fn``), weights loaded safely or random
2. fold   BatchNorm into the convolutions (export.fold_bn), on a copy
3. export ONNX at the target's opset, onnx.checker full check (export.onnx_export)
4. check  opset, no BatchNormalization, only operators the target's TensorRT parses (export.opset_check)
5. simplify with onnxsim, checked again (export.simplify)
6. parity folded PyTorch, ONNX and simplified ONNX (ONNX Runtime) against eager PyTorch (export.parity)
7. write  models/<name>.onnx (atomic rename) and the model's manifest record, then save the manifest

Every intermediate file lives in a private temporary folder inside the bundle and is removed on the
way out; the bundle's files are replaced only after every check passed, so a failure leaves the
previous ONNX files and manifest as they were.

Re-runs: each model record holds a cache key (model, weights sha256, classes, input shape, dynamic
batch, opset, tool versions, BUILD_CODE_VERSION). A model whose key is unchanged and whose ONNX still
matches its sha256 is reused untouched; ``force=True`` rebuilds it.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from deploy.atomic import atomic_path, folder_write_problem, is_temp_name
from deploy.bundle import Bundle, onnx_relpath
from deploy.errors import BundleError, PipelineError, UsageError
from deploy.preprocess import config_to_dict
from export.options import BuildOptions
from export.sources import Source, resolve_sources

LOG = logging.getLogger(__name__)

# Bump when a change to this package changes what a build writes (it invalidates cached models).
BUILD_CODE_VERSION = "export-1"

DEFAULT_MODELS = {"jetson-nano": ("hardnet39ds", "hardnet68ds", "mobilenetv2", "mobilenetv2_140")}
FALLBACK_DEFAULT_MODELS = DEFAULT_MODELS["jetson-nano"]



@dataclass
class ModelBuildResult:
    name: str
    reused: bool
    seconds: float
    record: dict[str, Any]


@dataclass
class BuildResult:
    bundle: Bundle
    models: list[ModelBuildResult]

    @property
    def out_dir(self) -> str:
        return self.bundle.root


# ------------------------------------------------------------------------------------------------
# Validation (before any work)
# ------------------------------------------------------------------------------------------------
def default_models(target) -> tuple[str, ...]:
    return DEFAULT_MODELS.get(target.name, FALLBACK_DEFAULT_MODELS)


def parse_weights_args(values: list[str], names: list[str]) -> dict[str, str]:
    """``--weights name=PATH`` (repeatable) or a single ``PATH`` when exactly one model is built.

    ``NAME=PATH`` is read as a bare path when NAME is no model being built and the whole value is
    an existing file (a path may contain '=').
    """
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        named = bool(sep) and name in names
        if sep and not named and not os.path.exists(value):
            raise UsageError(f"--weights {value}: {name!r} is not one of the models being built ({', '.join(names)})",
                             hint="write --weights MODEL=PATH with a model from --models")
        if not named:
            if len(names) != 1:
                example = f"--weights {names[0]}={value}" if names else "--weights MODEL=PATH"
                raise UsageError(f"--weights {value} gives no model name but {len(names)} models are being built",
                                 hint=f"write --weights MODEL=PATH, e.g. {example}")
            name, path = names[0], value
        if not path:
            raise UsageError(f"--weights {value} has an empty path", hint="write --weights MODEL=PATH")
        if name in out:
            raise UsageError(f"--weights names {name} twice", hint="give one checkpoint per model")
        out[name] = path
    return out


def check_output_dir(out_dir: str) -> None:
    """Raise PipelineError unless ``out_dir`` (and its models/ folder) can be created and written."""
    for folder in (out_dir, os.path.join(out_dir, "models")):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise PipelineError(f"output folder {folder} exists and is not a folder",
                                hint="choose another --out, or move that file away")
        if folder != out_dir and not os.path.isdir(folder):
            continue   # made when its first file is written: a failed first build leaves no empty models/
        problem = folder_write_problem(folder)
        if problem:
            raise PipelineError(f"output folder {folder} {problem}",
                                hint="choose a writable --out folder, or fix its permissions")


# ------------------------------------------------------------------------------------------------
# Cache key, counting
# ------------------------------------------------------------------------------------------------
PREPROCESS_KEYS = ("mean", "std", "crop_pct", "interpolation")


def read_preprocess_override(path: str) -> dict[str, Any]:
    """Read ``--preprocess FILE``: a JSON object with any of mean, std, crop_pct, interpolation,
    bare or under a "preprocessing" key (so a training run's checkpoint sidecar can be passed as is)."""
    if os.path.exists(path) and not os.path.isfile(path):   # a FIFO or a device would block the read
        raise UsageError(f"--preprocess {path} is not a regular file",
                         hint="give a JSON file such as {\"mean\": [...], \"std\": [...], \"crop_pct\": 1.0}")
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read --preprocess file {path}: {exc.strerror}",
                         hint="give a JSON file such as {\"mean\": [...], \"std\": [...], \"crop_pct\": 1.0}") from None
    except ValueError as exc:
        raise UsageError(f"--preprocess file {path} is not valid JSON ({exc})", hint="fix the JSON") from None
    if isinstance(data, dict) and isinstance(data.get("preprocessing"), dict):
        data = data["preprocessing"]
    if not isinstance(data, dict):
        raise UsageError(f"--preprocess file {path} must hold a JSON object", hint="e.g. {\"crop_pct\": 1.0}")
    override = {k: data[k] for k in PREPROCESS_KEYS if k in data}
    if not override:
        raise UsageError(f"--preprocess file {path} sets none of {', '.join(PREPROCESS_KEYS)}",
                         hint="e.g. {\"mean\": [0.5, 0.5, 0.5], \"std\": [0.25, 0.25, 0.25]}")
    for key in ("mean", "std"):
        if key in override and (not isinstance(override[key], list) or len(override[key]) != 3
                                or not all(isinstance(v, (int, float)) for v in override[key])):
            raise UsageError(f"--preprocess {key} must be three numbers (RGB), got {override[key]!r}",
                             hint=f"e.g. \"{key}\": [0.5, 0.5, 0.5]")
    if "std" in override and any(v <= 0 for v in override["std"]):
        raise UsageError("--preprocess std values must be positive", hint="check the file")
    if "crop_pct" in override and not (isinstance(override["crop_pct"], (int, float)) and 0 < override["crop_pct"] <= 1):
        raise UsageError(f"--preprocess crop_pct must be in (0, 1], got {override['crop_pct']!r}",
                         hint="1.0 means no crop; 0.875 is torchvision's 256 -> 224")
    if "interpolation" in override and override["interpolation"] not in ("bilinear", "bicubic", "nearest"):
        raise UsageError(f"--preprocess interpolation {override['interpolation']!r} is unknown",
                         hint="use bilinear, bicubic or nearest")
    return override


def preprocessing_record(card: Any, options: BuildOptions) -> dict[str, Any]:
    """The manifest's preprocessing: the model card's, with ``--preprocess`` applied on top."""
    cfg = card.preprocess_config(options.size)
    if options.preprocess:
        o = options.preprocess
        cfg = cfg._replace(
            mean=tuple(float(v) for v in o.get("mean", cfg.mean)),
            std=tuple(float(v) for v in o.get("std", cfg.std)),
            crop_pct=float(o.get("crop_pct", cfg.crop_pct)),
            interpolation=str(o.get("interpolation", cfg.interpolation)))
    record = config_to_dict(cfg)
    record["source"] = "--preprocess override" if options.preprocess else "model card"
    return record


def cache_key(source: Source, options: BuildOptions, tool_versions: dict[str, Any]) -> str:
    payload = {
        "code": BUILD_CODE_VERSION,
        "model": source.name,
        "user_code": source.code_hash,
        "weights_sha256": source.weights_sha256,
        "num_classes": options.num_classes,
        "input_shape": [options.batch, 3, options.size, options.size],
        "dynamic_batch": options.dynamic_batch,
        "opset": options.target.max_opset,
        "target_tensorrt": options.target.tensorrt,
        "tools": tool_versions,
        "preprocess": options.preprocess,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class MacCounter:
    """Forward hooks counting multiply-accumulates of Conv and Linear layers, per image."""

    def __init__(self, model) -> None:
        from torch import nn

        self.total = 0
        self.images = 0
        self._handles = []
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                self._handles.append(module.register_forward_hook(self._conv))
            elif isinstance(module, nn.Linear):
                self._handles.append(module.register_forward_hook(self._linear))
        self._pre = model.register_forward_pre_hook(self._count_images)

    def _count_images(self, module, inputs):
        self.images += int(inputs[0].shape[0])

    def _conv(self, module, inputs, output):
        per_output = (module.in_channels // module.groups)
        for k in module.kernel_size:
            per_output *= int(k)
        self.total += int(output.numel()) * per_output

    def _linear(self, module, inputs, output):
        self.total += int(output.numel()) * module.in_features

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._pre.remove()

    @property
    def per_image(self) -> int:
        return self.total // self.images if self.images else 0


# ------------------------------------------------------------------------------------------------
# One model
# ------------------------------------------------------------------------------------------------
def _reusable(bundle: Bundle, name: str, key: str, options: BuildOptions) -> dict[str, Any] | None:
    record = bundle.manifest.get("models", {}).get(name)
    if not isinstance(record, dict) or record.get("build", {}).get("key") != key:
        return None
    entry = record.get("onnx") or {}
    try:
        bundle.verify_file(entry.get("path", onnx_relpath(name)), entry.get("sha256"))
    except BundleError as exc:
        LOG.info("%s: cached ONNX not usable (%s); rebuilding", name, exc)
        return None
    # A matching sha256 proves only that the file is the one the manifest names, and a manifest can
    # be edited: re-run the graph checks on what is reused (parity stays the recorded one, said so).
    try:
        import onnx

        from export.opset_check import allowed_ops_for, check_graph

        path = bundle.path(entry.get("path", onnx_relpath(name)))
        onnx.checker.check_model(path, full_check=True)
        allowed, strict = allowed_ops_for(options.target)
        model = onnx.load(path)
        check_graph(model, opset=options.target.max_opset, allowed=allowed if strict else None,
                    label=f"{name} (reused)", target_label=options.target.name)
    except Exception as exc:  # noqa: BLE001 - onnx raises several unrelated types for a bad file
        LOG.warning("%s: the ONNX file the manifest names fails its checks (%s); rebuilding it", name,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    # A valid graph of another model, its sha256 edited in, passes those checks: it must also be the
    # graph the record describes, or the summary would report that record's parity for it.
    differences = record_mismatches(record, model)
    if differences:
        LOG.warning("%s: the ONNX file the manifest names is not the graph its record describes (%s); "
                    "rebuilding it", name, "; ".join(differences))
        return None
    return record


def record_mismatches(record: dict[str, Any], model) -> list[str]:
    """How the ONNX graph ``model`` differs from what its manifest ``record`` says of it: node count
    and operator histogram after onnxsim, opset, input and output names and shapes. [] if none."""
    from export.onnx_export import graph_io_shape
    from export.opset_check import main_opset, op_histogram

    entry, graph = record.get("onnx") or {}, model.graph
    found = {"nodes": len(graph.node), "ops": op_histogram(model), "opset": main_opset(model)}
    out = [f"{key} {entry.get(key)!r} recorded, {found[key]!r} in the file"
           for key in ("nodes", "opset") if entry.get(key) != found[key]]
    if entry.get("ops") != found["ops"]:
        out.append("operator counts differ")
    for side, values in (("input", graph.input), ("output", graph.output)):
        recorded = record.get(side) or {}
        if len(values) != 1:
            out.append(f"{len(values)} {side}s in the file, 1 recorded")
            continue
        shape = graph_io_shape(values[0])
        expected = list(recorded.get("shape") or [])
        if (record.get("input") or {}).get("dynamic_batch") and shape and expected:
            expected[0] = shape[0] if not isinstance(shape[0], int) else None   # a named batch dimension
        if values[0].name != recorded.get("name") or shape != expected:
            out.append(f"{side} {values[0].name} {shape} in the file, {recorded.get('name')} "
                       f"{recorded.get('shape')} recorded")
    return out


def _check_finite_weights(model, name: str, weights_path: str | None) -> None:
    """NaN or inf in the weights is the checkpoint's fault, not a stage's: say so before any stage runs."""
    import torch

    from deploy.errors import WeightsError

    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{name}: the weights hold NaN or infinite values ({key})",
                               hint=f"the checkpoint {weights_path or '(none)'} is damaged or its training diverged: "
                                    "use another checkpoint")


def _build_one(source: Source, options: BuildOptions, tool_versions: dict[str, Any],
               key: str, work_dir: str) -> tuple[dict[str, Any], str]:
    """Run every stage for one model in ``work_dir``; return (manifest record, path of the final ONNX)."""
    import onnx

    from export import parity as par
    from export.fold_bn import count_batchnorm, fold_batchnorm
    from export.onnx_export import export_onnx
    from export.opset_check import allowed_ops_for, check_graph
    from export.simplify import simplify_onnx
    from models.registry import label_names

    name, target = source.name, options.target
    started = time.perf_counter()
    timings: dict[str, float] = {}
    clock = [started]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timings[stage] = round(now - clock[0], 3)
        clock[0] = now

    LOG.info("%s: load (%s)", name, source.weights_path or "random weights")
    model, card, weights_record = source.load()
    model = model.eval()
    _check_finite_weights(model, name, source.weights_path)
    params = sum(int(p.numel()) for p in model.parameters())
    lap("load")

    LOG.info("%s: fold BatchNorm", name)
    folded, fold_report = fold_batchnorm(model)
    bn_left = count_batchnorm(folded)
    lap("fold")

    channels = int(card.input_size[0])
    shape = (options.batch, channels, options.size, options.size)
    LOG.info("%s: export ONNX opset %d, input %s%s", name, target.max_opset, "x".join(map(str, shape)),
             " (dynamic batch)" if options.dynamic_batch else "")
    raw_path = os.path.join(work_dir, f"{name}.exported.onnx")
    final_tmp = os.path.join(work_dir, f"{name}.onnx")
    exported = export_onnx(folded, raw_path, input_shape=shape, opset=target.max_opset,
                           dynamic_batch=options.dynamic_batch)
    lap("export")
    allowed, strict = allowed_ops_for(target)
    label = f"TensorRT {target.tensorrt}" if target.tensorrt else target.name
    check_graph(onnx.load(raw_path), opset=target.max_opset, allowed=allowed if strict else None,
                label=f"{name} (exported)", target_label=label)

    LOG.info("%s: simplify (onnxsim)", name)
    simplified = simplify_onnx(raw_path, final_tmp)
    lap("simplify")
    ops = check_graph(onnx.load(final_tmp), opset=target.max_opset, allowed=allowed if strict else None,
                      label=f"{name} (simplified)", target_label=label)
    if allowed is not None and not strict:
        from export.opset_check import unsupported_ops

        unknown = unsupported_ops(ops, allowed)
        if unknown:
            LOG.warning("%s: operators %s are not in the TensorRT 8.2 list; check %s parses them",
                        name, ", ".join(unknown), label)

    LOG.info("%s: parity (folded PyTorch, ONNX, simplified ONNX vs eager PyTorch)", name)
    parity_batch = max(options.batch, 2) if options.dynamic_batch else options.batch
    inputs = par.parity_inputs((parity_batch, channels, options.size, options.size))
    reference = par.run_torch(model, inputs)
    counter = MacCounter(folded)
    try:
        folded_out = par.run_torch(folded, inputs)
    finally:
        counter.remove()
    stages = collections.OrderedDict()
    stages["folded_pytorch"] = par.stage_parity(reference, folded_out, "folded PyTorch", name)
    stages["onnx"] = par.stage_parity(reference, par.run_onnx(raw_path, inputs, threads=options.threads),
                                      "exported ONNX (ONNX Runtime)", name)
    stages["onnx_simplified"] = par.stage_parity(reference, par.run_onnx(final_tmp, inputs, threads=options.threads),
                                                 "simplified ONNX (ONNX Runtime)", name)
    lap("parity")

    # Every check passed: describe the model; _build_all then puts final_tmp in place with the manifest.
    relpath = onnx_relpath(name)
    num_classes = int(reference.shape[-1])
    labels = label_names(card) if getattr(card, "num_classes", None) == num_classes else None
    record: dict[str, Any] = collections.OrderedDict()
    record["onnx"] = {"path": relpath, "sha256": simplified.sha256, "opset": target.max_opset,
                      "nodes_before_simplify": exported.nodes, "nodes": simplified.nodes_after,
                      "ops": simplified.ops}
    record["input"] = {"name": exported.input_name, "shape": list(shape), "dtype": "float32",
                       "dynamic_batch": options.dynamic_batch}
    record["output"] = {"name": exported.output_name, "shape": [options.batch, num_classes]}
    record["preprocessing"] = preprocessing_record(card, options)
    record["num_classes"] = num_classes
    record["labels"] = labels
    record["weights"] = weights_record
    record["params"] = params
    record["macs"] = counter.per_image
    record["family"] = card.family
    record["published"] = dict(card.published)
    record["bn_folding"] = dict(fold_report.to_dict(), batchnorm_modules_left=bn_left)
    record["parity"] = {
        "reference": "eager PyTorch (unfolded), eval mode",
        "inputs": {"seed": par.PARITY_SEED, "count": len(inputs), "shape": list(inputs[0].shape),
                   "distribution": "standard normal"},
        "tolerances": par.TOLERANCES,
        "stages": {k: v.to_dict() for k, v in stages.items()},
        "passed": all(v.passed for v in stages.values()),
    }
    record["simplify"] = dict(simplified.to_dict(), version=tool_versions.get("onnxsim"))
    record["build"] = {"key": key, "code_version": BUILD_CODE_VERSION, "seconds": round(time.perf_counter() - started, 2),
                       "stage_seconds": timings}
    return record, final_tmp


# ------------------------------------------------------------------------------------------------
# The bundle
# ------------------------------------------------------------------------------------------------
def _open_bundle(options: BuildOptions) -> Bundle:
    """The bundle at ``out_dir`` (new if none). A manifest that cannot be read is replaced only with --force."""
    from deploy.bundle import MANIFEST_NAME

    target = dict(options.target._asdict())
    try:
        return Bundle.open_or_new(options.out_dir, target)
    except BundleError as exc:
        manifest = os.path.join(options.out_dir, MANIFEST_NAME)
        try:
            with open(manifest) as handle:
                other_target = json.load(handle).get("target", {}).get("name")
        except (OSError, ValueError, AttributeError):
            other_target = None
        if other_target and other_target != options.target.name:
            raise   # a bundle of another target: never overwrite it, even with --force
        if not options.force:
            raise BundleError(str(exc), hint=f"pass --force to start a new manifest in {options.out_dir}, "
                                              "or choose another --out") from None
        LOG.warning("%s (%s): starting a new manifest because of --force", exc, manifest)
        return Bundle.new(options.out_dir, target)


@contextlib.contextmanager
def _torch_threads(threads: int):
    """Run with ``threads`` torch intra-op threads, then restore.

    One thread by default: the build's own inference is a few small forward passes, and torch's
    OpenMP threads spin-wait badly when the cores are shared (measured on the 2-core host under
    load: 4.3 s with 2 threads against 0.6 s with 1 for two HarDNet68DS passes at 320x320).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


WORK_DIR_PREFIX = ".pipeline-build-"   # a build's private work folder inside the bundle
# mkdtemp adds 8 characters; the ".tmp" suffix puts the folder under the documented rsync's
# --exclude '.*.tmp', so a build killed mid-way does not ship its work files to the device.
# Builds before that made ".pipeline-build-XXXXXXXX": both are recognised as ours.
WORK_DIR_SUFFIX = ".tmp"
_WORK_DIR_NAME = re.compile(r"^" + re.escape(WORK_DIR_PREFIX) + r"[a-z0-9_]{8}(" + re.escape(WORK_DIR_SUFFIX) + ")?$")
# what _build_one writes in it: <name>.exported.onnx, <name>.onnx and their atomic temporaries
_WORK_FILE_SUFFIXES = (".onnx", ".onnx.data")


def is_work_folder(path: str) -> bool:
    """Whether ``path`` is a work folder a build of ours made: its exact name, a real folder (not a
    link) holding only the files a build writes there. Anything else is someone's and is kept."""
    if not _WORK_DIR_NAME.match(os.path.basename(path)) or os.path.islink(path) or not os.path.isdir(path):
        return False
    try:
        entries = os.listdir(path)
    except OSError:
        return False
    for entry in entries:
        inner = os.path.join(path, entry)
        if os.path.islink(inner) or not os.path.isfile(inner):
            return False
        if not (entry.endswith(_WORK_FILE_SUFFIXES) or is_temp_name(entry)):
            return False
    return True


def check_build_folder(out_dir: str) -> None:
    """Refuse to build into an existing folder that holds anything but a bundle (or what a build of
    ours left in it: the writer lock, an empty models/, a work folder). Build never writes, and
    never cleans, in a folder of someone else's files."""
    from deploy.bundle import LOCK_NAME, MANIFEST_NAME

    if not os.path.isdir(out_dir) or os.path.isfile(os.path.join(out_dir, MANIFEST_NAME)):
        return
    others = []
    for entry in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, entry)
        if entry == LOCK_NAME and os.path.isfile(path):
            continue
        if entry == "models" and os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
            continue
        if is_work_folder(path):
            continue
        others.append(entry)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise UsageError(f"--out {out_dir} is a folder that is not empty and not a bundle (no manifest.json; "
                         f"it holds {shown})",
                         hint="give a new or empty folder, or an existing bundle, as --out: build writes only "
                              "there and never removes files it did not make")


def remove_leftovers(out_dir: str) -> int:
    """Remove what an interrupted build left in the bundle ``out_dir``: its work folders
    (is_work_folder) and half-written temporary files of the files only a build writes (models/,
    calibration/).

    A killed process (SIGKILL, power loss) cannot clean up after itself; call this only while
    holding the bundle's writer lock, so no other build is using them. In a folder that is not a
    bundle (no manifest.json: a first build was killed, or the folder is someone else's) nothing is
    removed: a leftover work folder stays until a build of the bundle made there removes it. Returns how many were removed.
    """
    from deploy.bundle import MANIFEST_NAME, VERIFY_IMAGES_DIR, check_bundle_folders

    if not os.path.isdir(out_dir):
        return 0
    check_build_folder(out_dir)   # a folder of someone else's files: refused, nothing removed
    if not os.path.isfile(os.path.join(out_dir, MANIFEST_NAME)):
        kept = sorted(e for e in os.listdir(out_dir) if is_work_folder(os.path.join(out_dir, e)))
        if kept:
            LOG.warning("%s is not a bundle yet: left %s of an interrupted build in place (the next build "
                        "of the bundle removes it)", out_dir, ", ".join(kept))
        return 0
    written = ("models", "calibration", VERIFY_IMAGES_DIR)   # the folders only a build writes
    check_bundle_folders(out_dir, written)   # a link to elsewhere: refused, nothing removed
    removed = 0
    for entry in os.listdir(out_dir):
        path = os.path.join(out_dir, entry)
        if is_work_folder(path):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    for folder in written:   # verify_images/ has one sub-folder per class
        for root, dirs, files in os.walk(os.path.join(out_dir, folder)):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
            for entry in files:
                if is_temp_name(entry):
                    os.unlink(os.path.join(root, entry))
                    removed += 1
    if removed:
        LOG.info("removed %d leftover(s) of an interrupted build from %s", removed, out_dir)
    return removed


def build_bundle(options: BuildOptions, progress: bool = True) -> BuildResult:
    """Build (or reuse) every requested model into the bundle at ``options.out_dir``."""
    from deploy.versions import tool_versions as collect_versions

    sources = resolve_sources(options)
    check_output_dir(options.out_dir)
    bundle = _open_bundle(options)
    versions = collect_versions()
    bundle.manifest["tool_versions"] = versions
    models = bundle.manifest.pop("models", None)
    bundle.manifest["models"] = models if models is not None else collections.OrderedDict()
    if options.precision:
        bundle.manifest["precision"] = options.precision
    if options.precision_choice:
        bundle.manifest["precision_choice"] = options.precision_choice
    results: list[ModelBuildResult] = []
    bar = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(_torch_threads(options.threads))
        if progress:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar = stack.enter_context(tqdm(total=len(sources), desc="build", unit="model", leave=False))
            stack.enter_context(logging_redirect_tqdm())
        _build_all(sources, options, bundle, versions, results, bar)
    _write_smoke(bundle, options.target.max_opset)
    bundle.save()
    return BuildResult(bundle=bundle, models=results)


def _write_smoke(bundle: Bundle, opset: int) -> None:
    """The smoke model `doctor` runs on the device (export/smoke.py); cheap, so always rewritten."""
    from export.smoke import write_smoke

    bundle.manifest["smoke"] = write_smoke(bundle, opset)


def _build_all(sources, options: BuildOptions, bundle: Bundle, versions: dict[str, Any],
               results: list[ModelBuildResult], bar) -> None:
    for source in sources:
        if bar is not None:
            bar.set_postfix_str(source.name)
        started = time.perf_counter()
        key = cache_key(source, options, versions)
        record = None if options.force else _reusable(bundle, source.name, key, options)
        if record is not None:
            LOG.info("%s: inputs and options unchanged: reusing %s", source.name, record["onnx"]["path"])
            results.append(ModelBuildResult(source.name, True, time.perf_counter() - started, record))
        else:
            work_dir = tempfile.mkdtemp(prefix=WORK_DIR_PREFIX, suffix=WORK_DIR_SUFFIX, dir=options.out_dir)
            try:
                record, onnx_file = _build_one(source, options, versions, key, work_dir)
                # Only now, with every check passed, replace the bundle's file and its record together:
                # the new file waits complete beside the old one until the manifest naming it is saved,
                # so a failed save (a full disk) leaves the old file and the old manifest, in step.
                with atomic_path(bundle.path(record["onnx"]["path"])) as tmp:
                    os.replace(onnx_file, tmp)
                    previous = bundle.manifest["models"].get(source.name)
                    bundle.set_model(source.name, record)
                    try:
                        bundle.save()
                    except BaseException:
                        if previous is None:
                            del bundle.manifest["models"][source.name]
                        else:
                            bundle.set_model(source.name, previous)
                        raise
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
            results.append(ModelBuildResult(source.name, False, time.perf_counter() - started, record))
            LOG.info("%s: done in %.1f s", source.name, time.perf_counter() - started)
        if options.input_kind == "uint8":   # preprocessing in the graph, parity-checked, beside the float model
            from export.uint8_input import ensure_uint8_model

            ensure_uint8_model(bundle, source.name, threads=options.threads)
            results[-1].record = bundle.model(source.name)
        if bar is not None:
            bar.update(1)
