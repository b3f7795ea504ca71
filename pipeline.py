#!/usr/bin/env python3
"""HarDNet edge deployment pipeline: a thin CLI over the library.

This file is the one place that prints results and turns the library's typed exceptions into
messages and exit codes (0 ok, 1 failure, 2 usage). It must import on a Jetson Nano (Python 3.6,
no torch): host-only packages (models, export, calibration, analysis) are imported inside the
commands that need them.
"""
import argparse
import importlib
import logging
import os
import sys

from deploy.errors import PipelineError, UsageError

LOG = logging.getLogger("pipeline")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# build, analyze and models import the host packages (models/, export/, calibration/, analysis/),
# written for modern Python; the device side (this file and deploy/) stays Python 3.6.
HOST_PYTHON = (3, 10)


# ------------------------------------------------------------------------------------------------
# targets / models
# ------------------------------------------------------------------------------------------------
def _add_targets(sub):
    p = sub.add_parser("targets", help="list the target profiles and what each can run")
    p.set_defaults(func=_cmd_targets)


def _cmd_targets(args):
    from deploy.cpu_isa import cpu_target_precisions, local_cpu_isa
    from deploy.tables import format_table
    from deploy.targets import list_targets, supported_precisions

    rows = []
    for t in list_targets():
        precisions = cpu_target_precisions(local_cpu_isa()) if t.backend == "onnxruntime" else supported_precisions(t)
        rows.append([
            t.name, t.backend, t.compute_capability or "local", t.tensorrt or "installed",
            str(t.max_opset), ",".join(precisions), t.default_precision,
            "{} GB".format(t.memory_gb) if t.memory_gb else "-",
            "{} MiB".format(t.workspace_mib) if t.workspace_mib else "-",
        ])
    print(format_table(
        ["target", "backend", "sm", "TensorRT", "opset<=", "precisions", "default", "memory", "workspace"],
        rows))
    for t in list_targets():
        print("  {:<17} {}. {}".format(t.name, t.description, t.notes))
    _print_local_gpu()
    _print_local_cpu()
    return EXIT_OK


def _print_local_cpu():
    """What the cpu target means on this machine: its vector ISA and the precisions it runs natively."""
    from deploy.cpu_isa import choose_cpu_precision, local_cpu_isa, precision_support

    isa = local_cpu_isa()
    print("  this CPU: {} ({}): {}".format(isa.model, isa.arch, ", ".join(isa.features) or "no vector extensions found"))
    print("    cpu precisions: {}".format("; ".join(
        "{} {} ({})".format(p, "fast" if native else "slow" if p == "int8" else "no", why)
        for p, native, why in precision_support(isa))))
    best = choose_cpu_precision(isa, "best", backend="openvino")
    print("    --precision best on the cpu target: {} ({})".format(best.precision, best.reason))


def _print_local_gpu():
    """What x86-gpu means on this machine: the local GPU as TensorRT reports it (when it imports)."""
    from deploy.errors import BackendUnavailableError
    from deploy.targets import get_target, local_profile, supported_precisions
    from deploy.tensorrt.compat import probe_local_device, tensorrt_available

    if not tensorrt_available():
        print("  (no TensorRT here: x86-gpu's capabilities are read from the GPU when engines are built)")
        return
    try:
        device = probe_local_device()
    except BackendUnavailableError as exc:
        print("  (TensorRT imports but the GPU could not be read: {})".format(exc.one_line()))
        return
    here = local_profile(get_target("x86-gpu"), device)
    print("  this machine: {} (sm {}), TensorRT {}: fast precisions {}".format(
        device.name, device.compute_capability, device.tensorrt, ",".join(supported_precisions(here))))


def _add_models(sub):
    p = sub.add_parser("models", help="list the registered models and their model cards")
    p.set_defaults(func=_cmd_models, host_only=True)


def _cmd_models(args):
    from deploy.tables import format_table
    from models import get_model_card, list_models

    rows = []
    for name in list_models():
        card = get_model_card(name)
        rows.append([name, card.family, "x".join(str(v) for v in card.input_size), str(card.num_classes),
                     card.description])
    print(format_table(["model", "family", "input", "classes", "description"], rows))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# build (host)                                                   owner: host build pipeline issue
# ------------------------------------------------------------------------------------------------
def _add_build(sub):
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
                   help="classifier outputs (default: the checkpoint's, else the model card's)")
    p.add_argument("--out", default=None, metavar="DIR", help="bundle folder (default build/<target>)")
    p.add_argument("--size", type=int, default=320, metavar="N", help="square input side in pixels (default 320)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size of the exported input (default 1)")
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
    p.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"],
                   help="int8 only: calibration method (default minmax)")
    p.set_defaults(func=_cmd_build, host_only=True)


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


