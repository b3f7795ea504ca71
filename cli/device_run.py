"""`device-run` (device): doctor, engines, bench, verify, then one archive of the reports to send back."""

from cli import bench, engines, verify
from cli.common import EXIT_OK, add_device_bundle_argument
from cli.doctor import run_doctor
from cli.parser import make_parser

# the commands device-run runs, parsed as `pipeline.py` parses them (their defaults included)
STEP_COMMANDS = (engines, bench, verify)


def add_parsers(sub):
    from deploy.targets import PRECISION_CHOICES

    p = sub.add_parser(
        "device-run", help="on the device: doctor, engines, bench, verify, and one archive to send back",
        description="Runs doctor, then engines, then bench on the authors' protocol (TensorRT), then verify "
                    "when --images is given or the bundle carries images (build --verify-images), and packs "
                    "the reports, build logs, engine layer information and the environment into "
                    "BUNDLE/reports/device-run-<board>-<date>.tar.gz. Stops at the first "
                    "failing step with its message; a re-run skips the steps already done and still current "
                    "(recorded in BUNDLE/reports/device-run.json).")
    add_device_bundle_argument(p)
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="engine and bench precision (default: the target's default, fp16 on the Nano)")
    p.add_argument("--images", metavar="DIR", default=None,
                   help="held-out images for verify (one sub-folder per class); default: the images the bundle "
                        "carries (build --verify-images); with neither, verify is skipped")
    p.add_argument("--iterations", type=int, default=500, metavar="N", help="bench iterations (default 500)")
    p.add_argument("--force", action="store_true", help="redo every step, even those already done")
    p.set_defaults(func=run_device_run)


def run_device_run(args):
    from deploy.bundle import Bundle, check_bundle_folders, writer_lock
    from deploy.device import device_run
    from deploy.environment import collect_environment
    from deploy.errors import PipelineError
    from deploy.targets import get_target, resolve_precision

    bundle = Bundle.open(args.bundle)
    check_bundle_folders(bundle.root, ("reports",))   # its state and archive go there
    target = get_target(bundle.target_name)
    precision = resolve_precision(target, args.precision or target.default_precision)
    state = {} if args.force else device_run.read_state(bundle)
    common = (["-v"] * args.verbose) + (["-q"] if args.quiet else [])
    steps = [
        ("engines", common + ["engines", bundle.root, "--precision", precision]),
        ("bench", common + ["bench", bundle.root, "--backend", "tensorrt", "--precision", precision,
                            "--iterations", str(args.iterations)]),
    ]
    # verify's images: --images, else those the bundle carries (checked against their sha256 here)
    verify_source = args.images or device_run.packed_images_key(bundle)
    if args.images:
        steps.append(("verify", common + ["verify", bundle.root, "--images", args.images]))
    elif verify_source:
        steps.append(("verify", common + ["verify", bundle.root]))
    done = []
    print("== doctor")
    if not run_doctor(bundle.root)["ok"]:
        raise PipelineError("device-run stopped at doctor: a required check failed",
                            hint="fix the lines marked above, then run device-run again")
    done.append(("doctor", "ran"))
    for step, argv in steps:
        key = device_run.step_key(bundle, precision, verify_source if step == "verify" else args.iterations)
        if step != "engines" and device_run.is_current(bundle, state, step, key):
            print("== {}: already done for these engines (skipped; --force redoes it)".format(step))
            done.append((step, "skipped: current"))
            continue
        print("== " + step)
        sub_args = make_parser(STEP_COMMANDS).parse_args(argv)
        try:
            sub_args.func(sub_args)
        except PipelineError as exc:
            stopped = PipelineError("device-run stopped at {}: {}".format(step, exc), hint=exc.hint)
            stopped.exit_code = exc.exit_code
            raise stopped from exc
        with writer_lock(bundle.root, "pipeline.py device-run", create=False):   # each step took it too
            device_run.record_step(bundle, state, step, device_run.step_key(
                bundle, precision, verify_source if step == "verify" else args.iterations))
        done.append((step, "ran"))
    env = collect_environment(backend="tensorrt", precision=precision)
    board = (env.get("jetson") or {}).get("board") or env.get("hostname")
    with writer_lock(bundle.root, "pipeline.py device-run", create=False):
        archive, members = device_run.write_archive(bundle, env, board)
    done.append(("archive", "{} files".format(len(members))))
    from deploy.tables import format_table

    print(format_table(["step", "result"], [list(row) for row in done]))
    print("send back: {} (reports, build logs, layer information, environment)".format(bundle.path(archive)))
    return EXIT_OK
