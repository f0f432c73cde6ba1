"""Review: decisions on pool items (each one transaction, undone per reviewer), the review
queue in pages, labels given to any item, and what a bulk accept would do before it is done."""
from __future__ import annotations

import time

from contextlib import contextmanager
from typing import Iterator

from .. import orders
from ..errors import ProjectError, UsageError
from ..orders import DEFAULT_ORDER, ORDER_ALIASES
from ..project import Project, default_reviewer
from ..actions import ACTIONS
from .continuous import decided
from .evaluation import calibration
from .projects import class_counts
from . import team
from .suggest import simulate_labeling


@contextmanager
def all_or_nothing(project: Project) -> Iterator[None]:
    """Decisions made inside are one transaction: a bad id or class anywhere changes nothing.
    Once they are committed, continuous mode may queue a refresh."""
    with project.store.tx():
        yield
    decided(project)


def review(project: Project, ids, action: str, label: str | int | None = None, *,
           reviewer: str | None = None, may_settle: bool = True) -> int:
    """action: a name in ACTIONS (accept, correct, reject, reset), for pool item ids; label: the
    class of an action that needs one. With overlap (team.py) a decision on an open item is
    reviewer's vote; settling the others needs may_settle. Returns the items changed or voted on."""
    if action not in ACTIONS:
        raise UsageError(f"unknown review action {action!r}; use {', '.join(ACTIONS)}")
    a = ACTIONS[action]
    lab = project.class_index(label) if a.needs_class else None
    n = team.decide(project, ids, a.status, lab, reviewer or default_reviewer(), may_settle=may_settle)
    decided(project)
    return n


def still_pending(project: Project, ids: list[int]) -> list[int]:
    """Those of ids (pool items) that are still pending and pseudo-labeled, in their order."""
    pending: set[int] = set()
    for start in range(0, len(ids), 900):
        part = [int(i) for i in ids[start:start + 900]]
        pending |= {r["id"] for r in orders.page(project.store.queue, statuses=["pending"], ids=part, limit=len(part))
                    if r["pred"] is not None}
    return [int(i) for i in ids if int(i) in pending]


def accept_above(project: Project, threshold: float, *, classes=None, conf_max: float | None = None,
                 reviewer: str | None = None) -> int:
    """Accept every pending, pseudo-labeled item with confidence >= threshold (and <= conf_max),
    of the given classes (names or indices; all if None), in one transaction."""
    if not 0 <= threshold <= 1:
        raise UsageError(f"threshold must be within [0, 1], not {threshold}")
    cls = [project.class_index(c) for c in classes] if classes else None
    n = project.store.decisions.accept_above(threshold, classes=cls, conf_max=conf_max,
                                             reviewer=reviewer or default_reviewer())
    decided(project)
    return n


def count_above(project: Project, threshold: float, *, classes=None, conf_max: float | None = None) -> int:
    """How many items accept_above would accept."""
    return project.store.queue.count(classes=classes, statuses=["pending"], conf_min=max(threshold, 1e-9),
                               conf_max=conf_max)


def undo(project: Project, reviewer: str | None = None) -> int:
    """Revert the last decision or vote (one item, or one bulk action) of reviewer, or of anyone
    when None. Returns the items reverted."""
    return team.undo(project, reviewer)


def last_action(project: Project, reviewer: str | None = None) -> dict | None:
    """{'new_status' ('voted' for a vote), 'n', 'at'} of the action undo(reviewer) would revert, or None."""
    return team.last_action(project, reviewer)


def history(project: Project, item_id: int | None = None, limit: int = 100, *, reviewer: str | None = None,
            names: bool = False) -> list[dict]:
    """The newest decisions first, of one item and/or one reviewer when given: who (reviewer),
    what (old and new status and label), when (at), in which action (batch), undone or not.
    names: labels as class names instead of class ids."""
    rows = project.store.decisions.history(item_id, limit, reviewer=reviewer)
    if names:
        classes = project.classes
        for r in rows:
            for key in ("old_label", "new_label"):
                r[key] = classes[r[key]] if r[key] is not None and r[key] < len(classes) else r[key]
    return rows


