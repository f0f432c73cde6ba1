"""Votes: with overlap K, each reviewer's own decision on a pool item until K of them have
decided it (policy in stcore/api/team.py). One row per item and reviewer: a reviewer who
decides again changes their vote. The rows stay after the item is settled: agreement reads them."""
from __future__ import annotations

import time
from typing import Sequence

from .engine import Engine
from .items import chunks


class Votes:
    def __init__(self, engine: Engine):
        self.e = engine

    def cast(self, ids: Sequence[int], reviewer: str, class_id: int | None, batch: int) -> None:
        """reviewer's vote on ids: class_id (None: rejected), as part of history batch batch."""
        at = time.time()
        with self.e.tx():
            self.e.executemany(
                "INSERT INTO votes (item_id, reviewer, class_id, at, batch) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (item_id, reviewer) DO UPDATE SET class_id = excluded.class_id, at = excluded.at, "
                "batch = excluded.batch", [(int(i), reviewer, class_id, at, int(batch)) for i in ids])

    def of(self, ids: Sequence[int]) -> dict[int, list[tuple[str, int | None, float, int]]]:
        """Each of ids' votes, (reviewer, class_id, at, batch), oldest first; an item with none is left out."""
        out: dict[int, list[tuple[str, int | None, float, int]]] = {}
        for part in chunks([int(i) for i in ids]):
            for r in self.e.all(f"SELECT item_id, reviewer, class_id, at, batch FROM votes WHERE item_id IN "
                                f"({','.join('?' * len(part))}) ORDER BY at, reviewer", part):
                out.setdefault(r[0], []).append((r[1], r[2], r[3], r[4]))
        return out

    def forget(self, ids: Sequence[int]) -> None:
        """Every vote on ids (an item sent back to pending starts over)."""
        with self.e.tx():
            for part in chunks([int(i) for i in ids]):
                self.e.execute(f"DELETE FROM votes WHERE item_id IN ({','.join('?' * len(part))})", part)

    def last_batch(self, reviewer: str | None) -> int | None:
        """The batch of reviewer's newest vote (of anyone's, for None)."""
        who, params = ("WHERE reviewer = ?", [reviewer]) if reviewer is not None else ("", [])
        return self.e.one(f"SELECT MAX(batch) FROM votes {who}", params)[0]

    def take_back(self, batch: int, reviewer: str | None) -> list[int]:
        """Delete the votes of batch (reviewer's, when given); returns their items."""
        who, params = (" AND reviewer = ?", [reviewer]) if reviewer is not None else ("", [])
        with self.e.tx():
            ids = [r[0] for r in self.e.all(f"SELECT item_id FROM votes WHERE batch = ?{who}", (batch, *params))]
            self.e.execute(f"DELETE FROM votes WHERE batch = ?{who}", (batch, *params))
        return ids

    def batch_size(self, batch: int, reviewer: str | None) -> dict:
        """{'n' (items), 'at'} of the votes of batch (reviewer's, when given)."""
        who, params = (" AND reviewer = ?", [reviewer]) if reviewer is not None else ("", [])
        row = self.e.one(f"SELECT COUNT(*), MAX(at) FROM votes WHERE batch = ?{who}", (batch, *params))
        return {"n": row[0], "at": row[1]}

    def activity(self, reviewer: str | None = None) -> list[tuple[str, int, float, int]]:
        """(reviewer, batch, at, items) of every batch of votes (reviewer's, when given)."""
        who, params = ("WHERE reviewer = ?", [reviewer]) if reviewer is not None else ("", [])
        return [(r[0], r[1], r[2], r[3]) for r in self.e.all(
            f"SELECT reviewer, batch, MIN(at), COUNT(*) FROM votes {who} GROUP BY reviewer, batch", params)]

    def conflicts(self, overlap: int, limit: int = 1000) -> list[int]:
        """Pending items that overlap or more reviewers decided, not all alike: oldest vote first."""
        return [r[0] for r in self.e.all(
            "SELECT v.item_id FROM votes v JOIN pool p ON p.id = v.item_id WHERE p.status = 'pending' "
            "GROUP BY v.item_id HAVING COUNT(*) >= ? AND (COUNT(DISTINCT v.class_id) > 1 OR "
            "(COUNT(v.class_id) > 0 AND COUNT(v.class_id) < COUNT(*))) ORDER BY MIN(v.at), v.item_id LIMIT ?",
            (int(overlap), int(limit)))]

    def count_conflicts(self, overlap: int) -> int:
        return self.e.one(
            "SELECT COUNT(*) FROM (SELECT v.item_id FROM votes v JOIN pool p ON p.id = v.item_id WHERE "
            "p.status = 'pending' GROUP BY v.item_id HAVING COUNT(*) >= ? AND (COUNT(DISTINCT v.class_id) > 1 "
            "OR (COUNT(v.class_id) > 0 AND COUNT(v.class_id) < COUNT(*)))) c", (int(overlap),))[0]

    def at_least(self, n: int) -> list[int]:
        """The items n or more people voted on."""
        return [r[0] for r in self.e.all("SELECT item_id FROM votes GROUP BY item_id HAVING COUNT(*) >= ?", (int(n),))]

    def closed_for(self, reviewer: str, overlap: int) -> set[int]:
        """The items reviewer voted on, and those overlap or more people did."""
        return {r[0] for r in self.e.all("SELECT item_id FROM votes GROUP BY item_id HAVING COUNT(*) >= ? OR "
                                         "SUM(CASE WHEN reviewer = ? THEN 1 ELSE 0 END) > 0",
                                         (int(overlap), reviewer))}

    def all(self) -> list[tuple[int, str, int | None]]:
        """Every vote: (item_id, reviewer, class_id)."""
        return [(r[0], r[1], r[2]) for r in self.e.all("SELECT item_id, reviewer, class_id FROM votes "
                                                        "ORDER BY item_id, reviewer")]
