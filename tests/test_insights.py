"""What a bulk accept would do, and which classes a run got worse at: plain data in, dicts out."""
import pytest

from stcore import insights
from stcore.metrics import accuracy_by_confidence

CLASSES = ["T-shirt/top", "Trouser", "Dress"]


def test_an_accept_of_one_class_counts_the_mix_before_and_after_and_warns_when_it_takes_over():
    items = [(1, 0.99)] * 90 + [(1, 0.95)] * 10
    r = insights.accept_impact(CLASSES, {0: 10, 1: 10, 2: 10}, items, reviewed=[])
    assert r["n"] == 100 and r["accepted"] == {"T-shirt/top": 0, "Trouser": 100, "Dress": 0}
    assert r["before"] == {"T-shirt/top": 10, "Trouser": 10, "Dress": 10}
    assert r["after"] == {"T-shirt/top": 10, "Trouser": 110, "Dress": 10}
    assert r["largest_after"] == {"class": "Trouser", "count": 110, "share": round(110 / 130, 4)}
    assert r["largest_before"]["share"] == pytest.approx(1 / 3, abs=1e-4)
    assert r["expected_wrong"] == pytest.approx(90 * 0.01 + 10 * 0.05)  # no reviews: 1 - confidence
    assert r["estimate"] == "confidence" and r["calibrated_items"] == 0
    assert "Trouser would be 85% of the human labels (33% now)" in r["warning"]


def test_a_small_accept_in_proportion_brings_no_warning():
    r = insights.accept_impact(CLASSES, {0: 10, 1: 10, 2: 10}, [(0, 0.9), (1, 0.9), (2, 0.9)], reviewed=[])
    assert r["warning"] is None and r["largest_after"]["share"] == pytest.approx(1 / 3, abs=1e-4)
    assert insights.accept_impact(CLASSES, {}, [], reviewed=[])["warning"] is None


def test_the_reviewed_items_accuracy_replaces_the_confidence_where_a_bin_holds_enough_of_them():
    # people reviewed 40 items near 0.97 one at a time: 36 right (90%), worse than the 97% claimed
    reviewed = accuracy_by_confidence([(0.97, True)] * 36 + [(0.97, False)] * 4, insights.CALIBRATION_BINS)
    wrong, calibrated = insights.expected_wrong([0.96, 0.98, 0.5], reviewed)
    assert calibrated == 2 and wrong == pytest.approx(2 * 0.1 + 0.5)  # the 0.5 bin has no reviews
    r = insights.accept_impact(CLASSES, {1: 10}, [(1, 0.96), (1, 0.98)], reviewed)
    assert r["estimate"] == "reviewed" and r["expected_wrong"] == pytest.approx(0.2)
    few = accuracy_by_confidence([(0.97, True)] * (insights.MIN_REVIEWED_PER_BIN - 1), insights.CALIBRATION_BINS)
    assert insights.expected_wrong([0.96], few) == (pytest.approx(0.04), 0)


def test_class_regressions_are_the_drops_past_the_points_worst_first():
    before = {"Trouser": 0.97, "Dress": 0.815, "Coat": 0.70, "Bag": 0.90}
    after = {"Trouser": 0.99, "Dress": 0.534, "Coat": 0.64, "Bag": 0.87}
    r = insights.class_regressions(before, after, points=5.0)
    assert r == [{"name": "Dress", "before": 0.815, "after": 0.534, "drop": 28.1},
                 {"name": "Coat", "before": 0.70, "after": 0.64, "drop": 6.0}]
    assert [x["name"] for x in insights.class_regressions(before, after, points=2.0)] == ["Dress", "Coat", "Bag"]
