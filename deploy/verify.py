"""verify: how much of the FP32 model's behaviour each stage and precision keeps, on held-out images.

For every model in a bundle it runs every stage available here on the same preprocessed images:

  host:   eager PyTorch (the reference), BN-folded PyTorch, the bundle's FP32 ONNX and its ONNX
          Runtime INT8 model (when present)
  device: TensorRT engines found in the bundle (when TensorRT imports) and ONNX Runtime
  opt-in: OpenVINO on the CPU (``openvino=True``, ``verify --openvino``): FP32, BF16 where the CPU
          has AVX512_BF16/AMX-BF16, and the INT8 QDQ model; each row names the precision that
          OpenVINO reports it compiled

and reports, against the reference: top-1 agreement, cosine similarity of the logits (mean and
minimum), and accuracy where the images are labelled (one folder per class). Where PyTorch cannot
re-create the model (no torch, random weights, checkpoint not found) the FP32 ONNX model on ONNX
Runtime is the reference, and the report says so.

Writes reports/verify.json and reports/verify.md atomically. Python 3.6-compatible; torch, the
model zoo, tensorrt and onnxruntime are imported lazily.
"""
import collections
import contextlib
import functools
import glob
import logging
import os
import platform
import sys
import time

import numpy as np

from deploy.atomic import json_bytes
from deploy.bundle import VERIFY_IMAGES_DIR, VERIFY_IMAGES_KEY
from deploy.errors import BackendUnavailableError, PipelineError, UsageError
from deploy.preprocess import (
    ImageError,
    config_from_dict,
    folder_label,
    list_image_files,
    pick_order,
)

LOG = logging.getLogger(__name__)

DEFAULT_COUNT = 200
GENERIC_SEED = 1  # another crop sequence than calibration's (seed 0)
REPORT_JSON = "reports/verify.json"
REPORT_MD = "reports/verify.md"

Stage = collections.namedtuple("Stage", ["name", "precision", "backend", "source", "open"])
# name: "pytorch", "pytorch-bn-folded", "onnx-fp32", "onnx-int8", "tensorrt-fp16", ...
# open: a callable returning a Runner (deploy.runners.contract contract: context manager + infer)

VerifyImage = collections.namedtuple("VerifyImage", ["name", "label", "load", "source"])
# load: callable(cfg) -> float32 (3, H, W); label: class folder name or None; source: what predict's fast
# path decodes (a file path, or a callable(cfg) -> PIL image), None when it cannot be given
VerifyImage.__new__.__defaults__ = (None,)


class VerifyError(PipelineError):
    """verify could not run (no images, no stage to compare)."""


# ------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------
def folder_images(folder, count):
    """Up to ``count`` images of ``folder`` in a deterministic pick; labels from first sub-folders."""
    folder = str(folder)
    if not os.path.isdir(folder):
        raise UsageError("--images {} is not a folder".format(folder),
                         hint="give a folder of JPEG/PNG images, one sub-folder per class for accuracy")
    paths = list_image_files(folder)
    if not paths:
        raise VerifyError("no JPEG/PNG images found in {}".format(folder),
                          hint="lay the images out as DIR/<class name>/*.png (or .jpg)")
    return [VerifyImage(path, folder_label(path, folder), _file_loader(path), path) for path in pick_order(paths)[:count]]


def _file_loader(path):
    from deploy.preprocess import preprocess_file

    return lambda cfg: preprocess_file(path, cfg)


def label_index(label, labels, num_classes):
    """Class index of folder name ``label``: its place in the model's label list, else an integer name."""
    if label is None:
        return None
    if labels and label in labels:
        return labels.index(label)
    try:
        index = int(label)
    except ValueError:
        return None
    return index if 0 <= index < int(num_classes or 0) else None


# ------------------------------------------------------------------------------------------------
# stages
# ------------------------------------------------------------------------------------------------
NO_TORCH_NOTE = ("PyTorch stages skipped: torch or the model zoo is not available here (the device has "
                 "neither; on the host the CLI passes them in)")


def torch_stages(record, name, make=None):
    """PyTorch stages (eager, BN-folded) from ``make(record, name)``, the host's maker that
    the CLI (cli/verify.py) passes in (calibration.torch_stages); none without it. -> (stages, notes).

    Injected rather than imported: deploy/ is device code and must not import a host package."""
    if make is None:
        return [], [NO_TORCH_NOTE]
    return make(record, name)


