"""Items and their labels: the three splits, the human labels, the pseudo-labels, and what a
run trains and is evaluated on."""
from __future__ import annotations

import hashlib
import random
import time
from typing import Iterable, Iterator, Sequence

from ..actions import STATUSES
from . import counts as kept
from .engine import Engine

# An item's human label, joined to items i (none where it has no label).
_LABEL = "LEFT JOIN labels l ON l.split=i.split AND l.item_id=i.id"


def chunks(seq: list, n: int = 900):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class Items:
    def __init__(self, engine: Engine):
        self.e = engine

    # -- the items -----------------------------------------------------------------
    def add(self, split: str, ids: Sequence[int], rows: Sequence[int], sources: Sequence[str],
            labels: Sequence[int | None], hidden: Sequence[int | None] | None = None, *, seed: int = 0) -> None:
        """Insert items of one split; pool items also get their review row."""
        hidden = hidden if hidden is not None else [None] * len(ids)
        at = time.time()
        with self.e.tx():
            self.e.executemany("INSERT INTO items (id, split, row, source, hidden_label) VALUES (?,?,?,?,?)",
                               list(zip(ids, [split] * len(ids), rows, sources, hidden)))
            self.e.executemany("INSERT INTO labels (split, item_id, class_id, source, at) VALUES (?, ?, ?, 'initial', ?)",
                               [(split, i, c, at) for i, c in zip(ids, labels) if c is not None])
            if split == "pool":
                rng = random.Random(seed)
                self.e.executemany("INSERT INTO pool (id, rand) VALUES (?, ?)", [(i, rng.getrandbits(62)) for i in ids])
            # new pool items are pending and not pseudo-labeled: the agreement is unchanged
            kept.add(self.e, {f"split:{split}": len(ids), "status:pending": len(ids) if split == "pool" else 0})

    def of_split(self, split: str) -> list:
        return self.e.all("SELECT * FROM items WHERE split=? ORDER BY row", (split,))

    def rows(self, split: str, ids: Sequence[int]) -> dict[int, int]:
        """Image row of each item of split, by id."""
        out: dict[int, int] = {}
        for part in chunks(list(ids)):
            q = f"SELECT id, row FROM items WHERE split=? AND id IN ({','.join('?' * len(part))})"
            out.update({r[0]: r[1] for r in self.e.all(q, (split, *part))})
        return out

    def train_items(self, *, ids: Sequence[int] | None = None, rows: Sequence[int] | None = None) -> list[tuple]:
        """(item id, image row, split, label, status, confidence) of labeled and pool items, by
        id or by image row: label is the human label, else the decided one, else the
        pseudo-label; status is 'labeled' for the labeled set."""
        column, keys = ("i.id", ids) if ids is not None else ("i.row", rows)
        out: list[tuple] = []
        for part in chunks([int(k) for k in keys or []]):
            out += [tuple(r) for r in self.e.all(
                "SELECT i.id, i.row, i.split, COALESCE(l.class_id, p.pred), "
                "CASE WHEN i.split='labeled' THEN 'labeled' ELSE p.status END, p.confidence "
                f"FROM items i LEFT JOIN pool p ON i.split='pool' AND p.id=i.id {_LABEL} "
                f"WHERE i.split IN ('labeled','pool') AND {column} IN ({','.join('?' * len(part))})", part)]
        return out

    def set_skipped(self, skipped: Iterable[tuple[str, str]]) -> None:
        with self.e.tx():
            self.e.executemany("INSERT INTO skipped VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET "
                               "reason = excluded.reason", list(skipped))

    def skipped(self) -> list[dict]:
        return [{"path": r[0], "reason": r[1]} for r in self.e.all("SELECT path, reason FROM skipped ORDER BY path")]

    # -- pseudo-labels -----------------------------------------------------------------
    def write_predictions(self, rows: Iterable[tuple], *, reindex: bool = False) -> None:
        """rows: (pred, confidence, margin, entropy, probs_bytes, teacher_run, id), in one
        transaction. reindex: most of the pool changes (a whole pseudo-labeling pass). The
        pseudo-label counts are counted again over the pool, in the same transaction."""
        with self.e.tx():
            self.e.update_many("pool", ("pred", "confidence", "margin", "entropy", "probs", "teacher_run"), "id",
                               list(rows), rebuild_indexes=reindex)
            kept.recount_predictions(self.e)

    def pool_order(self) -> tuple[list[int], list[int]]:
        """(ids, image rows) of the pool, in image-row order: what a pseudo-labeling pass reads."""
        rows = self.e.all("SELECT id, row FROM items WHERE split='pool' ORDER BY row")
        return [r[0] for r in rows], [r[1] for r in rows]

    # -- what a run trains and is evaluated on ---------------------------------------------
    def labeled_set(self) -> list[tuple[int, int]]:
        """(image row, label) of the labeled set's labeled items, in row order."""
        return [tuple(r) for r in self.e.all(
            "SELECT i.row, l.class_id FROM items i JOIN labels l ON l.split='labeled' AND l.item_id=i.id "
            "WHERE i.split='labeled' ORDER BY i.row")]

    def reviewed_set(self) -> list[tuple[int, int, str]]:
        """(image row, decided label, status) of accepted and corrected pool items, in row order."""
        return [tuple(r) for r in self.e.all(
            "SELECT i.row, l.class_id, p.status FROM labels l JOIN pool p ON p.id=l.item_id "
            "JOIN items i ON i.split='pool' AND i.id=l.item_id WHERE l.split='pool' ORDER BY i.row")]

    def human_labels(self) -> list[tuple[int, int, int, str]]:
        """(item id, image row, label, kind) of every human label of the labeled set and the pool,
        in row order; kind is 'labeled' for the labeled set, else the pool item's status."""
        return [tuple(r) for r in self.e.all(
            "SELECT i.id, i.row, l.class_id, CASE WHEN i.split='labeled' THEN 'labeled' ELSE p.status END "
            "FROM labels l JOIN items i ON i.split=l.split AND i.id=l.item_id "
            "LEFT JOIN pool p ON l.split='pool' AND p.id=l.item_id WHERE l.split IN ('labeled','pool') ORDER BY 2")]

    def count_labels(self) -> int:
        """Human labels a model can train on (the labeled set's and the pool's)."""
        return self.e.one("SELECT COUNT(*) FROM labels WHERE split IN ('labeled', 'pool')")[0]

    def labels(self, split: str | None = None) -> list[dict]:
        """Every human label (of split, when given), with its class id, source, reviewer, time and
        batch, by split and item id."""
        where, params = ("WHERE split=?", (split,)) if split else ("", ())
        return [{k: r[k] for k in r.keys()} for r in self.e.all(
            f"SELECT split, item_id, class_id, source, reviewer, at, batch FROM labels {where} "
            "ORDER BY split, item_id", params)]

    def human_labels_digest(self) -> str:
        """A fingerprint of the human labels (which items, which classes): it changes with any of them."""
        return hashlib.sha256(repr([(i, c) for i, _, c, _ in self.human_labels()]).encode()).hexdigest()[:16]

    def unreviewed_set(self, *, pseudo_labeled_only: bool) -> list[tuple[int, bytes | None]]:
        """(image row, float16 probabilities or None) of pending pool items, in row order."""
        q = ("SELECT i.row, p.probs FROM pool p JOIN items i ON i.split='pool' AND i.id=p.id "
             "WHERE p.status='pending'" + (" AND p.pred IS NOT NULL" if pseudo_labeled_only else ""))
        return [(r[0], bytes(r[1]) if r[1] is not None else None) for r in self.e.all(q + " ORDER BY i.row")]

    def to_label(self) -> list[tuple[int, int, float | None]]:
        """(item id, image row, margin or None) of pending pool items (no human label, not
        rejected), in row order: what a suggestion of what to label ranks."""
        return [tuple(r) for r in self.e.all(
            "SELECT p.id, i.row, p.margin FROM pool p JOIN items i ON i.split='pool' AND i.id=p.id "
            "WHERE p.status='pending' ORDER BY i.row")]

    def test_set(self) -> tuple[list[int], list[int]]:
        """(ids, labels) of the test items, in image-row order."""
        rows = self.e.all("SELECT i.id, l.class_id FROM items i JOIN labels l ON l.split='test' AND "
                          "l.item_id=i.id WHERE i.split='test' ORDER BY i.row")
        return [r[0] for r in rows], [r[1] for r in rows]

    def hidden_labels(self, ids: Sequence[int]) -> dict[int, int | None]:
        """The hidden true labels of pool items (None where unknown)."""
        out: dict[int, int | None] = {}
        for part in chunks([int(i) for i in ids]):
            q = f"SELECT id, hidden_label FROM items WHERE split='pool' AND id IN ({','.join('?' * len(part))})"
            out.update({r[0]: r[1] for r in self.e.all(q, part)})
        return out

    # -- counts ------------------------------------------------------------------------
    def split_counts(self) -> dict[str, int]:
        """Items per split (labeled, pool, test) and how many pool items are pseudo-labeled."""
        n = kept.read(self.e)
        return {**{s: n.get(f"split:{s}", 0) for s in ("labeled", "pool", "test")},
                "pseudo_labeled": n.get("pseudo_labeled", 0)}

    def status_counts(self) -> dict[str, int]:
        n = kept.read(self.e)
        return {s: n.get(f"status:{s}", 0) for s in STATUSES}

    def recount(self) -> None:
        """Count the kept counts again from the tables (after rows were written around the store)."""
        with self.e.tx():
            kept.recount(self.e)

    def class_counts(self) -> dict[str, dict[int, int]]:
        """Per class index: labeled items, pseudo-labeled pool items (by pred), and accepted and
        corrected items (by their decided label)."""
        out: dict[str, dict[int, int]] = {"labeled": {}, "pseudo": {}, "accepted": {}, "corrected": {}}
        out["labeled"] = {r[0]: r[1] for r in self.e.all(
            "SELECT class_id, COUNT(*) FROM labels WHERE split='labeled' GROUP BY class_id")}
        out["pseudo"] = {r[0]: r[1] for r in self.e.all(
            "SELECT pred, COUNT(*) FROM pool WHERE pred IS NOT NULL GROUP BY pred")}
        for status, label, n in self.e.all("SELECT p.status, l.class_id, COUNT(*) FROM labels l JOIN pool p "
                                           "ON p.id=l.item_id WHERE l.split='pool' GROUP BY p.status, l.class_id"):
            out[status][label] = n
        return out

    def pseudo_label_agreement(self, threshold: float = kept.AGREEMENT_THRESHOLD) -> tuple[int, int, int, int]:
        """Against hidden labels: (pseudo-labeled items with a hidden label, of them right,
        of them at least threshold confident, of those right). Kept for the default threshold."""
        if threshold == kept.AGREEMENT_THRESHOLD:
            n = kept.read(self.e)
            return tuple(n.get(k, 0) for k in kept.AGREEMENT)
        return kept.agreement_query(self.e, threshold)

    def hidden_agreement_by_item(self) -> list[tuple[float, bool]]:
        """(confidence, pseudo-label == hidden label) of every pseudo-labeled item with a hidden label."""
        return [(r[0], r[1] == r[2]) for r in self.e.all(
            "SELECT p.confidence, p.pred, i.hidden_label FROM pool p JOIN items i ON i.split='pool' "
            "AND i.id=p.id WHERE p.pred IS NOT NULL AND i.hidden_label IS NOT NULL")]

    # -- reading it all -------------------------------------------------------------------
    def export_rows(self) -> Iterator[tuple]:
        """For export, one tuple per item: (split, id, source, predicted class, decided label,
        status, the teacher's confidence, teacher run); the labeled set has status 'labeled'."""
        for r in self.e.tuples(f"SELECT i.id, i.source, l.class_id FROM items i {_LABEL} "
                               "WHERE i.split='labeled' ORDER BY i.id"):
            yield ("labeled", r[0], r[1], r[2], r[2], "labeled", None, None)
        # in the items index's (split, id) order: no sort
        for r in self.e.tuples("SELECT p.id, i.source, p.pred, l.class_id, p.status, p.confidence, p.teacher_run "
                               f"FROM items i JOIN pool p ON p.id=i.id {_LABEL} WHERE i.split='pool' ORDER BY i.id"):
            yield ("pool", *r)

    def map_items(self) -> list[tuple]:
        """(id, image row, split, predicted class, confidence, status, human or decided label,
        hidden label) of every labeled and pool item, in image-row order."""
        return [tuple(r) for r in self.e.all(
            "SELECT i.id, i.row, i.split, p.pred, p.confidence, "
            "CASE WHEN i.split='labeled' THEN 'labeled' ELSE p.status END, l.class_id, "
            f"i.hidden_label FROM items i LEFT JOIN pool p ON i.split='pool' AND p.id=i.id {_LABEL} "
            "WHERE i.split IN ('labeled','pool') ORDER BY i.row")]
