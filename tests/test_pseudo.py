"""Pseudo-label maths: label, confidence, margin and entropy, and batched inference."""
import math

import pytest
import torch

from stcore.models import build
from stcore.pseudo import normalize, predict, prediction_stats
from stcore import orders


@pytest.mark.parametrize("probs, pred, conf, margin, entropy", [
    ([1.0, 0.0, 0.0], 0, 1.0, 1.0, 0.0),
    ([0.2, 0.5, 0.3], 1, 0.5, 0.2, -(0.2 * math.log(0.2) + 0.5 * math.log(0.5) + 0.3 * math.log(0.3))),
    ([0.25, 0.25, 0.5], 2, 0.5, 0.25, -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))),
])
def test_prediction_stats(probs, pred, conf, margin, entropy):
    p, c, m, e = prediction_stats(torch.tensor([probs]))
    assert p.item() == pred
    assert c.item() == pytest.approx(conf)
    assert m.item() == pytest.approx(margin)
    assert e.item() == pytest.approx(entropy, abs=1e-6)


def test_normalize_maps_uint8_to_unit_range():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert normalize(x).tolist() == [[[[0.0, 1.0]]]]


@pytest.mark.parametrize("n, batch_size", [(5, 2), (4, 4)])
def test_predict_covers_every_image_once_in_order(n, batch_size):
    model = build("cnn", 1, 3, 28)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    seen = []
    starts = [s for s, probs in predict(model, x, batch_size=batch_size, progress=lambda d, t: seen.append(d))
              if torch.allclose(probs.sum(1), torch.ones(len(probs)))]
    assert starts == list(range(0, n, batch_size))
    assert seen[-1] == n


# ------------------------------------------------------------------ review orderings
@pytest.fixture
def store(tmp_path):
    from stcore.store import Store
    s = Store(tmp_path / "p.db", create=True)
    # ids 0-5 predicted class 0 with margins 0.1..0.6; ids 6-7 class 1 with margins 0.5, 0.05.
    preds = [(0, 0.1), (0, 0.2), (0, 0.3), (0, 0.4), (0, 0.5), (0, 0.6), (1, 0.5), (1, 0.05)]
    s.items.add("pool", list(range(8)), list(range(8)), [str(i) for i in range(8)], [None] * 8)
    s.items.write_predictions([(c, 0.5 + m / 2, m, 0.1, b"", "t", i) for i, (c, m) in enumerate(preds)])
    yield s
    s.close()


@pytest.mark.parametrize("order, expected", [
    ("balanced-margin", [7, 0, 1, 6, 2, 3]),  # round-robin over classes; each round by margin
    # class 0 expects 1.95 errors (the sum of 1 - confidence), class 1 0.725: class 0 comes
    # up 1.95 / 0.725 times as often
    ("weighted-margin", [0, 1, 7, 2, 3, 4]),
    ("margin", [7, 0, 1, 2, 3, 4]),
])
def test_review_orders(store, order, expected):
    assert [r["id"] for r in orders.page(store.queue, statuses=["pending"], order=order, limit=6)] == expected


def test_balanced_margin_pages_through_without_repeats(store):
    pages = [r["id"] for off in (0, 3, 6) for r in orders.page(store.queue, order="balanced-margin", offset=off, limit=3)]
    assert sorted(pages) == list(range(8))


@pytest.mark.parametrize("order", ["balanced-margin", "weighted-margin"])
@pytest.mark.parametrize("seed", range(4))
def test_balanced_pages_match_the_sql_definition_of_the_order(tmp_path, seed, order):
    """The page is computed from each class's first rows; the order is defined by a window
    query over every filtered row (below). Ties in margin, unlabeled items (no class, no margin),
    mixed statuses, filters and deep offsets all have to agree."""
    import random
    from stcore.store import PAGE_COLUMNS, Store
    definition = {
        "balanced-margin": "ROW_NUMBER() OVER (PARTITION BY pred ORDER BY margin, id), margin, id",
        "weighted-margin": "ROW_NUMBER() OVER (PARTITION BY pred ORDER BY margin, id) * 1.0 / "
                           "(SUM(COALESCE(1 - confidence, 1)) OVER (PARTITION BY pred) + 1e-9), margin, id"}
    rng = random.Random(seed)
    s = Store(tmp_path / "p.db", create=True)
    n, k = 400, rng.choice([1, 3, 10])
    s.items.add("pool", list(range(n)), list(range(n)), [str(i) for i in range(n)], [None] * n)
    rows = []
    for i in range(n):
        if rng.random() < 0.1:
            continue  # never pseudo-labeled: pred and margin stay NULL
        m = rng.choice([0.1, 0.2, 0.3]) if rng.random() < 0.3 else rng.random()  # many ties
        rows.append((rng.randrange(k), 0.5 + m / 2, m, 0.1, b"", "t", i))
    s.items.write_predictions(rows)
    labeled = [r[-1] for r in rows]
    s.decisions.decide(rng.sample(labeled, 60), "accepted")
    s.decisions.decide(rng.sample(range(n), 20), "corrected", 0)
    filters = [{}, {"statuses": ["pending"]}, {"statuses": ["pending", "corrected"]},
               {"classes": [0, k - 1], "statuses": ["pending"]}, {"conf_min": 0.6, "conf_max": 0.9}]
    for f in filters:
        where, params = s.queue.where(**f)
        want = [dict(r) for r in s.engine.db.execute(
            f"SELECT {PAGE_COLUMNS}, (SELECT class_id FROM labels WHERE split='pool' AND item_id=pool.id) "
                f"AS label FROM pool{where} ORDER BY {definition[order]}", params)]
        for offset, limit in [(0, 7), (0, 50), (13, 20), (90, 40), (len(want) - 5, 50), (len(want) + 3, 10)]:
            assert orders.page(s.queue, **f, order=order, offset=max(0, offset), limit=limit) \
                == want[max(0, offset):max(0, offset) + limit], (f, offset, limit)
    s.close()


def test_a_balanced_page_can_be_larger_than_sqlites_variable_limit(tmp_path):
    import sqlite3
    from conftest import make_store
    s = make_store(tmp_path / "big.db", 3_000)
    # SQLite builds differ (999 variables in older ones, 32,766 or more in newer); `review
    # --simulate N` asks for one page of N items.
    s.engine.db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    for order in ("balanced-margin", "weighted-margin"):
        page = orders.page(s.queue, statuses=["pending"], order=order, limit=2_500)
        assert len(page) == 2_500 and len({r["id"] for r in page}) == 2_500
    s.close()


def test_the_default_order_takes_each_class_smallest_margin_first(tmp_path):
    from conftest import make_store
    from stcore.orders import DEFAULT_ORDER
    s = make_store(tmp_path / "d.db", 500)
    first = orders.page(s.queue, statuses=["pending"], order=DEFAULT_ORDER, limit=10)
    assert sorted(r["pred"] for r in first) == list(range(10))  # one of each class before any second
    for r in first:
        smallest = orders.page(s.queue, classes=[r["pred"]], statuses=["pending"], order="margin", limit=1)[0]
        assert r["id"] == smallest["id"]
    assert [r["margin"] for r in first] == sorted(r["margin"] for r in first)
    s.close()
