"""`bench` (host or device): the authors' timing protocol; TensorRT where it imports, else the CPU fallback."""
import importlib
import logging
import os

from cli.common import EXIT_OK, bundles_under_build, only_bundle
from deploy.errors import UsageError

LOG = logging.getLogger(__name__)


def add_parsers(sub):
    p = sub.add_parser(
        "bench", help="time inference (500 iterations at the bundle's input size by default, 320x320 for the default bundles)",
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
    p.set_defaults(func=run_bench)


def model_zoo():
    """The host's ``models`` package for bench (torch backend, published figures); None on the device."""
    try:
        return importlib.import_module("models")
    except (ImportError, SyntaxError):   # SyntaxError: the host package on the device's Python 3.6
        return None


def _bench_bundle_dir(args):
    """The bundle folder for bench: given, else the only bundle under build/ (none needed for torch --models)."""
    if args.bundle:
        return args.bundle
    found = bundles_under_build()
    if not found and args.backend == "torch" and args.models:
        return None
    return only_bundle("bench", found, "build one first (python pipeline.py build), or time PyTorch models "
                                        "without a bundle: --backend torch --models resnet50,hardnet68")


def run_bench(args):
    from deploy.bench import protocol as bench
    from deploy.bench.report import build_report, check_report_dir, render_console, write_reports
    from deploy.bundle import Bundle, check_folder_inside, writer_lock
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
    check_report_dir(out_dir, bundle.root if bundle is not None else None)   # before the timed run, not after it
    e2e_paths = None
    if args.e2e:
        from deploy.bench.e2e import image_paths

        if bundle is None:
            raise UsageError("--e2e needs a bundle", hint="python pipeline.py bench BUNDLE --e2e --images DIR")
        e2e_paths = image_paths(args.images)
    cache = os.path.join(bundle.root, "cache", "onnxruntime") if bundle is not None else None
    if cache is not None:
        check_folder_inside(bundle.root, cache)   # ONNX Runtime writes its optimised graphs there
    # bench writes into the bundle (its reports, ONNX Runtime's graph cache), and must not time
    # models that a build is replacing: it holds the writer lock
    with writer_lock(bundle.root if bundle is not None else None, "pipeline.py bench", create=False):
        env = collect_environment(backend=choice.name)  # before the run: the load average is other programs'
        results, extras = bench.run_bench(protocol, choice, bundle=bundle, names=names, device=device,
                                          progress=not args.quiet, optimized_model_dir=cache, model_zoo=model_zoo())
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
