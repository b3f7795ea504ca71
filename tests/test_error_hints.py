"""Every typed error the project raises carries its fix (``hint=``), so the one-line message a user
sees always ends in "(fix: ...)". Read from the source with ``ast``: each ``raise XError(...)`` of a
class defined in deploy/errors.py must pass a hint (or re-raise an error object built elsewhere)."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline.py", "cli", "deploy", "export", "calibration", "analysis", "models")


def error_classes():
    with open(os.path.join(ROOT, "deploy", "errors.py")) as handle:
        return set(re.findall(r"^class (\w+Error)\(", handle.read(), flags=re.M))


def raises_without_a_hint(path, classes):
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                isinstance(node.exc.func, ast.Name) and node.exc.func.id in classes:
            call = node.exc
            if len(call.args) < 2 and not any(k.arg in ("hint", None) for k in call.keywords):
                out.append("{}:{} raises {} without a hint".format(os.path.relpath(path, ROOT), node.lineno,
                                                                   call.func.id))
    return out


def _python_files():
    for entry in PACKAGES:
        path = os.path.join(ROOT, entry)
        if path.endswith(".py"):
            yield path
            continue
        for folder, _, files in os.walk(path):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def test_every_typed_error_names_its_fix():
    classes = error_classes()
    assert {"UsageError", "BundleError", "PipelineError"} <= classes
    problems = [p for path in _python_files() for p in raises_without_a_hint(path, classes)]
    assert not problems, "\n".join(problems)


def test_the_checker_finds_a_raise_without_a_hint(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n"
                   "    raise UsageError('no hint')\n"
                   "def g(x):\n"
                   "    raise UsageError('with', hint='the fix')\n"
                   "def h(x):\n"
                   "    raise UsageError('positional', 'the fix')\n"
                   "def k(x):\n"
                   "    raise ValueError('not ours')\n")
    assert [p.split(" ", 1)[1] for p in raises_without_a_hint(str(bad), {"UsageError"})] == [
        "raises UsageError without a hint"]
    assert raises_without_a_hint(str(bad), {"UsageError"})[0].endswith("bad.py:2 raises UsageError without a hint")
