"""The runner contract, after Polygraphy's runners.

    with SomeRunner(...) as runner:
        meta = runner.input_metadata()          # {name: TensorMeta}
        outputs = runner.infer({"input": x})    # {name: np.ndarray}

Names, shapes and dtypes of the feed are checked against the metadata on every call (cheap: a
few comparisons); buffers and sessions are made once in ``activate`` and freed in ``deactivate``.
Python 3.6-compatible.
"""
import collections

import numpy as np

from deploy.errors import PipelineError

TensorMeta = collections.namedtuple("TensorMeta", ["name", "shape", "dtype"])
# shape: tuple of ints, with None for a dynamic dimension; dtype: a numpy dtype.


class RunnerError(PipelineError):
    """A runner was misused or its feed does not match the model's inputs."""


class Runner(object):
    """Base class. Subclasses implement ``activate_impl``, ``deactivate_impl``,
    ``input_metadata_impl`` and ``infer_impl``."""

    name = "runner"

    def __init__(self):
        self.is_active = False
        self._input_meta = None

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.deactivate()
        return False

    def activate(self):
        if self.is_active:
            raise RunnerError("{} is already active".format(self.name))
        self.activate_impl()
        self.is_active = True
        self._input_meta = collections.OrderedDict(
            (meta.name, meta) for meta in self.input_metadata_impl()
        )

    def deactivate(self):
        if self.is_active:
            try:
                self.deactivate_impl()
            finally:
                self.is_active = False

    def input_metadata(self):
        self._require_active()
        return self._input_meta

    def infer(self, feed):
        """Run one inference. ``feed``: {input name: array}. Returns {output name: array}."""
        self._require_active()
        check_feed(self._input_meta, feed)
        return self.infer_impl(feed)

    def _require_active(self):
        if not self.is_active:
            raise RunnerError("{} is not active: use it as a context manager".format(self.name))

    # -- to implement -----------------------------------------------------------------------
    def activate_impl(self):
        raise NotImplementedError

    def deactivate_impl(self):
        raise NotImplementedError

    def input_metadata_impl(self):
        raise NotImplementedError

    def infer_impl(self, feed):
        raise NotImplementedError


def check_feed(meta, feed):
    """Raise RunnerError unless ``feed`` has exactly the inputs in ``meta`` with matching shape/dtype."""
    missing = [n for n in meta if n not in feed]
    extra = [n for n in feed if n not in meta]
    if missing or extra:
        raise RunnerError(
            "feed names do not match the model inputs: missing {}, unexpected {}".format(missing, extra),
            hint="the model's inputs are {}".format(list(meta)),
        )
    for name, m in meta.items():
        array = feed[name]
        if not isinstance(array, np.ndarray):
            raise RunnerError("input {!r} must be a numpy array, not {}".format(name, type(array).__name__))
        if array.dtype != np.dtype(m.dtype):
            raise RunnerError(
                "input {!r} has dtype {}, the model takes {}".format(name, array.dtype, np.dtype(m.dtype)),
                hint="convert with array.astype(np.{})".format(np.dtype(m.dtype).name),
            )
        if len(array.shape) != len(m.shape) or any(
            want is not None and want != got for want, got in zip(m.shape, array.shape)
        ):
            raise RunnerError(
                "input {!r} has shape {}, the model takes {}".format(name, tuple(array.shape), tuple(m.shape)),
                hint="None in the model shape means any size",
            )
