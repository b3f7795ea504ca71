#!/usr/bin/env python3
"""Mutation test of the device code: do the tests catch API-level mistakes in the TensorRT/pycuda code?

Each mutant is one plausible mistake made to one line of deploy/ (a dropped call, a swapped
argument, the other API generation's call, a missing synchronize, the default stream instead of
ours, an unconverted memoryview, a wrong dtype, a missing context pop or base ``__init__``, event
order, ...). The script copies the project to a temporary folder, checks that the unmutated copy
passes the device tests, then applies each mutant alone, runs the device tests (``-x``: the first
failure kills it) and restores the file. A mutant whose tests still pass "survived": a mistake the
tests cannot see.

Usage:
    python scripts/trt_mutants.py                 # all mutants; exit 1 if any survived
    python scripts/trt_mutants.py --list          # what each mutant does
    python scripts/trt_mutants.py --only M01,M17  # a few
CI runs a fixed sample (tests/scripts/test_trt_mutants.py); the full run is this script.
"""
import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The device tests, fastest first (-x stops at the first failure).
DEVICE_TESTS = [
    "tests/deploy/tensorrt/test_trt_fakes.py",
    "tests/deploy/tensorrt/test_calibrator.py",
    "tests/deploy/tensorrt/test_runner.py",
    "tests/deploy/runners/test_runner_contract.py",
    "tests/deploy/tensorrt/test_engines.py",
    "tests/deploy/tensorrt/test_engines_cli.py",
    "tests/deploy/tensorrt/test_trtexec.py",
    "tests/deploy/bench/test_protocol.py::test_tensorrt_bench_with_a_batch_on_a_dynamic_batch_engine",
    "tests/deploy/tensorrt/test_trt_types.py",
]

# What the copy needs (no .git, no build outputs). .cache holds the TensorRT 10 stubs.
COPY = ["cli", "deploy", "tests", "scripts", "typings", "models", "export", "bench", "analysis", "calibration",
        "pipeline.py", "pyproject.toml", ".cache/tensorrt-stubs"]

Mutant = collections.namedtuple("Mutant", ["id", "path", "old", "new", "what"])

