"""The map (`stcore map`, api.map_points) and the lists the Review page shows besides the pool:
the map's selection, labels set on any split, relabels of the labeled set and their undo."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dashboard import figures
from stcore import api, graph, projection
from stcore.errors import ConfigError, NotFound, UsageError

from conftest import stcore

pytestmark = pytest.mark.needs_fmnist


def _knn_accuracy(xy: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy of labels in the 2-D layout: how well the map keeps classes together."""
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]
    votes = np.array([np.bincount(labels[n], minlength=labels.max() + 1).argmax() for n in near])
    return float((votes == labels).mean())


def test_a_umap_map_keeps_the_classes_together(small_project):
    p = small_project
    api.start_embedding(p, "pixels", detach=False)
    r = stcore("map", p.path, "--json")
    meta = json.loads(r.stdout)
    c = api.counts(p)
    assert meta["method"] == "umap" and meta["embedding"] == "pixels" and meta["rows"] == c["labeled"] + c["pool"]
    assert api.runs(p)[-1]["role"] == "map" and api.runs(p)[-1]["state"] == "finished"
    pts = api.map_points(p)
    assert pts["total"] == pts["shown"] == meta["rows"] and not pts["stale"]
    assert {len(pts[k]) for k in api.MAP_COLUMNS} == {meta["rows"]}
    assert set(pts["status"]) == {"labeled", "pending"} and pts["split"].count("labeled") == c["labeled"]
    truth = np.array([t if t is not None else lab for t, lab in zip(pts["truth"], pts["label"])])
    xy = np.column_stack([pts["x"], pts["y"]])
    # 10 classes: chance is about 0.1; Fashion-MNIST's pixels keep most neighbours in class.
    assert _knn_accuracy(xy, truth) > 0.5


def test_pca_map_sampling_and_staleness(small_project):
    p = small_project
    assert api.map_points(p) is None
    api.start_map(p, method="pca", detach=False)  # no embedding: the pixels
    pts = api.map_points(p, limit=500)
    assert pts["method"] == "pca" and pts["embedding"] == "pixels" and pts["shown"] == 500
    assert pts["total"] == 2000 and len(set(pts["id"])) == 500
    again = api.map_points(p, limit=500)
    assert again["id"] == pts["id"] and again["x"] == pts["x"]  # a fixed sample: the chart does not jump
    row_of = {i: r for i, r, *_ in p.store.items.map_items()}
    xy, _ = projection.load(p)
    k = 7
    assert (pts["x"][k], pts["y"][k]) == (float(xy[row_of[pts["id"][k]], 0]), float(xy[row_of[pts["id"][k]], 1]))
    api.start_embedding(p, "pixels", detach=False)
    assert not api.map_points(p)["stale"]  # the same features: pixels either way
    p.store.set_meta(embedding="ssl")
    assert api.map_points(p)["stale"]


def test_a_box_drawn_on_the_map_selects_the_items_under_it(small_project):
    """What the Map page does with a box or lasso drawn on its selection layer (figures.map_selection),
    on a real layout's points."""
    p = small_project
    api.start_map(p, method="pca", detach=False)
    pts = api.map_points(p)
    x, y = np.array(pts["x"]), np.array(pts["y"])
    pad = 1e-3 * max(np.ptp(x), np.ptp(y))

    def box(x0, x1, y0, y1):
        return {"box": [{"xref": "x2", "yref": "y2", "x": [x0, x1], "y": [y0, y1]}]}
    assert sorted(figures.map_selection(pts, box(x.min() - pad, x.max() + pad, y.min() - pad, y.max() + pad))) \
        == sorted(pts["id"])
    assert figures.map_selection(pts, box(x.max() + pad, x.max() + 2 * pad, y.min(), y.max())) == []
    k = 17
    assert pts["id"][k] in figures.map_selection(pts, box(x[k] - pad, x[k] + pad, y[k] - pad, y[k] + pad))


def test_map_methods_and_limits():
    assert projection.UMAP_MAX == graph.EXACT_MAX
    assert projection.choose("auto", 1000) == "umap" and projection.choose("auto", graph.EXACT_MAX + 1) == "pca"
    with pytest.raises(ConfigError, match="use --method pca"):
        projection.choose("umap", graph.EXACT_MAX + 1)
    with pytest.raises(ConfigError, match="unknown map method"):
        projection.choose("tsne", 10)
    assert tuple(api.MAP_METHODS) == projection.METHODS


def test_unknown_map_method_is_a_clear_error(small_project):
    with pytest.raises(UsageError, match="unknown map method 'tsne'"):
        api.start_map(small_project, method="tsne")
    r = stcore("map", small_project.path, "--method", "tsne", check=False)
    assert r.returncode == 2 and "invalid choice: 'tsne'" in r.stderr


def test_selection_items_and_labels_on_any_split(trained_project):
    p = trained_project
    pool = p.store.items.pool_order()[0][:3]
    lab = [i for i, *_ in p.store.items.human_labels()][:2]
    assert api.set_selection(p, [pool[2], lab[0], pool[0], pool[2]]) == 3
    assert api.selection(p) == [pool[2], lab[0], pool[0]]
    rows = api.items(p, api.selection(p))
    assert [(r["id"], r["split"]) for r in rows] == [(pool[2], "pool"), (lab[0], "labeled"), (pool[0], "pool")]
    assert rows[1]["status"] == "labeled" and rows[1]["pred"] is None and rows[1]["label"] is not None
    before = {i: c for i, _, c, _ in p.store.items.human_labels()}
    new = (before[lab[0]] + 1) % len(p.classes)
    assert api.set_label(p, [lab[0], pool[1]], new) == 2
    after = {i: (c, s) for i, _, c, s in p.store.items.human_labels()}
    assert after[lab[0]] == (new, "labeled") and after[pool[1]] == (new, "corrected")
    assert p.store.items.labeled_set()[[i for i, *_ in p.store.items.human_labels() if i in lab].index(lab[0])][1] == new
    assert api.undo(p) == 2  # one action, both splits
    assert {i: c for i, _, c, _ in p.store.items.human_labels()} == before
    assert api.items(p, [pool[1]])[0]["status"] == "pending"
    with pytest.raises(UsageError, match="unknown item id"):
        api.set_label(p, [10 ** 9], 0)
    with pytest.raises(NotFound):
        p.store.decisions.relabel([pool[0]], 0)  # a pool item is corrected, not relabeled
    assert {i: c for i, _, c, _ in p.store.items.human_labels()} == before  # nothing half-done


def test_a_class_index_is_never_read_as_a_class_name(trained_project):
    p = trained_project
    for k, name in enumerate(["1", "10", "2"]):  # folder names that are numbers, sorted as text
        api.rename_class(p, k, name)
    assert p.class_index(1) == 1 and p.class_index("1") == 0 and p.class_index("2") == 2
    with pytest.raises(NotFound, match="class index 10 is out of range"):
        p.class_index(10)
    pool = p.store.items.pool_order()[0][:3]
    api.review(p, [pool[0]], "correct", 0)
    assert api.still_pending(p, pool) == pool[1:]
