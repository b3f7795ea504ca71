"""Run the bundle's smoke model (export/smoke.py) and compare it with its host reference.

`doctor` uses this to prove, in seconds, that the runtime on this machine really computes: on a
device, the whole TensorRT path (parse, build, deserialize, bind, copy, execute) on the same kinds
of layers the real models use; on the host, ONNX Runtime. A failure names the step that broke.
Python 3.6-compatible; runtimes are imported lazily.
"""
import collections
import logging
import os
import shutil
import tempfile
import time

import numpy as np

from deploy.errors import PipelineError

LOG = logging.getLogger(__name__)

SMOKE_ONNX_RELPATH = "smoke/smoke.onnx"
SMOKE_INPUT_RELPATH = "smoke/input.npy"
SMOKE_REFERENCE_RELPATH = "smoke/reference.npy"
SMOKE_INPUT_SHAPE = (1, 3, 32, 32)
# np.allclose rule: |out - ref| <= atol + rtol * |ref|. FP32 leaves room for TF32 convolutions
# (on by default in TensorRT on Ampere and newer); FP16 about 8x the 1.2e-3 that the network
# computed in float16 with torch differs from the reference (measured when the tolerance was set).
SMOKE_TOLERANCES = collections.OrderedDict([
    ("fp32", collections.OrderedDict([("atol", 5e-3), ("rtol", 5e-3)])),
    ("fp16", collections.OrderedDict([("atol", 1e-2), ("rtol", 1e-2)])),
])
STEPS = ("bundle", "parse", "build", "deserialize", "bind", "copy", "execute", "compare")
PARSE_HINT = "this TensorRT cannot parse the bundle's opset: check `pipeline.py targets` and the JetPack version"
BUILD_HINT = "check free memory (doctor's memory line) and the CUDA install (sudo apt-get install nvidia-jetpack)"
DESERIALIZE_HINT = "TensorRT's runtime rejects what its builder made: reinstall JetPack's TensorRT packages"
BIND_HINT = "device memory or the CUDA context: check free memory and that this user is in the video group"
COPY_HINT = "the page-locked host buffers: check free memory"
EXECUTE_HINT = ("the execute call or the copies around it failed on the GPU (CUDA reports asynchronous errors "
                "here): attach reports/doctor.json to a bug report")


class SmokeTestError(PipelineError):
    """The smoke test failed at ``step`` (one of STEPS)."""

    def __init__(self, step, message, hint=None):
        super(SmokeTestError, self).__init__("smoke test failed at {}: {}".format(step, message), hint=hint)
        self.step = step


def load_smoke(bundle):
    """(record, input, reference) of the bundle's smoke model, each file checked against its sha256."""
    record = bundle.manifest.get("smoke")
    if not isinstance(record, dict):
        raise SmokeTestError("bundle", "bundle {} has no smoke model".format(bundle.root),
                             hint="rebuild the bundle on the host with this version: python pipeline.py build")
    try:
        paths = [bundle.verify_file(record[k]["path"], record[k]["sha256"]) for k in ("onnx", "input", "reference")]
        x = np.load(paths[1], allow_pickle=False)
        reference = np.load(paths[2], allow_pickle=False)
    except PipelineError as exc:
        raise SmokeTestError("bundle", str(exc), hint=exc.hint) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise SmokeTestError("bundle", "the smoke record in {} is unreadable ({})".format(bundle.root, exc),
                             hint="rebuild the bundle on the host: python pipeline.py build") from exc
    return record, paths[0], x, reference


