"""The calibration stage of ``build``: calibration batches (and ONNX Runtime INT8) into a bundle.

    calibrate_bundle(bundle, names, images_dir=..., count=500, method="minmax", make_int8_onnx=True)

For every model it writes ``calibration/<name>.npy`` (float32 (N, 3, H, W), preprocessed as the
manifest records) and, when asked, ``models/<name>.int8.onnx`` beside the FP32 model, then records
both (path + sha256) in the manifest and saves it. Every file lands atomically, and the manifest is
saved after each file, so a failure never leaves the bundle half-written or out of step.
Host-only.
"""
from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict

from calibration.dataset import load_calibration_array, write_calibration_array
from calibration.images import folder_items, generic_items, generic_photo_paths
from calibration.quantize import check_method, quantize_onnx
from deploy.atomic import sha256_file
from deploy.bundle import Bundle, calibration_relpath, int8_onnx_relpath
from deploy.errors import BundleError, CalibrationError, UsageError
from deploy.preprocess import config_from_dict

LOG = logging.getLogger(__name__)

GENERIC_NOTE = ("generic sample photographs from scikit-image (not your domain): INT8 ranges may not "
                "fit your images; pass --calib-images DIR with a few hundred of your own")


def _record_input_shape(record: dict, name: str) -> list[int]:
    try:
        shape = [int(v) for v in record["input"]["shape"]]
        cfg = config_from_dict(record["preprocessing"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the manifest record of {name} has no usable input shape/preprocessing ({exc})",
                          hint="rebuild the bundle with `python pipeline.py build`") from None
    if len(shape) != 4 or shape[1] != 3 or shape[2] != cfg.size or shape[3] != cfg.size:
        raise BundleError(
            f"{name}: input shape {shape} does not match its preprocessing size {cfg.size}",
            hint="rebuild the bundle with `python pipeline.py build`")
    return shape


def _reusable(bundle: Bundle, record: dict, source: str, count: int) -> bool:
    """True when the recorded calibration file is intact and was made from the same images and count."""
    entry = record.get("calibration") or {}
    if entry.get("source") != source or entry.get("requested") != count:
        return False
    if entry.get("preprocessing") != record.get("preprocessing"):
        return False
    path = bundle.path(entry.get("path", ""))
    return os.path.isfile(path) and sha256_file(path) == entry.get("sha256")


def calibrate_bundle(bundle: Bundle, names, *, images_dir: str | None = None, count: int = 500,
                     method: str = "minmax", make_int8_onnx: bool = False, progress: bool = True) -> list[dict]:
    """Calibrate ``names`` in ``bundle``; return one summary dict per model (see module doc)."""
    check_method(method)
    if int(count) < 1:
        raise UsageError(f"--calib-count must be at least 1, not {count}", hint="the default is 500")
    count = int(count)
    names = list(names)
    for name in names:
        _record_input_shape(bundle.model(name), name)
    if images_dir is not None:
        items = folder_items(images_dir)   # raises CalibrationError on an empty or missing folder
        source = os.path.abspath(images_dir)
        generic = False
    else:
        photos = generic_photo_paths()
        items = generic_items(count)
        source = "generic: {} scikit-image sample photographs ({}), deterministic crops and flips".format(
            len(photos), ", ".join(os.path.splitext(os.path.basename(p))[0] for p in photos[:4]) + ", ...")
        generic = True
        LOG.warning("calibrating on %s", GENERIC_NOTE)
    summaries: list[dict] = []
    for name in names:
        record = bundle.model(name)   # input shape checked above, before any work
        cfg = config_from_dict(record["preprocessing"])
        rel = calibration_relpath(name)
        started = time.perf_counter()
        if _reusable(bundle, record, source, count):
            LOG.info("%s: calibration data %s is up to date, reused", name, rel)
        else:
            written = write_calibration_array(items, cfg, count, bundle.path(rel), progress=progress,
                                              desc=f"calibrate {name}")
            entry = OrderedDict([
                ("path", rel), ("sha256", sha256_file(bundle.path(rel))), ("count", written.count),
                ("requested", count), ("skipped", written.skipped), ("source", source), ("generic", generic),
                ("shape", list(written.shape)), ("dtype", "float32"),
                ("preprocessing", record.get("preprocessing")),
            ])
            if generic:
                entry["note"] = GENERIC_NOTE
            if written.skipped:
                entry["skipped_files"] = written.skipped_files[:20]
            record["calibration"] = entry
            bundle.save()
        summary = OrderedDict([("model", name), ("calibration", record["calibration"]),
                               ("calibration_seconds", round(time.perf_counter() - started, 2))])
        if make_int8_onnx:
            summary["int8_onnx"] = quantize_record(bundle, name, method, progress=progress)
            summary["int8_seconds"] = round(time.perf_counter() - started - summary["calibration_seconds"], 2)
        summaries.append(summary)
    return summaries


def quantize_record(bundle: Bundle, name: str, method: str = "minmax", progress: bool = True) -> dict:
    """Write ``models/<name>.int8.onnx`` from the bundle's calibration data; record it; save."""
    check_method(method)
    record = bundle.model(name)
    shape = _record_input_shape(record, name)
    entry = record.get("calibration") or {}
    if not entry.get("path"):
        raise CalibrationError(f"{name} has no calibration data in bundle {bundle.root}",
                               hint="calibrate first: python pipeline.py build ... --precision int8")
    calib_path = bundle.path(entry["path"])
    array = load_calibration_array(calib_path, shape, name)
    if sha256_file(calib_path) != entry.get("sha256"):   # a record without a sha256 is refused too
        raise CalibrationError(
            f"{entry['path']} does not match the manifest: it was replaced, perhaps by another model's data",
            hint=f"re-run calibration for {name}")
    onnx_entry = record.get("onnx") or {}
    if not onnx_entry.get("path") or not os.path.isfile(bundle.path(onnx_entry["path"])):
        raise BundleError(f"{name} has no FP32 ONNX model in bundle {bundle.root}",
                          hint="rebuild the bundle with `python pipeline.py build`")
    bundle.verify_file(onnx_entry["path"], onnx_entry.get("sha256"))
    rel = int8_onnx_relpath(name)
    info = quantize_onnx(bundle.path(onnx_entry["path"]), bundle.path(rel), array, method,
                         progress=progress, desc=f"int8 {name}")
    out = OrderedDict([("path", rel), ("sha256", sha256_file(bundle.path(rel)))])
    out.update(info)
    out["calibration_sha256"] = entry.get("sha256")
    out["generic_calibration"] = bool(entry.get("generic"))
    out["fp32_onnx_sha256"] = onnx_entry.get("sha256")
    record["int8_onnx"] = out
    bundle.save()
    return out


def summary_lines(summaries: list[dict]) -> list[str]:
    """One line per model for the CLI to print (the library never prints)."""
    lines = []
    for s in summaries:
        c = s["calibration"]
        text = "{}: calibrated on {} image(s){}{} -> {}".format(
            s["model"], c["count"],
            " (of {} asked for)".format(c["requested"]) if c.get("requested", c["count"]) > c["count"] else "",
            " ({} skipped)".format(c["skipped"]) if c.get("skipped") else "", c["path"])
        if c.get("generic"):
            text += "  [GENERIC data, not your domain: pass --calib-images DIR]"
        if "int8_onnx" in s:
            text += "; INT8 ({}) -> {}".format(s["int8_onnx"]["calib_method"], s["int8_onnx"]["path"])
        lines.append(text)
    return lines


__all__ = ["calibrate_bundle", "quantize_record", "summary_lines", "GENERIC_NOTE"]
