#!/usr/bin/env python3
"""The real accuracy harness: train zoo models on scikit-learn's digits and measure every stage.

    python scripts/train_digits.py                          # hardnet39ds and mobilenetv2, 64x64
    python scripts/train_digits.py --model mobilenetv2 --no-eval
    python scripts/train_digits.py --markdown build/digits-table.md

Per model: train with 10 classes until held-out accuracy >= 95% (cached: a checkpoint trained with
the same settings is reused), save <cache>/<model>.pt and its sidecar <model>.pt.card.json (the
digits' preprocessing, labels, accuracy), write the held-out digits as image folders
(<cache>/heldout/<class>/*.png, for `pipeline.py verify --images`), build a cpu bundle from the
checkpoint (--weights, --num-classes 10, --size 64, the sidecar's preprocessing), and report
held-out accuracy for eager PyTorch, BN-folded PyTorch, ONNX, simplified ONNX and ONNX Runtime
INT8 under each calibration method. Then, for instance:

    python pipeline.py verify build/digits-hardnet39ds --images .cache/digits/heldout --count 360
"""
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.errors import PipelineError  # noqa: E402

LOG = logging.getLogger("train_digits")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=None,
                   help="zoo model to train (repeatable; default hardnet39ds and mobilenetv2)")
    p.add_argument("--size", type=int, default=64, help="input side (default 64)")
    p.add_argument("--epochs", type=int, default=12, help="most epochs (stops at >= 95%% after --min-epochs)")
    p.add_argument("--min-epochs", type=int, default=4)
    p.add_argument("--train-limit", type=int, default=None, metavar="N",
                   help="train on the first N training digits only (quick trials; default all 1437)")
    p.add_argument("--cache", default=".cache/digits", help="checkpoint and image folder (default .cache/digits)")
    p.add_argument("--out", default="build", help="bundles go to OUT/digits-<model> (default build)")
    p.add_argument("--methods", default="minmax,entropy,percentile", help="INT8 calibration methods")
    p.add_argument("--calib-count", type=int, default=500, help="calibration images (from the training split)")
    p.add_argument("--no-eval", action="store_true", help="only train (or reuse) and write the image folders")
    p.add_argument("--retrain", action="store_true", help="ignore a cached checkpoint")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for training (default 1: fastest on a small shared machine)")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the results table here")
    return p.parse_args(argv)


def table(result):
    from deploy.tables import format_markdown_table

    best = result["rows"][0]["accuracy"]
    rows = [[r["stage"], "{:.2f}%".format(100 * r["accuracy"]), "{:+.2f}".format(100 * (r["accuracy"] - best)),
             "{:.2f}%".format(100 * r["agreement"]), r["disagreements"]] for r in result["rows"]]
    return format_markdown_table(["stage", "held-out accuracy", "vs eager (points)", "top-1 agreement with eager",
                                  "disagreements"], rows)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("PIL", "onnxscript", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from calibration import digits
    from deploy.atomic import write_text

    models = args.model or ["hardnet39ds", "mobilenetv2"]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    split = digits.load_split()
    heldout = digits.write_image_folders(split.heldout_images, split.heldout_labels,
                                         os.path.join(args.cache, "heldout"))
    print("held-out digits ({}) as image folders: {}".format(len(split.heldout_labels), heldout))
    sections = []
    try:
        from calibration.quantize import check_method
        for method in methods:   # before any training: a typo should not cost minutes
            check_method(method)
        for name in models:
            settings = digits.TrainSettings(model=name, size=args.size, epochs=args.epochs,
                                            min_epochs=args.min_epochs, train_limit=args.train_limit)
            checkpoint = os.path.join(args.cache, "{}.pt".format(name))
            if args.retrain and os.path.exists(checkpoint):
                os.unlink(checkpoint)
            started = time.perf_counter()
            card = digits.train_or_load(settings, checkpoint, split, threads=args.threads)
            print("{}: {} (held-out accuracy {:.2f}% after {} epoch(s), {:.0f} s)".format(
                name, checkpoint, 100 * card["heldout_accuracy"], len(card["history"]),
                time.perf_counter() - started))
            if args.no_eval:
                continue
            out_dir = os.path.join(args.out, "digits-{}".format(name))
            result = digits.evaluate_chain(checkpoint, out_dir, methods=methods, calib_count=args.calib_count,
                                           split=split)
            text = "### {} at {}x{} ({} held-out digits, INT8 calibrated on {} training digits)\n\n{}\n".format(
                name, result["size"], result["size"], result["heldout"], result["calibration_images"], table(result))
            print(text)
            print("verify it: python pipeline.py verify {} --images {} --count {}".format(
                out_dir, heldout, result["heldout"]))
            sections.append(text)
    except PipelineError as exc:
        sys.stderr.write("error: {}\n".format(exc.one_line()))
        return exc.exit_code
    if args.markdown and sections:
        write_text(args.markdown, "\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
