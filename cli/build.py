"""`build` (host): zoo model -> BN folded -> ONNX -> onnxsim -> parity -> bundle; INT8 calibration."""
import shlex

from cli.engines import engines_after_build
from deploy.errors import UsageError


def add_parsers(sub):
    p = sub.add_parser(
        "build", help="export the models to a verified ONNX bundle for a target",
        description="Per model: fold BatchNorm into the convolutions, export ONNX at the target's opset, "
                    "check it (onnx.checker, no BatchNormalization, only operators the target's TensorRT "
                    "parses), simplify (onnxsim), check parity of every stage with eager PyTorch, and write "
                    "DIR/models/<name>.onnx and DIR/manifest.json. Unchanged models are reused.")
    p.add_argument("--target", default="jetson-nano", help="target profile (see `targets`; default jetson-nano)")
    p.add_argument("--models", default=None, metavar="A,B",
                   help="registered models, comma-separated (default for jetson-nano: "
                        "hardnet39ds,hardnet68ds,mobilenetv2,mobilenetv2_140; see `models`)")
    p.add_argument("--model", default=None, metavar="PKG.MOD:FN",
                   help="build your own model: a function returning an nn.Module (alone, or with the "
                        "models named by --models)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="checkpoint for a model (repeatable); a bare PATH when one model is built. "
                        "Without it the weights are random (latency artifacts only)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="classifier outputs, 1 to 100000 (default: the checkpoint's, else the model card's)")
    p.add_argument("--out", default=None, metavar="DIR", help="bundle folder (default build/<target>)")
    p.add_argument("--size", type=int, default=320, metavar="N", help="square input side in pixels (default 320)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size of the exported input, 1 to 1024 (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="export with a dynamic batch dimension")
    p.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16", "int8", "best"],
                   help="engine precision for the device (default: the target's default, fp16 on the Nano); "
                        "bf16: cpu target with OpenVINO; best on the cpu target: chosen from the CPU flags")
    p.add_argument("--force", action="store_true", help="rebuild every model even when nothing changed")
    p.add_argument("--preprocess", default=None, metavar="FILE",
                   help="JSON with mean/std/crop_pct/interpolation replacing the model card's preprocessing "
                        "(bare, or under a \"preprocessing\" key such as a training run's checkpoint sidecar)")
    p.add_argument("--input", dest="input_kind", choices=("float32", "uint8"), default="float32",
                   help="uint8: also write models/<name>.uint8.onnx taking uint8 NHWC images at the network size, "
                        "normalised inside the graph (used by predict on ONNX Runtime; default float32 only)")
    p.add_argument("--calib-images", default=None, metavar="DIR",
                   help="int8 only: folder of calibration images")
    p.add_argument("--calib-count", type=int, default=None, metavar="N",
                   help="int8 only: images to calibrate with (default 500)")
    p.add_argument("--verify-images", default=None, metavar="DIR",
                   help="pack a deterministic pick of this folder's images (one sub-folder per class) into the "
                        "bundle, for verify and device-run on the device when no --images is given")
    p.add_argument("--verify-count", type=int, default=None, metavar="N",
                   help="with --verify-images: images to pack (default 100)")
    p.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"],
                   help="int8 only: calibration method (default minmax)")
    p.set_defaults(func=run_build, host_only=True)


def _build_model_names(args, target):
    from export.build import default_models

    if args.models is not None:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        if not names:
            raise UsageError("--models is empty", hint="e.g. --models hardnet39ds,mobilenetv2")
        return names
    return [] if args.model else list(default_models(target))


def _fmt_count(value, unit=1e6, suffix="M"):
    return "{:.2f}{}".format(value / unit, suffix) if value else "-"


def _build_summary_rows(result):
    rows = []
    for item in result.models:
        rec = item.record
        stages = rec.get("parity", {}).get("stages", {})
        worst = max([s.get("max_rel_range", 0.0) for s in stages.values()] or [0.0])
        cos = min([s.get("cosine", 1.0) for s in stages.values()] or [1.0])
        parity = "ok {} stages, err<={:.1e} of range, cos>={:.6f}".format(len(stages), worst, cos) \
            if rec.get("parity", {}).get("passed") else "FAILED"
        if item.reused:   # the graph was re-checked; parity is the build's record, not re-run
            parity = "as built: " + parity
        bn = rec.get("bn_folding", {})
        kept = bn.get("left_as_batchnorm", 0)
        affine = len(bn.get("left", [])) - kept
        rows.append([
            item.name,
            _fmt_count(rec.get("params", 0)),
            "{:.3f}".format(rec.get("macs", 0) / 1e9),
            "{} -> {}".format(rec["onnx"].get("nodes_before_simplify", "?"), rec["onnx"].get("nodes", "?")),
            "{}{}{}".format(bn.get("folded", 0), " (+{} as affine)".format(affine) if affine else "",
                            " ({} left)".format(kept) if kept else ""),
            parity,
            "random" if rec.get("weights", {}).get("random") else "checkpoint",
            "reused" if item.reused else "built {:.1f} s".format(item.seconds),
        ])
    return rows


