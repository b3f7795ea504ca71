"""`analyze` (host): params, MACs, CIO and MoC per layer, and a roofline per target."""
import os
import sys

from cli.common import EXIT_OK
from deploy.errors import UsageError

ANALYZE_DEFAULT_MODELS = "hardnet39ds,mobilenetv2,hardnet68ds,mobilenetv2_140"



def add_parsers(sub):
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
    p.add_argument("--target", default="jetson-nano", help="target profile whose roofline to use (default jetson-nano)")
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
    p.set_defaults(func=run_analyze, host_only=True)


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


def run_analyze(args):
    from analysis.report import analyze_model, check_outputs, format_console, write_reports
    from analysis.roofline import get_hardware
    from deploy.bundle import writer_lock
    from deploy.targets import get_target

    get_target(args.target)  # unknown target names fail here, with the list
    hw = get_hardware(args.target, args.peak_gflops, args.bandwidth_gbs, args.precision)
    check_outputs(args.json_path, args.out)   # before the export and analysis, not after
    if args.out is None and args.source and os.path.isdir(args.source):   # a bundle: its reports/ folder
        from deploy.bundle import check_folder_inside
        check_folder_inside(args.source, os.path.join(args.source, "reports"))
    graphs = _analyze_sources(args)
    analyses = [analyze_model(g.model, g.name, hw, args.precision, convention=args.convention, origin=g.origin,
                              family=g.family, published=g.published) for g in graphs]
    print(format_console(analyses, hw))
    out_dir = args.out
    if out_dir is None and args.source and not args.source.endswith(".onnx"):
        out_dir = os.path.join(args.source, "reports")
    command = "python pipeline.py " + " ".join(sys.argv[1:]) if "analyze" in sys.argv[1:] else ""
    into_bundle = bool(args.source) and not args.source.endswith(".onnx") and args.out is None
    with writer_lock(args.source if into_bundle else None, "pipeline.py analyze", create=False):
        written = write_reports(analyses, hw, json_path=args.json_path, out_dir=out_dir, command=command,
                                plots=not args.no_plots)
    for path in written:
        print("wrote {}".format(path))
    return EXIT_OK
