"""dashboard/figures.py: each figure's data, checked without a browser."""
from __future__ import annotations

import pytest

from dashboard import figures

CLASSES = ["a", "b", "c"]


def test_class_distribution_has_one_bar_series_per_kind_in_class_order():
    fig = figures.class_distribution(CLASSES, {"labeled": {0: 10, 2: 5}, "pseudo": {1: 7}, "accepted": {2: 3},
                                               "corrected": {0: 2}})
    assert [t.name for t in fig.data] == ["labeled", "pseudo-labeled", "accepted", "corrected"]
    assert all(list(t.x) == CLASSES for t in fig.data)
    assert [list(t.y) for t in fig.data] == [[10, 0, 5], [0, 7, 0], [0, 0, 3], [2, 0, 0]]
    assert fig.layout.barmode == "group" and fig.layout.yaxis.type != "log"


def test_class_distribution_uses_a_log_axis_with_a_tick_per_power_of_ten_when_counts_differ_a_lot():
    fig = figures.class_distribution(CLASSES, {"labeled": {0: 10, 1: 10}, "pseudo": {0: 6000, 1: 5000}})
    assert fig.layout.yaxis.type == "log"
    # one labelled tick per decade, with thousands separators (not "10k, 5, 2, 1000")
    assert fig.layout.yaxis.dtick == 1 and fig.layout.yaxis.tickformat == ",d"


def test_one_run_takes_its_role_colour_and_several_runs_distinct_colours():
    rows = [{"kind": "eval", "step": 5, "accuracy": 0.5}]
    one = figures.accuracy_chart({"student-2": rows})
    assert one.data[0].line.color == figures.ROLE_COLORS["student"]
    many = figures.accuracy_chart({"teacher-1": rows, "teacher-3": rows, "student-4": rows})
    colors = [t.line.color for t in many.data]
    assert len(set(colors)) == 3 and all(t.marker.color == t.line.color for t in many.data)


def test_loss_and_accuracy_charts_take_only_their_kind_of_rows():
    rows = [{"kind": "train", "step": 10, "loss": 2.0}, {"kind": "eval", "step": 10, "accuracy": 0.5},
            {"kind": "train", "step": 20, "loss": 1.5}, {"kind": "eval", "step": 20, "accuracy": 0.7}]
    loss = figures.loss_chart({"teacher-1": rows})
    acc = figures.accuracy_chart({"teacher-1": rows})
    assert (list(loss.data[0].x), list(loss.data[0].y)) == ([10, 20], [2.0, 1.5])
    assert (list(acc.data[0].x), list(acc.data[0].y)) == ([10, 20], [0.5, 0.7])
    assert list(acc.layout.yaxis.range) == [0, 1]


def test_learning_curves_overlay_one_line_per_run_with_a_legend():
    series = {"teacher-1": [{"kind": "eval", "step": 5, "accuracy": 0.4}],
              "student-2": [{"kind": "eval", "step": 5, "accuracy": 0.6}, {"kind": "eval", "step": 9, "accuracy": 0.8}]}
    fig = figures.accuracy_chart(series)
    assert [t.name for t in fig.data] == ["teacher-1", "student-2"]
    assert len(fig.data[1].x) == 2 and fig.layout.showlegend


def test_empty_series_give_an_empty_but_valid_chart():
    fig = figures.loss_chart({"student-3": []})
    assert len(fig.data) == 1 and list(fig.data[0].x) == []


RESULTS = {
    "teacher": {"run": "teacher-1", "accuracy": 0.6, "per_class": {"a": 0.5, "b": 0.7, "c": 0.6},
                "precision": {"a": 0.4, "b": 0.8, "c": 0.6}, "recall": {"a": 0.5, "b": 0.7, "c": 0.6},
                "f1": {"a": 0.44, "b": 0.75, "c": 0.6}, "support": {"a": 10, "b": 10, "c": 10}},
    "student": {"run": "student-2", "accuracy": 0.8, "per_class": {"a": 0.9, "b": 0.8, "c": 0.7},
                "precision": {"a": 0.9, "b": 0.8, "c": 0.7}, "recall": {"a": 0.9, "b": 0.8, "c": 0.7},
                "f1": {"a": 0.9, "b": 0.8, "c": 0.7}, "support": {"a": 10, "b": 10, "c": 10}},
}


@pytest.mark.parametrize("roles", [("teacher",), ("teacher", "student")])
def test_per_class_bars_put_teacher_and_student_side_by_side(roles):
    fig = figures.per_class_bars(CLASSES, {r: RESULTS[r] for r in roles})
    assert len(fig.data) == len(roles)
    assert fig.data[0].name.startswith("teacher teacher-1")
    assert list(fig.data[-1].y) == [RESULTS[roles[-1]]["per_class"][c] for c in CLASSES]
    assert fig.layout.barmode == "group"