def onnx_stages(bundle, record, threads=None):
    stages, notes = [], []
    try:
        from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner, import_onnxruntime

        import_onnxruntime()
    except BackendUnavailableError as exc:
        return [], ["ONNX Runtime stages skipped: {}".format(exc)]
    for key, stage_name, precision in (("onnx", "onnx-fp32", "fp32"), ("int8_onnx", "onnx-int8", "int8")):
        entry = record.get(key) or {}
        if not entry.get("path"):
            continue
        path = bundle.path(entry["path"])
        if not os.path.isfile(path):
            notes.append("{} skipped: {} is listed but missing".format(stage_name, entry["path"]))
            continue
        label = "onnxruntime"
        if key == "int8_onnx":
            label += " (QDQ, {} calibration{})".format(
                entry.get("calib_method", "?"), ", generic data" if entry.get("generic_calibration") else "")
        stages.append(Stage(stage_name, precision, label, entry["path"],
                            functools.partial(OnnxRuntimeRunner, path, threads=threads)))
    return stages, notes


def openvino_stages(bundle, record, threads=None, isa=None):
    """OpenVINO stages: fp32, bf16 (where the CPU runs it natively) and int8 (the QDQ model)."""
    from deploy.cpu_isa import local_cpu_isa
    from deploy.runners.openvino_runner import OpenVinoRunner, import_openvino

    try:
        import_openvino()
    except BackendUnavailableError as exc:
        return [], ["OpenVINO stages skipped: {}".format(exc.one_line())]
    isa = isa or local_cpu_isa()
    stages, notes = [], []
    plan = [("onnx", "fp32"), ("onnx", "bf16"), ("int8_onnx", "int8")]
    for key, precision in plan:
        entry = record.get(key) or {}
        if not entry.get("path"):
            continue
        if precision == "bf16" and not isa.bf16_dot:
            notes.append("openvino-bf16 skipped: this CPU ({}) lacks AVX512_BF16 and AMX-BF16".format(isa.model))
            continue
        path = bundle.path(entry["path"])
        if not os.path.isfile(path):
            notes.append("openvino-{} skipped: {} is listed but missing".format(precision, entry["path"]))
            continue
        stages.append(Stage("openvino-" + precision, precision, "openvino", entry["path"],
                            functools.partial(OpenVinoRunner, path, threads=threads, precision=precision)))
    return stages, notes


def fast_stages(bundle, record, threads=None):
    """predict's fast preprocessing (deploy.predict.decode, decoder "auto") on the FP32 ONNX model and, where
    the bundle has one, its uint8-input graph: -> ([(Stage, input kind)], notes)."""
    from deploy.predict.decode import resolve_decoder

    onnx_runs = [s for s in onnx_stages(bundle, record, threads)[0] if s.name == "onnx-fp32"]
    if not onnx_runs:
        return [], []
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

    decoder = resolve_decoder("auto")
    out = [(onnx_runs[0]._replace(name="onnx-fp32-fastpre", backend="onnxruntime, {} decode".format(decoder)),
            "float32")]
    entry = record.get("uint8_onnx") or {}
    if entry.get("path") and os.path.isfile(bundle.path(entry["path"])):
        out.append((Stage("onnx-uint8-fastpre", "fp32", "onnxruntime, {} decode, uint8 graph".format(decoder),
                          entry["path"], functools.partial(OnnxRuntimeRunner, bundle.path(entry["path"]),
                                                           threads=threads)), "uint8"))
    return out, []


def tensorrt_stages(bundle, name):
    """The TensorRT engines of ``name`` built for this machine, when TensorRT imports here."""
    engines = glob.glob(os.path.join(bundle.path("engines"), "{}.*.engine".format(name)))
    try:
        from deploy.tensorrt.compat import tensorrt_available
        from deploy.tensorrt.engine_files import find_engine
        from deploy.tensorrt.runner import TensorRTRunner
    except ImportError as exc:
        return [], ["TensorRT stages skipped: the TensorRT runner is not available ({})".format(exc)] if engines else []
    if not tensorrt_available():
        if engines:
            return [], ["TensorRT stages skipped: {} engine(s) in the bundle but TensorRT is not installed "
                        "here".format(len(engines))]
        return [], []
    stages, notes = [], []
    for precision in ("fp32", "fp16", "int8"):
        try:
            rel = find_engine(bundle, name, precision)
        except PipelineError as exc:
            if "stale" in str(exc):
                notes.append("tensorrt-{} skipped: {}".format(precision, exc.one_line()))
            continue
        stages.append(Stage("tensorrt-" + precision, precision, "tensorrt", rel,
                            functools.partial(TensorRTRunner, bundle.path(rel))))
    return stages, notes


