"""The argument parser: the global options, and one sub-command per ``add_parsers`` of a command module."""
import argparse

from cli.common import EXIT_USAGE

VERBOSE_FLAGS, QUIET_FLAGS = ("-v", "--verbose"), ("-q", "--quiet")
GLOBAL_FLAGS = VERBOSE_FLAGS + QUIET_FLAGS


class UsageParser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message, as the rest of the CLI does."""

    def error(self, message):
        misplaced = [flag for flag in GLOBAL_FLAGS if " {} ".format(flag) in " {} ".format(message)]
        if misplaced and message.startswith("unrecognized arguments"):   # `pipeline.py build -q`
            message += " (fix: {0} is an option of pipeline.py itself: put it before the command, as in " \
                       "python pipeline.py {0} build ...)".format(misplaced[0])
        self.exit(EXIT_USAGE, "{}: error: {}\n".format(self.prog, message))


def make_parser(command_modules):
    """``pipeline.py``'s parser with the commands of ``command_modules`` (each has ``add_parsers(sub)``)."""
    parser = UsageParser(
        prog="pipeline.py",
        description="HarDNet edge deployment pipeline: PyTorch -> BN-folded ONNX bundle -> "
                    "TensorRT engines / ONNX Runtime on the device -> benchmark.",
    )
    parser.add_argument(*VERBOSE_FLAGS, action="count", default=0,
                        help="debug log output (the default shows progress and stage logs)")
    parser.add_argument(*QUIET_FLAGS, action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=UsageParser)
    sub.required = True
    for module in command_modules:
        module.add_parsers(sub)
    return parser
