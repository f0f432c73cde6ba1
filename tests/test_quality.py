"""Likely label errors: `stcore label-issues` ranks planted wrong labels first."""
from __future__ import annotations

import json

import pytest

from stcore import api
from stcore.errors import ProjectError, UsageError

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
    api.review(p, [next(i for i in p.store.items.pool_order()[0] if i not in wrong)], "correct", 0)
    assert api.label_issues(p)["stale"]  # the human labels changed since
    stcore("label-issues", p.path, "--json")
    assert not api.label_issues(p)["stale"]
    relabel = next(iter(wrong))
    now = next(c for i, _, c, _ in p.store.items.human_labels() if i == relabel)
    api.review(p, [relabel], "correct", (now + 1) % len(p.classes))
    assert api.label_issues(p)["stale"]  # one class changed, the count did not
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


def test_similar_images_share_a_class_and_come_most_similar_first(small_project):
    p = small_project
    with pytest.raises(ProjectError, match="run `stcore embed"):
        api.similar(p, 0)
    api.start_embedding(p, "pixels", detach=False)
    ids, _ = p.store.items.pool_order()
    hidden = p.store.items.hidden_labels(ids)
    agree = []
    for item in ids[:40]:
        out = api.similar(p, item, k=5)
        sims = [n["similarity"] for n in out["neighbours"]]
        assert len(sims) == 5 and sims == sorted(sims, reverse=True) and item not in [n["id"] for n in out["neighbours"]]
        agree += [hidden.get(n["id"]) == hidden[item] for n in out["neighbours"] if n["status"] == "pending"]
    assert sum(agree) / len(agree) > 0.6, sum(agree) / len(agree)  # chance: 0.1
    labeled = p.store.items.labeled_set()[0][0]
    r = json.loads(stcore("similar", p.path, labeled, "--k", "3", "--json").stdout)
    assert r["id"] == labeled and len(r["neighbours"]) == 3 and r["over"] == "pixels"
    bad = stcore("similar", p.path, "99999999", check=False)
    assert bad.returncode == 2 and "no labeled or pool item has the id 99999999" in bad.stderr
    with pytest.raises(UsageError, match="--k must be at least 1"):
        api.similar(p, labeled, k=0)


def test_duplicates_find_a_test_image_that_is_also_in_the_pool(tmp_path):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"

    def save(path, pixels):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    copies = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    for i in range(20):
        save(root / "labeled" / ("a" if i % 2 else "b") / f"l{i}.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
        save(root / "unlabeled" / f"u{i}.png", copies if i == 7 else rng.integers(0, 256, (16, 16), dtype=np.uint8))
        save(root / "test" / ("a" if i % 2 else "b") / f"t{i}.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    save(root / "test" / "a" / "leak.png", copies)  # the same image in the pool and the test set
    p = api.create_project(tmp_path / "proj", dataset="folder", data_root=str(root))
    out = json.loads(stcore("duplicates", p.path, "--json").stdout)
    assert out["images"] == 61 and out["over"] == "pixels"
    assert len(out["pairs"]) == 1, out["pairs"]
    pair = out["pairs"][0]
    assert {pair["a"]["split"], pair["b"]["split"]} == {"pool", "test"} and pair["similarity"] > 0.99
    text = stcore("duplicates", p.path).stdout
    assert text.startswith("1 pair of near-identical images (cosine similarity at least 0.98 in the pixels")
    with pytest.raises(UsageError, match="--threshold must be within"):
        api.start_duplicates(p, threshold=1.5)