def compare(output, reference, atol, rtol):
    """Dict of the comparison (np.allclose's rule) of ``output`` with ``reference``."""
    output = np.asarray(output, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    out = collections.OrderedDict()
    out["shape_ok"] = output.shape == reference.shape
    if not out["shape_ok"]:
        out["ok"] = False
        out["detail"] = "output shape {} != reference {}".format(output.shape, reference.shape)
        return out
    diff = np.abs(output - reference)
    out["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    out["atol"], out["rtol"] = atol, rtol
    out["ok"] = bool(np.all(np.isfinite(output)) and np.all(diff <= atol + rtol * np.abs(reference)))
    out["detail"] = "max |diff| {:.2e} (atol {:g}, rtol {:g})".format(out["max_abs_diff"], atol, rtol)
    return out


def _tolerance(record, precision):
    tol = (record.get("tolerance") or {}).get(precision) or SMOKE_TOLERANCES[precision]
    return float(tol["atol"]), float(tol["rtol"])


def run_smoke_onnxruntime(bundle):
    """The smoke model on ONNX Runtime (FP32). Returns a result dict; raises SmokeTestError."""
    from deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

    record, onnx_path, x, reference = load_smoke(bundle)
    started = time.time()
    try:
        with OnnxRuntimeRunner(onnx_path, threads=1, optimization="basic") as runner:
            output = runner.infer({"input": x})["logits"]
    except PipelineError as exc:
        raise SmokeTestError("execute", exc.one_line()) from exc
    return _finish(record, "onnxruntime", "fp32", output, reference, started)


def run_smoke_tensorrt(bundle, precision, workspace_mib=64):
    """The smoke model through TensorRT: parse, build, deserialize, bind, copy, execute, compare.

    Parse and build are the engines command's own (``build_serialized``, without a timing cache);
    the engine is kept in memory and in a temporary folder outside the bundle, so the smoke test
    never adds to or changes the bundle. Whatever a step raises (TensorRT and pycuda raise their
    own exception types) becomes a SmokeTestError naming that step.
    """
    from deploy.errors import EngineBuildError
    from deploy.tensorrt.build_log import BuildLog, make_trt_logger
    from deploy.tensorrt.compat import require_tensorrt
    from deploy.tensorrt.engine_files import DEFAULT_CALIBRATOR, EngineOptions
    from deploy.tensorrt.engines import build_serialized
    from deploy.tensorrt.runner import TensorRTRunner

    record, onnx_path, x, reference = load_smoke(bundle)
    trt = require_tensorrt()
    started = time.time()
    log = BuildLog()
    logger = make_trt_logger(log)

    def details():
        return "; ".join(log.errors()) or "no details from TensorRT"

    def step(name, hint, work):
        try:
            return work()
        except SmokeTestError:
            raise
        except Exception as exc:   # TensorRT's and pycuda's own types too: name the step, not a traceback
            text = exc.one_line() if isinstance(exc, PipelineError) else "{}: {}".format(type(exc).__name__, exc)
            raise SmokeTestError(name, text, hint=hint) from exc

    def parse_and_build():
        options = EngineOptions(precision, workspace_mib, DEFAULT_CALIBRATOR, 1, 1)
        shape = {"input": {"name": "input", "shape": list(SMOKE_INPUT_SHAPE)}}
        try:
            return build_serialized(onnx_path, options, shape, None, None, logger)[0]
        except EngineBuildError as exc:
            raise SmokeTestError(exc.step, exc.one_line(), hint=PARSE_HINT if exc.step == "parse" else BUILD_HINT) \
                from exc

    def deserialize(serialized):
        if trt.Runtime(logger).deserialize_cuda_engine(serialized) is None:
            raise SmokeTestError("deserialize", details(), hint=DESERIALIZE_HINT)

    serialized = step("build", BUILD_HINT, parse_and_build)
    step("deserialize", DESERIALIZE_HINT, lambda: deserialize(serialized))
    folder = tempfile.mkdtemp(prefix="hardnet-smoke-")
    try:
        path = os.path.join(folder, "smoke.{}.engine".format(precision))
        with open(path, "wb") as handle:
            handle.write(serialized)
        runner = TensorRTRunner(path)
        step("bind", BIND_HINT, runner.activate)
        try:
            step("copy", COPY_HINT, lambda: runner.set_inputs({"input": x}))
            step("execute", EXECUTE_HINT, runner.execute_timed)
            output = runner.outputs()["logits"]
        finally:
            runner.deactivate()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _finish(record, "tensorrt", precision, output, reference, started)


def _finish(record, backend, precision, output, reference, started):
    atol, rtol = _tolerance(record, precision)
    result = compare(output, reference, atol, rtol)
    result["backend"], result["precision"] = backend, precision
    result["seconds"] = round(time.time() - started, 3)
    if not result["ok"]:
        raise SmokeTestError("compare", "{} {} output differs from the host reference: {}".format(
            backend, precision, result["detail"]),
            hint="the runtime computes wrong results here: attach reports/doctor.json to a bug report")
    return result
