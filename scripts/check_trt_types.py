#!/usr/bin/env python3
"""Type-check the device code's TensorRT and pycuda calls, against TensorRT 10 or 8.2.

No TensorRT can be installed here, so this is how the calls in deploy/ are checked against the
Python APIs. ``--api 10`` (the default) uses PyPI's ``tensorrt-stubs`` (10.13); the stub package
has a few syntax slips (a parameter named ``in``, a parameter without a default after defaulted
ones, an import of the absent ``tensorrt_libs``), so this script copies the stubs to a temporary
folder and patches exactly those slips. ``--api 8.2`` uses the hand-written TensorRT 8.2.1 stubs
in ``typings/tensorrt-8.2`` (JetPack 4.6). Both use the pycuda 2022.1 stubs in ``typings/pycuda``.

deploy/ calls both API generations directly, after capability checks; a line that uses a name only
one generation has is marked ``# trt<8.5`` or ``# trt>=8.5``. Against the other generation such a
line must fail with "has no attribute" (attr-defined); those errors, and only those, are counted
as expected. Any other error, or an attr-defined error on an unmarked line, fails the check.

Install the stubs outside site-packages and without their runtime dependency (the real tensorrt
wheel, which needs NVIDIA's index and a GPU); inside site-packages their ``tensorrt/`` folder would
make ``import tensorrt`` succeed as an empty namespace package:
    pip install --no-deps --target .cache/tensorrt-stubs tensorrt-stubs==10.13.0.35.1
(``TRT_STUBS_DIR`` overrides that folder; an install into site-packages is found too.)

Usage: python scripts/check_trt_types.py [--api 10|8.2] [FILES...]
       exit 0 clean, 1 type errors, 2 setup problem
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
    "deploy/tensorrt/compat.py",
    "deploy/targets.py",
    "deploy/tensorrt/engines.py",
    "deploy/tensorrt/build_log.py",
    "deploy/tensorrt/calibrator.py",
    "deploy/tensorrt/trtexec.py",
    "deploy/tensorrt/runner.py",
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

# mypy settings: [tool.mypy] in pyproject.toml (the stubs are put on MYPYPATH here, per run).
MYPY_CONFIG = os.path.join(ROOT, "pyproject.toml")


TYPINGS = os.path.join(ROOT, "typings")
APIS = ("10", "8.2")
# The marker of lines that only the *other* generation can type-check.
OTHER_GENERATION_MARKER = {"10": "# trt<8.5", "8.2": "# trt>=8.5"}
_ERROR = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): error: (?P<message>.*?)(?:  \[(?P<code>[a-z-]+)\])?$")


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


def stub_tree(api, dest):
    """Fill ``dest`` with the ``tensorrt`` stubs of ``api`` and the pycuda stubs; returns notes."""
    notes = []
    if api == "10":
        notes = patched_stubs(find_stub_root(), dest)
    else:
        shutil.copytree(os.path.join(TYPINGS, "tensorrt-8.2", "tensorrt"), os.path.join(dest, "tensorrt"))
        notes.append("TensorRT 8.2.1 stubs from typings/tensorrt-8.2")
    shutil.copytree(os.path.join(TYPINGS, "pycuda", "pycuda"), os.path.join(dest, "pycuda"))
    return notes


def classify(output, api):
    """(unexpected error lines, expected error lines) of a mypy run against ``api``."""
    marker = OTHER_GENERATION_MARKER[api]
    unexpected, expected = [], []
    sources = {}
    for line in output.splitlines():
        match = _ERROR.match(line)
        if not match:
            continue
        path = os.path.join(ROOT, match.group("path"))
        if path not in sources:
            try:
                with open(path, encoding="utf-8") as handle:
                    sources[path] = handle.read().splitlines()
            except OSError:
                sources[path] = []
        number = int(match.group("line"))
        text = sources[path][number - 1] if 0 < number <= len(sources[path]) else ""
        if match.group("code") == "attr-defined" and text.rstrip().endswith(marker):
            expected.append(line)
        else:
            unexpected.append(line)
    return unexpected, expected


def run_mypy(files, stub_dir):
    env = dict(os.environ, MYPYPATH=stub_dir)
    cmd = [sys.executable, "-m", "mypy", "--config-file", MYPY_CONFIG,
           "--cache-dir", os.path.join(stub_dir, ".mypy_cache")] + list(files)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    return proc.returncode, proc.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", choices=APIS, default="10", help="TensorRT API generation to check against")
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("mypy") is None:
        print("mypy is not installed: pip install -r requirements-dev.txt", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="trt-stubs-") as tmp:
            for line in stub_tree(args.api, tmp):
                print(("patched stub: " if args.api == "10" else "stubs: ") + line)
            code, output = run_mypy(args.files, tmp)
    except SetupError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    unexpected, expected = classify(output, args.api)
    for line in expected:
        print("expected (the other API generation's name on a marked line): " + line)
    for line in unexpected:
        print(line)
    if code != 0 and not unexpected and not expected:
        print(output.rstrip())   # mypy failed without error lines (a crash, a bad option)
        return 1
    print("TensorRT {} API: {} unexpected error(s), {} expected".format(args.api, len(unexpected), len(expected)))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
