"""stcore/labelvalue.py and api.label_curve: what more labels would buy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from stcore import api, labelvalue


def blobs(n: int, *, classes: int = 4, modes: int = 10, dims: int = 16, seed: int = 0):
    """n rows of `classes` classes, each a mixture of `modes` tight Gaussian blobs far apart:
    few labels leave some blobs without one (wrongly read off a blob of another class), more
    labels cover them all."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes * modes, dims))
    blob = rng.integers(classes * modes, size=n)
    return (centres[blob] + 0.1 * rng.normal(size=(n, dims))).astype(np.float16), blob % classes


def test_the_curve_rises_on_separable_blobs_and_the_next_100_labels_gain_something():
    z, y = blobs(300)
    got = labelvalue.value_of_labels(z, y)
    acc = [p["accuracy"] for p in got["points"]]
    assert len(acc) == len(labelvalue.FRACTIONS)
    assert acc[-1] > acc[0] + 0.1, acc
    assert acc[-1] > 0.6  # four classes: chance is 0.25
    assert [p["n_labels"] for p in got["points"]] == sorted(p["n_labels"] for p in got["points"])
    assert got["points"][-1]["n_labels"] == pytest.approx(300 * 4 / 5, abs=1)  # four folds of five train
    assert 0 < got["gain"] < 0.2 and math.isfinite(got["gain"])
    assert got["extrapolation"][-1]["n_labels"] == 400


def test_the_curve_is_out_of_fold_so_random_labels_stay_near_chance():
    z, _ = blobs(200)
    y = np.random.default_rng(1).integers(4, size=200)  # labels unrelated to the rows
    got = labelvalue.value_of_labels(z, y)
    assert max(p["accuracy"] for p in got["points"]) < 0.4
    assert got["gain"] < 0.03


@pytest.mark.parametrize("labels, says", [(np.array([0, 1] * 9), "at least 20 human labels"),
                                          (np.zeros(50, dtype=int), "all of one")])
def test_too_few_labels_or_one_class_gives_a_reason_not_a_curve(labels, says):
    got = labelvalue.value_of_labels(np.ones((len(labels), 4)), labels)
    assert says in got["reason"] and "points" not in got


def test_the_power_law_finds_a_planted_one():
    n = np.array([10.0, 20, 40, 80, 160])
    a, b, c = labelvalue.fit_power_law(n, 0.9 - 0.8 * n ** -0.5)
    assert (a, b, c) == pytest.approx((0.9, 0.8, 0.5), abs=0.03)


@pytest.mark.needs_fmnist
def test_api_label_curve_on_a_project_and_on_one_without_labels(small_project, zero_label_project):
    got = api.label_curve(small_project)  # 100 labels, no embedding: the labels' pixels
    assert got["over"] == "pixels" and got["labels"] == 100 and math.isfinite(got["gain"])
    assert "100 human labels" in got["basis"] and "pixels embedding" in got["basis"]
    assert got["labels_digest"] == api.labels_digest(small_project)
    none = api.label_curve(zero_label_project)
    assert none["gain"] is None and none["needed"] == labelvalue.MIN_LABELS and none["labels"] == 0