def review_page(project: Project, *, classes=None, statuses=None, conf_min=None, conf_max=None,
                order: str = DEFAULT_ORDER, offset: int = 0, limit: int = 50, free_for: str | None = None) -> list[dict]:
    """One page of pool items (id, pred, confidence, margin, entropy, status, label, ...).
    free_for: a reviewer; the items someone else holds (lease()) are left out, and with overlap
    (team.py) those they voted on and those waiting to be settled."""
    k = team.overlap(project)
    free_for = free_for or (default_reviewer() if k > 1 else None)
    return orders.page(project.store.queue, classes=classes, statuses=statuses, conf_min=conf_min, conf_max=conf_max,
                       order=order, offset=offset, limit=limit,
                       free_for=(free_for, time.time(), k) if free_for else None)


LEASE_SECONDS = 600  # a lease not renewed (by a page drawn again, or a suggestion) ends after 10 minutes


def lease(project: Project, ids: list[int], reviewer: str, *, only: bool = False) -> list[int]:
    """Hold ids for reviewer for LEASE_SECONDS (renewing those they hold): nobody else's page or
    suggestion shows them meanwhile. Returns the ids reviewer holds now (an item someone else
    holds is left out). only: end reviewer's other leases (they moved to another page)."""
    got = project.store.leases.take(ids, reviewer, LEASE_SECONDS)
    if only:
        project.store.leases.release(reviewer, keep=got)
    return got


def held_by_others(project: Project, ids: list[int], reviewer: str) -> dict[int, str]:
    """Those of ids that someone other than reviewer holds now, with who."""
    return {i: who for i, who in project.store.leases.holders(ids).items() if who != reviewer}


def release(project: Project, reviewer: str) -> int:
    """End every lease of reviewer (they left): returns how many."""
    return project.store.leases.release(reviewer)


def review_count(project: Project, *, classes=None, statuses=None, conf_min=None, conf_max=None) -> int:
    return project.store.queue.count(classes=classes, statuses=statuses, conf_min=conf_min, conf_max=conf_max)


SUGGESTED = ("typical", "uncertain")  # simulate_review's orders that come from suggest() rather than the queue


def simulate_review(project: Project, n: int, *, order: str = DEFAULT_ORDER, reviewer: str = "simulated") -> dict:
    """A perfect reviewer: takes the first n pending pseudo-labeled items in the given order and
    accepts each one whose prediction equals its hidden label, correcting the others. On a project
    with no teacher yet (no pseudo-labels), labels the first n items of the suggested order
    instead (typical ones; random ones with order 'random'): see suggest.simulate_labeling."""
    if not project.meta.get("hidden_labels"):
        raise ProjectError("this project has no hidden labels, so a reviewer cannot be simulated")
    if project.store.items.split_counts()["pseudo_labeled"] == 0:
        out = simulate_labeling(project, n, order=ORDER_ALIASES.get(order, order), reviewer=reviewer)
        decided(project)
        return out
    if order in SUGGESTED:  # the order of `stcore suggest --strategy ORDER`, among the pending items
        from .suggest import suggest
        rows = [r for r in items(project, [i["id"] for i in suggest(project, n, order)["items"]]) if r["pred"] is not None]
    else:
        rows = [r for r in orders.page(project.store.queue, statuses=["pending"], order=order, limit=n)
                if r["pred"] is not None]
    if not rows:
        raise ProjectError("no pending pseudo-labels to review; run pseudo-label first")
    truth = project.store.items.hidden_labels([r["id"] for r in rows])
    right = [r["id"] for r in rows if truth[r["id"]] == r["pred"]]
    by_class: dict[int, list[int]] = {}
    for r in rows:
        if truth[r["id"]] != r["pred"]:
            by_class.setdefault(truth[r["id"]], []).append(r["id"])
    with project.store.tx():
        project.store.decisions.decide(right, "accepted", reviewer=reviewer, source="simulated")
        for c, ids in by_class.items():
            project.store.decisions.decide(ids, "corrected", c, reviewer=reviewer, source="simulated")
    decided(project)
    return {"reviewed": len(rows), "accepted": len(right), "corrected": len(rows) - len(right), "order": order}


