#!/usr/bin/env python3
"""HarDNet edge deployment pipeline: a thin CLI over the library.

The commands live in ``cli/``, one module per command. This file parses the arguments, sets up
logging, runs the command and is the one place that turns the library's typed exceptions into
messages and exit codes (0 ok, 1 failure, 2 usage). It must import on a Jetson Nano (Python 3.6,
no torch): host-only packages (models, export, calibration, analysis) are imported inside the
commands that need them.
"""
import logging
import signal
import sys

from cli import analyze, bench, build, catalog, device_run, doctor, engines, predict, verify
from cli.common import EXIT_FAILURE, EXIT_USAGE
from cli.parser import make_parser as _make_parser
from deploy.errors import PipelineError, UsageError

LOG = logging.getLogger("pipeline")

# build, analyze and models import the host packages (models/, export/, calibration/, analysis/),
# written for modern Python; the device side (this file, cli/ and deploy/) stays Python 3.6.
HOST_PYTHON = (3, 10)
# in the order `pipeline.py --help` lists them
COMMAND_MODULES = (build, engines, verify, bench, predict, doctor, device_run, analyze, catalog)


def make_parser():
    return _make_parser(COMMAND_MODULES)


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


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, systemd, a CI timeout) raised where the program is, so it takes Ctrl-C's way
    out: finally blocks run and temporary files are removed. A KeyboardInterrupt, so no
    ``except Exception`` swallows it."""


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a second SIGTERM must not cut the cleanup short
    raise Terminated()


def _on_sigterm_raise():
    """Install the SIGTERM handler for the length of main; returns the handler to put back, or
    None where none can be installed (signal.signal works in the main thread only)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:
        return None
    return signal.SIG_DFL if previous is None else previous   # None: set outside Python


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    previous = _on_sigterm_raise()
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args):
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
    except Terminated:
        sys.stderr.write("terminated: files already written are complete; partial files were removed\n")
        return 128 + int(signal.SIGTERM)   # 143, the shell's code for a SIGTERM
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
