"""A project saved by an earlier stcore (schema 4: classes in meta, labels in items.label and
pool.label) opens on both engines, migrates once, and keeps every label, decision, history row,
run and metric. tests/data/schema4 holds it: 120 Fashion-MNIST items, decisions by ann, bob, cy
and a simulated reviewer (one batch of bob's undone), two items of the labeled set relabeled."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import assert_counts_fresh
from stcore import api
from stcore.project import Project
from stcore.store import SCHEMA_VERSION, Store
from stcore.store.schema import POOL_FILLFACTOR, schema
from stcore.store.location import POINTER
from stcore.store.postgres import PostgresEngine

SAVED = Path(__file__).parent / "data" / "schema4"
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# pool item -> (status, class id, reviewer) as the schema-4 store held them
DECIDED = {0: ("accepted", 0, "ann"), 1: ("accepted", 1, "ann"), 2: ("accepted", 2, "ann"), 5: ("accepted", 3, "ann"),
           6: ("accepted", 4, "ann"), 7: ("corrected", 8, "bob"), 8: ("corrected", 8, "bob"),
           9: ("corrected", 8, "bob"), 10: ("rejected", None, "cy"), 12: ("rejected", None, "cy"),
           16: ("corrected", 3, "ann"), 17: ("corrected", 3, "ann"), 18: ("accepted", 4, "simulated"),
           19: ("accepted", 5, "simulated")}
LABELED = {3: 7, 4: 7, 11: 9, 15: 9, 22: 4, 23: 8, 28: 4, 31: 3, 37: 2, 53: 2, 63: 5, 64: 0, 74: 1, 82: 5, 95: 6,
           100: 8, 108: 7, 113: 6, 115: 1, 119: 7}  # 3 and 4 relabeled Sneaker (7) by cy


def _sqlite(tmp_path: Path) -> Path:
    proj = tmp_path / "p"
    proj.mkdir()
    shutil.copy(SAVED / "project.db", proj / "project.db")
    return proj


def _postgres(tmp_path: Path, url: str) -> Path:
    """The saved project as schema-4 stcore put it on PostgreSQL: its DDL, then every row."""
    proj = tmp_path / "p"
    proj.mkdir()
    schema = "stcore_saved4_" + tmp_path.name[-12:].lower().replace("-", "_")
    pg = PostgresEngine(url, schema)
    src = sqlite3.connect(SAVED / "project.db")
    with pg.tx():
        pg.script((SAVED / "postgres.sql").read_text())
        for table in ("meta", "items", "pool", "history", "runs", "metrics", "skipped", "selection"):
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            rows = src.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            if rows:
                pg.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
    pg.close()
    src.close()
    (proj / POINTER).write_text(json.dumps({"engine": "postgresql", "url": url, "schema": schema}))
    return proj


@pytest.fixture(params=["sqlite", "postgresql"])
def saved(request, tmp_path):
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    return _postgres(tmp_path, request.getfixturevalue("pg_url"))


def test_a_schema_4_project_keeps_every_label_decision_history_row_and_run(saved):
    p = Project(saved)
    assert p.store.meta()["schema_version"] == SCHEMA_VERSION
    assert p.classes == FASHION and "classes" not in p.store.meta()
    # the labeled set and the test set: every label, the relabeled two given by cy
    labeled = {r["item_id"]: r for r in api.labels(p, "labeled")}
    assert {i: r["class_id"] for i, r in labeled.items()} == LABELED
    assert {i for i, r in labeled.items() if r["source"] == "reviewed"} == {3, 4}
    assert labeled[3]["reviewer"] == "cy" and labeled[3]["batch"] == 6 and labeled[11]["source"] == "initial"
    assert len(api.labels(p, "test")) == 24
    # the pool: each decision kept, its label with the reviewer and source
    rows = {r["id"]: r for r in api.items(p, list(range(120))) if r["split"] == "pool"}
    for item, (status, cls, who) in DECIDED.items():
        assert (rows[item]["status"], rows[item]["label"], rows[item]["reviewer"]) == (status, cls, who), item
    pool = {r["item_id"]: r for r in api.labels(p, "pool")}
    assert set(pool) == {i for i, d in DECIDED.items() if d[1] is not None}
    assert {i for i, r in pool.items() if r["source"] == "simulated"} == {18, 19}
    assert pool[7]["batch"] == 2 and pool[7]["class"] == "Bag"
    assert sum(r["status"] == "pending" for r in rows.values()) == 100 - len(DECIDED)
    assert p.counts()["pending"] == 100 - len(DECIDED) and p.counts()["pool"] == 100
    assert_counts_fresh(p.store)  # the counts the migration counted
    # history: all 18 rows, bob's undone batch still marked
    hist = api.history(p, limit=100)
    assert len(hist) == 18 and {h["item_id"] for h in hist if h["undone"]} == {13, 14}
    # runs and metrics
    run = api.run(p, "teacher-1")
    assert run["state"] == "finished" and run["class_ids"] == list(range(10))
    assert [m["loss"] for m in p.store.runs.metrics("teacher-1", "train")] == [1.0]
    # and the migrated store works: undo per reviewer reverts ann's newest batch only
    assert api.undo(p, reviewer="ann") == 2
    assert {r["id"]: r["status"] for r in api.items(p, [16, 17, 7])} == {16: "pending", 17: "pending", 7: "corrected"}
    assert 16 not in {r["item_id"] for r in api.labels(p, "pool")}
    p.store.close()
    again = Project(saved)  # opening again does not migrate again
    assert len(api.labels(again, "pool")) == len(pool) - 2
    again.store.close()


def test_a_migrated_store_has_the_indexes_of_a_new_one(saved, tmp_path):
    migrated = Project(saved).store.engine
    fresh = Store(tmp_path / "fresh.db", create=True).engine
    if migrated.name == "postgresql":
        fresh = PostgresEngine(migrated.url, "stcore_fresh_" + tmp_path.name[-12:].lower().replace("-", "_"))
        with fresh.tx():
            fresh.script(schema("postgresql"))
    def definitions(engine, table):  # each index as made, without the schema's name
        return sorted(" ".join(sql.replace(f"{getattr(engine, 'schema', '')}.", "").split()).replace(
            "IF NOT EXISTS ", "") for sql in engine.indexes(table).values())
    for table in ("pool", "labels", "history"):
        assert definitions(migrated, table) == definitions(fresh, table), table
    if migrated.name == "postgresql":
        # a decision rewrites its pool row in place (a heap-only update): no index may name
        # what a decision changes, and the pages keep room for the new row versions
        for name, sql in migrated.indexes("pool").items():
            assert not any(c in sql for c in ("status", "reviewer", "decided_at")), sql
        options = migrated.one("SELECT reloptions FROM pg_class WHERE oid = 'pool'::regclass")[0]
        assert f"fillfactor={POOL_FILLFACTOR}" in options
        fresh.drop()


def test_a_failed_migration_leaves_the_schema_4_store_as_it_was(tmp_path, monkeypatch):
    from stcore import store as store_mod
    proj = _sqlite(tmp_path)
    before = (proj / "project.db").read_bytes()

    def broken(engine):
        engine.execute("ALTER TABLE items DROP COLUMN label")
        raise_on = engine.execute("SELECT no_such_column FROM pool")  # fails after a change was made
        return raise_on
    steps = dict(store_mod.MIGRATIONS)
    steps[4] = (*steps[4], broken)
    monkeypatch.setattr(store_mod, "MIGRATIONS", steps)
    with pytest.raises(Exception, match="schema version 4 failed.*unchanged"):
        Project(proj)
    con = sqlite3.connect(proj / "project.db")
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "4"
    assert con.execute("SELECT COUNT(*) FROM pool WHERE label IS NOT NULL").fetchone()[0] == 12
    assert "classes" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert before  # the file was read before the attempt
