"""A team on one project: overlap (each item decided by K reviewers before it counts), the
conflicts an admin settles, agreement, and who did how much when.

With overlap K > 1 a reviewer's decision on a pending item is a vote (store.votes). When the
K-th reviewer votes and all K agree, the item is decided as they said, in the same action as
that vote (so the voter's undo takes back both). When they disagree, the item waits in the
conflicts list, and nobody else is shown it. Deciding an item of that list, or changing an item
already decided, is settling: an admin's action. With overlap 1 (the default) nothing of
this applies: a decision is final at once, as on a project of one person.
"""
from __future__ import annotations

from .. import accounts, agreement as agree
from ..errors import AccessError, NotFound, UsageError
from ..project import Project

MAX_OVERLAP = 10
VOTE_STATUSES = ("accepted", "corrected", "rejected")


def overlap(project: Project) -> int:
    """How many reviewers decide each item before it counts (1: the first decision counts)."""
    return int(project.store.meta().get("overlap") or 1)


def set_overlap(project: Project, k: int) -> int:
    """Set how many reviewers decide each item. Lowered, the pending items that many already
    decided alike are decided at once (from 1: each item's one vote is all it needs)."""
    if not 1 <= int(k) <= MAX_OVERLAP:
        raise UsageError(f"--overlap is how many reviewers decide each item, from 1 to {MAX_OVERLAP}, not {k}")
    with project.store.tx():
        project.store.set_meta(overlap=int(k))
        waiting = project.store.votes.at_least(int(k))  # fewer people needed now: what k decided alike counts
        _complete(project, [r for r in project.store.queue.rows(waiting) if r["status"] == "pending"], int(k), None)
    return int(k)


def decide(project: Project, ids, status: str, label: int | None, reviewer: str, *, may_settle: bool,
           batch: int | None = None) -> int:
    """Apply reviewer's decision to pool items under the project's overlap: a vote on the items
    still open, a settlement of the others (refused unless may_settle). One transaction, one
    action for undo (batch: of the history, when it is part of a larger action). Returns the
    items voted on or changed."""
    store, k = project.store, overlap(project)
    ids = list(dict.fromkeys(int(i) for i in ids))
    if k <= 1:
        return store.decisions.decide(ids, status, label, reviewer=reviewer, batch=batch)
    with store.tx():
        rows = {r["id"]: r for r in store.queue.rows(ids)}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFound(f"unknown pool item id(s): {', '.join(map(str, missing[:5]))}")
        votes = store.votes.of(ids)  # an item k people voted on is settled (a voter may change their vote before)
        open_ = [i for i in ids if status in VOTE_STATUSES and rows[i]["status"] == "pending"
                 and len(votes.get(i, [])) < k]
        opened = set(open_)
        settle = [i for i in ids if i not in opened]
        if settle and not may_settle:
            raise AccessError(
                f"item(s) {', '.join(map(str, settle[:5]))} {'are' if len(settle) > 1 else 'is'} already decided or "
                f"waiting to be settled: with overlap {k}, an admin settles an item once {k} people have decided it")
        batch = batch or store.decisions.next_batch()
        n = 0
        if settle:
            n += store.decisions.decide(settle, status, label, reviewer=reviewer, batch=batch)
            if status == "pending":
                store.votes.forget(settle)  # back to pending: K people decide it again
        if open_:
            n += _vote(project, [rows[i] for i in open_], status, label, reviewer, batch, k)
    return n


def _vote(project: Project, rows: list[dict], status: str, label: int | None, reviewer: str, batch: int,
          k: int) -> int:
    """Inside a transaction: reviewer's votes on pending rows; the rows now decided alike by k
    people get that decision."""
    store = project.store
    by_class: dict[int | None, list[int]] = {}
    for r in rows:
        if status == "accepted" and r["pred"] is None:
            raise UsageError(f"item {r['id']} has no pseudo-label to accept; correct it with a class")
        cls = None if status == "rejected" else (r["pred"] if status == "accepted" else label)
        by_class.setdefault(cls, []).append(r["id"])
    for cls, ids in by_class.items():
        store.votes.cast(ids, reviewer, cls, batch)
    store.leases.drop([r["id"] for r in rows], reviewer)  # the next reviewer may have it
    _complete(project, rows, k, batch)
    return len(rows)


def _complete(project: Project, rows: list[dict], k: int, batch: int | None) -> int:
    """Inside a transaction: decide the pending rows that k or more people voted on alike, as
    they said, in the name of the last of them and as part of the action of that vote (batch:
    that action's number, when known), so that undoing the vote undoes the decision. Returns how many."""
    store = project.store
    votes = store.votes.of([r["id"] for r in rows])
    agreed: dict[tuple[str, int, str, int | None], list[int]] = {}
    for r in rows:
        said = {v[1] for v in votes.get(r["id"], [])}
        if len(votes.get(r["id"], [])) >= k and len(said) == 1:
            cls, last = said.pop(), max(votes[r["id"]], key=lambda v: (v[3], v[2]))
            final = "rejected" if cls is None else ("accepted" if cls == r["pred"] else "corrected")
            agreed.setdefault((last[0], batch or last[3], final, cls if final == "corrected" else None),
                              []).append(r["id"])
    for (last, b, final, cls), ids in agreed.items():
        store.decisions.decide(ids, final, cls, reviewer=last, batch=b)
    return sum(len(v) for v in agreed.values())


