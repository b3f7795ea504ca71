"""Tool versions for manifests and reports, on host and device alike.

Python 3.6-compatible (no importlib.metadata): a package's version is read from its module's
``__version__``, importing it lazily only when asked for. A package that is not installed is
reported as None, never an error.
"""
import collections
import logging
import platform

LOG = logging.getLogger(__name__)

# name in the report -> importable module
HOST_BUILD_TOOLS = ("torch", "torchvision", "onnx", "onnxruntime", "onnxsim", "numpy")
_MODULES = {"onnxsim": "onnxsim", "pillow": "PIL"}


def package_version(name):
    # type: (str) -> object
    """Version string of an installed package, or None when it does not import."""
    module_name = _MODULES.get(name, name)
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    except (OSError, RuntimeError) as exc:  # a broken native library (a CUDA build without its drivers)
        LOG.debug("importing %s failed: %s", module_name, exc)
        return None
    version = getattr(module, "__version__", None)
    if version is None and hasattr(module, "get_version"):  # OpenVINO has no __version__
        version = module.get_version()
    return str(version) if version is not None else None


def tool_versions(names=HOST_BUILD_TOOLS):
    """OrderedDict {"python": ..., name: version or None for each of ``names``}."""
    out = collections.OrderedDict()
    out["python"] = platform.python_version()
    for name in names:
        out[name] = package_version(name)
    return out