def test_metrics_table_has_a_row_per_class_and_columns_per_role():
    rows = figures.metrics_table(CLASSES, RESULTS)
    assert [r["class"] for r in rows] == CLASSES
    assert rows[1]["student f1"] == 0.8 and rows[0]["teacher precision"] == 0.4
    assert rows[2]["test images"] == 10


def test_confusion_heatmap_keeps_counts_and_puts_a_clickable_marker_on_each_cell():
    m = [[5, 1, 0], [2, 3, 0], [0, 0, 4]]
    fig = figures.confusion_heatmap(CLASSES, m)
    heat, cells = fig.data
    assert [list(r) for r in heat.z] == m
    assert len(cells.x) == 9
    # cell (true b, predicted a) carries its indices for the click handler
    k = [list(c) for c in cells.customdata].index([1, 0])
    assert (cells.y[k], cells.x[k]) == ("b", "a")
    assert fig.layout.yaxis.autorange == "reversed"


def test_calibration_chart_draws_only_bins_of_ten_or_more_items_with_their_counts():
    cal = {"reviewed": [{"lo": 0.0, "hi": 0.5, "n": 0, "accuracy": None},
                        {"lo": 0.5, "hi": 1.0, "n": 40, "accuracy": 0.75}],
           "hidden": [{"lo": 0.0, "hi": 0.5, "n": 9, "accuracy": 0.3},
                      {"lo": 0.5, "hi": 1.0, "n": 1200, "accuracy": 0.9}]}
    fig = figures.calibration_chart(cal)
    assert [len(t.x) for t in fig.data] == [1, 1, 2]
    assert list(fig.data[0].x) == [0.75] and list(fig.data[0].y) == [0.75]
    assert list(fig.data[0].text) == ["40"] and list(fig.data[1].text) == ["1,200"]
    assert fig.data[-1].name == "perfect calibration"


def test_loss_axes_write_small_values_plainly_not_with_si_prefixes():
    rows = [{"kind": "train", "step": s, "loss": v} for s, v in ((1, 5e-6), (2, 3e-6), (3, 1e-6))]
    for fig in (figures.loss_chart({"head-3": rows}), figures.loss_chart({"head-3": rows, "head-4": rows})):
        assert fig.layout.yaxis.exponentformat == "none"  # Plotly's default ("B") reads 0.000005 as "5µ"


# ------------------------------------------------------------------ the map
def _points(n_pool: int, *, wrong_every: int = 5, n_labeled: int = 10, seed: int = 0) -> dict:
    """One tight cluster of n_pool pool items of class 0, one in wrong_every truly class 1 (20%
    wrong by default), and n_labeled labeled items of class 0, with no hidden class (as
    api.map_points gives the labeled set)."""
    import random
    rng = random.Random(seed)
    n = n_pool + n_labeled
    pool = range(n_pool)
    return {"id": [1000 + i for i in range(n)], "x": [rng.random() for _ in range(n)], "y": [rng.random() for _ in range(n)],
            "split": ["pool"] * n_pool + ["labeled"] * n_labeled, "pred": [0] * n_pool + [None] * n_labeled,
            "confidence": [0.9] * n_pool + [None] * n_labeled, "status": ["pending"] * n_pool + ["labeled"] * n_labeled,
            "label": [None] * n_pool + [0] * n_labeled,
            "truth": [1 if i % wrong_every == 0 else 0 for i in pool] + [None] * n_labeled}


def _drawn(fig) -> list[int]:
    """The ids of the map's points in the order they are drawn (the last on top)."""
    return [int(i) for t in fig.data if t.customdata is not None for i in t.customdata]