def _cmd_build(args):
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
    from export.build import (
        BuildOptions,
        build_bundle,
        check_build_folder,
        parse_weights_args,
        read_preprocess_override,
        remove_leftovers,
    )

    names = _build_model_names(args, target)
    out_dir = args.out or default_bundle_dir(target.name)
    check_build_folder(out_dir)   # someone else's folder: refused before the lock file is made in it
    options = BuildOptions(
        target=target, out_dir=out_dir, models=tuple(names), user_model=args.model,
        weights=parse_weights_args(args.weights, names + ([args.model] if args.model else [])),
        num_classes=args.num_classes, size=args.size, batch=args.batch, dynamic_batch=args.dynamic_batch,
        force=args.force, precision=precision, precision_choice=choice_record,
        preprocess=read_preprocess_override(args.preprocess) if args.preprocess else None,
        input_kind=args.input_kind)
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
    # _engines_after_build builds the engines here when TensorRT imports, else prints how to copy the
    # bundle to the device and build them there; the benchmark is the step after that.
    code = _engines_after_build(args, out_dir, precision)
    if target.backend == "tensorrt":
        print("then benchmark, on the device: python3 pipeline.py bench {}".format(out_dir))
    elif precision == "bf16":
        print("next: python pipeline.py bench {} --backend openvino --precision bf16".format(out_dir))
    else:
        print("next: python pipeline.py bench {}{}".format(out_dir, " --precision int8" if precision == "int8" else ""))
    return code


# ------------------------------------------------------------------------------------------------
# engines (device)                                                       owner: device side issue
# ------------------------------------------------------------------------------------------------
def _engines_after_build(args, bundle_dir, precision):
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
        _print_engine_results(results, summary)
        return EXIT_OK
    here = bundle_dir.rstrip("/" + os.sep) or bundle_dir
    there = "build/{}".format(os.path.basename(os.path.abspath(here)))
    print("TensorRT is not available here, so the engines are built on the device "
          "(engines are specific to the GPU and TensorRT version that build them):")
    print("  1. copy the code and the bundle to the device:")
    print("       rsync -a pipeline.py deploy scripts requirements-jetson.txt USER@DEVICE:hardnet/")
    # the excludes: a killed writer's temporary files and the writer lock are not part of the bundle
    print("       rsync -a --exclude '.*.tmp' --exclude .lock {}/ USER@DEVICE:hardnet/{}/".format(here, there))
    print("     (or scp -r the same, after: ssh USER@DEVICE mkdir -p hardnet/build)")
    print("  2. on the device, set up once (installs what is missing, then checks with `doctor`):")
    print("       cd hardnet && sh scripts/setup-jetson.sh {}".format(there))
    print("  3. then engines, benchmark and one archive of the reports to send back:")
    print("       python3 pipeline.py device-run {} --precision {}".format(there, concrete))
    print("     (or step by step: python3 pipeline.py engines {} --precision {}, then bench)".format(
        there, concrete))
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


def _print_engine_results(results, summary):
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


def _add_engines(sub):
    from deploy.targets import PRECISION_CHOICES
    from deploy.tensorrt.calibrator import CALIBRATORS, DEFAULT_BATCH_SIZE, DEFAULT_CALIBRATOR

    p = sub.add_parser(
        "engines", help="on the device: build TensorRT engines from a bundle",
        description="Verify the bundle, then build (or reuse, when up to date) one serialized TensorRT engine "
                    "per model: engines/<model>.<precision>.<trt>.<device>.engine with a .json sidecar. "
                    "A stale engine (ONNX, TensorRT version, device or options changed) is rebuilt and the "
                    "reason shown. Also writes the build log and per-layer information to reports/engines/ "
                    "and the trtexec equivalents to trtexec.sh.")
    p.add_argument("bundle", nargs="?", default=os.path.join("build", "jetson-nano"),
                   help="bundle folder (default: build/jetson-nano)")
    p.add_argument("--target", default=None,
                   help="refuse a bundle built for any other target (default: the bundle's own target)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="fp32, fp16, int8 (also enables FP16 fallback) or best = the fastest the target "
                        "supports (default: the target's default precision)")
    p.add_argument("--workspace", type=int, default=None, metavar="MiB",
                   help="builder workspace in MiB (default: the target's, 256 on the Jetson Nano)")
    p.add_argument("--calibrator", choices=sorted(CALIBRATORS), default=DEFAULT_CALIBRATOR,
                   help="INT8 calibrator: entropy (IInt8EntropyCalibrator2) or minmax (IInt8MinMaxCalibrator)")
    p.add_argument("--calib-batch", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help="INT8 calibration batch for dynamic-batch models (whole batches only); a static "
                        "input calibrates in its own batch, as TensorRT reads it (default %(default)s)")
    p.add_argument("--max-batch", type=int, default=1, metavar="N",
                   help="largest batch of the optimization profile, for dynamic-batch models")
    p.add_argument("--models", default=None, metavar="A,B", help="only these models (default: all in the bundle)")
    p.add_argument("--force", action="store_true", help="rebuild even up-to-date engines")
    p.set_defaults(func=_cmd_engines)