# ------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------
def cosine(a, b):
    """Row-wise cosine similarity of two (N, C) arrays (1.0 where both rows are zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dot = (a * b).sum(axis=1)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    out = np.ones(len(a))
    nonzero = norm > 0
    out[nonzero] = dot[nonzero] / norm[nonzero]
    return out


def compare(reference, logits, labels):
    """Agreement, cosine and accuracy of ``logits`` against ``reference`` (both (N, C))."""
    ref_top = reference.argmax(axis=1)
    top = logits.argmax(axis=1)
    cos = cosine(reference, logits)
    out = collections.OrderedDict()
    out["images"] = int(len(top))
    out["top1_agreement"] = float((top == ref_top).mean())
    out["disagreements"] = int((top != ref_top).sum())
    out["cosine_mean"] = float(cos.mean())
    out["cosine_min"] = float(cos.min())
    known = np.array([lab is not None for lab in labels], dtype=bool)
    if known.any():
        truth = np.array([lab for lab in labels if lab is not None], dtype=np.int64)
        out["labelled_images"] = int(known.sum())
        out["accuracy"] = float((top[known] == truth).mean())
    else:
        out["accuracy"] = None
    return out


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def _progress(total, desc, enabled):
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False, file=sys.stderr)


class _NoBar(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass


def _fixed_batch(record):
    """The batch size a model with a fixed batch takes (1 when dynamic)."""
    shape = (record.get("input") or {}).get("shape") or [1]
    first = shape[0]
    if (record.get("input") or {}).get("dynamic_batch") or not isinstance(first, int) or first < 1:
        return 1
    return first


def verify_model(bundle, name, images, threads=None, progress=True, openvino=False, make_torch_stages=None):
    """Run every stage of ``name`` on ``images``; return the model's report dict.

    ``openvino``: also the OpenVINO stages (fp32, bf16 where native, int8). ``make_torch_stages``:
    see ``torch_stages``."""
    record = bundle.model(name)
    cfg = config_from_dict(record["preprocessing"])
    input_name = (record.get("input") or {}).get("name", "input")
    batch = _fixed_batch(record)
    labels_list = record.get("labels") if isinstance(record.get("labels"), list) else None
    num_classes = record.get("num_classes")
    notes = []
    stages, more = torch_stages(record, name, make_torch_stages)
    notes.extend(more)
    makers = [lambda: onnx_stages(bundle, record, threads), lambda: tensorrt_stages(bundle, name)]
    if openvino:
        makers.append(lambda: openvino_stages(bundle, record, threads))
    for make in makers:
        found, more = make()
        stages.extend(found)
        notes.extend(more)
    fast = collections.OrderedDict()   # stage name -> input kind, for predict's fast preprocessing
    if all(image.source is not None for image in images):
        for stage, kind in fast_stages(bundle, record, threads)[0]:
            stages.append(stage)
            fast[stage.name] = kind
    if not stages:
        raise VerifyError("no stage of {} can run here".format(name),
                          hint="install onnxruntime (or torch on the host) and check the bundle with `verify -v`")
    reference = stages[0]
    if reference.name != "pytorch":
        notes.append("reference is {} ({}): PyTorch could not re-create the model here".format(
            reference.name, reference.source))
    outputs = collections.OrderedDict((s.name, []) for s in stages)
    errors = collections.OrderedDict()
    truth, used, skipped = [], [], []
    started = time.time()
    with contextlib.ExitStack() as stack:
        runners = collections.OrderedDict()
        for stage in stages:
            try:
                runners[stage.name] = stack.enter_context(stage.open())
            except Exception as exc:  # noqa: BLE001 - ONNX Runtime/TensorRT load errors share no base class;
                # one stage that cannot load is reported as that stage's error, not the end of the report
                if not isinstance(exc, PipelineError):
                    exc = PipelineError("{}: {}".format(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""))
                errors[stage.name] = exc.one_line()
                LOG.warning("%s: stage %s cannot run: %s", name, stage.name, exc.one_line())
        if reference.name not in runners:
            raise VerifyError("the reference stage {} of {} cannot run: {}".format(
                reference.name, name, errors.get(reference.name)), hint="see the message above")
        with _progress(len(images), "verify {}".format(name), progress) as bar:
            for image in images:
                try:
                    x = np.repeat(image.load(cfg)[None], batch, axis=0)  # a fixed batch: the image repeated
                    fast_x = _fast_inputs(image, cfg, batch, fast) if fast else {}
                except ImageError as exc:
                    skipped.append(image.name)
                    LOG.warning("skipped %s", exc.one_line())
                    bar.update(1)
                    continue
                for stage_name, runner in runners.items():
                    if stage_name in fast:
                        result = runner.infer({list(runner.input_metadata())[0]: fast_x[fast[stage_name]]})
                        outputs[stage_name].append(np.asarray(list(result.values())[0], np.float32).reshape(batch, -1)[0])
                        continue
                    result = runner.infer({input_name: x})
                    logits = np.asarray(list(result.values())[0], dtype=np.float32)
                    outputs[stage_name].append(logits.reshape(batch, -1)[0])
                truth.append(label_index(image.label, labels_list, num_classes))
                used.append(image.name)
                bar.update(1)
    if not used:
        raise VerifyError("none of the {} image(s) could be read".format(len(images)),
                          hint="check the image folder; see the warnings above")
    ref = np.stack(outputs[reference.name])
    rows = []
    for stage in stages:
        # the precision that ran, where the runtime reports it (OpenVINO reads back its compiled model)
        ran = getattr(runners.get(stage.name), "precision_ran", None)
        row = collections.OrderedDict([("stage", stage.name), ("precision", ran or stage.precision),
                                       ("backend", stage.backend), ("source", stage.source)])
        if ran and ran != stage.precision:
            row["precision_requested"] = stage.precision
        if stage.name in errors:
            row["error"] = errors[stage.name]
        else:
            row.update(compare(ref, np.stack(outputs[stage.name]), truth))
        rows.append(row)
    labelled = sum(1 for t in truth if t is not None)
    if any(image.label is not None for image in images) and not labelled:
        notes.append("the class folder names match neither the model's labels nor class indices: "
                     "accuracy not computed")
    out = collections.OrderedDict()
    out["reference"] = reference.name
    out["images"] = len(used)
    out["skipped_images"] = len(skipped)
    out["labelled_images"] = labelled
    out["seconds"] = round(time.time() - started, 2)
    out["stages"] = rows
    out["notes"] = notes
    return out


def _fast_inputs(image, cfg, batch, fast):
    """{input kind: batch array} of predict's fast path for ``image`` (raises ImageError like load)."""
    from deploy.predict.decode import fast_rgb, normalise_table, resolve_decoder, to_tensor

    source = image.source if isinstance(image.source, str) else image.source(cfg)
    rgb = fast_rgb(source, cfg, resolve_decoder("auto"))
    out = {}
    if "float32" in fast.values():
        out["float32"] = np.repeat(to_tensor(rgb, normalise_table(cfg))[None], batch, axis=0)
    if "uint8" in fast.values():
        out["uint8"] = np.repeat(rgb[None], batch, axis=0)
    return out


