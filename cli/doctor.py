"""`doctor` (device or host): is this machine ready for the next command; one line per check."""
import sys

from cli.common import EXIT_FAILURE, EXIT_OK, bundles_under_build


def add_parsers(sub):
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
    p.set_defaults(func=run_doctor_command)


_MARKS = {"ok": ("\u2714", "ok"), "fail": ("\u2718", "FAIL"), "warn": ("!", "warn"), "info": ("-", "info")}


def mark(status):
    """A check mark where the terminal can show one (a Jetson's C locale cannot), else a word."""
    symbol, word = _MARKS[status]
    try:
        symbol.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return word
    return symbol


def _print_check(check):
    line = "{} {:<22} {}".format(mark(check.status), check.name, check.detail)
    if check.status in ("fail", "warn") and check.fix:
        line += "\n  {:<22} fix: {}".format("", check.fix)
    print(line)
    sys.stdout.flush()


def run_doctor(bundle_dir):
    from deploy.bundle import writer_lock
    from deploy.device.doctor import run_doctor

    # doctor writes reports/doctor.json into the bundle; a folder that is not a bundle runs unlocked
    with writer_lock(bundle_dir or None, "pipeline.py doctor", create=False):
        report = run_doctor(bundle_dir, progress=_print_check)
    failed = [c for c in report["checks"] if c["required"] and c["status"] == "fail"]
    summary = "doctor: {} on the {} ({:.1f} s)".format(
        "ready" if report["ok"] else "NOT ready: " + ", ".join(c["name"] for c in failed), report["role"],
        report["seconds"])
    print(summary + ("; wrote {}".format(report["written"]) if report["written"] else ""))
    return report


def run_doctor_command(args):
    found = bundles_under_build()
    bundle_dir = args.bundle or (found[0] if len(found) == 1 else None)
    report = run_doctor(bundle_dir)
    return EXIT_OK if report["ok"] else EXIT_FAILURE
