"""TensorRT's log, kept: ``BuildLog`` collects the messages of a build or a run for the report and
forwards them to ``logging``; ``make_trt_logger`` wraps it in a ``trt.ILogger``.

Its own module because the engine builds, the runner, the smoke test and the API layer all log
through it; none of them has to import another to get it. Python 3.6; tensorrt imported lazily.
"""
import collections
import logging
from typing import Any  # noqa: F401 (type comments)

from deploy.errors import EngineBuildError

LOG = logging.getLogger(__name__)


class BuildLog(object):
    """Messages from TensorRT's logger, kept for the report and forwarded to ``logging``."""

    LEVELS = collections.OrderedDict([
        ("INTERNAL_ERROR", logging.CRITICAL), ("ERROR", logging.ERROR), ("WARNING", logging.WARNING),
        ("INFO", logging.INFO), ("VERBOSE", logging.DEBUG)])

    def __init__(self, keep_verbose=False):
        self.keep_verbose = keep_verbose
        self.lines = []  # type: list
        self.callback_error = None  # type: Any  # first exception raised inside the logger callback

    @staticmethod
    def severity_name(severity):
        # "Severity.WARNING" or "ILogger.Severity.WARNING" (pybind11 enums) -> "WARNING"
        return str(severity).split(".")[-1].upper()

    def add(self, severity, message):
        name = self.severity_name(severity)
        if name == "VERBOSE" and not self.keep_verbose:
            return
        self.lines.append((name, str(message)))
        level = self.LEVELS.get(name, logging.INFO)
        LOG.log(logging.DEBUG if level <= logging.INFO else level, "TensorRT: %s", message)

    def errors(self):
        return [msg for name, msg in self.lines if name in ("ERROR", "INTERNAL_ERROR")]

    def text(self):
        return "".join("[{}] {}\n".format(name, msg) for name, msg in self.lines)

    def raise_if_callback_failed(self, step):
        # type: (str) -> None
        if self.callback_error is not None:
            raise EngineBuildError(
                "{}: the TensorRT logger callback failed: {}".format(step, self.callback_error),
                hint="this is a bug in the pipeline's logging; please report it with the build log")


def make_trt_logger(build_log):
    """A ``trt.ILogger`` subclass instance that feeds ``build_log``.

    TensorRT calls ``log`` from C++ code declared noexcept; on 8.2 an exception escaping it aborts
    the process (pyCore.cpp 8.2.1, PyLogger::log). So nothing escapes: the first error is kept in
    ``build_log.callback_error`` and raised by the caller after TensorRT returns.
    """
    import tensorrt as trt

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            try:
                build_log.add(severity, msg)
            except Exception as exc:  # noqa: BLE001 - must not reach TensorRT's C++ caller
                if build_log.callback_error is None:
                    build_log.callback_error = exc

    return CollectingLogger()
