"""predict: classify image files, folders, video files and cameras with a Classifier; records and text.

Each input gives one record (an OrderedDict, the --json line): an image's top-k and timing, a
video's frames per second with the timing averaged, or an error. A bad image in a folder or a bad
frame in a video is reported in its record and skipped; the run goes on. The CLI (pipeline.py
predict) prints; nothing here does. Video and cameras need OpenCV (cv2); Python 3.6-compatible.
"""
import collections
import logging
import os
import time

import numpy as np

from deploy.errors import PipelineError, UsageError
from deploy.preprocess import ImageError, list_image_files

LOG = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".h264", ".mjpeg")
TIMING_FIELDS = ("decode_ms", "preprocess_ms", "network_ms", "postprocess_ms", "total_ms")


class VideoError(PipelineError):
    """A video file or camera that OpenCV cannot open."""


InputItem = collections.namedtuple("InputItem", ["kind", "source", "problem"])
# kind: "image", "video", "camera" or "missing"; source: path or camera spec; problem: why it is missing


def expand_inputs(inputs, camera=None):
    """Command-line inputs -> InputItems: folders become their images, missing paths become errors."""
    items = []
    for given in inputs:
        if os.path.isdir(given):
            found = list_image_files(given)
            if not found:
                items.append(InputItem("missing", given, "no JPEG/PNG images in this folder"))
            items.extend(InputItem("image", path, None) for path in found)
        elif not os.path.exists(given):
            items.append(InputItem("missing", given, "no such file or folder"))
        elif given.lower().endswith(VIDEO_EXTENSIONS):
            items.append(InputItem("video", given, None))
        else:
            items.append(InputItem("image", given, None))   # any other file: Pillow decides (a clear error if not an image)
    if camera is not None:
        items.append(InputItem("camera", camera, None))
    if not items:
        raise UsageError("nothing to classify", hint="give image files, folders or videos, or --camera 0")
    return items


def _top_list(top):
    return [collections.OrderedDict([("label", e.label), ("index", e.index), ("probability", round(e.probability, 6))])
            for e in top]


def _timing_dict(timing):
    return collections.OrderedDict((field, round(float(value), 3)) for field, value in zip(TIMING_FIELDS, timing))


def image_record(classifier, path, topk):
    record = collections.OrderedDict([("input", path), ("kind", "image")])
    try:
        prediction = classifier.predict(path, topk)
    except ImageError as exc:
        record["error"] = exc.one_line()
        return record
    record["top"] = _top_list(prediction.top)
    if classifier.random_weights:
        record["random_weights"] = True   # the top-k of random weights means nothing
    record["timing_ms"] = _timing_dict(prediction.timing)
    return record


# ------------------------------------------------------------------------------------------------
# video and cameras (OpenCV)
# ------------------------------------------------------------------------------------------------
def _require_cv2(what):
    try:
        import cv2
    except ImportError:
        raise UsageError("{} needs OpenCV, which is not installed here".format(what),
                         hint="pip install opencv-python-headless (JetPack ships python3-opencv), or classify "
                              "image files") from None
    return cv2


def open_capture(kind, source):
    """cv2.VideoCapture for a file, a camera index ("0") or a GStreamer pipeline string; VideoError if it does not open."""
    cv2 = _require_cv2("video input" if kind == "video" else "--camera")
    if kind == "camera":
        spec = str(source)
        if spec.isdigit():
            capture = cv2.VideoCapture(int(spec))
        elif "!" in spec:   # a GStreamer pipeline, e.g. the Jetson CSI camera's nvarguscamerasrc ... ! appsink
            capture = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
        else:
            capture = cv2.VideoCapture(spec)
        if not capture.isOpened():
            raise VideoError("camera {} cannot be opened (absent, busy, or no GStreamer in this OpenCV)".format(spec),
                             hint="check the camera is connected (ls /dev/video*) and free; a CSI camera needs a "
                                  "GStreamer pipeline ending in appsink")
        return capture
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise VideoError("OpenCV cannot open video {}".format(source),
                         hint="check the file plays (ffprobe FILE); convert it to MP4/H.264 or MJPEG AVI")
    return capture