@pytest.mark.parametrize("n_pool", [1000, 8000])  # with and without the selection layer
def test_right_or_wrong_draws_a_cluster_20_percent_wrong_as_20_percent_wrong(n_pool):
    pts = _points(n_pool)
    wrong = {i for i, t, s in zip(pts["id"], pts["truth"], pts["split"]) if s == "pool" and t == 1}
    fig = figures.embedding_map(pts, CLASSES, "right or wrong")
    order = [i for i in _drawn(fig) if i - 1000 < n_pool]
    assert sorted(order) == pts["id"][:n_pool]
    # Drawn as one trace per verdict, the wrong points all came last, on top: the cluster
    # looked wrong. Mixed, the points on top (the last quarter drawn) are as wrong as the cluster.
    top = order[-len(order) // 4:]
    assert 0.12 < sum(i in wrong for i in top) / len(top) < 0.28


def test_right_or_wrong_shows_the_labeled_set_as_labeled_not_unknown():
    pts = _points(100)
    fig = figures.embedding_map(pts, CLASSES, "right or wrong")
    names = [t.name.split(" (")[0] for t in fig.data if t.showlegend is not False]
    assert names == ["right", "wrong", "labeled set"]
    assert [t.name for t in fig.data if t.showlegend is not False] == ["right (80)", "wrong (20)", "labeled set (10)"]
    labeled = fig.data[-1]
    assert [int(i) for i in labeled.customdata] == pts["id"][100:]  # drawn last, on top
    assert list(figures.map_verdicts(pts)[100:]) == ["labeled"] * 10
    # a pool item with no hidden class stays unknown
    pts["truth"][3] = None
    assert figures.map_verdicts(pts)[3] == "unknown"


def test_a_large_map_takes_the_box_and_lasso_on_an_empty_layer_and_skips_per_point_hover():
    small = figures.embedding_map(_points(figures.SELECT_LAYER_ABOVE - 10), CLASSES)
    assert all(t.xaxis in (None, "x") for t in small.data) and "xaxis2" not in small.layout.to_plotly_json()
    assert small.data[0].text is not None and small.layout.legend.itemclick is None  # hover labels, legend clicks
    big = figures.embedding_map(_points(figures.SELECT_LAYER_ABOVE + 10), CLASSES)
    layer = big.data[-1]
    assert (layer.name, layer.xaxis, layer.yaxis, list(layer.x)) == (figures.SELECT_LAYER, "x2", "y2", [None])
    assert big.layout.xaxis2.matches == "x" and big.layout.yaxis2.matches == "y"  # zoom and pan move both
    points = [t for t in big.data if t.name != figures.SELECT_LAYER]
    assert all(t.hoverinfo == "skip" and t.text is None for t in points)
    assert big.layout.legend.itemclick is False  # a hidden class would still be selected from the layer


def test_map_selection_finds_the_points_inside_a_box_or_lasso_on_the_layer():
    pts = {"id": [10, 11, 12, 13, 14], "x": [0.1, 0.5, 0.9, 0.5, 0.2], "y": [0.1, 0.5, 0.9, 0.2, 0.8]}
    box = {"xref": "x2", "yref": "y2", "x": [0.6, 0.0], "y": [0.0, 0.6]}  # corners in any order
    assert figures.map_selection(pts, {"points": [], "box": [box], "lasso": []}) == [10, 11, 13]
    # a triangle (0,0) (1,0) (0,1): below the diagonal x + y = 1
    tri = {"xref": "x2", "yref": "y2", "x": [0, 1, 0], "y": [0, 0, 1]}
    assert figures.map_selection(pts, {"lasso": [tri]}) == [10, 13]
    # a concave lasso (a U): the point in its notch is out
    u = {"xref": "x2", "yref": "y2", "x": [0, 1, 1, 0.7, 0.7, 0.3, 0.3, 0], "y": [0, 0, 1, 1, 0.3, 0.3, 1, 1]}
    assert figures.map_selection(pts, {"lasso": [u]}) == [10, 12, 13, 14]
    # points Plotly reported come first; shapes drawn on the map itself were tested by Plotly
    assert figures.map_selection(pts, {"points": [{"customdata": 14}, {"customdata": [12]}, {"customdata": 999}],
                                       "box": [{**box, "xref": "x", "yref": "y"}]}) == [14, 12]
    assert figures.map_selection(pts, {"points": [{"customdata": 12}], "box": [box], "lasso": [tri]}) == [12, 10, 11, 13]
    assert figures.map_selection(pts, None) == [] and figures.map_selection(pts, {"box": [], "lasso": []}) == []


def test_map_colourings_keep_every_point_once_with_its_id():
    pts = _points(300)
    for color_by in figures.MAP_COLOR_BY:
        fig = figures.embedding_map(pts, CLASSES, color_by)
        assert sorted(_drawn(fig)) == pts["id"], color_by


def test_label_value_chart_draws_the_band_the_measured_curve_and_the_dotted_extrapolation():
    curve = {"labels": 50, "gain": 0.031,
             "points": [{"n_labels": 4.0, "accuracy": 0.5, "spread": 0.05}, {"n_labels": 20.0, "accuracy": 0.7,
                                                                              "spread": 0.03},
                        {"n_labels": 40.0, "accuracy": 0.76, "spread": 0.02}],
             "extrapolation": [{"n_labels": 40.0, "accuracy": 0.76}, {"n_labels": 150.0, "accuracy": 0.81}]}
    band, measured, fitted = figures.label_value_chart(curve).data
    assert list(measured.y) == [50.0, 70.0, 76.0] and list(measured.x) == [4.0, 20.0, 40.0]
    assert list(band.y) == pytest.approx([55.0, 73.0, 78.0, 74.0, 67.0, 45.0]) and band.fill == "toself"
    assert fitted.line.dash == "dot" and list(fitted.x) == [40.0, 150.0]
    assert "+3.1 pts" in figures.label_value_chart(curve).layout.annotations[0].text