def undo(project: Project, reviewer: str | None = None) -> int:
    """Revert reviewer's last action (anyone's, for None): a vote is taken back, and with it the
    decision it completed. Returns the items reverted."""
    store = project.store
    with store.tx():
        voted = store.votes.last_batch(reviewer)
        last = store.decisions.last_batch(reviewer)
        if voted is None or (last is not None and last["batch"] > voted):
            return store.decisions.undo(reviewer)
        n = store.decisions.undo(reviewer) if last is not None and last["batch"] == voted else 0
        return max(n, len(store.votes.take_back(voted, reviewer)))


def last_action(project: Project, reviewer: str | None = None) -> dict | None:
    """{'batch', 'new_status', 'n', 'at'} of the action undo(reviewer) would revert ('voted' for a vote)."""
    store = project.store
    last = store.decisions.last_batch(reviewer)
    voted = store.votes.last_batch(reviewer)
    if voted is None or (last is not None and last["batch"] > voted):
        return last
    return {"batch": voted, "new_status": "voted", **store.votes.batch_size(voted, reviewer)}


def conflicts(project: Project, limit: int = 1000) -> list[dict]:
    """The items overlap reviewers decided differently, oldest first, as review rows with their
    'votes' ([reviewer, class name or 'rejected']) and a 'note' saying them."""
    store = project.store
    ids = store.votes.conflicts(overlap(project), limit)
    return with_votes(project, store.queue.rows(ids))


def count_conflicts(project: Project) -> int:
    return project.store.votes.count_conflicts(overlap(project)) if overlap(project) > 1 else 0


def with_votes(project: Project, rows: list[dict]) -> list[dict]:
    """rows, each with the votes on it ('votes': [[reviewer, class name or 'rejected'], ...] and a
    'note' saying them) where it has any."""
    votes = project.store.votes.of([r["id"] for r in rows])
    classes = project.classes
    for r in rows:
        if r["id"] in votes:
            r["votes"] = [[who, "rejected" if c is None else classes[c]] for who, c, *_ in votes[r["id"]]]
            r["note"] = "votes: " + ", ".join(f"{who} {what}" for who, what in r["votes"])
    return rows


def agreement(project: Project) -> dict:
    """agreement.agreement over the project's votes, with class names, and the overlap and open
    conflicts: see `stcore agreement`."""
    store = project.store
    classes = project.classes
    settled: dict[int, int | None] = {}
    voted = sorted({i for i, _, _ in store.votes.all()})
    for r in store.queue.rows(voted):
        if r["status"] in VOTE_STATUSES:
            settled[r["id"]] = None if r["status"] == "rejected" else r["label"]
    out = agree.agreement(store.votes.all(), settled,
                          name=lambda c: "rejected" if c is None else classes[c] if c < len(classes) else str(c))
    return {"overlap": overlap(project), "open_conflicts": count_conflicts(project), **out}


def activity(project: Project, reviewer: str | None = None) -> list[dict]:
    """Every action (a decision or a vote; one per batch), oldest first: {'reviewer', 'at', 'n'
    (items), 'kind' ('decided' or 'voted')}. An action that was undone is left out."""
    store = project.store
    rows = {(r[0], r[1]): {"reviewer": r[0], "at": r[2], "n": r[3], "kind": "decided"}
            for r in store.decisions.activity(reviewer)}
    for r in store.votes.activity(reviewer):
        rows[(r[0], r[1])] = {"reviewer": r[0], "at": r[2], "n": r[3], "kind": "voted"}
    return sorted(rows.values(), key=lambda r: r["at"])


def may_settle(user: dict | None) -> bool:
    """Whether user may settle a conflict (an admin, or anyone on a project without accounts)."""
    return accounts.allowed(user, "settle")



ACTIVE_GAP = 300.0  # seconds: a longer pause between two actions of a reviewer is a break, not work


def reviewer_stats(project: Project, reviewer: str | None = None) -> list[dict]:
    """Per reviewer (one, when given): {'reviewer', 'actions', 'items', 'first', 'last',
    'active_minutes' (the gaps between their actions up to ACTIVE_GAP, summed),
    'seconds_per_action' (the median of those gaps)}."""
    by: dict[str, list[dict]] = {}
    for a in activity(project, reviewer):
        by.setdefault(a["reviewer"], []).append(a)
    out = []
    for who, acts in sorted(by.items()):
        gaps = sorted(b["at"] - a["at"] for a, b in zip(acts, acts[1:]) if b["at"] - a["at"] <= ACTIVE_GAP)
        out.append({"reviewer": who, "actions": len(acts), "items": sum(a["n"] for a in acts),
                    "first": acts[0]["at"], "last": acts[-1]["at"], "active_minutes": round(sum(gaps) / 60, 1),
                    "seconds_per_action": round(gaps[len(gaps) // 2], 1) if gaps else None})
    return out