_M = [
    # -- deploy/tensorrt/compat.py -----------------------------------------------------------------------
    ("deploy/tensorrt/compat.py", "    context.push()\n    try:\n        yield context",
     "    try:\n        yield context", "cuda_context: the primary context is never pushed"),
    ("deploy/tensorrt/compat.py", "    finally:\n        cuda.Context.pop()",
     "    finally:\n        pass", "cuda_context: missing context pop"),
    ("deploy/tensorrt/compat.py", "            _PRIMARY_CONTEXTS[key] = context",
     "            pass", "primary_context: retained again on every use (never released)"),
    ("deploy/tensorrt/compat.py", "    if uses_memory_pools(config):\n",
     "    if not uses_memory_pools(config):\n", "set_workspace: the other API generation's call"),
    ("deploy/tensorrt/compat.py", "config.max_workspace_size = int(nbytes)",
     "config.max_workspace_size = int(nbytes) >> 20", "set_workspace: MiB where TensorRT wants bytes"),
    ("deploy/tensorrt/compat.py", "            is_input = engine.get_tensor_mode(name) == input_mode",
     "            is_input = engine.get_tensor_mode(name) != input_mode", "tensor-name I/O: inputs taken for outputs"),
    ("deploy/tensorrt/compat.py", "            dtype = engine.get_tensor_dtype(name)  # trt>=8.5\n"
                             "            out.append(TensorIO(name, i, is_input, dims_tuple(shape), np.dtype(self.trt.nptype(dtype))))",
     "            dtype = engine.get_tensor_dtype(name)  # trt>=8.5\n"
     "            out.append(TensorIO(name, i, is_input, dims_tuple(shape), np.dtype(np.float32)))",
     "tensor-name I/O: float32 assumed instead of nptype(dtype)"),
    ("deploy/tensorrt/compat.py", "            dtype = engine.get_binding_dtype(i)  # trt<8.5\n"
                             "            out.append(TensorIO(name, i, is_input, dims_tuple(shape), np.dtype(self.trt.nptype(dtype))))",
     "            dtype = engine.get_binding_dtype(i)  # trt<8.5\n"
     "            out.append(TensorIO(name, i, is_input, dims_tuple(shape), np.dtype(np.float32)))",
     "binding-index I/O: float32 assumed instead of nptype(dtype)"),
    ("deploy/tensorrt/compat.py", "execute_async_v2(bindings=self._bindings, stream_handle=int(stream_handle))",
     "execute_async_v2(bindings=self._bindings[::-1], stream_handle=int(stream_handle))",
     "execute_async_v2: bindings swapped"),
    ("deploy/tensorrt/compat.py", "execute_async_v2(bindings=self._bindings, stream_handle=int(stream_handle))",
     "execute_async_v2(bindings=self._bindings, stream_handle=0)", "execute_async_v2 on the default stream"),
    ("deploy/tensorrt/compat.py", "return bool(context.execute_async_v3(int(stream_handle)))",
     "return bool(context.execute_async_v3(0))", "execute_async_v3 on the default stream"),
    ("deploy/tensorrt/compat.py", '    if hasattr(engine, "num_io_tensors"):\n        return NamedTensorIO(trt, engine)\n'
                             '    if hasattr(engine, "num_bindings"):\n        return IndexedTensorIO(trt, engine)',
     '    if hasattr(engine, "num_bindings"):\n        return IndexedTensorIO(trt, engine)\n'
     '    if hasattr(engine, "num_io_tensors"):\n        return NamedTensorIO(trt, engine)',
     "tensor_io_for: the deprecated binding API preferred where both exist (8.5)"),
    ("deploy/tensorrt/compat.py", "if not context.set_input_shape(tensor.name, tuple(int(d) for d in shape)):",
     "if not context.set_input_shape(tensor.name, tuple(int(d) for d in shape)[::-1]):",
     "set_input_shape: dimensions reversed"),
    ("deploy/tensorrt/compat.py", "if not context.set_binding_shape(tensor.index, tuple(int(d) for d in shape)):",
     "if not context.set_binding_shape(tensor.index + 1, tuple(int(d) for d in shape)):",
     "set_binding_shape: the output's binding index"),
    ("deploy/tensorrt/compat.py", "shapes = self.engine.get_tensor_profile_shape(tensor.name, 0)",
     "shapes = self.engine.get_tensor_profile_shape(0, tensor.name)", "get_tensor_profile_shape: arguments swapped"),
    ("deploy/tensorrt/compat.py", "shapes = self.engine.get_profile_shape(0, tensor.index)",
     "shapes = self.engine.get_profile_shape(1, tensor.index)", "get_profile_shape: profile 1 instead of 0"),
    ("deploy/tensorrt/compat.py", "        return 1 << int(flag)", "        return int(flag)",
     "network_flags: the flag's value instead of its bit"),
    ("deploy/tensorrt/compat.py", '    if hasattr(builder, "max_batch_size"):\n        flag',
     '    if False:\n        flag', "network_flags: TensorRT 10's implicit explicit-batch assumed on 8.x"),
    ("deploy/tensorrt/compat.py", "return dims_tuple(context.get_tensor_shape(tensor.name))",
     "return dims_tuple(self.engine.get_tensor_shape(tensor.name))",
     "output shape from the engine (-1) instead of the context"),
    # -- deploy/tensorrt/runner.py -------------------------------------------------------------
    ("deploy/tensorrt/runner.py", "        self._cuda_context.push()\n        try:\n            self._log = BuildLog()",
     "        try:\n            self._log = BuildLog()", "activate: allocates without pushing the context"),
    ("deploy/tensorrt/runner.py", "            raise\n        cuda.Context.pop()\n",
     "            raise\n", "activate: missing context pop"),
    ("deploy/tensorrt/runner.py", "            stream.synchronize()\n", "",
     "execute_timed: missing stream synchronize"),
    ("deploy/tensorrt/runner.py",
     "cuda.memcpy_htod_async(self._device[tensor.name], self._host[tensor.name], stream)",
     "cuda.memcpy_htod_async(self._device[tensor.name], self._host[tensor.name])",
     "input copies on the default stream"),
    ("deploy/tensorrt/runner.py",
     "cuda.memcpy_dtoh_async(self._host[tensor.name], self._device[tensor.name], stream)",
     "cuda.memcpy_dtoh_async(self._host[tensor.name], self._device[tensor.name])",
     "output copies on the default stream"),
    ("deploy/tensorrt/runner.py", "compute_ms = float(start.time_till(end))",
     "compute_ms = float(end.time_till(start))", "events in the wrong order"),
    ("deploy/tensorrt/runner.py",
     "            ok = self._io.execute(self._context, stream.handle)\n            end.record(stream)",
     "            end.record(stream)\n            ok = self._io.execute(self._context, stream.handle)",
     "end event recorded before the execute"),
    ("deploy/tensorrt/runner.py", "        for buffer in self._device.values():\n            buffer.free()\n",
     "", "_release: device buffers never freed"),
    ("deploy/tensorrt/runner.py", "        self._start = None\n        self._end = None\n", "",
     "_release: events outlive the context's push"),
    ("deploy/tensorrt/runner.py", "        self._cuda_context.push()\n        try:\n            self._release()",
     "        try:\n            self._release()", "deactivate: frees without pushing the context"),
    ("deploy/tensorrt/runner.py", "        finally:\n            self._cuda.Context.pop()",
     "        finally:\n            pass", "deactivate: missing context pop"),
    ("deploy/tensorrt/runner.py", "        if not low[0] <= batch <= high[0]:", "        if False:",
     "runner: batch not checked against the optimization profile"),
    ("deploy/tensorrt/runner.py", "                batch = self._batch_for(tensor)", "                batch = 1",
     "runner: always batch 1 (bench --batch N on a dynamic engine)"),
    ("deploy/tensorrt/runner.py", "host = cuda.pagelocked_empty(tensor.shape, tensor.dtype)",
     "host = np.empty(tensor.shape, tensor.dtype)", "pageable host buffers for async copies"),
    ("deploy/tensorrt/runner.py", "cuda.mem_alloc(max(int(host.nbytes), 1))",
     "cuda.mem_alloc(max(int(host.nbytes) // 2, 1))", "device buffers half the size (elements vs bytes)"),
    # -- deploy/tensorrt/calibrator.py ---------------------------------------------------------------------------
    ("deploy/tensorrt/calibrator.py", "        def __init__(self):\n            base.__init__(self)",
     "        def __init__(self):\n            pass", "calibrator: missing base __init__"),
    ("deploy/tensorrt/calibrator.py", "        cuda.memcpy_htod(device_buffer, batch)\n", "",
     "calibrator: batch never copied to the device"),
    ("deploy/tensorrt/calibrator.py", "        data = bytes(data)\n        problem = cache_problem(data, self.calibrator)",
     "        problem = cache_problem(data, self.calibrator)", "calibration cache: unconverted memoryview"),
    ("deploy/tensorrt/calibrator.py", "            return None if data is None else bytes(data)",
     "            return None if data is None else data.decode('ascii')",
     "read_calibration_cache returns str, not a buffer"),
    ("deploy/tensorrt/calibrator.py", "            return [address]", "            return address",
     "get_batch returns an int, not a list of pointers"),
    ("deploy/tensorrt/calibrator.py", '            self._fail("get_batch", exc)\n            return None',
     "            raise", "get_batch lets an exception into TensorRT"),
    ("deploy/tensorrt/calibrator.py", "            return int(self.stream.batch_size)", "            return self.stream.batch_shape",
     "get_batch_size returns a shape"),
    ("deploy/tensorrt/calibrator.py", "    nbytes = int(np.prod(stream.batch_shape)) * np.dtype(np.float32).itemsize",
     "    nbytes = int(np.prod(stream.batch_shape))", "device buffer sized in elements, not bytes"),
    ("deploy/tensorrt/calibrator.py", 'base = trt.IInt8MinMaxCalibrator if cache.calibrator == "minmax" else trt.IInt8EntropyCalibrator2',
     'base = trt.IInt8MinMaxCalibrator if cache.calibrator != "minmax" else trt.IInt8EntropyCalibrator2',
     "calibrator base classes swapped"),
    # -- deploy/tensorrt/engines.py ---------------------------------------------------------------------------------
    ("deploy/tensorrt/engine_files.py", '        return int(options.calib_batch)\n    return int(record["input"]["shape"][0])',
     '        return int(options.calib_batch)\n    return int(options.calib_batch)',
     "static input calibrated in --calib-batch batches (TensorRT reads one image of each)"),
    ("deploy/tensorrt/engines.py", "            calib = (calibration_batch(record, options),) + smin[1:]",
     "            calib = smin", "calibration profile left at batch 1"),
    ("deploy/tensorrt/engines.py", "        config.int8_calibrator = calibrator\n", "",
     "INT8 without the calibrator"),
    ("deploy/tensorrt/engines.py", "    if check_callbacks is not None:\n        check_callbacks()\n", "",
     "callback errors reported as a generic build failure"),
    ("deploy/tensorrt/build_log.py", "        def __init__(self):\n            trt.ILogger.__init__(self)",
     "        def __init__(self):\n            pass", "logger: missing base __init__"),
    ("deploy/tensorrt/build_log.py", "            try:\n                build_log.add(severity, msg)\n            except Exception as exc:",
     "            try:\n                build_log.add(severity, msg)\n            except KeyError as exc:",
     "logger lets an exception into TensorRT"),
    ("deploy/tensorrt/engines.py", "                    core.free()     # while the CUDA context is still current", "                    pass",
     "calibration buffer never freed"),
    ("deploy/tensorrt/engines.py", "    if not config.set_timing_cache(cache, False):\n        cache = _new_timing_cache(config)",
     "    if not config.set_timing_cache(cache, True):\n        cache = _new_timing_cache(config)",
     "timing cache of another GPU accepted (ignore_mismatch)"),
    ("deploy/tensorrt/engines.py", "    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)",
     "    return inspector.get_engine_information(trt.LayerInformationFormat.ONELINE)",
     "layer report in ONELINE instead of JSON"),
    ("deploy/tensorrt/engines.py", '    if options.precision in ("fp16", "int8"):\n        config.set_flag(trt.BuilderFlag.FP16)',
     '    if options.precision in ("fp16",):\n        config.set_flag(trt.BuilderFlag.FP16)',
     "INT8 engines without the FP16 fallback"),
    # -- deploy/tensorrt/trtexec.py -------------------------------------------------------------------------------
    ("deploy/tensorrt/trtexec.py", "            out.append(shlex.quote(piece))", "            out.append(piece)",
     "trtexec.sh arguments unquoted (command injection)"),
    ("deploy/tensorrt/trtexec.py", '           "--duration=0", ', '           ', "trtexec bench without --duration=0"),
    ("deploy/tensorrt/trtexec.py", '"--warmUp={}".format(int(warmup_ms))', '"--warmUp={}".format(int(warmup_ms) // 1000)',
     "trtexec --warmUp in seconds"),
    ("deploy/tensorrt/trtexec.py", """    if [ ! -s "$1" ] || ! head -n 1 "$1" | grep -q '^TRT-[0-9]*-EntropyCalibration2'; then""",
     """    if [ ! -s "$1" ]; then""", "trtexec.sh accepts any non-empty file as an entropy cache"),
    ("deploy/tensorrt/trtexec.py", 'calib = calibration_cache_relpath(model, "entropy", trt_name, device)',
     'calib = calibration_cache_relpath(model, calibrator, trt_name, device)',
     "trtexec given a MinMax calibration cache"),
    # (appended, so that the ids above stay stable: the CI sample names them)
    ("deploy/tensorrt/engines.py", "            if not config.set_calibration_profile(calib_profile):",
     "            if False:", "dynamic-batch INT8 without a calibration profile"),
    ("deploy/tensorrt/calibrator.py", "        if self.error is not None:\n            return   # scales from a calibration",
     "        if False:\n            return   # scales from a calibration",
     "cache written from a calibration that failed part-way"),
]
MUTANTS = [Mutant("M{:02d}".format(i), *m) for i, m in enumerate(_M, start=1)]


