"""The project's classes: a stable id and a name each. Labels, pseudo-labels and runs name a
class by its id, so a rename changes one row and nothing else."""
from __future__ import annotations

import random
import time
from typing import Sequence

from ..errors import UsageError
from .engine import Engine


def clean_name(name: str) -> str:
    """A class name as stored: trimmed and non-empty."""
    s = str(name).strip()
    if not s:
        raise UsageError(f"a class name must be non-empty text, not {name!r}")
    return s


class Classes:
    def __init__(self, engine: Engine):
        self.e = engine

    def names(self) -> list[str]:
        """The class names, in id order (a model's output k is the class of id k)."""
        return [r[0] for r in self.e.all("SELECT name FROM classes ORDER BY id")]

    def ids(self) -> list[int]:
        return [r[0] for r in self.e.all("SELECT id FROM classes ORDER BY id")]

    def add(self, names: Sequence[str]) -> list[int]:
        """New classes, given the next ids; their ids. A name the project has is refused."""
        names = [clean_name(n) for n in names]
        if len({n.lower() for n in names}) < len(names):
            raise UsageError(f"the class names {', '.join(names)} repeat one; each class needs its own name")
        with self.e.tx():
            have = {n.lower(): n for n in self.names()}
            taken = [have[n.lower()] for n in names if n.lower() in have]
            if taken:
                raise UsageError(f"the project already has a class named {taken[0]!r}")
            first = self.e.one("SELECT COALESCE(MAX(id) + 1, 0) FROM classes")[0]
            ids = list(range(first, first + len(names)))
            self.e.executemany("INSERT INTO classes (id, name, created) VALUES (?, ?, ?)",
                               [(i, n, time.time()) for i, n in zip(ids, names)])
        return ids

    def rename(self, class_id: int, name: str) -> None:
        """Give class class_id a new name; its labels, pseudo-labels and runs keep pointing at it."""
        name = clean_name(name)
        with self.e.tx():
            clash = self.e.one("SELECT name FROM classes WHERE LOWER(name) = LOWER(?) AND id != ?", (name, class_id))
            if clash:
                raise UsageError(f"the project already has a class named {clash[0]!r}; choose another name")
            if self.e.execute("UPDATE classes SET name=? WHERE id=?", (name, int(class_id))).rowcount != 1:
                raise UsageError(f"no class has id {class_id}")

    # -- edits of the class list -------------------------------------------------------------
    def usage(self) -> dict[int, dict[str, int]]:
        """Per class id: human labels by where they are (labeled set, accepted, corrected, test)
        and pool items predicted as it (pending: still to review; pseudo: all)."""
        out = {k: dict.fromkeys(("labeled", "accepted", "corrected", "test", "pending", "pseudo"), 0)
               for k in self.ids()}
        rows = self.e.all("SELECT CASE WHEN l.split='pool' THEN p.status ELSE l.split END, l.class_id, COUNT(*) "
                          "FROM labels l LEFT JOIN pool p ON l.split='pool' AND p.id=l.item_id "
                          "GROUP BY CASE WHEN l.split='pool' THEN p.status ELSE l.split END, l.class_id")
        rows += self.e.all("SELECT 'pseudo', pred, COUNT(*) FROM pool WHERE pred IS NOT NULL GROUP BY pred")
        rows += self.e.all("SELECT 'pending', pred, COUNT(*) FROM pool WHERE pred IS NOT NULL AND status='pending' "
                           "GROUP BY pred")
        for kind, k, n in rows:
            if k in out and kind in out[k]:
                out[k][kind] += n
        return out

    def record(self, action: str, detail: str, *, reviewer: str | None, items: int = 0,
               batch: int = 0, reshaped: bool = False) -> None:
        """Log an edit of the class list (inside the caller's transaction, or its own)."""
        with self.e.tx():
            self.e.execute("INSERT INTO class_edits (at, reviewer, action, detail, items, batch, reshaped) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (time.time(), reviewer, action, detail, int(items), int(batch), int(reshaped)))

    def edits(self, limit: int = 100) -> list[dict]:
        """The newest edits of the class list first."""
        rows = self.e.all("SELECT seq, at, reviewer, action, detail, items FROM class_edits ORDER BY seq DESC "
                          "LIMIT ?", (int(limit),))
        return [{k: r[k] for k in r.keys()} for r in rows]

    def mark_runs_stale(self, why: str) -> int:
        """Every run not yet stale no longer fits the classes, for the reason why."""
        with self.e.tx():
            return self.e.execute("UPDATE runs SET stale=? WHERE stale IS NULL AND role IN ('teacher', 'student')", (why,)).rowcount

    def offers(self) -> dict[int, list[int]]:
        """The classes offered first, by pending pool item (the items a split took the label of)."""
        out: dict[int, list[int]] = {}
        for item, k in self.e.all("SELECT o.item_id, o.class_id FROM offers o JOIN pool p ON p.id=o.item_id "
                                  "WHERE p.status='pending' ORDER BY o.item_id, o.class_id"):
            out.setdefault(item, []).append(k)
        return out

    def reshape(self, names: Sequence[str], mapping: dict[int, int | None], *, merged: set[int], cleared: set[int],
                offer: Sequence[int] = (), reviewer: str | None, action: str, detail: str, batch: int) -> dict:
        """Make names the class list (new id k: names[k]) in one transaction. mapping: each old
        id -> its new id, or None where its human labels are taken away (the items go back to
        the pool, pending; a test item loses its label). merged: old ids whose human labels go to
        another class (a merge's sources). cleared: old ids whose pseudo-labels
        are dropped (their teacher was trained on another class set). offer: new ids the items
        that lost a label are offered first. Every run becomes stale. Returns what changed."""
        from .counts import recount
        names = [clean_name(n) for n in names]
        with self.e.tx():
            old = self.ids()
            if sorted(mapping) != old or any(v is not None and not 0 <= v < len(names) for v in mapping.values()):
                raise UsageError("a class edit must map every class to a new one or to none")
            busy = self.e.one("SELECT id FROM runs WHERE state IN ('queued', 'running') LIMIT 1")
            if busy:
                raise UsageError(f"run {busy[0]} is training on the current classes; wait for it to finish or "
                                 f"cancel it, then edit the classes")
            gone = [k for k, v in mapping.items() if v is None]
            taken = self._take_labels(gone, reviewer, batch)
            done = {"unlabeled": {k: len(v) if k != "test" else v for k, v in taken.items()}, "pseudo_cleared": 0}
            if cleared:
                where, params = self.e.ids("pred", sorted(cleared))
                done["pseudo_cleared"] = self.e.execute(
                    "UPDATE pool SET pred=NULL, confidence=NULL, margin=NULL, entropy=NULL, teacher_run=NULL "
                    f"WHERE {where}", params).rowcount
            done["relabeled"] = 0
            if merged:
                where, params = self.e.ids("class_id", sorted(merged))
                done["relabeled"] = self.e.one(f"SELECT COUNT(*) FROM labels WHERE {where}", params)[0]
            self._renumber(mapping)
            self.e.executemany("INSERT INTO offers (item_id, class_id) VALUES (?, ?) ON CONFLICT (item_id, class_id) "
                               "DO NOTHING", [(i, k) for i in taken["pool"] + taken["labeled"] for k in offer])
            created = {r[0]: r[1] for r in self.e.all("SELECT name, created FROM classes")}
            self.e.execute("DELETE FROM classes")
            self.e.executemany("INSERT INTO classes (id, name, created) VALUES (?, ?, ?)",
                               [(k, n, created.get(n, time.time())) for k, n in enumerate(names)])
            self.e.execute("UPDATE runs SET stale=? WHERE stale IS NULL AND role IN ('teacher', 'student')", (f"the classes were edited since: {detail}",))
            generation = self.e.one("SELECT value FROM meta WHERE key='class_set'")
            self.e.execute("INSERT INTO meta VALUES ('class_set', ?) ON CONFLICT (key) DO UPDATE SET "
                           "value = excluded.value", (str(int(generation[0]) + 1 if generation else 1),))
            recount(self.e)
            n = done["unlabeled"]["pool"] + done["unlabeled"]["labeled"] + done["unlabeled"]["test"] + done["relabeled"]
            self.record(action, detail, reviewer=reviewer, items=n, batch=batch, reshaped=True)
        return done

    def _take_labels(self, gone: list[int], reviewer: str | None, batch: int) -> dict:
        """Inside reshape: the human labels of the classes gone are taken away. Pool items go back
        to pending; labeled-set items join the pool, pending; test items keep no label. Each
        item's change is logged in the history (batch). Returns the pool and labeled-set items
        that lost their label, and how many test items did."""
        if not gone:
            return {"pool": [], "labeled": [], "test": 0}
        where, params = self.e.ids("class_id", gone)
        at = time.time()
        pool = [r[0] for r in self.e.all(f"SELECT item_id FROM labels WHERE split='pool' AND {where}", params)]
        lab = [r[0] for r in self.e.all(f"SELECT item_id FROM labels WHERE split='labeled' AND {where}", params)]
        test = self.e.execute(f"DELETE FROM labels WHERE split='test' AND {where}", params).rowcount
        self.e.execute(f"DELETE FROM votes WHERE {where}", params)
        self.e.execute(f"DELETE FROM offers WHERE {where}", params)
        self.e.executemany(
            "INSERT INTO history (batch, item_id, old_status, old_label, new_status, new_label, reviewer, at) "
            "SELECT ?, id, status, NULL, 'pending', NULL, ?, ? FROM pool WHERE id=?",
            [(batch, reviewer, at, i) for i in pool])
        self.e.executemany("UPDATE pool SET status='pending', reviewer=?, decided_at=? WHERE id=?",
                           [(reviewer, at, i) for i in pool])
        self.e.executemany(
            "INSERT INTO history (batch, item_id, old_status, old_label, new_status, new_label, reviewer, at) "
            "VALUES (?, ?, 'labeled', NULL, 'pending', NULL, ?, ?)", [(batch, i, reviewer, at) for i in lab])
        self.e.executemany("UPDATE items SET split='pool' WHERE split='labeled' AND id=?", [(i,) for i in lab])
        rng = random.Random(batch)
        self.e.executemany("INSERT INTO pool (id, rand) VALUES (?, ?)", [(i, rng.getrandbits(62)) for i in lab])
        self.e.execute(f"DELETE FROM labels WHERE split IN ('pool', 'labeled') AND {where}", params)
        return {"pool": pool, "labeled": lab, "test": test}

    def _renumber(self, mapping: dict[int, int | None]) -> None:
        """Inside reshape: every stored class id old -> mapping[old] (None -> NULL: a hidden label
        or a history row; the labels, votes and offers of a class gone were deleted first)."""
        pairs = [(o, n) for o, n in mapping.items() if n is not None]
        case = "CASE {col} " + " ".join("WHEN ? THEN ?" for _ in pairs) + " END"
        flat = [v for p in pairs for v in p]
        for table, col in (("labels", "class_id"), ("pool", "pred"), ("items", "hidden_label"),
                           ("history", "old_label"), ("history", "new_label"), ("votes", "class_id"),
                           ("offers", "class_id")):
            self.e.execute(f"UPDATE {table} SET {col} = {case.format(col=col)} WHERE {col} IS NOT NULL", flat)
        # a probability vector has one entry per class of the set its teacher knew
        self.e.execute("UPDATE pool SET probs=NULL WHERE probs IS NOT NULL")