def video_record(classifier, kind, source, topk, max_frames=None, on_frame=None):
    """Classify frames until the end, ``max_frames`` or Ctrl-C; the record holds fps and mean timing.

    ``fps`` is frames / wall seconds of the loop (reading included); ``fps_from_mean_total`` is
    1000 / mean total ms: the two agree when the timing accounts for all the time.
    """
    record = collections.OrderedDict([("input", str(source)), ("kind", kind)])
    try:
        capture = open_capture(kind, source)
    except VideoError as exc:
        record["error"] = exc.one_line()
        return record
    import cv2

    timings, counts, bad = [], collections.Counter(), 0
    perf = time.perf_counter
    started = perf()
    try:
        while max_frames is None or len(timings) < max_frames:
            t0 = perf()
            ok, frame = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            read_ms = (perf() - t0) * 1000.0   # the frame's decode: reading it and its colour order
            try:
                prediction = classifier.predict(frame, topk)
            except ImageError as exc:
                bad += 1
                LOG.warning("%s frame %d skipped: %s", source, len(timings) + bad, exc.one_line())
                continue
            timing = prediction.timing._replace(decode_ms=prediction.timing.decode_ms + read_ms,
                                                total_ms=prediction.timing.total_ms + read_ms)
            timings.append(timing)
            counts[prediction.top[0].label] += 1
            if on_frame is not None:
                on_frame(len(timings), prediction.top, timing)
    except KeyboardInterrupt:
        record["interrupted"] = True
    finally:
        wall = perf() - started
        capture.release()
    record["frames"] = len(timings)
    record["skipped_frames"] = bad
    if not timings:
        record["error"] = "no frame of {} could be read or classified".format(source)
        return record
    mean = np.mean(np.asarray(timings, dtype=np.float64), axis=0)
    record["fps"] = round(len(timings) / wall, 3)
    record["fps_from_mean_total"] = round(1000.0 / mean[-1], 3)
    record["timing_ms_mean"] = _timing_dict(mean)
    record["top1_counts"] = collections.OrderedDict(counts.most_common(topk))
    return record


def run_predict(classifier, items, topk=5, max_frames=None, on_record=None, on_frame=None):
    """Classify every InputItem; call ``on_record(record)`` as each finishes; return the records."""
    if max_frames is not None and int(max_frames) < 1:
        raise UsageError("--max-frames must be at least 1, not {}".format(max_frames),
                         hint="leave it out to read the whole video, or e.g. --max-frames 100")
    records = []
    for item in items:
        if item.kind == "missing":
            record = collections.OrderedDict([("input", item.source), ("kind", "missing"), ("error", item.problem)])
        elif item.kind == "image":
            record = image_record(classifier, item.source, topk)
        else:
            record = video_record(classifier, item.kind, item.source, topk, max_frames, on_frame)
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records


# ------------------------------------------------------------------------------------------------
# text (the CLI prints these strings)
# ------------------------------------------------------------------------------------------------
def timing_line(timing_ms, prefix="  time"):
    return "{}: decode {decode_ms:.2f} ms, preprocess {preprocess_ms:.2f} ms, network {network_ms:.2f} ms, " \
           "postprocess {postprocess_ms:.2f} ms, total {total_ms:.2f} ms".format(prefix, **timing_ms)


def record_lines(record):
    if "error" in record and not record.get("frames"):
        return ["{}: error: {}".format(record["input"], record["error"])]
    if record["kind"] == "image":
        lines = [record["input"]]
        lines += ["  {:6.2f}%  {} ({})".format(100.0 * e["probability"], e["label"], e["index"]) for e in record["top"]]
        lines.append(timing_line(record["timing_ms"]))
        return lines
    lines = ["{} ({}): {} frames{}, {:.2f} fps (1000 / mean total: {:.2f})".format(
        record["input"], record["kind"], record["frames"],
        ", {} skipped".format(record["skipped_frames"]) if record["skipped_frames"] else "",
        record["fps"], record["fps_from_mean_total"])]
    lines.append(timing_line(record["timing_ms_mean"], prefix="  mean time per frame"))
    lines.append("  most frequent top-1: " + ", ".join("{} x{}".format(k, v) for k, v in record["top1_counts"].items()))
    return lines


def summary_line(records):
    """Images classified, failed, and the mean timing over the classified images (from the second
    on when there are several: the first pays for lazy imports and warm-up)."""
    images = [r for r in records if r["kind"] == "image" and "timing_ms" in r]
    failed = [r for r in records if "error" in r and not r.get("frames")]
    parts = ["{} image(s) classified, {} input(s) failed".format(len(images), len(failed))]
    steady = images[1:] if len(images) > 1 else images
    if steady:
        mean = collections.OrderedDict(
            (field, float(np.mean([r["timing_ms"][field] for r in steady]))) for field in TIMING_FIELDS)
        parts.append(timing_line(mean, prefix="mean over {} image(s){}".format(
            len(steady), " after the first" if len(images) > 1 else "")))
    return "; ".join(parts)
