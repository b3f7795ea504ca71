#!/usr/bin/env python3
"""End-to-end latency of predict: decode + preprocess against the network, side by side.

    python bench/predict_e2e.py BUNDLE [--model hardnet39ds] [--images DIR] [--rounds 7] [--threads N]

Variants, each a real ``deploy.predict.classifier.Classifier`` run (the code `predict` runs):
  reference       deploy.preprocess.preprocess_file: full decode, resize, crop, float numpy (verify's)
  pillow, opencv  deploy.predict.decode: DCT-scaled JPEG decode, box resize, lookup-table normalise
  *-uint8         the same decode and resize into the bundle's uint8-input graph (build --input
                  uint8), which normalises inside the network; only when the bundle has one

Method: every image of the folder (default: the scikit-image sample photographs cut to 16:9 and
saved as 1280x720 JPEGs, quality 90) goes through every variant in each of ``--rounds`` rounds; the
variant order rotates per round so that drift of a shared machine hits all alike. Per round and
variant: median decode+preprocess ms over the images, median network ms; their ratio per round;
their geometric mean with its 95 % bootstrap confidence interval over rounds
(deploy.bench.stats.ratio_with_ci, as the other benchmark scripts). Also, on the same images,
top-1 agreement and logits cosine of every fast variant against the reference preprocessing.

Goal (issue 13): decode + preprocess <= 25 % of the network time for HarDNet39DS at 320 from
1280x720 JPEGs on ONNX Runtime. Exit 0 when the best fast variant's upper 95 % bound is at or
below 25 %, 3 when not. Writes BUNDLE/reports/predict_e2e.json and .md.
"""
import argparse
import collections
import logging
import os
import platform
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.atomic import atomic_path, write_json, write_text  # noqa: E402
from deploy.bench.stats import ratio_with_ci  # noqa: E402
from deploy.environment import cpu_flags, cpu_model  # noqa: E402
from deploy.errors import PipelineError  # noqa: E402
from deploy.predict.classifier import open_classifier  # noqa: E402
from deploy.predict.decode import opencv_available  # noqa: E402
from deploy.tables import format_markdown_table, format_table  # noqa: E402

LOG = logging.getLogger("predict_e2e")
GOAL = 0.25
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd")


