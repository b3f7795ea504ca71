"""The project's import graph, read from the source with ``ast`` (nothing is imported): no circles,
device code (deploy/) imports no host package, deploy/ imports its runtimes lazily, and the CLI
(pipeline.py and cli/, which run on the device too) imports host packages and runtimes only inside
the commands that need them.

Every ``import``/``from ... import`` counts, at module level and inside functions, plus
``importlib.import_module("literal")``. An edge goes to the most specific project module named
(``from deploy.tensorrt import engines`` -> deploy.tensorrt.engines; ``from deploy.errors import X``
-> deploy.errors). The implicit import of parent packages is not an edge: it would make every
package's ``__init__`` part of every circle through it.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", ".venv", ".cache", "typings", "build", "node_modules", "__pycache__"}

# Host-only packages of this project, and the host-only libraries, that device code must not import.
HOST_PACKAGES = {"models", "export", "calibration", "analysis", "torch", "torchvision"}
# (module, imported top-level name) -> why it is allowed; each must stay inside a function (lazy).
ALLOWED_HOST_IMPORTS = {
    ("deploy.runners.torch_runner", "torch"): "the PyTorch runner is the host-only backend of the runner "
                                              "contract; torch is imported inside import_torch()",
}
# Runtimes that deploy/ must import inside functions (a Jetson lacks some; importing the CLI needs none).
LAZY_RUNTIMES = {"tensorrt", "pycuda", "onnxruntime", "openvino", "cv2", "onnx", "matplotlib", "PIL", "torch"}


def module_name(relpath):
    """'deploy/tensorrt/engines.py' -> 'deploy.tensorrt.engines'; '.../__init__.py' -> the package."""
    parts = relpath[:-len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_files(root):
    """{module name: path} of every .py file under ``root`` (scripts folders included)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                out[module_name(os.path.relpath(path, root).replace(os.sep, "/"))] = path
    return out


def _is_type_checking(node):
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_time_nodes(tree):
    """The statements that run when the module is imported: the module body and class bodies, into
    if/try/with blocks, but not function bodies and not ``if TYPE_CHECKING:`` blocks."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo.extend(getattr(node, field, []) or [])


def imported_names(tree, module, is_package):
    """[(dotted name as written, resolved), lineno, at import time?] for every import in ``tree``."""
    eager = set(id(n) for n in _import_time_nodes(tree))
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)] if package else []
                base = ".".join(anchor + ([base] if base else []))
            # 'from a.b import c' -> 'a.b.c': the module a.b.c where it is one, else a.b (longest match)
            names = [base + "." + alias.name if base else alias.name for alias in node.names]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant) and \
                isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        for name in names:
            if name:
                out.append((name, node.lineno, id(node) in eager))
    return out


def import_graph(root):
    """({module: {imported project module: first line}}, {module: [(name, line, eager)]})."""
    files = project_files(root)
    edges, raw = {}, {}
    for module, path in files.items():
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
        names = imported_names(tree, module, path.endswith("__init__.py"))
        raw[module] = names
        targets = edges.setdefault(module, {})
        for name, line, _ in names:
            parts = name.split(".")
            for end in range(len(parts), 0, -1):     # the most specific project module named
                candidate = ".".join(parts[:end])
                if candidate in files:
                    if candidate != module:
                        targets.setdefault(candidate, line)
                    break
    return edges, raw


def import_circles(edges):
    """Strongly connected components of more than one module (Tarjan), each sorted; sorted list."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(start):
        # iterative Tarjan: (node, iterator over its successors)
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, {})))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(out)


def _in_deploy(module):
    return module == "deploy" or module.startswith("deploy.")


def host_imports_in_deploy(raw):
    """'module:line imports name' for every host package or library imported by deploy/, less the
    allowed ones (which must be lazy)."""
    problems = []
    for module, names in sorted(raw.items()):
        if not _in_deploy(module):
            continue
        for name, line, eager in names:
            top = name.split(".")[0]
            if top not in HOST_PACKAGES:
                continue
            if (module, top) in ALLOWED_HOST_IMPORTS and not eager:
                continue
            problems.append("{}:{} imports {}{}".format(module, line, name, " at import time" if eager else ""))
    return problems


def eager_runtime_imports_in_deploy(raw):
    return ["{}:{} imports {} at import time".format(module, line, name)
            for module, names in sorted(raw.items()) if _in_deploy(module)
            for name, line, eager in names if eager and name.split(".")[0] in LAZY_RUNTIMES]


def _in_cli(module):
    return module in ("pipeline", "cli") or module.startswith("cli.")