def _cmd_engines(args):
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
    _print_engine_results(results, summary)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# verify (host or device)                                          owner: calibration/INT8 issue
# ------------------------------------------------------------------------------------------------
def _add_verify(sub):
    p = sub.add_parser(
        "verify", help="measure top-1 agreement and accuracy of every stage and precision",
        description="Run every stage available here (PyTorch eager and BN-folded on the host, the FP32 "
                    "and INT8 ONNX models, TensorRT engines on a device) on held-out images; report top-1 "
                    "agreement with the FP32 reference, logit cosine similarity and, for labelled images, "
                    "accuracy. Writes BUNDLE/reports/verify.json and verify.md.")
    p.add_argument("bundle", nargs="?", default=None,
                   help="bundle folder (default: the only bundle under build/)")
    p.add_argument("--images", metavar="DIR", default=None,
                   help="held-out images, one sub-folder per class (folder names = class names or indices); "
                        "default: generic sample photographs, agreement only")
    p.add_argument("--count", type=int, default=200, metavar="N",
                   help="images to use, picked deterministically (default 200)")
    p.add_argument("--model", action="append", default=None, metavar="NAME",
                   help="verify only this model (repeatable; default: every model in the bundle)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="ONNX Runtime intra-op threads")
    p.add_argument("--openvino", action="store_true",
                   help="also run OpenVINO on the CPU: fp32, bf16 (where the CPU has AVX512_BF16/AMX) and int8")
    p.set_defaults(func=_cmd_verify)


def _bundles_under_build():
    """The bundle folders directly under build/ (those with a manifest)."""
    names = os.listdir("build") if os.path.isdir("build") else []
    return sorted(os.path.join("build", d) for d in names if os.path.isfile(os.path.join("build", d, "manifest.json")))


def _only_bundle(command, found, no_bundle_hint="build one first"):
    """The one bundle in ``found``, else a UsageError naming the choices."""
    if len(found) == 1:
        return found[0]
    raise UsageError("{} bundles under build/: name one".format("no" if not found else len(found)),
                     hint="python pipeline.py {} BUNDLE{}".format(
                         command, " (one of: {})".format(", ".join(found)) if found else "; " + no_bundle_hint))


def _model_zoo():
    """The host's ``models`` package for bench (torch backend, published figures); None on the device."""
    try:
        return importlib.import_module("models")
    except (ImportError, SyntaxError):   # SyntaxError: the host package on the device's Python 3.6
        return None


def _verify_host_parts():
    """verify's host-only parts (deploy/ imports no host package): the PyTorch stages and the generic
    sample photographs; (None, None) where torch, scikit-image or Python >= 3.9 is missing (the device)."""
    parts = []
    for module, name in (("calibration.torch_stages", "torch_stages"), ("calibration.images", "generic_verify_images")):
        try:
            parts.append(getattr(importlib.import_module(module), name))
        except (ImportError, SyntaxError):   # SyntaxError: the host package on the device's Python 3.6
            parts.append(None)
    return tuple(parts)


def _cmd_verify(args):
    from deploy.bundle import Bundle, writer_lock
    from deploy.verify import REPORT_JSON, REPORT_MD, text_report, verify_bundle

    root = args.bundle or _only_bundle("verify", _bundles_under_build())
    with writer_lock(root, "pipeline.py verify", create=False):   # verify adds to the manifest
        bundle = Bundle.open(root)
        make_torch_stages, generic_images = _verify_host_parts()
        report = verify_bundle(bundle, names=args.model, images_dir=args.images, count=args.count,
                               threads=args.threads, progress=not args.quiet, openvino=args.openvino,
                               make_torch_stages=make_torch_stages, generic_images=generic_images)
    print(text_report(report))
    print("wrote {} and {}".format(bundle.path(REPORT_JSON), bundle.path(REPORT_MD)))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# bench (host or device)                                                  owner: benchmark issue
# ------------------------------------------------------------------------------------------------
def _add_bench(sub):
    p = sub.add_parser(
        "bench", help="time inference (500 iterations of 320x320 by default)",
        description="The HarDNet authors' protocol: seeded random input, warm-up, then every iteration timed "
                    "and kept. Default backend: TensorRT where it imports, else ONNX Runtime on the CPU (the "
                    "fallback, said so in the report). Writes BUNDLE/reports/bench.json, bench.md, bench.png.")
    p.add_argument("bundle", nargs="?", default=None,
                   help="bundle folder (default: the only bundle under build/; optional with --backend torch "
                        "--models ...)")
    p.add_argument("--backend", choices=("tensorrt", "onnxruntime", "torch", "openvino"), default=None,
                   help="runtime (default: tensorrt if it imports, else onnxruntime)")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8", "best"), default=None,
                   help="default: the target's default on TensorRT, fp32 on the CPU, fp16 with torch on CUDA; "
                        "bf16: --backend openvino on a CPU with AVX512_BF16/AMX; best on the CPU: from its flags")
    p.add_argument("--iterations", type=int, default=500, metavar="N", help="timed iterations (default 500)")
    p.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="warm-up iterations before timing (default: 10%% of --iterations, 10..100)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="input side (default: the bundle's, 320 for the default bundles and without a bundle)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for onnxruntime/openvino/torch (default: physical cores)")
    p.add_argument("--models", default=None, metavar="A,B",
                   help="comma-separated model names (default: every model in the bundle); with --backend torch "
                        "any registered model, e.g. resnet50,hardnet68")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="torch backend only (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="random input seed (default 0)")
    p.add_argument("--no-spin", action="store_true",
                   help="onnxruntime: park idle worker threads instead of spinning (for a machine shared with "
                        "other work; spinning, the default, is faster on an idle one)")
    p.add_argument("--out", default=None, metavar="DIR", help="report folder (default BUNDLE/reports)")
    p.add_argument("--no-png", action="store_true", help="skip bench.png")
    p.add_argument("--e2e", action="store_true",
                   help="also time predict end to end on --images (decode, preprocess, network, postprocess), "
                        "side by side with the network-only figures")
    p.add_argument("--images", default=None, metavar="DIR", help="--e2e: folder of JPEG/PNG images")
    p.set_defaults(func=_cmd_bench)


def _bench_bundle_dir(args):
    """The bundle folder for bench: given, else the only bundle under build/ (none needed for torch --models)."""
    if args.bundle:
        return args.bundle
    found = _bundles_under_build()
    if not found and args.backend == "torch" and args.models:
        return None
    return _only_bundle("bench", found, "build one first (python pipeline.py build), or time PyTorch models "
                                        "without a bundle: --backend torch --models resnet50,hardnet68")


def _cmd_bench(args):
    from deploy.bench import protocol as bench
    from deploy.bench.report import build_report, check_report_dir, render_console, write_reports
    from deploy.bundle import Bundle
    from deploy.environment import collect_environment

    choice = bench.choose_backend(args.backend)
    bundle_dir = _bench_bundle_dir(args)
    bundle = None
    if bundle_dir is not None and (choice.name != "torch" or os.path.isdir(bundle_dir) or not args.models):
        bundle = Bundle.open(bundle_dir)
    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else None
    size = args.size if args.size is not None else bench.bundle_input_size(bundle, names)
    protocol = bench.make_protocol(args.iterations, args.warmup, size, args.batch, args.seed, args.threads,
                                   args.precision, spinning=not args.no_spin)
    if names is not None and bundle is not None and choice.name != "torch":
        missing = [n for n in names if n not in bundle.model_names()]
        if missing:
            raise UsageError("not in bundle {}: {}".format(bundle.root, ", ".join(missing)),
                             hint="models in it: {}".format(", ".join(bundle.model_names()) or "none"))
    if names is None and bundle is not None:
        names = bundle.require_models()
    if not names:
        raise UsageError("no models to benchmark", hint="give a bundle or --models a,b")
    device = "cpu"
    if choice.name == "torch":
        from deploy.runners.torch_runner import cuda_available
        device = args.device or ("cuda" if cuda_available() else "cpu")
    if choice.fallback:
        LOG.warning("%s", choice.reason)
    if args.out is not None and not args.out.strip():
        raise UsageError("--out is empty", hint="name the report folder, or leave --out out (BUNDLE/reports)")
    out_dir = args.out or os.path.join(bundle.root if bundle is not None else os.path.join("build", "bench"),
                                       "reports")
    check_report_dir(out_dir)   # before the timed run, not after it
    e2e_paths = None
    if args.e2e:
        from deploy.bench.e2e import image_paths

        if bundle is None:
            raise UsageError("--e2e needs a bundle", hint="python pipeline.py bench BUNDLE --e2e --images DIR")
        e2e_paths = image_paths(args.images)
    cache = os.path.join(bundle.root, "cache", "onnxruntime") if bundle is not None else None
    env = collect_environment(backend=choice.name)  # before the run: the load average is other programs'
    results, extras = bench.run_bench(protocol, choice, bundle=bundle, names=names, device=device,
                                      progress=not args.quiet, optimized_model_dir=cache, model_zoo=_model_zoo())
    env["precision"], env["threads"] = extras["precision"], extras["threads"]
    if e2e_paths is not None:
        from deploy.bench.e2e import run_e2e

        e2e = run_e2e(bundle, names, e2e_paths, protocol.iterations, protocol.warmup, choice.name,
                      precision=args.precision, threads=args.threads)
        for result in results:
            result["e2e"] = e2e.get(result["model"])
    report = build_report(env, protocol, results, extras)
    paths = write_reports(out_dir, report, png=not args.no_png)
    print(render_console(report))
    print("wrote " + ", ".join(paths.values()))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# doctor and device-run (device or host)                         owner: device first-contact issue
# ------------------------------------------------------------------------------------------------
def _add_doctor(sub):
    p = sub.add_parser(
        "doctor", help="check that this machine is ready for the next command, with a TensorRT smoke test",
        description="One line per check (board, L4T/JetPack, Python, numpy, TensorRT, CUDA, cuDNN, pycuda, GPU "
                    "and matching target, power mode and clocks, memory, swap, disk, the bundle and its "
                    "engines), each passed or failed with the fix. With a bundle, the bundle's smoke model is "
                    "built and run through TensorRT (FP32, and FP16 where fast) on a device, or ONNX Runtime "
                    "on the host, and compared with the host's reference. Writes BUNDLE/reports/doctor.json. "
                    "Exit 0 only if everything the next command needs passed.")
    p.add_argument("bundle", nargs="?", default=None,
                   help="bundle folder to check (default: the only bundle under build/, if there is one)")
    p.set_defaults(func=_cmd_doctor)


_MARKS = {"ok": ("\u2714", "ok"), "fail": ("\u2718", "FAIL"), "warn": ("!", "warn"), "info": ("-", "info")}


def _mark(status):
    """A check mark where the terminal can show one (a Jetson's C locale cannot), else a word."""
    symbol, word = _MARKS[status]
    try:
        symbol.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return word
    return symbol


def _print_check(check):
    line = "{} {:<22} {}".format(_mark(check.status), check.name, check.detail)
    if check.status in ("fail", "warn") and check.fix:
        line += "\n  {:<22} fix: {}".format("", check.fix)
    print(line)
    sys.stdout.flush()


def _run_doctor(bundle_dir):
    from deploy.device.doctor import run_doctor

    report = run_doctor(bundle_dir, progress=_print_check)
    failed = [c for c in report["checks"] if c["required"] and c["status"] == "fail"]
    summary = "doctor: {} on the {} ({:.1f} s)".format(
        "ready" if report["ok"] else "NOT ready: " + ", ".join(c["name"] for c in failed), report["role"],
        report["seconds"])
    print(summary + ("; wrote {}".format(report["written"]) if report["written"] else ""))
    return report


def _cmd_doctor(args):
    found = _bundles_under_build()
    bundle_dir = args.bundle or (found[0] if len(found) == 1 else None)
    report = _run_doctor(bundle_dir)
    return EXIT_OK if report["ok"] else EXIT_FAILURE


def _add_device_run(sub):
    from deploy.targets import PRECISION_CHOICES

    p = sub.add_parser(
        "device-run", help="on the device: doctor, engines, bench, verify, and one archive to send back",
        description="Runs doctor, then engines, then bench on the authors' protocol (TensorRT), then verify "
                    "when --images is given, and packs the reports, build logs, engine layer information and "
                    "the environment into BUNDLE/reports/device-run-<board>-<date>.tar.gz. Stops at the first "
                    "failing step with its message; a re-run skips the steps already done and still current "
                    "(recorded in BUNDLE/reports/device-run.json).")
    p.add_argument("bundle", nargs="?", default=os.path.join("build", "jetson-nano"),
                   help="bundle folder (default: build/jetson-nano)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="engine and bench precision (default: the target's default, fp16 on the Nano)")
    p.add_argument("--images", metavar="DIR", default=None,
                   help="held-out images for verify (one sub-folder per class); without it verify is skipped")
    p.add_argument("--iterations", type=int, default=500, metavar="N", help="bench iterations (default 500)")
    p.add_argument("--force", action="store_true", help="redo every step, even those already done")
    p.set_defaults(func=_cmd_device_run)


def _cmd_device_run(args):
    from deploy.bundle import Bundle
    from deploy.device import device_run
    from deploy.environment import collect_environment
    from deploy.errors import PipelineError
    from deploy.targets import get_target, resolve_precision

    bundle = Bundle.open(args.bundle)
    target = get_target(bundle.target_name)
    precision = resolve_precision(target, args.precision or target.default_precision)
    state = {} if args.force else device_run.read_state(bundle)
    common = (["-v"] * args.verbose) + (["-q"] if args.quiet else [])
    steps = [
        ("engines", common + ["engines", bundle.root, "--precision", precision]),
        ("bench", common + ["bench", bundle.root, "--backend", "tensorrt", "--precision", precision,
                            "--iterations", str(args.iterations)]),
    ]
    if args.images:
        steps.append(("verify", common + ["verify", bundle.root, "--images", args.images]))
    done = []
    print("== doctor")
    if not _run_doctor(bundle.root)["ok"]:
        raise PipelineError("device-run stopped at doctor: a required check failed",
                            hint="fix the lines marked above, then run device-run again")
    done.append(("doctor", "ran"))
    for step, argv in steps:
        key = device_run.step_key(bundle, precision, args.images if step == "verify" else args.iterations)
        if step != "engines" and device_run.is_current(bundle, state, step, key):
            print("== {}: already done for these engines (skipped; --force redoes it)".format(step))
            done.append((step, "skipped: current"))
            continue
        print("== " + step)
        sub_args = make_parser().parse_args(argv)
        try:
            sub_args.func(sub_args)
        except PipelineError as exc:
            stopped = PipelineError("device-run stopped at {}: {}".format(step, exc), hint=exc.hint)
            stopped.exit_code = exc.exit_code
            raise stopped from exc
        device_run.record_step(bundle, state, step, device_run.step_key(
            bundle, precision, args.images if step == "verify" else args.iterations))
        done.append((step, "ran"))
    env = collect_environment(backend="tensorrt", precision=precision)
    board = (env.get("jetson") or {}).get("board") or env.get("hostname")
    archive, members = device_run.write_archive(bundle, env, board)
    done.append(("archive", "{} files".format(len(members))))
    from deploy.tables import format_table

    print(format_table(["step", "result"], [list(row) for row in done]))
    print("send back: {} (reports, build logs, layer information, environment)".format(bundle.path(archive)))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# predict (host or device)                                                    owner: predict issue
# ------------------------------------------------------------------------------------------------
def _add_predict(sub):
    p = sub.add_parser(
        "predict", help="classify images, folders, video files or a camera with a bundle's model",
        description="Per image: the top-k labels (the manifest's class names, else the class index) with "
                    "probabilities, and where the time goes (decode, preprocess, network, postprocess, total). "
                    "Per video or camera: frames per second and the same breakdown averaged. A bad image or "
                    "frame is reported and skipped. Video and --camera need OpenCV.")
    p.add_argument("bundle", help="bundle folder (e.g. build/jetson-nano)")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders (recursive) or video files")
    p.add_argument("--model", default=None, metavar="NAME", help="model of the bundle (default: its only model)")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime", "openvino"), default="auto",
                   help="auto (default): the model's current TensorRT engine where TensorRT imports, else ONNX Runtime")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "best"), default=None,
                   help="default: the target's default on TensorRT, fp32 on the CPU")
    p.add_argument("--input", dest="input_kind", choices=("auto", "float32", "uint8"), default="auto",
                   help="auto (default): the bundle's uint8-input graph (build --input uint8) where the backend runs it")
    p.add_argument("--decoder", choices=("auto", "pillow", "opencv", "pillow+opencv", "reference"), default="auto",
                   help="auto (default): pillow+opencv (Pillow's DCT-scaled JPEG decode, OpenCV's resize) where "
                        "OpenCV is installed, else pillow; reference: the exact preprocessing of verify (slower)")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="labels per image (default 5)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="video/camera: stop after N frames")
    p.add_argument("--camera", default=None, metavar="SRC",
                   help="camera index (0) or a GStreamer pipeline ending in appsink (needs OpenCV)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for ONNX Runtime/OpenVINO")
    p.add_argument("--json", action="store_true", help="print one JSON record per input instead of text")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args):
    import json

    from deploy.predict.classifier import open_classifier
    from deploy.predict.run import expand_inputs, record_lines, run_predict, summary_line

    if args.topk < 1:
        raise UsageError("--topk must be at least 1, not {}".format(args.topk), hint="e.g. --topk 5")
    items = expand_inputs(args.inputs, camera=args.camera)
    with open_classifier(args.bundle, args.model, backend=args.backend, precision=args.precision,
                         input_kind=args.input_kind, decoder=args.decoder, threads=args.threads) as clf:
        if not args.json:
            print("{model} on {backend} ({precision}, {input} input, {decoder} decoder) from {bundle}".format(
                **clf.describe()))

        def show(record):
            if args.json:
                print(json.dumps(record))
            else:
                print("\n".join(record_lines(record)))
            sys.stdout.flush()

        records = run_predict(clf, items, topk=args.topk, max_frames=args.max_frames, on_record=show)
    if not args.json:
        print(summary_line(records))
    return EXIT_FAILURE if any("error" in r and not r.get("frames") for r in records) else EXIT_OK


