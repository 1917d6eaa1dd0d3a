"""The --py-files zip (imgfeat.packaging) ships the library only: no dev tooling reaches executors."""

from __future__ import annotations

import ast
import zipfile

from imgfeat import paths
from imgfeat.packaging import build_zip


def _function_body_lines(source: str) -> set:
    """Lines that run only when a function is called (its body), not when the module is imported."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.update(range(node.body[0].lineno, node.end_lineno + 1))
    return lines


def test_the_zip_holds_no_dev_tooling(tmp_path):
    with zipfile.ZipFile(build_zip(tmp_path)) as zf:
        names = zf.namelist()
        sources = {n: zf.read(n).decode() for n in names if n.endswith(".py")}
    assert "imgfeat/packaging.py" in names
    assert [n for n in names if n.split("/")[0] == "devtools"] == []
    # nor a copy of one of its modules inside imgfeat/
    dev_modules = {p.name for p in (paths.REPO / "devtools").glob("*.py")} - {"__init__.py"}
    assert dev_modules
    assert [n for n in names if n.rsplit("/", 1)[-1] in dev_modules] == []
    # devtools may be named only inside a function (the lazy imports of imgfeat.cli's setup and run):
    # importing a module of the zip on an executor never imports devtools.
    top_level = [f"{name}:{i}: {line.strip()}"
                 for name, source in sources.items() if "devtools" in source
                 for i, line in enumerate(source.splitlines(), 1)
                 if "devtools" in line and i not in _function_body_lines(source)]
    assert top_level == []


def test_the_run_reports_template_ships_in_the_zip_and_renders_from_it(tmp_path):
    import subprocess
    import sys

    zipped = build_zip(tmp_path)
    with zipfile.ZipFile(zipped) as zf:
        assert "imgfeat/templates/report.html" in zf.namelist()
    code = ("import imgfeat.report as r; m = {'partition_date': 'd', 'input': 'i', 'model': 'm', 'commit_id': 'c',"
            " 'revision': 1, 'images_in': 1, 'published': 1, 'quarantined': 0, 'stages': {}, 'images_by_source':"
            " {'inferred': 1, 'reused_this_partition': 0, 'reused_other_partitions': 0}};"
            " print(r.__file__); print(r.render(m, {'cat': 1}, r.score_bins({}), [], [], 2).count('<rect'))")
    site = [p for p in sys.path if p.endswith("site-packages")]
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": ":".join([str(zipped), *site])},
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert out == [f"{zipped}/imgfeat/report.py", "11"]