def verify_bundle(bundle, names=None, images_dir=None, count=DEFAULT_COUNT, threads=None, progress=True,
                  openvino=False, make_torch_stages=None, generic_images=None):
    """Verify every model of ``bundle`` (or ``names``); write reports/verify.json and .md; return the report.

    The host's parts, passed in by the CLI (cli/verify.py; deploy/ imports no host package):
    ``make_torch_stages(record, name)`` (see ``torch_stages``) and ``generic_images(count)``, the
    unlabelled sample photographs used without ``images_dir`` (calibration.images.generic_verify_images)."""
    names = list(names or bundle.require_models())
    missing = [n for n in names if n not in bundle.model_names()]
    if missing:   # a usage error, as bench --models says it (exit 2), before any work
        raise UsageError("not in bundle {}: {}".format(bundle.root, ", ".join(missing)),
                         hint="models in it: {}".format(", ".join(bundle.model_names()) or "none"))
    if count < 1:
        raise UsageError("--count must be at least 1, not {}".format(count), hint="e.g. --count 200 (the default)")
    if threads is not None and threads < 1:
        raise UsageError("--threads must be at least 1 (got {})".format(threads),
                         hint="leave it out for ONNX Runtime's default")
    bundle.verify(names)
    packed = bundle.verify_image_paths() if images_dir is None else []
    if images_dir is not None:
        images = folder_images(images_dir, count)
        source = os.path.abspath(str(images_dir))
        generic = False
    elif packed:   # build --verify-images: the user's own held-out images, carried by the bundle
        folder = bundle.path(VERIFY_IMAGES_DIR)
        images = [VerifyImage(path, folder_label(path, folder), _file_loader(path), path) for path in packed[:count]]
        source = "the bundle's {}/ (packed by build from {})".format(
            VERIFY_IMAGES_DIR, bundle.manifest[VERIFY_IMAGES_KEY].get("source"))
        generic = False
    else:
        if generic_images is None:
            raise UsageError("no --images given, and the generic sample set needs the host's scikit-image",
                             hint="pass --images DIR (one sub-folder per class for accuracy)")
        images = generic_images(count)
        source = "generic scikit-image sample photographs (unlabelled; not your domain)"
        generic = True
    report = collections.OrderedDict()
    report["bundle"] = os.path.abspath(bundle.root)
    report["target"] = bundle.target_name
    report["images"] = collections.OrderedDict([("source", source), ("requested", count),
                                                ("generic", generic)])
    report["host"] = collections.OrderedDict([("python", platform.python_version()),
                                              ("machine", platform.machine()),
                                              ("platform", platform.platform())])
    report["models"] = collections.OrderedDict()
    fidelity = collections.OrderedDict()
    verified_onnx = dict((name, bundle.model(name)["onnx"].get("sha256")) for name in names)
    for name in names:
        report["models"][name] = verify_model(bundle, name, images, threads=threads, progress=progress,
                                              openvino=openvino, make_torch_stages=make_torch_stages)
        fidelity[name] = collections.OrderedDict([
            ("report", REPORT_JSON), ("images", report["models"][name]["images"]),
            ("image_source", source), ("reference", report["models"][name]["reference"]),
            ("stages", collections.OrderedDict(
                (r["stage"], collections.OrderedDict([("top1_agreement", r.get("top1_agreement")),
                                                      ("accuracy", r.get("accuracy"))]))
                for r in report["models"][name]["stages"])),
        ])
    def add_fidelity(manifest):
        # Only onto the records verified: a model rebuilt meanwhile keeps its new record untouched.
        for name, entry in fidelity.items():
            record = manifest.get("models", {}).get(name)
            if isinstance(record, dict) and (record.get("onnx") or {}).get("sha256") == verified_onnx[name]:
                record["fidelity"] = entry
            else:
                LOG.warning("%s changed while it was verified: its fidelity is not recorded; run verify again",
                            name)

    bundle.update_manifest(add_fidelity, with_files=collections.OrderedDict([
        (bundle.path(REPORT_JSON), json_bytes(report)),
        (bundle.path(REPORT_MD), markdown_report(report).encode("utf-8"))]))
    return report


