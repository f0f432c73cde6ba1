"""No untrusted pickle anywhere, and hostile class names or file names are harmless in
exported CSV and JSON (no formula injection) and never become file names."""
from __future__ import annotations

import ast
import csv
import io
import json
from pathlib import Path

import pytest
import torch

from stcore import api, cli
from stcore.api import _csv_safe
from stcore.project import Project
from test_robustness_data import make_folder, png
from test_robustness_store import synthetic_project

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("stcore", "dashboard") for p in (REPO / d).rglob("*.py"))


# ------------------------------------------------------------------ no untrusted pickle
def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unpickling_of_untrusted_files(path):
    """Every torch.load passes weights_only=True; nothing calls pickle, dill, joblib,
    np.load(allow_pickle=True) or torch.jit.load (which runs code from the file)."""
    tree = ast.parse(path.read_text("utf-8"))
    # The one use of pickle allowed: an Unpickler whose find_class admits a fixed list of names.
    restricted = any(isinstance(n, ast.ClassDef) and any(ast.unparse(b) == "pickle.Unpickler" for b in n.bases)
                     and any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in n.body)
                     for n in ast.walk(tree))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            banned = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal"} - ({"pickle"} if restricted else set())
            assert not banned & set(names), f"{path}:{node.lineno} imports a pickle module"
    for call, func in _calls(tree):
        kw = {k.arg: k.value for k in call.keywords}
        where = f"{path.relative_to(REPO)}:{call.lineno}: {ast.unparse(call)}"
        if func.endswith("torch.load"):
            assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, where
        if func.endswith("np.load") or func.endswith("numpy.load"):
            assert not ("allow_pickle" in kw and getattr(kw["allow_pickle"], "value", True)), where
        assert not func.endswith("jit.load"), where
        assert not func.endswith(("pickle.load", "pickle.loads")), where


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    """The guard the test above relies on: weights_only=True refuses an object that runs code."""
    import os
    from stcore.checkpoints import load_checkpoint

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))
    torch.save({"ema": {}, "x": Boom()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.needs_fmnist
def test_exported_model_loads_back_with_weights_only(trained_project, tmp_path):
    assert cli.main(["export", str(trained_project.path), "--model", str(tmp_path / "m.pt")]) == 0
    out = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(out) >= {"model", "config", "classes", "input_shape", "project_id"}


# ------------------------------------------------------------------ CSV and names
@pytest.mark.parametrize("value, expect", [
    ('=HYPERLINK("http://evil.example","click")', '\'=HYPERLINK("http://evil.example","click")'),
    ("+1", "'+1"), ("-x", "'-x"), ("@x", "'@x"), ("\tTab", "'\tTab"), ("\rCR", "'\rCR"),
    ("=1+1", "'=1+1"), ("../../x", "../../x"), ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("plain", "plain"), ("", ""), (3, 3), (-1.5, -1.5), (None, None)])
def test_csv_safe(value, expect):
    assert _csv_safe(value) == expect


HOSTILE = ['=HYPERLINK("http://evil.example","click")', "+1", "-x", "@x", "../../x",
           "<script>alert(1)</script>", 'a,b"c\nd', "normal"]


def test_hostile_class_names_and_sources_in_exports(tmp_path, capsys):
    proj = synthetic_project(tmp_path / "p", n=40, above=40)
    p = Project(proj)
    classes = HOSTILE + ["c8", "c9"]
    for k, name in enumerate(classes[:8]):
        api.rename_class(p, k, name)
    p.store.engine.db.execute("UPDATE items SET source = '=cmd|'' /C calc''!A0' WHERE split='pool' AND id=0")
    assert cli.main(["review", str(proj), "--accept", *map(str, range(10))]) == 0
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["export", str(proj), "--labels", str(out / "labels.csv")]) == 0
    assert cli.main(["export", str(proj), "--labels", str(out / "labels.json")]) == 0
    # Nothing is written anywhere but the two files asked for (a class is never a file name).
    assert sorted(f.name for f in out.iterdir()) == ["labels.csv", "labels.json"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out", "p"]
    rows = list(csv.DictReader(io.StringIO((out / "labels.csv").read_text("utf-8"))))
    by_id = {int(r["id"]): r for r in rows}
    for i in range(8):
        label, name = by_id[i]["label"], HOSTILE[i]
        if name[0] in "=+-@":
            assert label == "'" + name  # a spreadsheet shows it as text, never runs it
        else:
            assert label == name        # quoted by the csv module, and intact
    assert by_id[0]["source"].startswith("'=cmd")
    for r in rows:
        assert all(not v or v[0] not in "=+-@\t\r" for v in r.values()), r
    data = json.loads((out / "labels.json").read_text("utf-8"))
    assert data["classes"] == classes  # JSON is not a spreadsheet: names are kept exactly
    assert {it["label"] for it in data["items"] if it["id"] < 8} == set(HOSTILE)


def test_hostile_folder_names_become_plain_class_names(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", classes=("<script>alert(1)<", "=1+1", "-rf", "CON"))
    png(root / "unlabeled" / "=2+2.png")
    p = api.create_project(tmp_path / "proj", dataset="folder", data_root=str(root))
    assert p.classes == sorted(["<script>alert(1)<", "=1+1", "-rf", "CON"])
    assert cli.main(["export", str(p.path), "--labels", str(tmp_path / "l.csv")]) == 0
    text = (tmp_path / "l.csv").read_text("utf-8")
    assert "'=1+1" in text and "'-rf" in text and ",=1+1" not in text
    # The project holds only what it always holds.
    assert sorted(f.name for f in p.path.iterdir()) == ["images", "project.db", "project.db-shm",
                                                        "project.db-wal", "runs"]
