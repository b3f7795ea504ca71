"""`engines` (device): TensorRT engines from a bundle; also the end of `build` (engines here, or how to build them there)."""
import os
import shlex

from cli.common import EXIT_OK, add_device_bundle_argument


def engines_after_build(args, bundle_dir, precision):
    """End of `build`: build the engines here when tensorrt imports, else print the device command.

    Either way the bundle gets its trtexec.sh (the trtexec equivalents of the engine build).
    """
    from deploy.targets import resolve_precision
    from deploy.tensorrt.compat import tensorrt_available
    from deploy.tensorrt.engines import build_engines
    from deploy.tensorrt.trtexec import write_trtexec_script

    bundle, target = _bundle_for_engines_or_none(bundle_dir)
    if bundle is None:
        return EXIT_OK
    concrete = resolve_precision(target, precision or target.default_precision)
    script = write_trtexec_script(bundle, concrete)
    if tensorrt_available():
        print("TensorRT imports here: building {} engines in {}".format(concrete, bundle_dir))
        results, summary = build_engines(bundle_dir, concrete)
        print_engine_results(results, summary)
        return EXIT_OK
    here = bundle_dir.rstrip("/" + os.sep) or bundle_dir
    there = "build/{}".format(os.path.basename(os.path.abspath(here)))
    # the commands below are for copying into a shell: quote the paths ('my bundle', a '$' in a name)
    q_here, q_there, q_remote = shlex.quote(here + "/"), shlex.quote(there), shlex.quote("hardnet/" + there + "/")
    print("TensorRT is not available here, so the engines are built on the device "
          "(engines are specific to the GPU and TensorRT version that build them):")
    print("  1. copy the code and the bundle to the device:")
    print("       rsync -a pipeline.py cli deploy scripts requirements-jetson.txt USER@DEVICE:hardnet/")
    # the excludes: a killed writer's temporary files and the writer lock are not part of the bundle
    print("       rsync -a --exclude '.*.tmp' --exclude .lock {} USER@DEVICE:{}".format(q_here, q_remote))
    print("     (or scp -r the same, after: ssh USER@DEVICE mkdir -p hardnet/build)")
    print("  2. on the device, set up once (installs what is missing, then checks with `doctor`):")
    print("       cd hardnet && sh scripts/setup-jetson.sh {}".format(q_there))
    print("  3. then engines, benchmark and one archive of the reports to send back:")
    print("       python3 pipeline.py device-run {} --precision {}".format(q_there, concrete))
    print("     (or step by step: python3 pipeline.py engines {} --precision {}, then bench)".format(
        q_there, concrete))
    print("  trtexec equivalents, for use without the Python bindings: {}".format(script))
    return EXIT_OK


def _bundle_for_engines_or_none(bundle_dir):
    """(bundle, target) when the bundle's target builds TensorRT engines; (None, None) for ONNX Runtime."""
    from deploy.bundle import Bundle
    from deploy.targets import get_target
    from deploy.tensorrt.engines import check_bundle_for_engines

    bundle = Bundle.open(bundle_dir)
    if get_target(bundle.target_name).backend != "tensorrt":
        return None, None
    return check_bundle_for_engines(bundle_dir)


def print_engine_results(results, summary):
    from deploy.tables import format_table

    device = summary["device"]
    print("device: {} (sm {}), TensorRT {}; precision {} (asked: {})".format(
        device["name"], device["compute_capability"] or "?", device["tensorrt"], summary["precision"],
        summary["precision_requested"]))
    for line in summary["platform_mismatches"]:
        print("  profile mismatch: {}".format(line))
    rows = [[r.model, r.precision, r.action, "{:.1f}".format(r.seconds), r.reason, r.path] for r in results]
    print(format_table(["model", "precision", "engine", "build s", "why", "file"], rows))
    for r in results:
        if r.calibration:
            print("  {} calibration: {}".format(r.model, r.calibration))
    print("report: {}; trtexec equivalents: {}".format(summary["report"], summary["trtexec_script"]))


def add_parsers(sub):
    from deploy.targets import PRECISION_CHOICES
    from deploy.tensorrt.calibrator import CALIBRATORS, DEFAULT_BATCH_SIZE, DEFAULT_CALIBRATOR

    p = sub.add_parser(
        "engines", help="on the device: build TensorRT engines from a bundle",
        description="Verify the bundle, then build (or reuse, when up to date) one serialized TensorRT engine "
                    "per model: engines/<model>.<precision>.<trt>.<device>.engine with a .json sidecar. "
                    "A stale engine (ONNX, TensorRT version, device or options changed) is rebuilt and the "
                    "reason shown. Also writes the build log and per-layer information to reports/engines/ "
                    "and the trtexec equivalents to trtexec.sh.")
    add_device_bundle_argument(p)
    p.add_argument("--target", default=None,
                   help="refuse a bundle built for any other target (default: the bundle's own target)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="fp32, fp16, int8 (also enables FP16 fallback) or best = the fastest the target "
                        "supports (default: the target's default precision)")
    p.add_argument("--workspace", type=int, default=None, metavar="MiB",
                   help="builder workspace in MiB (default: the target's, 256 on the Jetson Nano)")
    p.add_argument("--calibrator", choices=sorted(CALIBRATORS), default=DEFAULT_CALIBRATOR,
                   help="INT8 calibrator: entropy (IInt8EntropyCalibrator2) or minmax (IInt8MinMaxCalibrator); "
                        "default %(default)s")
    p.add_argument("--calib-batch", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help="INT8 calibration batch for dynamic-batch models (whole batches only); a static "
                        "input calibrates in its own batch, as TensorRT reads it (default %(default)s)")
    p.add_argument("--max-batch", type=int, default=1, metavar="N",
                   help="largest batch of the optimization profile, for dynamic-batch models (default 1)")
    p.add_argument("--models", default=None, metavar="A,B", help="only these models (default: all in the bundle)")
    p.add_argument("--force", action="store_true", help="rebuild even up-to-date engines")
    p.set_defaults(func=run_engines)


def run_engines(args):
    from deploy.targets import get_target, resolve_precision
    from deploy.tensorrt.engines import build_engines

    precision = args.precision
    if args.target:   # refuse a precision the named target lacks before touching the bundle
        target = get_target(args.target)
        precision = precision or target.default_precision
        resolve_precision(target, precision)
    if precision is None:
        from deploy.bundle import Bundle

        precision = get_target(Bundle.open(args.bundle).target_name).default_precision
    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else None
    from deploy.bundle import writer_lock
    with writer_lock(args.bundle, "pipeline.py engines", create=False):
        results, summary = build_engines(
            args.bundle, precision, workspace_mib=args.workspace, calibrator=args.calibrator, force=args.force,
            names=names, target_name=args.target, calib_batch=args.calib_batch, max_batch=args.max_batch,
            keep_verbose=args.verbose > 0)
    print_engine_results(results, summary)
    return EXIT_OK
