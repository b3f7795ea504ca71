#!/usr/bin/env python3
"""Type-check the device code's TensorRT calls against PyPI's ``tensorrt-stubs`` (TensorRT 10).

No TensorRT can be installed here, so this is how the calls in deploy/ are checked against the
published Python API. The stub package has a few syntax slips (a parameter named ``in``, a
parameter without a default after defaulted ones, an import of the absent ``tensorrt_libs``);
this script copies the stubs to a temporary folder, patches exactly those slips, and runs mypy on
the TensorRT-touching modules with MYPYPATH pointing there. 8.2-only names are reached through
``getattr`` after capability checks in deploy/, so the TensorRT 10 stubs cover the rest.

Install the stubs outside site-packages and without their runtime dependency (the real tensorrt
wheel, which needs NVIDIA's index and a GPU); inside site-packages their ``tensorrt/`` folder would
make ``import tensorrt`` succeed as an empty namespace package:
    pip install --no-deps --target .cache/tensorrt-stubs tensorrt-stubs==10.13.0.35.1
(``TRT_STUBS_DIR`` overrides that folder; an install into site-packages is found too.)

Usage: python scripts/check_trt_types.py [FILES...]     exit 0 clean, 1 type errors, 2 setup problem
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The modules that call TensorRT or pycuda, and what they import from deploy/.
DEFAULT_FILES = [
    "deploy/trt_compat.py",
    "deploy/targets.py",
    "deploy/engines.py",
    "deploy/calibrator.py",
    "deploy/trtexec.py",
    "deploy/runners/tensorrt_runner.py",
]

# (file in the stub tree, regex, replacement, what it fixes). Each must match at least once, so a
# new stub release that fixes or moves a slip makes this script say so instead of silently passing.
PATCHES = [
    ("tensorrt_bindings/tensorrt.pyi", r"(?<=[(,] )in: ", "in_: ",
     "parameters named with the keyword 'in'"),
    ("tensorrt_bindings/tensorrt.pyi", r"power: Weights = None, channel_axis: int\)",
     "power: Weights = None, channel_axis: int = ...)",
     "add_scale_nd: a parameter without a default after defaulted ones"),
    ("tensorrt/__init__.pyi", r"^import tensorrt_libs as tensorrt_libs\n", "",
     "import of the tensorrt_libs package that is not part of the stubs"),
    ("tensorrt_bindings/__init__.pyi", r"^import tensorrt_libs as tensorrt_libs\n", "",
     "import of the tensorrt_libs package that is not part of the stubs"),
]

MYPY_CONFIG = """\
[mypy]
check_untyped_defs = True
warn_unused_ignores = False
follow_imports = silent
show_error_codes = True

[mypy-pycuda.*]
ignore_missing_imports = True

# The stubs themselves are generated and not clean (a DataType named ``bool`` shadows the builtin);
# their errors are not ours to report, only the calls deploy/ makes into them.
[mypy-tensorrt.*,tensorrt_bindings.*]
ignore_errors = True
"""


class SetupError(Exception):
    pass


STUBS_DIR = os.environ.get("TRT_STUBS_DIR", os.path.join(ROOT, ".cache", "tensorrt-stubs"))
INSTALL_HINT = "pip install --no-deps --target .cache/tensorrt-stubs tensorrt-stubs==10.13.0.35.1"


def find_stub_root():
    if os.path.isdir(os.path.join(STUBS_DIR, "tensorrt_stubs")):
        site = STUBS_DIR
    else:
        spec = importlib.util.find_spec("tensorrt_stubs")
        if spec is None or not spec.submodule_search_locations:
            raise SetupError("tensorrt-stubs is not installed: " + INSTALL_HINT)
        site = os.path.dirname(list(spec.submodule_search_locations)[0])
    for part in ("tensorrt/__init__.pyi", "tensorrt_bindings/tensorrt.pyi"):
        if not os.path.isfile(os.path.join(site, part)):
            raise SetupError("tensorrt-stubs is incomplete: {} missing in {}".format(part, site))
    return site


def patched_stubs(site, dest):
    """Copy the stub packages to ``dest`` and apply PATCHES; return a list of what was patched."""
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(os.path.join(site, package), os.path.join(dest, package),
                        ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    done = []
    for relpath, pattern, replacement, why in PATCHES:
        path = os.path.join(dest, relpath)
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if count == 0:
            raise SetupError("stub patch no longer applies ({}: {}); update PATCHES".format(relpath, why))
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        done.append("{} x{}: {}".format(relpath, count, why))
    return done


def run_mypy(files, stub_dir):
    config = os.path.join(stub_dir, "mypy.ini")
    with open(config, "w") as handle:
        handle.write(MYPY_CONFIG)
    env = dict(os.environ, MYPYPATH=stub_dir)
    cmd = [sys.executable, "-m", "mypy", "--config-file", config,
           "--cache-dir", os.path.join(stub_dir, ".mypy_cache")] + list(files)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    return proc.returncode, proc.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("mypy") is None:
        print("mypy is not installed: pip install -r requirements-dev.txt", file=sys.stderr)
        return 2
    try:
        site = find_stub_root()
        with tempfile.TemporaryDirectory(prefix="trt-stubs-") as tmp:
            for line in patched_stubs(site, tmp):
                print("patched stub: " + line)
            code, output = run_mypy(args.files, tmp)
    except SetupError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    print(output.rstrip())
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
