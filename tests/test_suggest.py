"""What to label next: the rankings on planted mixtures (acquisition.py), and `stcore suggest`
and the simulated labeler on small projects."""
from __future__ import annotations

import json

import numpy as np
import pytest

from stcore import acquisition, api
from stcore.errors import UsageError

from conftest import stcore


def blobs(sizes: list[int], *, dims: int = 8, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs of the given sizes around far-apart random centres: (rows (N, dims), blob (N,))."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dims))
    blob = np.repeat(np.arange(len(sizes)), sizes)
    return (centres[blob] + spread * rng.standard_normal((len(blob), dims))).astype(np.float32), blob


SIZES = [600, 400, 250, 160, 100, 60, 40, 30, 20, 15]  # unequal, as real classes and modes are


def test_typical_covers_more_blobs_than_random_on_a_planted_mixture():
    z, blob = blobs(SIZES)
    unlabeled = np.zeros(len(z), bool)
    typical = {blob[p.index] for p in acquisition.typical(z, unlabeled, len(SIZES))}
    random = [len({blob[p.index] for p in acquisition.random_order(len(z), len(SIZES), seed=s)}) for s in range(20)]
    assert len(typical) >= 9 and len(typical) > max(random), (typical, random)  # random: about 5 of 10


def test_typical_picks_typical_items_of_uncovered_blobs_first():
    z, blob = blobs(SIZES)
    labeled = np.zeros(len(z), bool)
    labeled[[np.flatnonzero(blob == b)[0] for b in range(1, len(SIZES))]] = True  # one label in every blob but 0
    picks = acquisition.typical(z, labeled, 1)
    assert blob[picks[0].index] == 0 and not labeled[picks[0].index]
    assert "no label yet" in picks[0].reason and "600 images" in picks[0].reason
    # the most typical: nearer its blob's centre than most of the blob (in the rows clustered: unit rows)
    u = acquisition.unit_rows(z)
    centre = u[blob == 0].mean(0)
    dist = np.linalg.norm(u[blob == 0] - centre, axis=1)
    assert np.linalg.norm(u[picks[0].index] - centre) <= np.quantile(dist, 0.25)


def test_typical_never_picks_a_labeled_item_and_stops_at_the_unlabeled():
    z, _ = blobs([30, 20])
    labeled = np.ones(len(z), bool)
    labeled[[3, 40]] = False
    assert sorted(p.index for p in acquisition.typical(z, labeled, 10)) == [3, 40]
    assert acquisition.typical(z, np.ones(len(z), bool), 5) == []


def test_uncertain_spreads_a_batch_over_clusters_not_one_confusing_pair():
    z, blob = blobs([30, 30, 100, 100, 100, 100, 100, 100])
    rng = np.random.default_rng(1)
    # blobs 0 and 1 are the pair the teacher confuses; elsewhere it is surer
    margin = np.where(blob < 2, rng.uniform(0.0, 0.05, len(z)), rng.uniform(0.1, 1.0, len(z)))
    picks = acquisition.uncertain(z, margin, 10)
    chosen = blob[[p.index for p in picks]]
    by_margin = blob[np.argsort(margin)[:10]]
    assert set(by_margin) <= {0, 1}  # the plain least-margin order: all ten from the pair
    assert len(set(chosen)) >= 5 and (chosen < 2).sum() <= 4, chosen
    assert picks[0].index == int(np.argmin(margin))  # the teacher's least sure item leads
    assert picks[0].reason.startswith("teacher unsure: margin 0.0") and "cluster" in picks[0].reason
    assert [p.score for p in picks] == [round(1 - margin[p.index], 4) for p in picks]


def test_uncertain_reads_a_missing_margin_as_unsure():
    z, _ = blobs([20, 20])
    margin = np.full(len(z), 0.5)
    margin[7] = np.nan
    first = acquisition.uncertain(z, margin, 3)[0]
    assert first.index == 7 and first.reason.startswith("not pseudo-labeled yet")


def test_wide_embeddings_are_reduced_before_clustering():
    rng = np.random.default_rng(0)
    u = acquisition.unit_rows(rng.standard_normal((300, 1000)), dims=64)
    assert u.shape == (300, 64) and np.allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)


# ------------------------------------------------------------------ on a project
needs_fmnist = pytest.mark.needs_fmnist


