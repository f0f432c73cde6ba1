"""Who holds which pending item for now (issue: no two people on the same image): a lease is
one row per item with its reviewer and the time it ends. Taking is atomic per item on both
engines (an insert that overwrites only a lease of the same reviewer or one that has ended),
so two reviewers asking at once never both get an item."""
from __future__ import annotations

import time
from typing import Sequence

from .engine import Engine
from .items import chunks


class Leases:
    def __init__(self, engine: Engine):
        self.e = engine

    def take(self, ids: Sequence[int], reviewer: str, seconds: float) -> list[int]:
        """Lease ids to reviewer until now + seconds (renewing the ones they hold); the ids they
        hold now, in the order given: an item another reviewer holds is left out."""
        now = time.time()
        with self.e.tx():
            self.e.executemany(
                "INSERT INTO leases (item_id, reviewer, until) VALUES (?, ?, ?) ON CONFLICT (item_id) DO UPDATE "
                "SET reviewer = excluded.reviewer, until = excluded.until "
                "WHERE leases.reviewer = excluded.reviewer OR leases.until <= ?",
                [(int(i), reviewer, now + seconds, now) for i in ids])
            mine: set[int] = set()
            for part in chunks([int(i) for i in ids]):
                mine.update(r[0] for r in self.e.all(
                    f"SELECT item_id FROM leases WHERE reviewer = ? AND item_id IN ({','.join('?' * len(part))})",
                    (reviewer, *part)))
        return [int(i) for i in ids if int(i) in mine]

    def release(self, reviewer: str, *, keep: Sequence[int] = ()) -> int:
        """End reviewer's leases, but those of keep (the page they look at now)."""
        keep = [int(i) for i in keep]
        with self.e.tx():
            if not keep:
                return self.e.execute("DELETE FROM leases WHERE reviewer = ?", (reviewer,)).rowcount
            return self.e.execute(f"DELETE FROM leases WHERE reviewer = ? AND item_id NOT IN "
                                  f"({','.join('?' * len(keep))})", (reviewer, *keep)).rowcount

    def drop(self, ids: Sequence[int], reviewer: str) -> None:
        """End reviewer's leases of ids."""
        with self.e.tx():
            for part in chunks([int(i) for i in ids]):
                self.e.execute(f"DELETE FROM leases WHERE reviewer = ? AND item_id IN ({','.join('?' * len(part))})",
                               (reviewer, *part))

    def held_by_others(self, reviewer: str | None) -> set[int]:
        """The items someone other than reviewer holds now."""
        return {r[0] for r in self.e.all("SELECT item_id FROM leases WHERE reviewer <> ? AND until > ?",
                                         (reviewer or "", time.time()))}

    def holders(self, ids: Sequence[int]) -> dict[int, str]:
        """The reviewer holding each of ids now, where someone does."""
        out: dict[int, str] = {}
        for part in chunks([int(i) for i in ids]):
            out.update(self.e.all(f"SELECT item_id, reviewer FROM leases WHERE until > ? AND item_id IN "
                                  f"({','.join('?' * len(part))})", (time.time(), *part)))
        return out
