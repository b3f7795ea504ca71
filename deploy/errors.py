"""Typed errors shared by host and device code.

Library code raises these; only ``pipeline.py`` turns them into messages and exit codes.
Every error carries the problem (``str(err)``) and, where one exists, the fix (``err.hint``).
Python 3.6-compatible: this module runs on the Jetson.
"""


class PipelineError(Exception):
    """A failure the user can act on. Exit status 1."""

    exit_code = 1

    def __init__(self, message, hint=None):
        # type: (str, object) -> None
        super(PipelineError, self).__init__(message)
        self.hint = hint  # type: object

    def one_line(self):
        # type: () -> str
        text = str(self)
        if self.hint:
            text += " (fix: {})".format(self.hint)
        return text


class UsageError(PipelineError):
    """Bad command-line input (unknown name, bad value). Exit status 2, like argparse."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self):
        # KeyError quotes its message; we want the plain text.
        return Exception.__str__(self)


class BundleError(PipelineError):
    """The bundle is missing, from another target, or does not match its manifest."""


class ModelNotInBundleError(UsageError, BundleError):
    """A model name given (--model, --models) that the bundle does not hold. Exit status 2, as any
    bad name on the command line; still a BundleError for callers that catch those."""


class WeightsError(PipelineError):
    """A checkpoint is missing, corrupt, unsafe or of another architecture."""


class ExportError(PipelineError):
    """ONNX export, checking or simplification failed."""


class ParityError(PipelineError):
    """A stage's outputs differ from the PyTorch reference beyond the stated tolerances."""


class BackendUnavailableError(PipelineError):
    """A runtime (TensorRT, pycuda, ONNX Runtime, torch, OpenVINO) is not installed here."""


class PrecisionUnsupportedError(UsageError):
    """The target cannot run the requested precision."""


class CalibrationError(PipelineError):
    """Calibration data is missing, empty, or does not belong to this model."""


class EngineBuildError(PipelineError):
    """TensorRT could not parse the ONNX model or build the engine; ``step`` is "parse" or "build"."""

    def __init__(self, message, hint=None, step="build"):
        # type: (str, object, str) -> None
        super(EngineBuildError, self).__init__(message, hint=hint)
        self.step = step
