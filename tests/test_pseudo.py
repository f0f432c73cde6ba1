"""Pseudo-label maths: label, confidence, margin and entropy, and batched inference."""
import math

import pytest
import torch

from stcore.models import build
from stcore.pseudo import normalize, predict, prediction_stats


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
    s.add_items("pool", list(range(8)), list(range(8)), [str(i) for i in range(8)], [None] * 8)
    s.write_predictions([(c, 0.5 + m / 2, m, 0.1, b"", "t", i) for i, (c, m) in enumerate(preds)])
    yield s
    s.close()


@pytest.mark.parametrize("order, expected", [
    ("balanced-margin", [7, 0, 1, 6, 2, 3]),  # round-robin over classes; each round by margin
    ("margin", [7, 0, 1, 2, 3, 4]),
])
def test_review_orders(store, order, expected):
    assert [r["id"] for r in store.page(statuses=["pending"], order=order, limit=6)] == expected


def test_balanced_margin_pages_through_without_repeats(store):
    pages = [r["id"] for off in (0, 3, 6) for r in store.page(order="balanced-margin", offset=off, limit=3)]
    assert sorted(pages) == list(range(8))


def test_default_order_exists():
    from stcore.store import DEFAULT_ORDER, ORDERS
    assert DEFAULT_ORDER in ORDERS