@needs_fmnist
def test_suggest_needs_an_embedding_and_ranks_only_items_without_a_label(zero_label_project):
    p = zero_label_project
    with pytest.raises(UsageError, match="stcore embed"):
        api.suggest(p, 5, "typical")
    with pytest.raises(UsageError, match="no pseudo-labels"):
        api.suggest(p, 5, "uncertain")
    with pytest.raises(UsageError, match="unknown strategy"):
        api.suggest(p, 5, "smart")
    assert len(api.suggest(p, 5, "random")["items"]) == 5  # the baseline reads no embedding
    api.start_embedding(p, "pixels", detach=False)
    first = [i["id"] for i in api.suggest(p, 20)["items"]]
    api.review(p, first[:3], "correct", 0)
    api.review(p, first[3:5], "reject")
    out = api.suggest(p, 300)
    ids = [i["id"] for i in out["items"]]
    assert out["strategy"] == "typical" and out["over"] == "pixels" and out["candidates"] == 295
    assert len(ids) == len(set(ids)) == 295 and not set(first[:5]) & set(ids)


@needs_fmnist
def test_cli_suggest_prints_items_with_id_score_and_reason(zero_label_project):
    p = zero_label_project
    api.start_embedding(p, "pixels", detach=False)
    out = json.loads(stcore("suggest", p.path, "--count", "7", "--json").stdout)
    assert out["strategy"] == "typical" and len(out["items"]) == 7
    assert all(set(i) == {"id", "score", "reason"} and "most typical of cluster" in i["reason"] for i in out["items"])
    assert out["items"] == api.suggest(p, 7)["items"]  # the same order each time
    r = stcore("suggest", p.path, "--strategy", "uncertain", check=False)
    assert r.returncode == 2 and "no pseudo-labels" in r.stderr


@needs_fmnist
@pytest.mark.parametrize("order, strategy", [("balanced-margin", "typical"), ("random", "random")])
def test_simulate_on_a_project_with_no_teacher_labels_the_suggested_items(zero_label_project, order, strategy):
    p = zero_label_project
    api.start_embedding(p, "pixels", detach=False)
    expected = [i["id"] for i in api.suggest(p, 12, strategy)["items"]]
    out = json.loads(stcore("review", p.path, "--simulate", "12", "--order", order, "--json").stdout)
    assert out["simulated"]["corrected"] == 12 and out["simulated"]["strategy"] == strategy
    labels = {r["item_id"]: r["class_id"] for r in api.labels(p, "pool")}
    assert sorted(labels) == sorted(expected)
    assert {r["source"] for r in api.labels(p, "pool")} == {"simulated"}
    truth = p.store.items.hidden_labels(expected)
    assert all(labels[i] == truth[i] for i in expected)


@needs_fmnist
def test_auto_is_uncertain_once_the_pool_is_pseudo_labeled(trained_project):
    p = trained_project
    api.start_embedding(p, "pixels", detach=False)
    out = api.suggest(p, 10)
    assert out["strategy"] == "uncertain" and len(out["items"]) == 10
    assert all(i["reason"].startswith("teacher unsure: margin") for i in out["items"])
    margins = {r["id"]: r["margin"] for r in api.items(p, [i["id"] for i in out["items"]])}
    assert all(r["status"] == "pending" for r in api.items(p, list(margins)))
    assert min(margins.values()) == min(r["margin"] for r in api.review_page(p, statuses=["pending"], order="margin",
                                                                              limit=1))
    # after a teacher, a simulated review in suggest's order decides those items, each by its hidden label
    typical = [i["id"] for i in api.suggest(p, 12, "typical")["items"]]
    out = api.simulate_review(p, 12, order="typical")
    assert out["reviewed"] == 12 and out["order"] == "typical"
    truth = p.store.items.hidden_labels(typical)
    assert {r["id"]: r["label"] for r in api.items(p, typical)} == truth


@needs_fmnist
def test_the_projects_seed_seeds_the_random_and_the_typical_choice(zero_label_project, tmp_path):
    other = api.create_project(tmp_path / "seed1", dataset="fashion-mnist", labeled=0, seed=1, limit=300,
                               download=False)
    for p in (zero_label_project, other):
        api.start_embedding(p, "pixels", detach=False)
    for strategy in ("random", "typical"):
        a, b = ([i["id"] for i in api.suggest(p, 10, strategy)["items"]] for p in (zero_label_project, other))
        assert a != b, strategy  # the same images, another seed
        assert b == [i["id"] for i in api.suggest(zero_label_project, 10, strategy, seed=1)["items"]]
