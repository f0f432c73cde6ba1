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
