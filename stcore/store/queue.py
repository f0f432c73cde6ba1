"""The review queue: the pool filtered by class, status and confidence, read in pages.

Which order a reviewer sees is policy, and lives above the store (stcore/orders.py): this
module offers the reads an order is built from (a page sorted by columns, the classes present,
the head of one class by margin, each class's expected errors), each on an index.
"""
from __future__ import annotations

from typing import Sequence

from ..errors import UsageError
from . import counts as kept
from .engine import Engine
from .items import STATUSES, chunks

# A page row: these pool columns, and 'label', the item's human label (none when it has none).
PAGE_COLUMNS = "id, pred, confidence, margin, entropy, status, reviewer, decided_at, teacher_run"
SORTABLE = ("confidence", "margin", "entropy", "rand", "id")


def _row(r) -> dict:
    return {k: r[k] for k in r.keys()}


class Queue:
    def __init__(self, engine: Engine):
        self.e = engine

    @staticmethod
    def where(classes=None, statuses=None, conf_min=None, conf_max=None, ids=None, free_for=None) -> tuple[str, list]:
        """The filters as ' WHERE ...' (or '') and its parameters. free_for: (reviewer, now) or
        (reviewer, now, overlap): leave out the items another reviewer holds (leases.py); with
        overlap > 1, also those reviewer voted on and those overlap people did (votes.py)."""
        clauses, params = [], []
        if free_for is not None:
            clauses.append("NOT EXISTS (SELECT 1 FROM leases l WHERE l.item_id = pool.id AND l.reviewer <> ? "
                           "AND l.until > ?)")
            params += [str(free_for[0]), float(free_for[1])]
            if len(free_for) > 2 and free_for[2] > 1:
                clauses.append("NOT EXISTS (SELECT 1 FROM votes v WHERE v.item_id = pool.id AND v.reviewer = ?) "
                               "AND (SELECT COUNT(*) FROM votes v WHERE v.item_id = pool.id) < ?")
                params += [str(free_for[0]), int(free_for[2])]
        if classes:
            clauses.append(f"pred IN ({','.join('?' * len(classes))})")
            params += [int(c) for c in classes]
        if statuses:
            bad = set(statuses) - set(STATUSES)
            if bad:
                raise UsageError(f"unknown status {sorted(bad)}; use one of {', '.join(STATUSES)}")
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            params += list(statuses)
        if conf_min is not None and conf_min > 0:
            clauses.append("confidence >= ?")
            params.append(float(conf_min))
        if conf_max is not None and conf_max < 1:
            clauses.append("confidence <= ?")
            params.append(float(conf_max))
        if ids is not None:
            clauses.append(f"id IN ({','.join('?' * len(ids))})" if ids else "1 = 0")
            params += [int(i) for i in ids]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def sorted_page(self, filters: dict, keys: Sequence[tuple[str, bool]], offset: int, limit: int) -> list[dict]:
        """Rows (PAGE_COLUMNS) matching filters, sorted by keys ((column, descending) of SORTABLE,
        then id; a NULL sorts before any number), paged."""
        for column, _ in keys:
            if column not in SORTABLE:
                raise UsageError(f"cannot sort the review queue by {column!r}")
        order = ", ".join(f"{c} {'DESC NULLS LAST' if desc else 'ASC NULLS FIRST'}" for c, desc in keys)
        where, params = self.where(**filters)
        q = f"SELECT {PAGE_COLUMNS} FROM pool{where} ORDER BY {order + ', ' if order else ''}id LIMIT ? OFFSET ?"
        return self._labeled([_row(r) for r in self.e.all(q, (*params, int(limit), int(offset)))])

    def _labeled(self, rows: list[dict], split: str = "pool") -> list[dict]:
        """rows, each with its item's human label added (None where it has none)."""
        labels: dict[int, int] = {}
        for part in chunks([r["id"] for r in rows]):
            labels.update(self.e.all(f"SELECT item_id, class_id FROM labels WHERE split=? AND item_id IN "
                                     f"({','.join('?' * len(part))})", (split, *part)))
        return [{**r, "label": labels.get(r["id"])} for r in rows]

    def classes_present(self, filters: dict) -> list[int | None]:
        """The predicted classes among the filtered rows (None: not predicted), found by seeking
        the index one class at a time."""
        where, params = self.where(**filters)
        cond = (where + " AND ") if where else " WHERE "
        found: list[int | None] = [None] if self.e.one(f"SELECT 1 FROM pool{cond}pred IS NULL LIMIT 1", params) else []
        last = None
        while (last := self.e.one(f"SELECT MIN(pred) FROM pool{cond}pred > ?",
                                  (*params, -2 ** 62 if last is None else last))[0]) is not None:
            found.append(last)
        return found

    def expected_errors(self, filters: dict) -> dict[int | None, float]:
        """Per predicted class, the sum of 1 - confidence over the filtered rows (1 where unpredicted)."""
        where, params = self.where(**filters)
        return {r[0]: float(r[1]) for r in self.e.all(
            f"SELECT pred, SUM(COALESCE(1 - confidence, 1)) FROM pool{where} GROUP BY pred", params)}

    def class_head(self, filters: dict, cls: int | None, n: int) -> list[tuple[float | None, int]]:
        """(margin, id) of the first n filtered rows of one predicted class, by margin then id."""
        where, params = self.where(**filters)
        cond = (where + " AND ") if where else " WHERE "
        table = self.e.hint("pool", "pool_status_pred_margin") if filters.get("statuses") else "pool"
        q = (f"SELECT margin, id FROM {table}{cond}{'pred IS NULL' if cls is None else 'pred = ?'} "
             f"ORDER BY margin ASC NULLS FIRST, id LIMIT ?")
        return [(r[0], r[1]) for r in self.e.all(q, (*params, *(() if cls is None else (cls,)), int(n)))]

    def rows(self, ids: Sequence[int]) -> list[dict]:
        """Pool rows (PAGE_COLUMNS) of ids, in the order of ids; unknown ids are left out."""
        found = {r["id"]: r for r in self._labeled([_row(r) for part in chunks([int(i) for i in ids]) for r in
                                                    self.e.all(f"SELECT {PAGE_COLUMNS} FROM pool WHERE id IN "
                                                               f"({','.join('?' * len(part))})", part)])}
        return [found[i] for i in ids if i in found]

    def count(self, *, classes=None, statuses=None, conf_min=None, conf_max=None) -> int:
        where, params = self.where(classes, statuses, conf_min, conf_max)
        if not classes and (conf_min is None or conf_min <= 0) and (conf_max is None or conf_max >= 1):
            # by status alone (the Review page's usual count): the kept counts, not a scan of the pool
            n = kept.read(self.e)
            return sum(n.get(f"status:{s}", 0) for s in (statuses or STATUSES))
        return self.e.one(f"SELECT COUNT(*) FROM pool{where}", params)[0]

    def rows_by_id(self, ids: Sequence[int]) -> list[dict]:
        """Review rows (PAGE_COLUMNS and 'split') of labeled and pool items, in the order of ids;
        a labeled item has status 'labeled', its label and no prediction. Unknown ids are left out."""
        ids = [int(i) for i in ids]
        found = {r["id"]: {**r, "split": "pool"} for r in self.rows(ids)}
        for part in chunks(ids):
            found.update({r[0]: {"id": r[0], "pred": None, "confidence": None, "margin": None, "entropy": None,
                                 "status": "labeled", "label": r[1], "reviewer": r[2], "decided_at": r[3],
                                 "teacher_run": None, "split": "labeled"} for r in self.e.all(
                "SELECT i.id, l.class_id, l.reviewer, l.at FROM items i LEFT JOIN labels l ON l.split='labeled' "
                f"AND l.item_id=i.id WHERE i.split='labeled' AND i.id IN ({','.join('?' * len(part))})", part)})
        return [found[i] for i in ids if i in found]

    # -- named lists of items ----------------------------------------------------------
    def set_selection(self, name: str, ids: Sequence[int]) -> int:
        """Replace the named list of item ids (kept in order, each once); returns its length."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        with self.e.tx():
            self.e.execute("DELETE FROM selection WHERE name=?", (name,))
            self.e.executemany("INSERT INTO selection (name, pos, id) VALUES (?, ?, ?)",
                               [(name, k, i) for k, i in enumerate(ids)])
        return len(ids)

    def selection(self, name: str) -> list[int]:
        return [r[0] for r in self.e.all("SELECT id FROM selection WHERE name=? ORDER BY pos", (name,))]
