#!/usr/bin/env python3
"""HarDNet edge deployment pipeline: a thin CLI over the library.

This file is the one place that prints results and turns the library's typed exceptions into
messages and exit codes (0 ok, 1 failure, 2 usage). It must import on a Jetson Nano (Python 3.6,
no torch): host-only packages (models, export, calibration, analysis) are imported inside the
commands that need them.
"""
import argparse
import logging
import os
import sys

from deploy.errors import PipelineError, UsageError

LOG = logging.getLogger("pipeline")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


# ------------------------------------------------------------------------------------------------
# targets / models
# ------------------------------------------------------------------------------------------------
def _add_targets(sub):
    p = sub.add_parser("targets", help="list the target profiles and what each can run")
    p.set_defaults(func=_cmd_targets)


def _cmd_targets(args):
    from deploy.targets import list_targets, supported_precisions
    from deploy.report import format_table

    rows = []
    for t in list_targets():
        rows.append([
            t.name, t.backend, t.compute_capability or "local", t.tensorrt or "installed",
            str(t.max_opset), ",".join(supported_precisions(t)), t.default_precision,
            str(t.dla_cores), "{} GB".format(t.memory_gb) if t.memory_gb else "-",
            "{} MiB".format(t.workspace_mib) if t.workspace_mib else "-",
        ])
    print(format_table(
        ["target", "backend", "sm", "TensorRT", "opset<=", "precisions", "default", "DLA", "memory", "workspace"],
        rows))
    for t in list_targets():
        print("  {:<17} {}. {}".format(t.name, t.description, t.notes))
    return EXIT_OK


def _add_models(sub):
    p = sub.add_parser("models", help="list the registered models and their model cards")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args):
    from models import get_model_card, list_models
    from deploy.report import format_table

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
    p = sub.add_parser("build", help="export the models to a verified ONNX bundle for a target")
    p.set_defaults(func=_cmd_build)


def _cmd_build(args):
    raise PipelineError("build is not implemented yet")


# ------------------------------------------------------------------------------------------------
# engines (device)                                                       owner: device side issue
# ------------------------------------------------------------------------------------------------
def _engines_after_build(args, bundle_dir, precision):
    """End of `build`: build the engines here when tensorrt imports, else print the device command."""
    return EXIT_OK


def _add_engines(sub):
    p = sub.add_parser("engines", help="on the device: build TensorRT engines from a bundle")
    p.set_defaults(func=_cmd_engines)


def _cmd_engines(args):
    raise PipelineError("engines is not implemented yet")


# ------------------------------------------------------------------------------------------------
# verify (host or device)                                          owner: calibration/INT8 issue
# ------------------------------------------------------------------------------------------------
def _add_verify(sub):
    p = sub.add_parser("verify", help="measure top-1 agreement and accuracy of every stage and precision")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args):
    raise PipelineError("verify is not implemented yet")


# ------------------------------------------------------------------------------------------------
# bench (host or device)                                                  owner: benchmark issue
# ------------------------------------------------------------------------------------------------
def _add_bench(sub):
    p = sub.add_parser("bench", help="time inference (500 iterations of 320x320 by default)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args):
    raise PipelineError("bench is not implemented yet")


# ------------------------------------------------------------------------------------------------
# analyze (host)                                                            owner: analyze issue
# ------------------------------------------------------------------------------------------------
def _add_analyze(sub):
    p = sub.add_parser("analyze", help="params, MACs, CIO and MoC per layer, and a roofline per target")
    p.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args):
    raise PipelineError("analyze is not implemented yet")


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
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in (_add_build, _add_engines, _add_verify, _add_bench, _add_analyze, _add_targets, _add_models):
        add(sub)
    return parser


def _setup_logging(verbose, quiet):
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("PIL", "matplotlib", "onnxscript", "torch"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
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


if __name__ == "__main__":
    sys.exit(main())