# ------------------------------------------------------------------------------------------------
# formatting (strings; the CLI prints)
# ------------------------------------------------------------------------------------------------
def _pct(value):
    return "-" if value is None else "{:.2f}%".format(100.0 * value)


def _cos(value):
    return "-" if value is None else "{:.6f}".format(value)


def table_rows(model_report):
    rows = []
    for r in model_report["stages"]:
        if "error" in r:
            rows.append([r["stage"], r["precision"], r["backend"], "error: " + r["error"], "", "", "", ""])
            continue
        rows.append([r["stage"], r["precision"], r["backend"], _pct(r["top1_agreement"]),
                     str(r["disagreements"]), _cos(r["cosine_mean"]), _cos(r["cosine_min"]), _pct(r["accuracy"])])
    return rows


TABLE_HEADERS = ["stage", "precision", "backend", "top-1 agreement", "disagree", "cosine mean", "cosine min",
                 "accuracy"]


def text_report(report):
    from deploy.tables import format_table

    lines = ["images: {} ({})".format(report["images"]["source"],
                                      "generic, labels unknown: agreement only" if report["images"]["generic"]
                                      else "requested {}".format(report["images"]["requested"]))]
    for name, model in report["models"].items():
        lines.append("")
        lines.append("{}: {} image(s), {} labelled, reference {}".format(
            name, model["images"], model["labelled_images"], model["reference"]))
        lines.append(format_table(TABLE_HEADERS, table_rows(model)))
        for note in model["notes"]:
            lines.append("  note: " + note)
    return "\n".join(lines)


def markdown_report(report):
    from deploy.tables import format_markdown_table

    lines = ["# Fidelity (verify)", "",
             "Bundle `{}` (target {}), images: {}.".format(report["bundle"], report["target"],
                                                         report["images"]["source"]), ""]
    if report["images"]["generic"]:
        lines += ["Generic sample photographs, labels unknown: agreement only, not accuracy.", ""]
    for name, model in report["models"].items():
        lines += ["## {}".format(name), "",
                  "{} image(s), {} labelled; reference: `{}`.".format(
                      model["images"], model["labelled_images"], model["reference"]), "",
                  format_markdown_table(TABLE_HEADERS, table_rows(model)), ""]
        lines += ["- " + note for note in model["notes"]]
        if model["notes"]:
            lines.append("")
    lines.append("Host: Python {} on {}.".format(report["host"]["python"], report["host"]["platform"]))
    return "\n".join(lines) + "\n"
