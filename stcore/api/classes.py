"""The class list and its edits: add, rename, merge, remove, split.

Each edit is one transaction, recorded with who made it (`stcore classes P --history`). A rename
changes one name: every label, pseudo-label and run keeps its class. The other edits change the
class set, so every run trained before is marked stale, with the reason, and the next teacher
trains on the new set. A merge or removal renumbers the classes (a model's output k is the class
of id k), so the actions before it can no longer be undone.

What each edit does to the items:
- merge A B into C: the human labels of A and B become C's; their pseudo-labels (and C's) are
  dropped until the next teacher;
- remove A, to B: as a merge of A into B; remove A, to unlabeled: A's labeled items go back to
  the pool, pending, with no label (a test item keeps no label);
- split A into B C: A's labeled items go back to the pool, pending, and the Review page offers
  B and C first for them.

plan_*() says what an edit would change without making it (the Project page's confirmation);
the edit functions make it and return the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from ..project import Project, default_reviewer
from ..store.classes import clean_name

UNLABELED = "unlabeled"  # remove --to UNLABELED: the items lose their label


@dataclass(frozen=True)
class Plan:
    """An edit of the class set: the new names (new id k: names[k]), each old id's new id (None:
    its labels are taken away), the old ids whose labels go to another class, whose
    pseudo-labels are dropped, and the new ids offered first for the items that lose a label."""
    action: str
    detail: str
    names: list[str]
    mapping: dict[int, int | None]
    merged: frozenset[int] = frozenset()
    cleared: frozenset[int] = frozenset()
    offer: tuple[int, ...] = ()
    impact: dict = field(default_factory=dict)


def classes(project: Project) -> list[dict]:
    """The classes in id order: id, name, labels (all human labels in the labeled set and the
    pool), and by kind: labeled (the labeled set), accepted, corrected, test, pending (pool
    items still to review that the teacher predicts as it) and pseudo (every pool item it does)."""
    usage = project.store.classes.usage()
    return [{"id": k, "name": name, "labels": usage[k]["labeled"] + usage[k]["accepted"] + usage[k]["corrected"],
             **usage[k]} for k, name in enumerate(project.classes)]


def class_history(project: Project, limit: int = 100) -> list[dict]:
    """The edits of the class list, newest first: seq, at, reviewer, action, detail, items."""
    return project.store.classes.edits(limit)


def add_classes(project: Project, names: list[str], *, reviewer: str | None = None) -> list[int]:
    """New classes (each given the next id); their ids. Runs trained before are marked stale."""
    store, who = project.store, reviewer or default_reviewer()
    with store.tx():
        ids = store.classes.add(names)
        detail = f"added {', '.join(names)}"
        store.classes.mark_runs_stale(f"the classes were edited since: {detail}")
        store.classes.record("add", detail, reviewer=who)
    return ids


def rename_class(project: Project, cls: str | int, name: str, *, reviewer: str | None = None) -> None:
    """Give a class (by name or id) a new name; its labels, pseudo-labels and runs keep it."""
    store, k = project.store, project.class_index(cls)
    old = project.classes[k]
    with store.tx():
        store.classes.rename(k, name)
        store.classes.record("rename", f"renamed {old} to {name.strip()}", reviewer=reviewer or default_reviewer())


def plan_merge(project: Project, sources: list[str | int], into: str) -> Plan:
    """Merge the classes sources into into (one of them, another class, or a new name)."""
    names = project.classes
    ks = _distinct(project, sources, "merge")
    target = _find(names, into)
    if target is None and not str(into).strip():
        raise UsageError("--into needs a class name")
    if [k for k in ks if k != target] == []:
        raise UsageError(f"cannot merge {names[ks[0]]} into itself; name two classes, or another target")
    if target is None:
        clean_name(into)
    keep = [k for k in range(len(names)) if k not in ks or k == target]
    new_names = [names[k] for k in keep] + ([] if target is not None else [str(into).strip()])
    new_target = keep.index(target) if target is not None else len(new_names) - 1
    mapping = {k: (new_target if k in ks else keep.index(k)) for k in range(len(names))}
    label = new_names[new_target]
    return _planned(project, Plan("merge", f"merged {', '.join(names[k] for k in ks)} into {label}", new_names,
                                  mapping, merged=frozenset(k for k in ks if k != target),
                                  cleared=frozenset(ks + ([target] if target is not None else []))))


def plan_remove(project: Project, cls: str | int, to: str) -> Plan:
    """Remove a class: its labels go to the class to, or with to == 'unlabeled' are taken away."""
    names = project.classes
    k = project.class_index(cls)
    if str(to).strip().lower() == UNLABELED and _find(names, to) is None:
        keep = [j for j in range(len(names)) if j != k]
        mapping = {j: (keep.index(j) if j != k else None) for j in range(len(names))}
        return _planned(project, Plan("remove", f"removed {names[k]} (its items unlabeled)", [names[j] for j in keep],
                                      mapping, cleared=frozenset([k])))
    target = _find(names, to)
    if target is None:
        raise UsageError(f"--to {to!r} is not a class of the project; name one ({', '.join(names)}) or "
                         f"'{UNLABELED}'")
    if target == k:
        raise UsageError(f"cannot remove {names[k]} into itself; name another class or '{UNLABELED}'")
    plan = plan_merge(project, [k, target], names[target])
    return Plan("remove", f"removed {names[k]} (its items to {names[target]})", plan.names, plan.mapping,
                plan.merged, plan.cleared, impact=plan.impact)


def plan_split(project: Project, cls: str | int, into: list[str]) -> Plan:
    """Split a class into two or more (new names or other classes): its labeled items go back to
    review with those offered first."""
    names = project.classes
    k = project.class_index(cls)
    parts = [str(n).strip() for n in into]
    if len(parts) < 2:
        raise UsageError("--split needs two or more classes after --into")
    if len({p.lower() for p in parts}) < len(parts):
        raise UsageError(f"--into names a class twice: {', '.join(parts)}")
    if any(_find(names, p) == k for p in parts):
        raise UsageError(f"cannot split {names[k]} into itself; give the parts other names")
    keep = [j for j in range(len(names)) if j != k]
    new = [p for p in parts if _find(names, p) is None]
    for p in new:
        clean_name(p)
    new_names = [names[j] for j in keep] + new
    mapping = {j: (keep.index(j) if j != k else None) for j in range(len(names))}
    offer = tuple(new_names.index(p) if _find(names, p) is None else keep.index(_find(names, p)) for p in parts)
    return _planned(project, Plan("split", f"split {names[k]} into {', '.join(parts)}", new_names, mapping,
                                  cleared=frozenset([k]), offer=offer))


def edit_classes(project: Project, plan: Plan, *, reviewer: str | None = None) -> dict:
    """Make a planned merge, removal or split, in one transaction. Returns what changed:
    relabeled (human labels now of another class), unlabeled (items whose label was taken away;
    unlabeled_in: by where they were: pool, labeled, test), pseudo_cleared, and the new classes."""
    if project.classes != plan.impact.get("classes_before"):
        raise UsageError("the classes changed since this edit was planned; look again and retry")
    store = project.store
    done = store.classes.reshape(plan.names, plan.mapping, merged=set(plan.merged), cleared=set(plan.cleared),
                                 offer=plan.offer, reviewer=reviewer or default_reviewer(), action=plan.action,
                                 detail=plan.detail, batch=store.decisions.next_batch())
    by_split = done.pop("unlabeled")
    return {"action": plan.action, "detail": plan.detail, **done, "unlabeled": sum(by_split.values()),
            "unlabeled_in": by_split, "classes": project.classes}


def merge_classes(project: Project, sources: list[str | int], into: str, *, reviewer: str | None = None) -> dict:
    return edit_classes(project, plan_merge(project, sources, into), reviewer=reviewer)


def remove_class(project: Project, cls: str | int, to: str, *, reviewer: str | None = None) -> dict:
    return edit_classes(project, plan_remove(project, cls, to), reviewer=reviewer)


def split_class(project: Project, cls: str | int, into: list[str], *, reviewer: str | None = None) -> dict:
    return edit_classes(project, plan_split(project, cls, into), reviewer=reviewer)


def offers(project: Project) -> dict[int, list[int]]:
    """Pending pool items a split took the label of -> the class ids offered first for each."""
    return project.store.classes.offers()


# ------------------------------------------------------------------ helpers
def _planned(project: Project, plan: Plan) -> Plan:
    """plan with its impact: the numbers the edit will report, counted now."""
    usage = project.store.classes.usage()
    gone = [k for k, v in plan.mapping.items() if v is None]
    impact = {"classes_before": project.classes,
              "relabeled": sum(usage[k][s] for k in plan.merged for s in ("labeled", "accepted", "corrected", "test")),
              "unlabeled": sum(usage[k][s] for k in gone for s in ("labeled", "accepted", "corrected", "test")),
              "unlabeled_test": sum(usage[k]["test"] for k in gone),
              "pseudo_cleared": sum(usage[k]["pseudo"] for k in plan.cleared)}
    impact["items"] = impact["relabeled"] + impact["unlabeled"]
    return Plan(plan.action, plan.detail, plan.names, plan.mapping, plan.merged, plan.cleared, plan.offer, impact)


def _find(names: list[str], name: str | int) -> int | None:
    """The id of the class called name (any case), or None."""
    s = str(name).strip()
    if s in names:
        return names.index(s)
    lower = [n.lower() for n in names]
    return lower.index(s.lower()) if s.lower() in lower else None


def _distinct(project: Project, classes: list[str | int], verb: str) -> list[int]:
    ks = [project.class_index(c) for c in classes]
    if len(set(ks)) < len(ks):
        raise UsageError(f"--{verb} names a class twice")
    if not ks:
        raise UsageError(f"--{verb} needs the classes to {verb}")
    return ks
