"""The shape of the code, read from the source: layers that point one way with no import cycle,
pages that reach stcore through its API only, all SQL in the store, short functions, and light
commands that never import torch."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from stcore import orders

REPO = Path(__file__).resolve().parents[1]
# Each stcore module's layer; a module may import modules of its own layer or of a lower one.
LAYERS = {
    "faces": ("cli", "cli_classes", "cli_predict", "cli_team", "cli_transfer", "terminal", "launch", "__main__"),
    "api": ("api",),
    "jobs": ("jobs", "worker", "kinds", "tasks", "jobconfig", "continuous"),
    "learning": ("train", "pseudo", "embed", "runtime", "checkpoints", "config", "methods", "models", "augment", "graph",
                 "metrics", "devices", "backbones", "ssl", "head", "quality", "labelvalue", "projection",
                 "distributed", "orders", "balance", "insights", "acquisition", "agreement", "onnxfile",
                 "neighbours", "classify"),
    "data": ("data", "sources", "project", "store", "actions", "errors", "access", "accounts", "fields", "labelformats",
             "__init__"),
}
RANK = {m: i for i, layer in enumerate(reversed(list(LAYERS.values()))) for m in layer}
MAX_LINES, MAX_FIT_LINES = 80, 60


def stcore_imports(path: Path) -> set[str]:
    """The stcore modules a file imports, at module level or inside functions (a file of a package
    such as stcore/api/: what its package imports, its own package left out)."""
    out, stcore = set(), REPO / "stcore"
    depth = len(path.relative_to(stcore).parts) if stcore in path.parents else None  # 1: stcore/x.py
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if depth is not None and node.level == depth:  # relative to stcore/
                out |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.level == 0 and node.module and node.module.split(".")[0] == "stcore":
                parts = node.module.split(".")
                out |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("stcore.")}
    return {m for m in out if m != "__version__"}


def graph() -> dict[str, set[str]]:
    """stcore's modules and packages, and the others each imports."""
    out: dict[str, set[str]] = {p.stem: stcore_imports(p) for p in (REPO / "stcore").glob("*.py")}
    for package in (p.parent for p in (REPO / "stcore").glob("*/__init__.py")):
        out[package.name] = set().union(*map(stcore_imports, package.rglob("*.py"))) - {package.name}
    return out


def test_no_module_is_over_600_lines_and_no_class_over_300():
    long = {p.relative_to(REPO).as_posix(): n for p in (REPO / "stcore").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    big = [(p.relative_to(REPO).as_posix(), c.name, c.end_lineno - c.lineno + 1)
           for p in (REPO / "stcore").rglob("*.py") for c in ast.walk(ast.parse(p.read_text()))
           if isinstance(c, ast.ClassDef) and c.end_lineno - c.lineno + 1 > 300]
    assert not long and not big, (long, big)


def test_every_stcore_module_has_a_layer():
    assert set(graph()) <= set(RANK), set(graph()) - set(RANK)


def test_layers_point_one_way():
    wrong = [(m, d) for m, deps in graph().items() for d in deps if RANK[d] > RANK[m]]
    assert not wrong, f"imports against the layers (module, import): {wrong}"


def test_no_import_cycle_inside_stcore():
    g, state, cycle = graph(), {}, []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = "open"
        for d in g.get(m, ()):
            if state.get(d) == "open":
                cycle.extend(path + [m, d])
                return True
            if d not in state and visit(d, path + [m]):
                return True
        state[m] = "done"
        return False
    assert not any(visit(m, []) for m in list(g) if m not in state), f"import cycle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("page", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "dashboard").rglob("*.py")))
def test_the_dashboard_imports_only_the_api_and_errors_of_stcore(page):
    used = stcore_imports(REPO / page)
    assert used <= {"api", "errors"}, f"{page} imports stcore.{sorted(used - {'api', 'errors'})}"


FACES = [p.relative_to(REPO).as_posix() for p in (*(REPO / "dashboard").rglob("*.py"),
                                                  *(REPO / "stcore" / f"{m}.py" for m in LAYERS["faces"]))]


@pytest.mark.parametrize("face", sorted(FACES))
def test_the_faces_reach_no_project_internals(face):
    """A face asks the API; it never reads a project's store or metadata itself."""
    reached = [f"{node.lineno}: .{node.attr}" for node in ast.walk(ast.parse((REPO / face).read_text()))
               if isinstance(node, ast.Attribute) and node.attr in ("store", "meta")]
    assert not reached, reached


SQL = re.compile(r"\.execute(many|script)?\(|\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b")


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for folder in ("stcore", "dashboard")
                                        for p in (REPO / folder).rglob("*.py") if p.parent.name != "store"))
def test_all_sql_lives_in_the_store(path):
    hits = [f"{n}: {line.strip()}" for n, line in enumerate((REPO / path).read_text().splitlines(), 1)
            if SQL.search(line)]
    assert not hits, hits


def functions(folder: str):
    for p in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{p.relative_to(REPO)}:{node.name}", node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("folder", ["stcore", "dashboard"])
def test_no_function_is_longer_than_80_lines(folder):
    long = [(name, n) for name, n in functions(folder) if n > MAX_LINES]
    assert not long, long


def test_the_training_loop_fits_on_a_screen():
    assert dict(functions("stcore"))["stcore/train.py:fit"] <= MAX_FIT_LINES


def test_stcore_never_imports_streamlit():
    code = "import stcore.cli, stcore.api, stcore.launch, stcore.worker, stcore.train, sys; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("argv", [["status", "--json"], ["runs", "--json"], ["review", "--accept", "{item}"],
                                  ["cancel", "teacher-1"], ["export", "--labels", "{out}"]])
def test_light_commands_import_neither_torch_nor_torchvision(trained_project, tmp_path, argv):
    item = orders.page(trained_project.store.queue, statuses=["pending"], limit=1)[0]["id"]
    argv = [a.format(item=item, out=tmp_path / "labels.csv") for a in argv]
    code = (f"import sys, json; from stcore.cli import main; rc = main({[argv[0], str(trained_project.path), *argv[1:]]!r}); "
            f"print(json.dumps([rc, [m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    rc, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert rc == 0, out.stderr
    assert "torch" not in heavy and "torchvision" not in heavy, heavy


def test_the_app_imports_pandas_whole_before_any_page_runs():
    """Streamlit and Plotly import pandas lazily; two page runs overlapping at a navigation
    could leave it half-imported for the second (see dashboard/app.py)."""
    tree = ast.parse((REPO / "dashboard" / "app.py").read_text())
    top = [n.names[0].name for n in tree.body if isinstance(n, ast.Import)]
    assert "pandas" in top and top.index("pandas") < top.index("streamlit")