SELECTION = "map"     # the store's name for the map's selection


def set_selection(project: Project, ids: list[int]) -> int:
    """Keep a list of labeled or pool item ids (a selection on the map) for the Review page."""
    return project.store.queue.set_selection(SELECTION, ids)


def selection(project: Project) -> list[int]:
    return project.store.queue.selection(SELECTION)


def items(project: Project, ids: list[int]) -> list[dict]:
    """Review rows of labeled and pool items in the order given (a labeled item: status
    'labeled', its label, no prediction)."""
    return project.store.queue.rows_by_id(ids)


def set_label(project: Project, ids: list[int], label: str | int, *, reviewer: str | None = None,
              may_settle: bool = True) -> int:
    """Give items the class label, whichever their split: pool items are corrected (with
    overlap, voted on: see review()), items of the labeled set relabeled; one transaction, and
    one action for undo. Returns the items changed."""
    lab = project.class_index(label)
    rows = project.store.queue.rows_by_id(ids)
    known = {r["id"] for r in rows}
    missing = [int(i) for i in ids if int(i) not in known]
    if missing:
        raise UsageError(f"unknown item id(s): {', '.join(map(str, missing[:5]))}; ids are on each Review card")
    pool = [r["id"] for r in rows if r["split"] == "pool"]
    labeled = [r["id"] for r in rows if r["split"] == "labeled"]
    who = reviewer or default_reviewer()
    with project.store.tx():
        batch = project.store.decisions.next_batch()
        n = team.decide(project, pool, "corrected", lab, who, may_settle=may_settle, batch=batch) if pool else 0
        n += project.store.decisions.relabel(labeled, lab, reviewer=who, batch=batch) if labeled else 0
    decided(project)
    return n


def bulk_accept_impact(project: Project, threshold: float, *, classes=None, conf_max: float | None = None) -> dict:
    """What accept_above(project, threshold, classes=..., conf_max=...) would do, without doing it:
    {'n', 'accepted', 'before', 'after' (class name -> human labels: the labeled set, accepted and
    corrected items), 'largest_before', 'largest_after' ({'class', 'count', 'share'}),
    'expected_wrong' (how many of the n the reviewed items' accuracy at their confidence, else the
    confidence itself, expects to be wrong), 'estimate' (which of the two), 'calibrated_items',
    'warning' (a sentence when the largest class would take over the human labels, else None)}."""
    if not 0 <= threshold <= 1:
        raise UsageError(f"threshold must be within [0, 1], not {threshold}")
    cls = [project.class_index(c) for c in classes] if classes else None
    n = count_above(project, threshold, classes=cls, conf_max=conf_max)
    rows = review_page(project, classes=cls, statuses=["pending"], conf_min=max(threshold, 1e-9), conf_max=conf_max,
                       order="confidence", limit=n) if n else []
    return _accept_impact(project, rows)


def ids_accept_impact(project: Project, ids: list[int]) -> dict:
    """bulk_accept_impact for accepting these pool items (those still pending and pseudo-labeled)."""
    return _accept_impact(project, [r for r in items(project, ids)
                                    if r["status"] == "pending" and r["pred"] is not None])


def _accept_impact(project: Project, rows: list[dict]) -> dict:
    from ..insights import CALIBRATION_BINS, accept_impact
    counts, human = class_counts(project), {}
    for part in ("labeled", "accepted", "corrected"):
        for c, n in counts[part].items():
            human[c] = human.get(c, 0) + n
    return accept_impact(project.classes, human, [(r["pred"], r["confidence"]) for r in rows],
                         calibration(project, CALIBRATION_BINS)["reviewed"])
