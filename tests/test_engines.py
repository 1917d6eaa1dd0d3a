"""The library, and the engines package above all, import without a circle: each module alone in a fresh interpreter, and the
graph of its import statements (module level and inside functions) has no cycle. Fast: no model,
no JVM."""

import ast
import subprocess
import sys

import pytest

from imgfeat import paths

PACKAGE = "imgfeat.engines"


def _modules(package: str = PACKAGE) -> dict[str, object]:
    """Module name -> source path of every module of the package."""
    root = paths.REPO.joinpath(*package.split("."))
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = f.relative_to(paths.REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(modules: dict) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, by any import statement anywhere in it."""
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                # `from pkg import sub` imports the submodule `pkg.sub`; `from pkg import name`, pkg
                found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                             for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_engines_import_graph_has_no_cycle():
    modules = _modules()
    assert {f"{PACKAGE}.bigdl.convert", f"{PACKAGE}.bigdl.runtime", f"{PACKAGE}.bigdl.submit",
            f"{PACKAGE}.models", f"{PACKAGE}.openvino", f"{PACKAGE}.common"} <= set(modules)
    graph = _imports(modules)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # the shared names come from the leaf module, never from the package (whose get_engine imports them)
    assert not any(PACKAGE in deps for deps in graph.values())
    assert graph[f"{PACKAGE}.common"] == set()


def test_the_whole_library_import_graph_has_no_cycle():
    graph = _imports(_modules("imgfeat"))
    assert len(graph) > 40 and {"imgfeat.spark.args", "imgfeat.layout"} <= graph["imgfeat.spark.runner"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


@pytest.mark.parametrize("module", sorted(_modules()))
def test_each_engines_module_imports_alone(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                          cwd=paths.REPO, env={"PYTHONPATH": str(paths.REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


def test_the_submit_settings_load_neither_numpy_nor_bigdl():
    """The Airflow operator imports them while it builds a spark-submit command."""
    code = ("import sys, imgfeat.engines.bigdl.submit, imgfeat.params; "
            "print(sorted(m for m in ('numpy', 'bigdl', 'pyspark', 'openvino') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.REPO,
                          env={"PYTHONPATH": str(paths.REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
