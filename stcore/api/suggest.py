"""What to label next: the pool items without a human label, ranked by how much a label there
is worth (acquisition.py), and a perfect labeler that follows that order on a project with no
teacher yet."""
from __future__ import annotations

import time

from ..errors import ProjectError, UsageError
from ..project import Project
from .team import overlap

STRATEGIES = ("auto", "typical", "uncertain", "random")
DEFAULT_COUNT = 24  # a page of the Review grid
SPARE, TRIES = 4, 10  # a reviewer's suggestion: candidates per item asked for, and tries, when others take some


def suggest(project: Project, count: int = DEFAULT_COUNT, strategy: str = "auto", *, seed: int | None = None,
            reviewer: str | None = None) -> dict:
    """{'items': [{'id', 'score', 'reason'}, ...] best first, 'strategy' (the one used), 'over'
    (the embedding read, or None), 'candidates' (pending pool items), 'seconds'}.

    strategy: typical (before any model: TypiClust over the embedding), uncertain (the teacher's
    smallest margins, spread over clusters of the embedding), random (the baseline), or auto
    (uncertain once the pool has pseudo-labels, else typical). Only pending pool items are
    ranked: no human label, not rejected. typical and uncertain read the project's embedding;
    without one they raise UsageError rather than embed here (an embedding is a job, never work
    inside a page's click): `stcore embed P --backbone pixels` takes seconds. seed: of the random
    order and of the clustering; the project's seed (`init --seed`) unless given. reviewer: the
    items are leased to them (review.lease), and those another reviewer holds are not offered,
    so that people asking at once get different items."""
    seed = int(project.meta.get("seed") or 0) if seed is None else seed
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if count < 1:
        raise UsageError(f"--count must be at least 1, not {count}")
    t0 = time.perf_counter()
    if reviewer is not None:
        return _leased(project, count, strategy, seed, reviewer, t0)
    return _ranked(project, count, strategy, seed, set(), t0)


def _ranked(project: Project, count: int, strategy: str, seed: int, exclude: set[int], t0: float) -> dict:
    """suggest() among the pending items but those of exclude."""
    from .. import acquisition
    pending = [p for p in project.store.items.to_label() if p[0] not in exclude]
    has_teacher = any(m is not None for _, _, m in pending)
    if strategy == "auto":
        strategy = "uncertain" if has_teacher else "typical"
    if strategy == "uncertain" and not has_teacher:
        raise UsageError("the pool has no pseudo-labels, so there is no teacher to be unsure: use --strategy "
                         "typical (or auto), or train a teacher and pseudo-label first")
    over = None
    if not pending:
        picks = []
    elif strategy == "random":
        picks = acquisition.random_order(len(pending), count, seed=seed)
    else:
        z, over = _embedding(project)
        if strategy == "typical":
            labeled = [row for _, row, _, _ in project.store.items.human_labels()]
            nodes = [row for _, row, _ in pending] + labeled
            mask = [False] * len(pending) + [True] * len(labeled)
            picks = acquisition.typical(z[nodes], mask, count, seed=seed)
        else:
            margin = [float("nan") if m is None else m for _, _, m in pending]
            picks = acquisition.uncertain(z[[row for _, row, _ in pending]], margin, count, seed=seed)
    items = [{"id": pending[p.index][0], "score": round(float(p.score), 4), "reason": p.reason} for p in picks]
    return {"items": items, "strategy": strategy, "over": over, "candidates": len(pending),
            "seconds": round(time.perf_counter() - t0, 3)}


def _leased(project: Project, count: int, strategy: str, seed: int, reviewer: str, t0: float) -> dict:
    """suggest() for a reviewer: ranked without the items others hold, then leased. People
    asking at once see the same order, so each try ranks SPARE times as many as it lacks and
    keeps the first it could lease (the rest go back); what another took in between is replaced
    on the next try. With overlap (team.py), the items reviewer voted on, or enough people did,
    are not offered."""
    from .review import lease
    items: list[dict] = []
    out: dict = {}
    closed = project.store.votes.closed_for(reviewer, overlap(project)) if overlap(project) > 1 else set()
    for _ in range(TRIES):
        held = project.store.leases.held_by_others(reviewer) | {i["id"] for i in items} | closed
        want = count - len(items)
        out = _ranked(project, want * SPARE, strategy, seed, held, t0)
        got = set(lease(project, [i["id"] for i in out["items"]], reviewer))
        mine = [i for i in out["items"] if i["id"] in got]
        items += mine[:want]
        project.store.leases.drop([i["id"] for i in mine[want:]], reviewer)
        if len(items) >= count or not out["items"]:
            break
    return {**out, "items": items, "reviewer": reviewer, "seconds": round(time.perf_counter() - t0, 3)}


def _embedding(project: Project):
    """The project's embedding rows of the training images (numpy, float32) and its name."""
    from ..embed import load
    z = load(project)
    if z is None:
        raise UsageError(f"choosing what to label reads the project's embedding, and it has none yet: run "
                         f"`stcore embed {project.path}` first (`--backbone pixels` takes seconds), "
                         f"or use --strategy random")
    return z[0].numpy(), project.store.meta().get("embedding")


def simulate_labeling(project: Project, n: int, *, order: str, reviewer: str = "simulated") -> dict:
    """A perfect labeler on a project with no teacher: gives the first n suggested items (typical
    ones; random ones when order is 'random') their hidden class."""
    strategy = "random" if order == "random" else "typical"
    picked = [i["id"] for i in suggest(project, n, strategy)["items"]]
    truth = {i: c for i, c in project.store.items.hidden_labels(picked).items() if c is not None}
    if not truth:
        raise ProjectError("no pending pool item with a hidden label to simulate labeling on")
    by_class: dict[int, list[int]] = {}
    for i in picked:
        if i in truth:
            by_class.setdefault(truth[i], []).append(i)
    with project.store.tx():
        for c, ids in by_class.items():
            project.store.decisions.decide(ids, "corrected", c, reviewer=reviewer, source="simulated")
    return {"reviewed": len(truth), "accepted": 0, "corrected": len(truth), "order": order, "strategy": strategy}