def make_images(folder, count=16, width=1280, height=720, quality=90):
    """The scikit-image sample photographs as width x height JPEGs (host only): the whole photos
    first, then (count > 16) verify's deterministic crops and flips of them; each centre-cut to
    width:height and resized."""
    from PIL import Image

    from calibration.images import ImageCache, generic_items, generic_photo_paths

    os.makedirs(folder, exist_ok=True)
    cache = ImageCache()
    photos = [(os.path.splitext(os.path.basename(p))[0], Image.open(p).convert("RGB")) for p in generic_photo_paths()]
    crops = [("crop{:03d}".format(i), cache.open(item, 0).convert("RGB"))
             for i, item in enumerate(generic_items(max(0, count - len(photos)), seed=1))]
    paths = []
    for name, image in (photos + crops)[:count]:
        w, h = image.size
        if w * height > h * width:
            cut = int(h * width / height)
            box = ((w - cut) // 2, 0, (w - cut) // 2 + cut, h)
        else:
            cut = int(w * height / width)
            box = (0, (h - cut) // 2, w, (h - cut) // 2 + cut)
        path = os.path.join(folder, name + ".jpg")
        with atomic_path(path) as tmp:
            image.crop(box).resize((width, height), Image.LANCZOS).save(tmp, format="JPEG", quality=quality)
        paths.append(path)
    return paths


def video_check(bundle, model, paths, frames, folder, threads):
    """Goal 3: predict on a 1280x720 MJPEG video of ``paths``: fps against 1000 / mean total ms."""
    import cv2
    from PIL import Image

    from deploy.predict.run import video_record

    video = os.path.join(folder, "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (1280, 720))
    for i in range(frames):
        rgb = Image.open(paths[(i // 8) % len(paths)]).convert("RGB").resize((1280, 720))
        writer.write(cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR))
    writer.release()
    with open_classifier(bundle, model, backend="onnxruntime", threads=threads) as clf:
        record = video_record(clf, "video", video, topk=5)
        record["input_kind"], record["decoder"] = clf.input_kind, clf.decoder
    record["gap"] = round(abs(record["fps"] - record["fps_from_mean_total"]) / record["fps_from_mean_total"], 4)
    return record


def variants(bundle, model, threads):
    """[(name, classifier, decoder)] with the classifiers opened (the caller closes them)."""
    decoders = ["reference", "pillow"] + (["opencv", "pillow+opencv"] if opencv_available() else [])
    float_clf = open_classifier(bundle, model, backend="onnxruntime", input_kind="float32", threads=threads).open()
    out = [(name, float_clf, name) for name in decoders]
    record = float_clf.record
    if isinstance(record.get("uint8_onnx"), dict):
        u8 = open_classifier(bundle, model, backend="onnxruntime", input_kind="uint8", threads=threads).open()
        out += [(name + "-uint8", u8, name) for name in decoders if name != "reference"]
    return out


def run_rounds(variant_list, paths, rounds):
    """{variant: [(decode+preprocess, network, total, decode, preprocess) median ms per round]}."""
    per_round = collections.OrderedDict((name, []) for name, _, _ in variant_list)
    for r in range(rounds):
        order = variant_list[r % len(variant_list):] + variant_list[:r % len(variant_list)]
        for name, clf, decoder in order:
            clf.decoder = decoder
            rows = np.array([clf.predict(p).timing for p in paths], dtype=np.float64)
            per_round[name].append((float(np.median(rows[:, 0] + rows[:, 1])), float(np.median(rows[:, 2])),
                                    float(np.median(rows[:, 4])), float(np.median(rows[:, 0])),
                                    float(np.median(rows[:, 1]))))
        LOG.info("round %d/%d done", r + 1, rounds)
    return per_round


def agreement(variant_list, paths):
    """{variant: (top-1 agreement, cosine mean, cosine min)} of its logits against the reference's."""
    from deploy.verify import cosine

    logits = collections.OrderedDict()
    for name, clf, decoder in variant_list:
        clf.decoder = decoder
        logits[name] = np.stack([clf.logits(p) for p in paths])
    reference = logits["reference"]
    out = collections.OrderedDict()
    for name, values in logits.items():
        cos = cosine(reference, values)
        out[name] = (float((values.argmax(1) == reference.argmax(1)).mean()), float(cos.mean()), float(cos.min()))
    return out


def deploy_decode_fill():
    import deploy.predict.decode

    return deploy.predict.decode.DRAFT_MIN_FILL


def decode_floor_ms(paths, passes=5):
    """Median ms to decode each image at 1/8 DCT scale (Pillow): nearly all entropy (Huffman)
    decoding, which every scale must do, so no JPEG decode of these files can be much faster."""
    import time

    from deploy.preprocess import load_image

    def eighth(width, height):
        return (max(1, width // 8), max(1, height // 8))

    times = []
    for _ in range(passes):
        for path in paths:
            start = time.perf_counter()
            load_image(path, draft_size=eighth)
            times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def summarize(per_round, agree):
    rows = []
    for name, values in per_round.items():
        arr = np.asarray(values)
        # per round: median decode+preprocess ms over median network ms, one value each
        est = ratio_with_ci([[v] for v in arr[:, 0]], [[v] for v in arr[:, 1]])
        ratio, low, high = est.ratio, est.low, est.high
        top1, cos_mean, cos_min = agree[name]
        rows.append(collections.OrderedDict([
            ("variant", name), ("decode_ms", round(float(np.median(arr[:, 3])), 3)),
            ("preprocess_ms", round(float(np.median(arr[:, 4])), 3)),
            ("decode_preprocess_ms", round(float(np.median(arr[:, 0])), 3)),
            ("network_ms", round(float(np.median(arr[:, 1])), 3)), ("total_ms", round(float(np.median(arr[:, 2])), 3)),
            ("ratio", round(ratio, 4)), ("ratio_ci95", [round(low, 4), round(high, 4)]),
            ("top1_agreement", top1), ("cosine_mean", round(cos_mean, 6)), ("cosine_min", round(cos_min, 6))]))
    return rows


HEADERS = ["variant", "decode ms", "preprocess ms", "decode+preprocess ms", "network ms", "total ms", "(decode+pre) / network [95% CI]",
           "top-1 agree", "cosine mean", "cosine min"]


def table_rows(rows):
    return [[r["variant"], "{:.2f}".format(r["decode_ms"]), "{:.2f}".format(r["preprocess_ms"]),
             "{:.2f}".format(r["decode_preprocess_ms"]), "{:.2f}".format(r["network_ms"]),
             "{:.2f}".format(r["total_ms"]), "{:.1f}% [{:.1f}, {:.1f}]".format(
                 100 * r["ratio"], 100 * r["ratio_ci95"][0], 100 * r["ratio_ci95"][1]),
             "{:.2f}%".format(100 * r["top1_agreement"]), "{:.6f}".format(r["cosine_mean"]),
             "{:.6f}".format(r["cosine_min"])] for r in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="bundle folder (e.g. build/cpu with hardnet39ds at 320)")
    parser.add_argument("--model", default="hardnet39ds", help="model of the bundle (default hardnet39ds)")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="JPEG/PNG folder (default: scikit-image samples as 1280x720 JPEGs)")
    parser.add_argument("--write-images", default=None, metavar="DIR",
                        help="only write --count 1280x720 JPEGs made from the samples to DIR (for verify) and stop")
    parser.add_argument("--count", type=int, default=16, help="images to make when no --images is given (default 16)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--draft-min-fill", type=float, default=None, metavar="F",
                        help="deploy.predict.decode.DRAFT_MIN_FILL for this run (default 0.95; 0.45 allows 1/4 scale at 720p)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: physical cores)")
    parser.add_argument("--video-frames", type=int, default=120,
                        help="frames of the 1280x720 MJPEG test video for the fps check (0: skip; needs OpenCV)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(name)s: %(message)s")
    if args.write_images:
        print("wrote {} images to {}".format(len(make_images(args.write_images, args.count)), args.write_images))
        return 0
    from deploy.preprocess import list_image_files

    if args.draft_min_fill is not None:
        import deploy.predict.decode

        deploy.predict.decode.DRAFT_MIN_FILL = args.draft_min_fill
    load_before = ", ".join("{:.2f}".format(v) for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    try:
        with tempfile.TemporaryDirectory(prefix="predict-e2e-") as scratch:
            paths = list_image_files(args.images) if args.images else make_images(scratch, args.count)
            if not paths:
                raise PipelineError("no JPEG/PNG images in {}".format(args.images), hint="give another --images")
            variant_list = variants(args.bundle, args.model, args.threads)
            try:
                for _, clf, decoder in variant_list:   # warm every variant once (lazy imports, caches)
                    clf.decoder = decoder
                    clf.predict(paths[0])
                per_round = run_rounds(variant_list, paths, args.rounds)
                agree = agreement(variant_list, paths)
                floor_ms = decode_floor_ms(paths)
                described = variant_list[0][1].describe()
            finally:
                for clf in {id(c): c for _, c, _ in variant_list}.values():
                    clf.close()
            video = video_check(args.bundle, args.model, paths, args.video_frames, scratch, args.threads) \
                if args.video_frames > 0 and opencv_available() else None
    except PipelineError as exc:
        sys.stderr.write("error: {}\n".format(exc.one_line()))
        return 1
    rows = summarize(per_round, agree)
    flags = [f for f in SHOWN_FLAGS if f in set(cpu_flags())]
    fast = [r for r in rows if r["variant"] != "reference"]
    best = min(fast, key=lambda r: r["ratio"]) if fast else None
    met = best is not None and best["ratio_ci95"][1] <= GOAL
    report = collections.OrderedDict([
        ("model", args.model), ("bundle", os.path.abspath(args.bundle)), ("size", described["size"]),
        ("random_weights", described["random_weights"]),
        ("images", args.images or "scikit-image samples as 1280x720 JPEG q90"), ("image_count", len(paths)),
        ("rounds", args.rounds), ("draft_min_fill", deploy_decode_fill()), ("load_average_before", load_before), ("cpu", cpu_model()), ("cpu_flags", flags), ("python", platform.python_version()),
        ("goal", "decode+preprocess <= {:.0f}% of network".format(100 * GOAL)),
        ("best", best["variant"] if best else None), ("goal_met", met), ("variants", rows), ("video", video),
        ("decode_floor_ms", round(floor_ms, 3))])
    lines = ["{} at {} on ONNX Runtime, {} images ({}), {} interleaved rounds, DRAFT_MIN_FILL {}; CPU {} [{}]".format(
        args.model, described["size"], len(paths), report["images"], args.rounds, deploy_decode_fill(), cpu_model(),
        ", ".join(flags))]
    table = format_table(HEADERS, table_rows(rows))
    verdict = "goal {}: best fast variant {} at {:.1f}% [95% CI {:.1f}, {:.1f}] of the network time".format(
        "MET" if met else "NOT met", best["variant"], 100 * best["ratio"], 100 * best["ratio_ci95"][0],
        100 * best["ratio_ci95"][1]) if best else "no fast variant"
    network = float(np.median([r["network_ms"] for r in rows]))
    verdict += ("\ndecode floor (Pillow at 1/8 DCT scale: the Huffman decoding every scale pays): {:.2f} ms = "
                "{:.1f}% of the median network time").format(floor_ms, 100 * floor_ms / network)
    if described["random_weights"]:
        verdict += ("\nnote: random weights: the agreement columns mean nothing here (their logits hardly depend "
                    "on the input); measure agreement with trained weights (verify, docs/predict.md)")
    if video is not None:
        verdict += ("\nvideo ({} frames 1280x720 MJPEG, {} input, {} decoder): {:.2f} fps, 1000 / mean total "
                    "{:.2f}: {:.1f}% apart (goal <= 5%: {})").format(
            video["frames"], video["input_kind"], video["decoder"], video["fps"], video["fps_from_mean_total"],
            100 * video["gap"], "met" if video["gap"] <= 0.05 else "NOT met")
    verdict += "\nload average before the run: {}".format(load_before)
    print("\n".join(lines + [table, verdict]))
    reports = os.path.join(args.bundle, "reports")
    if os.access(args.bundle, os.W_OK):
        os.makedirs(reports, exist_ok=True)
        write_json(os.path.join(reports, "predict_e2e.json"), report)
        write_text(os.path.join(reports, "predict_e2e.md"), "# predict end to end\n\n{}\n\n{}\n\n{}\n".format(
            lines[0], format_markdown_table(HEADERS, table_rows(rows)), verdict))
        print("wrote {}/predict_e2e.json and .md".format(reports))
    return 0 if met else 3


if __name__ == "__main__":
    sys.exit(main())
