"""The orders a reviewer can see the pool in: policy, over the review queue's reads.

A plain order sorts by columns. The balanced orders take the least-margin item of each
predicted class, then the second of each, and so on, so every page spans the classes and
corrections are not all spent on one confusable pair; the weighted one gives a class turns in
proportion to its expected number of errors (the sum of 1 - confidence over its items), so easy
classes give up turns to confusable ones. They are computed from each class's first rows (an
index range each), never by sorting the whole filtered pool: milliseconds at a million items.
"""
from __future__ import annotations

from .errors import UsageError

# name -> the columns it sorts by, (column, descending), then id; or None for a balanced order
ORDERS: dict[str, tuple | None] = {
    "balanced-margin": None,
    "weighted-margin": None,
    "confidence": (("confidence", False),),
    "confidence-desc": (("confidence", True),),
    "margin": (("margin", False),),
    "entropy": (("entropy", True),),
    "random": (("rand", False),),
    "id": (),
}
# Other names for an order, as in the active-learning literature.
ORDER_ALIASES = {"least-confidence": "confidence"}
DEFAULT_ORDER = "balanced-margin"  # what the review page and `review --simulate` use unless told


def page(queue, *, classes=None, statuses=None, conf_min=None, conf_max=None, ids=None,
         order: str = "confidence", offset: int = 0, limit: int = 50, free_for=None) -> list[dict]:
    """Pool rows matching the filters, in an order of ORDERS, paged. queue: a store's review
    queue; free_for: (reviewer, now) leaves out the items another reviewer holds."""
    order = ORDER_ALIASES.get(order, order)
    if order not in ORDERS:
        raise UsageError(f"unknown order {order!r}; use one of {', '.join([*ORDERS, *ORDER_ALIASES])}")
    filters = {"classes": classes, "statuses": statuses, "conf_min": conf_min, "conf_max": conf_max, "ids": ids,
               "free_for": free_for}
    if ORDERS[order] is not None:
        return queue.sorted_page(filters, ORDERS[order], int(offset), int(limit))
    return balanced_page(queue, filters, int(offset), int(limit), weighted=order == "weighted-margin")


def balanced_page(queue, filters: dict, offset: int, limit: int, *, weighted: bool) -> list[dict]:
    """Within its predicted class an item ranks by margin; an item on this page ranks within the
    first offset + limit of its class, so each class's first offset + limit rows are merged by
    (rank in class, or rank / class weight; margin, a missing one first; id)."""
    if limit <= 0:
        return []
    n = offset + limit
    weights = queue.expected_errors(filters) if weighted else None
    keys = []
    for c in (list(weights) if weighted else queue.classes_present(filters)):
        keys += [((rank + 1) / (weights[c] + 1e-9) if weighted else rank, m is not None, m or 0.0, i)
                 for rank, (m, i) in enumerate(queue.class_head(filters, c, n))]
    keys.sort()
    return queue.rows([k[3] for k in keys[offset:n]])
