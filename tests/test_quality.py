"""Likely label errors: `stcore label-issues` ranks planted wrong labels first."""
from __future__ import annotations

import json

import pytest

from stcore import api
from stcore.errors import UsageError

from conftest import stcore

pytestmark = pytest.mark.needs_fmnist


def test_planted_wrong_labels_rank_first(small_project):
    from benchmarks.label_issues import plant
    p = small_project
    api.start_embedding(p, "pixels", detach=False)
    wrong = plant(p, 100, 10, seed=0)  # 200 human labels, 10 of them wrong
    r = stcore("label-issues", p.path, "--json")
    out = json.loads(r.stdout)
    ranked = [i["id"] for i in out["issues"]]
    assert out["checked"] == 200 and out["over"] == "pixels"
    assert len(wrong & set(ranked[:30])) >= 5, (sorted(wrong), ranked[:30])  # random order: about 1.5
    scores = [i["score"] for i in out["issues"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    first = out["issues"][0]
    assert first["given"] != first["suggested"] and first["source"] in ("labeled", "corrected")
    assert api.label_issues(p)["run"] == api.runs(p)[-1]["id"] and not api.label_issues(p)["stale"]
    api.review(p, [next(i for i in p.store.pool_order()[0] if i not in wrong)], "correct", 0)
    assert api.label_issues(p)["stale"]  # the human labels changed since
    top = stcore("label-issues", p.path, "--top", "3")
    assert "human labels look wrong" in top.stdout and len(top.stdout.strip().splitlines()) == 4


def test_too_few_labels_is_a_clear_error(small_project, tmp_path):
    p = api.create_project(tmp_path / "few", dataset="fashion-mnist", labels_per_class=2, seed=0, limit=500,
                           download=False)
    with pytest.raises(UsageError, match="at least 25 human labels, the project has 20"):
        api.start_label_issues(p)
    r = stcore("label-issues", p.path, check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: finding label errors needs at least 25")
    assert api.runs(p) == []