def eager_imports_in_cli(raw):
    """pipeline.py and cli/ at import time: the device's Python 3.6 without torch or runtimes must import them."""
    return ["{}:{} imports {} at import time".format(module, line, name)
            for module, names in sorted(raw.items()) if _in_cli(module)
            for name, line, eager in names if eager and name.split(".")[0] in HOST_PACKAGES | LAZY_RUNTIMES]


def _describe(circle, edges):
    return " <-> ".join(circle) + "  (" + "; ".join(
        "{} -> {} line {}".format(a, b, edges[a][b]) for a in circle for b in circle if b in edges.get(a, {})) + ")"


# -- the project ------------------------------------------------------------------------------------
def test_the_project_has_no_import_circles():
    edges, _ = import_graph(ROOT)
    assert "deploy.tensorrt.engines" in edges and "pipeline" in edges     # the graph is the project's
    circles = import_circles(edges)
    assert not circles, "\n".join(_describe(c, edges) for c in circles)


def test_device_code_imports_no_host_package():
    _, raw = import_graph(ROOT)
    assert not host_imports_in_deploy(raw), "\n".join(host_imports_in_deploy(raw))


def test_device_code_imports_its_runtimes_lazily():
    _, raw = import_graph(ROOT)
    assert not eager_runtime_imports_in_deploy(raw), "\n".join(eager_runtime_imports_in_deploy(raw))


def test_the_cli_imports_host_packages_and_runtimes_only_in_its_commands():
    _, raw = import_graph(ROOT)
    assert "cli.build" in raw and any(name.startswith("export.") for name, _, _ in raw["cli.build"])
    assert not eager_imports_in_cli(raw), "\n".join(eager_imports_in_cli(raw))


# -- the checker itself, on small synthetic projects -------------------------------------------------
def _write(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_circle_through_a_function_level_import(tmp_path):
    _write(tmp_path, {
        "deploy/__init__.py": "",
        "deploy/a.py": "from deploy.b import f\n",
        "deploy/b.py": "def f():\n    from deploy import a\n",       # the circle is only inside a function
        "deploy/c.py": "import deploy.a\n",                              # reaches the circle, is not in it
        "pkg/__init__.py": "",
        "pkg/x.py": "from . import y\n",                                 # relative imports resolve too
        "pkg/y.py": "import importlib\nimportlib.import_module('pkg.x')\n",
    })
    edges, _ = import_graph(str(tmp_path))
    assert edges["deploy.b"] == {"deploy.a": 2}
    assert import_circles(edges) == [["deploy.a", "deploy.b"], ["pkg.x", "pkg.y"]]


def test_checker_finds_no_circle_in_a_chain(tmp_path):
    _write(tmp_path, {"a.py": "import b\n", "b.py": "import c\n", "c.py": "import os\n"})
    assert import_circles(import_graph(str(tmp_path))[0]) == []


def test_checker_finds_host_imports_and_eager_runtimes_in_deploy(tmp_path):
    _write(tmp_path, {
        "deploy/__init__.py": "",
        "deploy/bad.py": "import os\n\ndef f():\n    from models import create_model\n",
        "deploy/eager.py": "import onnxruntime\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    import tensorrt\n",
        "deploy/runners/__init__.py": "",
        "deploy/runners/torch_runner.py": "def import_torch():\n    import torch\n",   # allowed: lazy
        "deploy/runners/eager_torch.py": "import torch\n",
        "deploy/runners/class_body.py": "class A:\n    import calibration.images\n",
        "export/uses_deploy.py": "import torch\nfrom deploy import bad\n",             # host code may
        "cli/__init__.py": "",
        "cli/build.py": "from deploy import bad\n\ndef run_build(args):\n    from export import build\n",
        "cli/eager.py": "import export.build\nimport onnx\n",
        "pipeline.py": "from cli import build\nimport models\n",
    })
    _, raw = import_graph(str(tmp_path))
    assert host_imports_in_deploy(raw) == [
        "deploy.bad:4 imports models.create_model",
        "deploy.runners.class_body:2 imports calibration.images at import time",
        "deploy.runners.eager_torch:1 imports torch at import time",
    ]
    assert eager_runtime_imports_in_deploy(raw) == ["deploy.eager:1 imports onnxruntime at import time",
                                                    "deploy.runners.eager_torch:1 imports torch at import time"]
    assert eager_imports_in_cli(raw) == ["cli.eager:1 imports export.build at import time",
                                         "cli.eager:2 imports onnx at import time",
                                         "pipeline:2 imports models at import time"]