# ------------------------------------------------------------------------------------------------
# analyze (host)                                                            owner: analyze issue
# ------------------------------------------------------------------------------------------------
ANALYZE_DEFAULT_MODELS = "hardnet39ds,mobilenetv2,hardnet68ds,mobilenetv2_140"


def _add_analyze(sub):
    p = sub.add_parser(
        "analyze", help="params, MACs, CIO and MoC per layer, and a roofline per target",
        description="Read each model's BN-folded ONNX graph and report parameters, MACs, CIO (the HarDNet "
                    "paper's Eq. 1) and MoC per convolution and per model, the layers below the target's "
                    "MoC threshold, and a roofline latency bound. Without SOURCE, the registered models "
                    "are exported; SOURCE may be a bundle folder or an .onnx file.")
    p.add_argument("source", nargs="?", default=None, metavar="SOURCE",
                   help="a bundle folder (build/<target>) or an .onnx file; default: the model registry")
    p.add_argument("--models", default=None,
                   help="comma-separated model names, or 'all' (default: {}; with a bundle: all "
                        "its models)".format(ANALYZE_DEFAULT_MODELS))
    p.add_argument("--size", type=int, default=None,
                   help="square input side (default 224, the paper's; a bundle or .onnx: its own size)")
    p.add_argument("--target", default="jetson-nano", help="target profile whose roofline to use")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                   help="element width for bytes moved and the peak FLOP/s (default fp16)")
    p.add_argument("--convention", choices=("paper", "eq1"), default="paper",
                   help="CIO counting: 'paper' (Eq. 1; stride-2 depthwise convs standing in for pooling "
                        "do not count) or 'eq1' (every conv counts)")
    p.add_argument("--peak-gflops", type=float, default=None, help="override the target's peak GFLOP/s")
    p.add_argument("--bandwidth-gbs", type=float, default=None, help="override the target's DRAM GB/s")
    p.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="write the full report as JSON")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write analyze.md and a roofline PNG per model here (default with a bundle: "
                        "BUNDLE/reports)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG charts")
    p.set_defaults(func=_cmd_analyze, host_only=True)