def check_applicable(root=ROOT):
    """Problems with the mutant list: a mutant whose text is not in its file exactly once."""
    problems = []
    for m in MUTANTS:
        with open(os.path.join(root, m.path), encoding="utf-8") as handle:
            count = handle.read().count(m.old)
        if count != 1:
            problems.append("{} ({}): its text occurs {} times in {}".format(m.id, m.what, count, m.path))
    return problems


def copy_project(dest):
    for name in COPY:
        src = os.path.join(ROOT, name)
        if os.path.dirname(name):
            os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name),
                            ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache", "*.onnx", "*.pt", "*.npy"))
        elif os.path.isfile(src):
            shutil.copy2(src, os.path.join(dest, name))


def run_tests(workdir, tests, timeout):
    """0 when the tests pass; else the pytest exit status (or "timeout")."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=workdir)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts="] + list(tests)
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return proc.returncode, proc.stdout


def run(mutants, tests=DEVICE_TESTS, timeout=600, out=sys.stdout):
    """Run ``mutants`` against ``tests``; returns (killed ids, survived ids)."""
    killed, survived = [], []
    with tempfile.TemporaryDirectory(prefix="trt-mutants-") as work:
        copy_project(work)
        code, output = run_tests(work, tests, timeout)
        if code != 0:
            raise SystemExit("the unmutated project fails its device tests; fix that first:\n" + output[-3000:])
        for m in mutants:
            path = os.path.join(work, m.path)
            with open(path, encoding="utf-8") as handle:
                original = handle.read()
            if original.count(m.old) != 1:
                raise SystemExit("{}: its text is not in {} exactly once; update scripts/trt_mutants.py".format(m.id, m.path))
            started = time.time()
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(original.replace(m.old, m.new))
            try:
                code, output = run_tests(work, tests, timeout)
            finally:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(original)
            verdict = "survived" if code == 0 else "killed"
            (survived if code == 0 else killed).append(m.id)
            failing = [line for line in output.splitlines() if line.startswith("FAILED")]
            print("{} {:<8} {:5.1f}s  {}: {}{}".format(
                m.id, verdict, time.time() - started, m.path, m.what,
                "  [{}]".format(failing[0][7:90]) if failing else ""), file=out)
            out.flush()
    return killed, survived


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", default=None, metavar="M01,M02", help="run only these mutants")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per test run (default 600)")
    args = parser.parse_args(argv)
    problems = check_applicable()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.list:
        for m in MUTANTS:
            print("{}  {:<36} {}".format(m.id, m.path, m.what))
        return 0
    chosen = MUTANTS
    if args.only:
        wanted = set(args.only.split(","))
        chosen = [m for m in MUTANTS if m.id in wanted]
        unknown = wanted - {m.id for m in chosen}
        if unknown:
            print("unknown mutants: {}".format(", ".join(sorted(unknown))), file=sys.stderr)
            return 2
    started = time.time()
    killed, survived = run(chosen, timeout=args.timeout)
    print("mutation score: {} of {} killed ({:.0f} %) in {:.0f} s; survived: {}".format(
        len(killed), len(chosen), 100.0 * len(killed) / max(len(chosen), 1), time.time() - started,
        ", ".join(survived) or "none"))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