def run_build(args):
    from deploy.bundle import default_bundle_dir, writer_lock
    from deploy.tables import format_table
    from deploy.targets import get_target, resolve_precision_choice

    target = get_target(args.target)
    choice = resolve_precision_choice(target, args.precision or target.default_precision)
    precision = choice.precision
    choice_record = None
    if target.backend == "onnxruntime":
        from deploy.cpu_isa import choice_record as make_record
        from deploy.cpu_isa import local_cpu_isa
        choice_record = make_record(choice, local_cpu_isa())
    if precision != "int8" and (args.calib_images is not None or args.calib_count is not None):
        raise UsageError("--calib-images and --calib-count apply to INT8 only, and this build is {}".format(precision),
                         hint="add --precision int8, or leave the calibration options out")
    calib_count = 500 if args.calib_count is None else args.calib_count
    if calib_count < 1:
        raise UsageError("--calib-count must be at least 1, got {}".format(calib_count), hint="e.g. 500")
    if args.out is not None and not args.out.strip():
        raise UsageError("--out is empty", hint="name the bundle folder, e.g. --out build/{}".format(target.name))
    from export.verify_images import DEFAULT_VERIFY_COUNT, check_verify_images

    if args.verify_count is not None and args.verify_images is None:
        raise UsageError("--verify-count applies to --verify-images", hint="add --verify-images DIR, or drop it")
    verify_count = DEFAULT_VERIFY_COUNT if args.verify_count is None else args.verify_count
    from export.build import (
        BuildOptions,
        build_bundle,
        check_build_folder,
        parse_weights_args,
        read_preprocess_override,
        remove_leftovers,
    )
    from export.options import check_shape_options

    names = _build_model_names(args, target)
    out_dir = args.out or default_bundle_dir(target.name)
    check_build_folder(out_dir)   # someone else's folder: refused before the lock file is made in it
    verify_picked = None
    if args.verify_images is not None:   # the images and where they go: before any export, not after it
        verify_picked = check_verify_images(args.verify_images, verify_count, out_dir=out_dir)
    options = BuildOptions(
        target=target, out_dir=out_dir, models=tuple(names), user_model=args.model,
        weights=parse_weights_args(args.weights, names + ([args.model] if args.model else [])),
        num_classes=args.num_classes, size=args.size, batch=args.batch, dynamic_batch=args.dynamic_batch,
        force=args.force, precision=precision, precision_choice=choice_record,
        preprocess=read_preprocess_override(args.preprocess) if args.preprocess else None,
        input_kind=args.input_kind)
    check_shape_options(options)   # before the lock: a refused size or batch leaves no folder behind
    if precision == "int8" and args.calib_images is not None:
        from calibration.images import check_image_folder

        check_image_folder(args.calib_images)   # not after minutes of export
    with writer_lock(out_dir, "pipeline.py build"):
        remove_leftovers(out_dir)
        result = build_bundle(options, progress=not args.quiet)
        built = [m.name for m in result.models]
        if precision == "int8":
            from calibration.stage import calibrate_bundle, summary_lines

            calibrated = calibrate_bundle(result.bundle, built, images_dir=args.calib_images,
                                          count=calib_count, method=args.calib_method,
                                          make_int8_onnx=(target.backend == "onnxruntime"), progress=not args.quiet)
            for line in summary_lines(calibrated):
                print(line)
        if args.verify_images is not None:
            from export.verify_images import pack_verify_images

            packed = pack_verify_images(result.bundle, args.verify_images, verify_count, picked=verify_picked)
            print("verify images: {} packed from {} (verify and device-run use them without --images)".format(
                packed["count"], packed["source"]))
        print(format_table(["model", "params", "GMACs", "nodes (onnxsim)", "BN folded", "parity vs PyTorch",
                            "weights", "stage"], _build_summary_rows(result)))
        random_names = [m.name for m in result.models if m.record.get("weights", {}).get("random")]
        if random_names:
            print("random weights: latency artifacts only ({}): pass --weights NAME=PATH for real predictions"
                  .format(", ".join(random_names)))
        print("bundle: {} (target {}, opset {}, input {}x3x{}x{}{}, precision {})".format(
            out_dir, target.name, target.max_opset, args.batch, args.size, args.size,
            ", dynamic batch" if args.dynamic_batch else "", precision))
        if choice.requested != choice.precision:
            print("precision {} for --precision {}: {}".format(choice.precision, choice.requested, choice.reason))
        # engines_after_build builds the engines here when TensorRT imports (else prints how to copy the
        # bundle to the device and build them there) and writes trtexec.sh: still under the lock
        code = engines_after_build(args, out_dir, precision)
    if target.backend == "tensorrt":
        print("then benchmark, on the device: python3 pipeline.py bench {}".format(shlex.quote(out_dir)))
    elif precision == "bf16":
        print("next: python pipeline.py bench {} --backend openvino --precision bf16".format(shlex.quote(out_dir)))
    else:
        print("next: python pipeline.py bench {}{}".format(shlex.quote(out_dir),
                                                           " --precision int8" if precision == "int8" else ""))
    return code
