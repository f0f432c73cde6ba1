"""Counts an overview shows (items per split and per review status, pseudo-labeled items, and
the pseudo-labels' agreement with hidden labels), kept in the counts table by the methods that
change them, in the same transaction: `stcore status` reads a few rows instead of counting a
million (0.6 s on PostgreSQL at a million items).

Writes are serialised per project (engine.py), and each change is made inside the writer's
transaction, so the counts are exact whenever a transaction commits. recount() counts again
from the tables: for the migration that adds the table, and after rows were written around the
store's methods (a benchmark's bulk fill).
"""
from __future__ import annotations

from ..actions import STATUSES
from .engine import Engine

# pseudo_label_agreement's threshold whose answer is kept (the one every caller uses)
AGREEMENT_THRESHOLD = 0.9
AGREEMENT = ("agreement:items", "agreement:right", "agreement:confident", "agreement:confident_right")


def read(engine: Engine) -> dict[str, int]:
    """Every kept count, by key (a count never kept is 0)."""
    return {r[0]: int(r[1]) for r in engine.all("SELECT key, n FROM counts")}


def add(engine: Engine, deltas: dict[str, int]) -> None:
    """Add deltas to the counts, inside the caller's transaction."""
    rows = [(k, int(d)) for k, d in deltas.items() if d]
    if rows:
        engine.executemany("INSERT INTO counts (key, n) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                           "n = counts.n + excluded.n", rows)


def put(engine: Engine, values: dict[str, int]) -> None:
    """Set counts to values, inside the caller's transaction."""
    engine.executemany("INSERT INTO counts (key, n) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET n = excluded.n",
                       [(k, int(v)) for k, v in values.items()])


def agreement_query(engine: Engine, threshold: float) -> tuple[int, int, int, int]:
    """pseudo_label_agreement counted from the tables: a join over the whole pool."""
    r = engine.one(
        "SELECT COUNT(*), SUM(CASE WHEN p.pred = i.hidden_label THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN p.confidence >= ? THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN p.confidence >= ? AND p.pred = i.hidden_label THEN 1 ELSE 0 END) FROM pool p "
        "JOIN items i ON i.split='pool' AND i.id=p.id WHERE p.pred IS NOT NULL AND i.hidden_label IS NOT NULL",
        (threshold, threshold))
    return int(r[0]), int(r[1] or 0), int(r[2] or 0), int(r[3] or 0)


def recount_predictions(engine: Engine) -> None:
    """Count again what the pool's pseudo-labels decide, inside the caller's transaction."""
    pseudo = engine.one("SELECT COUNT(*) FROM pool WHERE pred IS NOT NULL")[0]
    put(engine, {"pseudo_labeled": pseudo, **dict(zip(AGREEMENT, agreement_query(engine, AGREEMENT_THRESHOLD)))})


def recount(engine: Engine) -> None:
    """Count everything again from the tables, inside the caller's transaction."""
    values = {f"split:{s}": 0 for s in ("labeled", "pool", "test")} | {f"status:{s}": 0 for s in STATUSES}
    values.update({f"split:{r[0]}": r[1] for r in engine.all("SELECT split, COUNT(*) FROM items GROUP BY split")})
    values.update({f"status:{r[0]}": r[1] for r in engine.all("SELECT status, COUNT(*) FROM pool GROUP BY status")})
    engine.execute("DELETE FROM counts")
    put(engine, values)
    recount_predictions(engine)
