"""Review decisions: each one a transaction, logged in the history, and undone by batch."""
from __future__ import annotations

import time
from typing import Sequence

from ..actions import REVIEW_STATUSES
from ..errors import NotFound, UsageError
from . import counts as kept
from .engine import Engine
from .queue import Queue


# A history row h whose item has a newer change not undone (someone decided it again since).
_LATER = "EXISTS (SELECT 1 FROM history x WHERE x.item_id = h.item_id AND x.seq > h.seq AND x.undone = 0)"
# Actions after the last edit that renumbered the classes: those before it name classes by ids
# that changed meaning, so they can no longer be undone.
_UNDOABLE = "batch > (SELECT COALESCE(MAX(batch), 0) FROM class_edits WHERE reshaped = 1)"

class Decisions:
    def __init__(self, engine: Engine):
        self.e = engine

    def next_batch(self) -> int:
        """The batch number the next decision gets; pass it to several decisions made in one
        tx() to make them one action for undo."""
        return self.e.one("SELECT COALESCE(MAX(b), 0) + 1 FROM (SELECT MAX(batch) AS b FROM history "
                          "UNION ALL SELECT MAX(batch) FROM votes UNION ALL SELECT MAX(batch) FROM class_edits) x")[0]

    def last_seq(self) -> int:
        """The newest history row's number (0 for none): a mark to count decisions from."""
        return self.e.one("SELECT COALESCE(MAX(seq), 0) FROM history")[0]

    def count_since(self, seq: int) -> int:
        """Decisions (history rows, one per item decided, not undone) after the mark seq."""
        return self.e.one("SELECT COUNT(*) FROM history WHERE seq > ? AND undone = 0", (int(seq),))[0]

    def decide(self, ids: Sequence[int], status: str, label: int | None = None, *,
               reviewer: str | None = None, batch: int | None = None, source: str = "reviewed") -> int:
        """Set the decision of pool items in one transaction. status 'accepted' labels each item
        with its current prediction; 'corrected' with label; 'rejected' and 'pending' take its
        label away. source: the labels' source (labels.source). Returns the number of items
        changed. Unknown ids raise NotFound and change nothing."""
        if status not in REVIEW_STATUSES:
            raise UsageError(f"unknown status {status!r}; use one of {', '.join(REVIEW_STATUSES)}")
        if REVIEW_STATUSES[status].label == "class" and label is None:
            raise UsageError(f"{status} needs a class")
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        with self.e.tx():
            chosen, params = self.e.ids("id", ids)
            known = {r[0] for r in self.e.all(f"SELECT id FROM pool WHERE {chosen}", params)}
            missing = [i for i in dict.fromkeys(ids) if i not in known]
            if missing:
                raise NotFound(f"unknown pool item id(s): {', '.join(str(i) for i in missing[:5])}")
            if REVIEW_STATUSES[status].label == "prediction":
                bad = self.e.all(f"SELECT id FROM pool WHERE {chosen} AND pred IS NULL LIMIT 5", params)
                if bad:
                    raise UsageError(f"item(s) {', '.join(str(r[0]) for r in bad)} have no pseudo-label "
                                     f"to accept; run pseudo-label first, or correct them with a class")
            return self._apply(status, label, reviewer, chosen, params, batch, source)

    def _apply(self, status: str, label: int | None, reviewer: str | None, where: str, params,
               batch: int | None = None, source: str = "reviewed") -> int:
        """Inside a transaction: log a decision for the pool rows matching where (their columns
        unqualified), then apply what was logged to the pool and the labels."""
        gives = REVIEW_STATUSES[status].label
        new_label = {"prediction": "p.pred", "class": "?", "none": "NULL"}[gives]
        label_params = [label] if gives == "class" else []
        batch, at = batch or self.next_batch(), time.time()
        first = self.e.one("SELECT COALESCE(MAX(seq), 0) FROM history")[0] + 1
        # Skip rows whose decision would not change, so undo and history stay meaningful.
        self.e.execute(
            "INSERT INTO history (batch, item_id, old_status, old_label, new_status, new_label, reviewer, at, source) "
            f"SELECT ?, p.id, p.status, l.class_id, ?, {new_label}, ?, ?, ? FROM pool p LEFT JOIN labels l "
            f"ON l.split='pool' AND l.item_id=p.id WHERE ({where}) "
            f"AND NOT (p.status = ? AND l.class_id {self.e.same} {new_label})",
            [batch, status, *label_params, reviewer, at, None if gives == "none" else source,
             *params, status, *label_params])
        logged = "SELECT item_id FROM history WHERE seq >= ?"
        # each logged row is one pool row, whose status goes from old_status to status
        moved = self.e.all("SELECT old_status, COUNT(*) FROM history WHERE seq >= ? GROUP BY old_status", (first,))
        deltas = {f"status:{status}": sum(r[1] for r in moved)}
        for old, n in moved:
            deltas[f"status:{old}"] = deltas.get(f"status:{old}", 0) - n
        kept.add(self.e, deltas)
        if gives != "none":
            self.e.execute("INSERT INTO labels (split, item_id, class_id, source, reviewer, at, batch) "
                           "SELECT 'pool', item_id, new_label, source, reviewer, at, batch FROM history "
                           "WHERE seq >= ? ON CONFLICT (split, item_id) DO UPDATE SET class_id=excluded.class_id, "
                           "source=excluded.source, reviewer=excluded.reviewer, at=excluded.at, batch=excluded.batch",
                           (first,))
        else:
            self.e.execute(f"DELETE FROM labels WHERE split='pool' AND item_id IN ({logged})", (first,))
        return self.e.execute(f"UPDATE pool SET status=?, reviewer=?, decided_at=? WHERE id IN ({logged})",
                              (status, reviewer, at, first)).rowcount

    def accept_above(self, threshold: float, *, classes=None, conf_max=None, reviewer=None) -> int:
        """Accept every pending, pseudo-labeled item with confidence >= threshold, in one transaction."""
        where, params = Queue.where(classes, ["pending"], None, conf_max)
        where = where[len(" WHERE "):] + " AND pred IS NOT NULL AND confidence >= ?"
        with self.e.tx():
            return self._apply("accepted", None, reviewer, where, [*params, float(threshold)])

    def relabel(self, ids: Sequence[int], label: int, *, reviewer: str | None = None,
                batch: int | None = None, source: str = "reviewed", split: str = "labeled") -> int:
        """Give items of the labeled set (split 'labeled') or of the test set ('test') another
        class, in one transaction. The labeled set's changes are logged in the history (status
        'labeled') so that undo reverts them; the test set's are not, since the history names an
        item by its id alone, which means the labeled set or the pool (the test split numbers its
        items anew): its label row keeps who gave it, when and in which batch, and undo leaves
        it. Returns the items changed."""
        if split not in ("labeled", "test"):
            raise UsageError(f"relabel changes the labeled or the test set, not {split!r}")
        ids = [int(i) for i in ids]
        with self.e.tx():
            chosen, params = self.e.ids("i.id", ids)
            known = {r[0]: r[1] for r in self.e.all(
                "SELECT i.id, l.class_id FROM items i LEFT JOIN labels l ON l.split=i.split AND l.item_id=i.id "
                f"WHERE i.split=? AND {chosen}", [split, *params])}
            missing = [i for i in ids if i not in known]
            if missing:
                raise NotFound(f"unknown {split} item id(s): {', '.join(map(str, missing[:5]))}")
            change = [i for i in dict.fromkeys(ids) if known[i] != label]
            batch, at = batch or self.next_batch(), time.time()
            if split == "labeled":
                self.e.executemany(
                    "INSERT INTO history (batch, item_id, old_status, old_label, new_status, new_label, reviewer, "
                    "at, source) VALUES (?, ?, 'labeled', ?, 'labeled', ?, ?, ?, ?)",
                    [(batch, i, known[i], label, reviewer, at, source) for i in change])
            self.e.executemany(
                "INSERT INTO labels (split, item_id, class_id, source, reviewer, at, batch) VALUES "
                "(?, ?, ?, ?, ?, ?, ?) ON CONFLICT (split, item_id) DO UPDATE SET class_id=excluded.class_id, "
                "source=excluded.source, reviewer=excluded.reviewer, at=excluded.at, batch=excluded.batch",
                [(split, i, label, source, reviewer, at, batch) for i in change])
            return len(change)

    def undo(self, reviewer: str | None = None) -> int:
        """Revert the most recent batch of decisions not yet undone: of reviewer, when given
        (each person undoes their own actions), else of anyone. Each label goes back to what it
        was, with the source, reviewer and time it had. An item decided again since (by anyone)
        keeps that newer decision: the batch's change is taken out of its history instead, so
        that undoing the newer one later goes back to what the item was before both. Returns
        the items reverted."""
        who, params = ("AND reviewer = ?", [reviewer]) if reviewer is not None else ("", [])
        with self.e.tx():
            batch = self.e.one(f"SELECT MAX(batch) FROM history WHERE undone=0 AND {_UNDOABLE} {who}", params)[0]
            if batch is None:
                return 0
            split = "CASE WHEN h.new_status='labeled' THEN 'labeled' ELSE 'pool' END"
            latest = f"h.batch=? AND NOT {_LATER}"  # the batch's rows that are still the item's newest
            self.e.execute(f"DELETE FROM labels WHERE (split, item_id) IN (SELECT {split}, h.item_id FROM history h "
                           f"WHERE {latest} AND h.old_label IS NULL)", (batch,))
            # the label before: the one the item's previous history row gave, else its initial label
            self.e.execute(
                f"INSERT INTO labels (split, item_id, class_id, source, reviewer, at, batch) SELECT {split}, "
                "h.item_id, h.old_label, COALESCE(b.source, 'initial'), b.reviewer, COALESCE(b.at, h.at), b.batch "
                "FROM history h LEFT JOIN history b ON b.seq = (SELECT MAX(x.seq) FROM history x WHERE "
                f"x.item_id = h.item_id AND x.seq < h.seq AND x.undone = 0) WHERE {latest} AND h.old_label IS NOT NULL "
                "ON CONFLICT (split, item_id) DO UPDATE SET class_id=excluded.class_id, source=excluded.source, "
                "reviewer=excluded.reviewer, at=excluded.at, batch=excluded.batch", (batch,))
            # the statuses of the batch's pool items before and after: exact whatever their history
            touched = ("SELECT status, COUNT(*) FROM pool WHERE id IN (SELECT h.item_id FROM history h WHERE "
                       f"{latest} AND h.new_status != 'labeled') GROUP BY status")
            before = self.e.all(touched, (batch,))
            n = self.e.execute(
                "UPDATE pool SET status=h.old_status, decided_at=h.at "
                f"FROM (SELECT h.item_id, h.old_status, h.at FROM history h WHERE {latest} "
                "AND h.new_status != 'labeled') AS h WHERE pool.id = h.item_id", (batch,)).rowcount
            deltas = {f"status:{r[0]}": r[1] for r in self.e.all(touched, (batch,))}
            for status, k in before:
                deltas[f"status:{status}"] = deltas.get(f"status:{status}", 0) - k
            kept.add(self.e, deltas)
            n += self.e.one(f"SELECT COUNT(*) FROM history h WHERE {latest} AND h.new_status='labeled'", (batch,))[0]
            # decided again since: the next change of the item now starts from what this one started from
            self.e.execute(
                "UPDATE history SET old_status=h.old_status, old_label=h.old_label FROM history h "
                f"WHERE h.batch=? AND {_LATER} AND history.seq = (SELECT MIN(x.seq) FROM history x "
                "WHERE x.item_id = h.item_id AND x.seq > h.seq AND x.undone = 0)", (batch,))
            self.e.execute("UPDATE history SET undone=1 WHERE batch=?", (batch,))
            return n

    def history(self, item_id: int | None = None, limit: int = 100, *, reviewer: str | None = None) -> list[dict]:
        """The newest changes first (of one item and/or one reviewer, when given): every column."""
        where = [(c, v) for c, v in (("item_id", item_id), ("reviewer", reviewer)) if v is not None]
        clause = " AND ".join(f"{c}=?" for c, _ in where)
        rows = self.e.all(f"SELECT * FROM history {'WHERE ' + clause if where else ''} ORDER BY seq DESC LIMIT ?",
                          (*[v for _, v in where], limit))
        return [{k: r[k] for k in r.keys()} for r in rows]

    def last_batch(self, reviewer: str | None = None) -> dict | None:
        """The newest action not undone (of reviewer, when given): batch, new_status, n, at."""
        who, params = ("AND reviewer = ?", [reviewer]) if reviewer is not None else ("", [])
        row = self.e.one("SELECT batch, CASE MIN(new_status) WHEN 'labeled' THEN 'relabeled' "
                         "ELSE MIN(new_status) END AS new_status, COUNT(*) AS n, MAX(at) AS at FROM history "
                         f"WHERE undone=0 AND {_UNDOABLE} {who} GROUP BY batch ORDER BY batch DESC LIMIT 1", params)
        return {k: row[k] for k in row.keys()} if row else None

    def activity(self, reviewer: str | None = None) -> list[tuple[str, int, float, int]]:
        """(reviewer, batch, at, items) of every action not undone (reviewer's, when given)."""
        who, params = ("AND reviewer = ?", [reviewer]) if reviewer is not None else ("AND reviewer IS NOT NULL", [])
        return [(r[0], r[1], r[2], r[3]) for r in self.e.all(
            f"SELECT reviewer, batch, MIN(at), COUNT(*) FROM history WHERE undone = 0 {who} "
            "AND batch NOT IN (SELECT batch FROM class_edits) GROUP BY reviewer, batch",
            params)]

    def single_decisions(self) -> list[tuple[float, bool]]:
        """(the teacher's confidence, whether it was right) of pool items whose current decision,
        accepted or corrected, a person made on that item alone (a history batch of one item):
        bulk accepts would count the teacher as right by construction."""
        return [(r[0], r[1] == "accepted") for r in self.e.all(
            "SELECT p.confidence, p.status FROM pool p JOIN history h ON h.item_id = p.id "
            "WHERE p.status IN ('accepted','corrected') AND p.confidence IS NOT NULL AND h.undone = 0 "
            "AND h.seq = (SELECT MAX(seq) FROM history WHERE item_id = p.id AND undone = 0) "
            "AND (SELECT COUNT(*) FROM history b WHERE b.batch = h.batch) = 1")]
