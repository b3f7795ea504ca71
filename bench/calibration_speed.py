#!/usr/bin/env python3
"""Benchmark (not a test): how long calibration of one model takes. Goal: <= 60 s for 500 images, MinMax.

    python bench/calibration_speed.py                               # hardnet39ds, 320x320, generic images
    python bench/calibration_speed.py --model mobilenetv2 --images ~/photos --method entropy

Builds a cpu bundle (random weights are fine: calibration time does not depend on them) in a
temporary folder unless --bundle names one, then times the two parts of `build --precision int8`:
preprocessing the images into calibration/<name>.npy, and ONNX Runtime's quantize_static.
"""
import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="hardnet39ds")
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--method", default="minmax")
    p.add_argument("--images", default=None, help="calibration images (default: the generic set)")
    p.add_argument("--bundle", default=None, help="an existing bundle holding --model (default: build one)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from calibration.stage import calibrate_bundle
    from deploy.bundle import Bundle

    with tempfile.TemporaryDirectory(prefix="calib-bench.") as scratch:
        if args.bundle:
            bundle = Bundle.open(args.bundle)
        else:
            from deploy.targets import get_target
            from export.build import BuildOptions, build_bundle

            started = time.perf_counter()
            out = os.path.join(scratch, "bundle")
            build_bundle(BuildOptions(target=get_target("cpu"), out_dir=out, models=(args.model,), size=args.size),
                         progress=False)
            bundle = Bundle.open(out)
            print("built {} at {}x{} in {:.1f} s (not counted)".format(args.model, args.size, args.size,
                                                                       time.perf_counter() - started))
        record = bundle.model(args.model)
        record.pop("calibration", None)  # never reuse: time the real work
        started = time.perf_counter()
        summary = calibrate_bundle(bundle, [args.model], images_dir=args.images, count=args.count,
                                   method=args.method, make_int8_onnx=True)[0]
        total = time.perf_counter() - started
    print("model {}  input {}x{}  images {} ({})  method {}".format(
        args.model, args.size, args.size, summary["calibration"]["count"],
        "generic" if summary["calibration"]["generic"] else args.images, args.method))
    print("  preprocess -> calibration/{}.npy : {:6.1f} s".format(args.model, summary["calibration_seconds"]))
    print("  quantize_static (QDQ INT8)        : {:6.1f} s".format(summary["int8_seconds"]))
    print("  total                             : {:6.1f} s   (goal <= 60 s)".format(total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