def _analyze_sources(args):
    """The ONNX graphs to analyze, from the registry, a bundle or an .onnx file."""
    from analysis import sources

    names = None
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        if not names:
            raise UsageError("--models is empty", hint="give names, e.g. --models hardnet68,mobilenetv2")
    if args.source and args.source.endswith(".onnx"):
        if names:
            raise UsageError("--models does not apply to a single .onnx file", hint="drop --models")
        return [sources.from_onnx_file(args.source, args.size)]
    if args.source:
        if names == ["all"]:
            names = None
        return sources.from_bundle(args.source, names, args.size)
    from models import list_models

    if names == ["all"]:
        names = list_models()
    names = names or ANALYZE_DEFAULT_MODELS.split(",")
    size = args.size or 224
    out = []
    try:
        from tqdm import tqdm
        names_iter = tqdm(names, desc="export", unit="model", file=sys.stderr, leave=False)
    except ImportError:
        names_iter = names
    for name in names_iter:
        out.append(sources.from_registry(name, size))
    return out


def _cmd_analyze(args):
    from analysis.report import analyze_model, check_outputs, format_console, write_reports
    from analysis.roofline import get_hardware
    from deploy.targets import get_target

    get_target(args.target)  # unknown target names fail here, with the list
    hw = get_hardware(args.target, args.peak_gflops, args.bandwidth_gbs, args.precision)
    check_outputs(args.json_path, args.out)   # before the export and analysis, not after
    graphs = _analyze_sources(args)
    analyses = [analyze_model(g.model, g.name, hw, args.precision, convention=args.convention, origin=g.origin,
                              family=g.family, published=g.published) for g in graphs]
    print(format_console(analyses, hw))
    out_dir = args.out
    if out_dir is None and args.source and not args.source.endswith(".onnx"):
        out_dir = os.path.join(args.source, "reports")
    command = "python pipeline.py " + " ".join(sys.argv[1:]) if "analyze" in sys.argv[1:] else ""
    for path in write_reports(analyses, hw, json_path=args.json_path, out_dir=out_dir, command=command,
                              plots=not args.no_plots):
        print("wrote {}".format(path))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message, as the rest of the CLI does."""

    def error(self, message):
        self.exit(EXIT_USAGE, "{}: error: {}\n".format(self.prog, message))


def make_parser():
    parser = _Parser(
        prog="pipeline.py",
        description="HarDNet edge deployment pipeline: PyTorch -> BN-folded ONNX bundle -> "
                    "TensorRT engines / ONNX Runtime on the device -> benchmark.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug log output (the default shows progress and stage logs)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in (_add_build, _add_engines, _add_verify, _add_bench, _add_predict, _add_doctor, _add_device_run,
                _add_analyze, _add_targets, _add_models):
        add(sub)
    return parser


def _setup_logging(verbose, quiet):
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        for noisy in ("PIL", "matplotlib", "onnxscript", "torch"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _logs_above_progress_bars():
    """Route log records through tqdm while a command runs, so they do not break its bars."""
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:  # tqdm is optional on the device
        import contextlib

        return contextlib.contextmanager(lambda: (yield))()
    return logging_redirect_tqdm()


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        if getattr(args, "host_only", False) and sys.version_info[:2] < HOST_PYTHON:
            raise UsageError(
                "`{}` runs on the host: it needs Python {}.{} or newer with torch, and this is Python {}.{}".format(
                    args.command, HOST_PYTHON[0], HOST_PYTHON[1], sys.version_info[0], sys.version_info[1]),
                hint="run it on the x86 host (README, 'Two commands'), then copy the bundle here; on the "
                     "device use engines, bench and verify")
        with _logs_above_progress_bars():
            return args.func(args)
    except UsageError as exc:
        sys.stderr.write("error: {}\n".format(exc.one_line()))
        return EXIT_USAGE
    except PipelineError as exc:
        sys.stderr.write("error: {}\n".format(exc.one_line()))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: files already written are complete; partial files were removed\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        LOG.debug("traceback", exc_info=True)
        sys.stderr.write("error: {}\n".format(_unexpected_error_line(exc, args)))
        return EXIT_USAGE if isinstance(exc, ImportError) and getattr(args, "host_only", False) else EXIT_FAILURE


def _unexpected_error_line(exc, args):
    """One line for an error the library did not type: a full disk, memory, a missing host package."""
    import errno

    first = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, ImportError) and getattr(args, "host_only", False):
        return ("`{}` runs on the host and needs its packages (models/, export/, calibration/, analysis/, "
                "torch): {} (fix: run it on the x86 host with requirements.txt installed, then copy the bundle "
                "here; on the device use engines, bench and verify)".format(args.command, first))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return ("no space left on the device{} (fix: free some space and run the command again; files already "
                "written are complete, partial ones were removed)".format(
                    " writing " + str(exc.filename) if exc.filename else ""))
    if isinstance(exc, MemoryError):
        return ("out of memory (fix: a smaller --size, --batch or --iterations, or close other programs)")
    if isinstance(exc, OSError):
        return "{}{} (fix: check the path and its permissions)".format(
            exc.strerror or first, ": " + str(exc.filename) if exc.filename else "")
    return "{}: {} (fix: `python pipeline.py -v {} ...` shows the traceback; report it if the input was valid)".format(
        type(exc).__name__, first, args.command)


if __name__ == "__main__":
    sys.exit(main())
