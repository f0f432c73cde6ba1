"""Robustness of the project store: schema versions, files that are not projects, concurrent
writers and a review process killed in the middle of a bulk accept."""
from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from stcore import cli, store as store_mod
from stcore.project import Project
from stcore.errors import StoreError
from stcore.store import Store
from stcore import orders

CLASSES = [f"c{i}" for i in range(10)]


def synthetic_project(path: Path, n: int = 200, above: int | None = None) -> Path:
    """A project folder with a pseudo-labeled pool of n items and no images: enough for the
    store, review, status and export. The first `above` items have confidence 0.95."""
    above = n * 5 // 6 if above is None else above
    path.mkdir(parents=True)
    st = Store(path / "project.db", create=True)
    ids = list(range(n))
    st.items.add("labeled", [n, n + 1], [n, n + 1], ["train[a]", "train[b]"], [0, 1])
    st.items.add("pool", ids, ids, [f"train[{i}]" for i in ids], [None] * n)
    st.items.write_predictions((i % len(CLASSES), 0.95 if i < above else 0.2, 0.5, 0.1, None, "teacher-1", i)
                         for i in ids)
    st.classes.add(CLASSES)
    st.set_meta(project_id=uuid.uuid4().hex, dataset="fashion-mnist", data_root=None, seed=0,
                labels_per_class=None, labeled=2, input_shape=[1, 28, 28], flip=True,
                hidden_labels=False, created=time.time(), teacher=None)
    st.engine.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    st.close()
    return path


def one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ schema versions
def _set_version(db: Path, version: int) -> None:
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    con.commit()
    con.close()


def _version(db: Path) -> int:
    con = sqlite3.connect(db)
    v = int(con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    con.close()
    return v


def test_newer_schema_is_refused_clearly(tmp_path, capsys):
    proj = synthetic_project(tmp_path / "p")
    _set_version(proj / "project.db", store_mod.SCHEMA_VERSION + 1)
    before = snapshot(proj)
    assert cli.main(["status", str(proj)]) == 2
    msg = one_error_line(capsys.readouterr().err)
    assert "newer than this stcore understands" in msg and "upgrade stcore" in msg
    assert snapshot(proj) == before


def test_older_schema_is_migrated_on_open(tmp_path, monkeypatch):
    proj = synthetic_project(tmp_path / "p")
    v = store_mod.SCHEMA_VERSION
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", v + 2)
    monkeypatch.setattr(store_mod, "MIGRATIONS", {
        v: ("ALTER TABLE pool ADD COLUMN note TEXT",),
        v + 1: ("UPDATE pool SET note = 'migrated'", "CREATE INDEX pool_note ON pool (note)")})
    p = Project(proj)
    assert p.store.meta()["schema_version"] == v + 2
    assert p.store.engine.db.execute("SELECT COUNT(*) FROM pool WHERE note='migrated'").fetchone()[0] == 200
    assert p.counts()["pool"] == 200  # the data survived
    p.store.close()
    Store(proj / "project.db").close()  # opening again does not migrate again


SCHEMA4 = Path(__file__).parent / "data" / "schema4" / "project.db"


def _as_made_by(proj: Path, version: int) -> None:
    """proj: a project whose store is the saved schema-4 one (tests/data/schema4), made to look
    as made at an older schema version: what the later migrations add is taken away."""
    proj.mkdir(parents=True)
    shutil.copy(SCHEMA4, proj / "project.db")
    con = sqlite3.connect(proj / "project.db")
    if version < 4:
        con.execute("DROP TABLE selection")
    if version < 3:
        con.execute("ALTER TABLE runs DROP COLUMN earlier_seconds")
    if version < 2:
        con.execute("DROP INDEX pool_status_pred_margin")
    con.commit()
    con.close()
    _set_version(proj / "project.db", version)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_an_older_store_gains_the_index_the_earlier_running_time_and_the_selection(tmp_path, version):
    proj = tmp_path / "p"
    _as_made_by(proj, version)
    st = Store(proj / "project.db")
    st.runs.update("teacher-1", state="interrupted", started=100.0, heartbeat=130.0, ended=130.0)
    st.close()
    p = Project(proj)
    assert p.store.meta()["schema_version"] == store_mod.SCHEMA_VERSION == 10
    assert p.counts()["pool"] == 100 and p.counts()["accepted"] > 0  # counted by the migration to 6
    plan = " ".join(str(tuple(r)) for r in p.store.engine.db.execute(
        "EXPLAIN QUERY PLAN SELECT margin, id FROM pool WHERE status IN ('pending') AND pred = 3 "
        "ORDER BY margin, id LIMIT 50"))
    assert "pool_status_pred_margin" in plan, plan
    assert len(orders.page(p.store.queue, statuses=["pending"], order="balanced-margin", limit=30)) == 30
    # a run stored before the migration has no earlier attempts; resuming it counts this one
    assert p.store.runs.get("teacher-1")["earlier_seconds"] == 0
    p.store.runs.requeue("teacher-1", "cpu")
    assert p.store.runs.get("teacher-1")["earlier_seconds"] == 30.0
    assert p.store.queue.set_selection("map", [5, 3]) == 2 and p.store.queue.selection("map") == [5, 3]  # the map's table
    assert len(p.store.items.labels("pool")) == 12  # and the labels moved (test_store_migration checks them all)
    p.store.close()


def test_older_schema_without_a_migration_path_says_so(tmp_path, monkeypatch, capsys):
    proj = synthetic_project(tmp_path / "p")
    before = snapshot(proj)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", store_mod.SCHEMA_VERSION + 1)
    monkeypatch.setattr(store_mod, "MIGRATIONS", {})
    assert cli.main(["status", str(proj)]) == 2
    msg = one_error_line(capsys.readouterr().err)
    assert "cannot migrate" in msg and "re-create the project" in msg
    assert snapshot(proj) == before


def test_failed_migration_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    proj = synthetic_project(tmp_path / "p")
    v = store_mod.SCHEMA_VERSION
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", v + 2)
    monkeypatch.setattr(store_mod, "MIGRATIONS", {v: ("ALTER TABLE pool ADD COLUMN note TEXT",),
                                                  v + 1: ("UPDATE no_such_table SET x=1",)})
    with pytest.raises(StoreError, match="failed.*the project is unchanged"):
        Store(proj / "project.db")
    assert _version(proj / "project.db") == v
    con = sqlite3.connect(proj / "project.db")
    assert "note" not in [r[1] for r in con.execute("PRAGMA table_info(pool)")]
    con.close()


def test_two_processes_opening_an_old_store_migrate_it_once(tmp_path, monkeypatch):
    proj = synthetic_project(tmp_path / "p")
    v = store_mod.SCHEMA_VERSION
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", v + 1)
    # Not idempotent on purpose: a second run of it fails with "duplicate column".
    monkeypatch.setattr(store_mod, "MIGRATIONS", {v: ("ALTER TABLE pool ADD COLUMN note TEXT",)})
    go, errors = threading.Barrier(6), []

    def opener():
        go.wait()
        try:
            Store(proj / "project.db").close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)
    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _version(proj / "project.db") == v + 1


# ------------------------------------------------------------------ not a project
def _not_projects(tmp_path: Path) -> dict[str, Path]:
    cases = {}
    d = tmp_path / "empty-folder"
    d.mkdir()
    cases["folder without project.db"] = d
    d = tmp_path / "zero-byte-db"
    d.mkdir()
    (d / "project.db").write_bytes(b"")
    cases["zero-byte project.db"] = d
    d = tmp_path / "text-db"
    d.mkdir()
    (d / "project.db").write_text("not sqlite at all\n" * 200)
    cases["text project.db"] = d
    d = tmp_path / "other-sqlite"
    d.mkdir()
    con = sqlite3.connect(d / "project.db")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    cases["another app's sqlite"] = d
    f = tmp_path / "a-file"
    f.write_text("x")
    cases["a file"] = f
    return cases


@pytest.mark.parametrize("case", ["folder without project.db", "zero-byte project.db", "text project.db",
                                  "another app's sqlite", "a file"])
@pytest.mark.parametrize("command", [["status"], ["review", "--accept", "1"], ["export", "--labels", "x.csv"]])
def test_a_path_that_is_not_a_project_is_one_line_and_untouched(tmp_path, capsys, case, command):
    path = _not_projects(tmp_path)[case]
    before = snapshot(tmp_path)
    assert cli.main([command[0], str(path), *command[1:]]) == 2
    msg = one_error_line(capsys.readouterr().err)
    assert str(path) in msg or "project" in msg
    assert snapshot(tmp_path) == before  # no -wal/-shm, no rewrite


def test_init_into_an_existing_non_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "keep.txt").write_text("mine")
    assert cli.main(["init", str(tmp_path / "p"), "--limit", "100"]) == 2
    assert "not empty" in one_error_line(capsys.readouterr().err)
    assert [f.name for f in (tmp_path / "p").iterdir()] == ["keep.txt"]


# ------------------------------------------------------------------ concurrent writers
WRITER = r"""
import sys, random
from stcore.store import Store
db, who, ids = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")]
st = Store(db, timeout=60)
rng = random.Random(who)
for i in ids:
    match rng.randrange(3):
        case 0: st.decisions.decide([i], "accepted", reviewer=who)
        case 1: st.decisions.decide([i], "corrected", 3, reviewer=who)
        case 2: st.decisions.decide([i], "rejected", reviewer=who)
print("done")
"""


def test_two_processes_deciding_at_once_lose_no_decision(tmp_path):
    """Two reviewers (a dashboard and the CLI, say) decide one item at a time, on the same
    items, while a third bulk-accepts: every decision is in the history, none is lost."""
    proj = synthetic_project(tmp_path / "p", n=600, above=600)
    db = proj / "project.db"
    shared = list(range(0, 300))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), who, ",".join(map(str, shared))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("alice", "bob")]
    bulk = Store(db)
    n_bulk = bulk.decisions.accept_above(0.5, classes=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], conf_max=None, reviewer="carol")
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "done", err
    st = Store(db)
    # Each writer's decisions are all in the history (a no-op decision writes no row, so count
    # per item: the last history row of each item matches its current state).
    rows = st.engine.db.execute("SELECT item_id, new_status, new_label, reviewer FROM history ORDER BY seq").fetchall()
    by_reviewer = {}
    for r in rows:
        by_reviewer.setdefault(r["reviewer"], set()).add(r["item_id"])
    assert n_bulk > 0 and len(by_reviewer["carol"]) == n_bulk
    last = {}
    for r in rows:
        last[r["item_id"]] = (r["new_status"], r["new_label"])
    for r in st.engine.db.execute("SELECT p.id, p.status, l.class_id AS label FROM pool p LEFT JOIN labels l ON l.split='pool' AND l.item_id=p.id"):
        if r["id"] in last:
            assert last[r["id"]] == (r["status"], r["label"])
    assert st.engine.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Items outside the shared range were decided only by the bulk accept (or not at all).
    assert st.queue.count(statuses=["pending"]) == 0


def test_threads_on_one_store_object_and_separate_connections(tmp_path):
    """The dashboard's threads share a Store; the CLI has its own. 4 x 100 single decisions."""
    proj = synthetic_project(tmp_path / "p", n=400, above=400)
    shared = Store(proj / "project.db")
    lock = threading.Lock()  # one sqlite3 connection must not run two transactions at once
    errors = []

    def work(k):
        own = Store(proj / "project.db") if k % 2 else None
        for i in range(k * 100, (k + 1) * 100):
            try:
                if own:
                    own.decisions.decide([i], "accepted", reviewer=f"t{k}")
                else:
                    with lock:
                        shared.decisions.decide([i], "rejected", reviewer=f"t{k}")
            except Exception as e:  # noqa: BLE001 - asserted below
                errors.append(e)
    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert shared.items.status_counts() == {"pending": 0, "accepted": 200, "corrected": 0, "rejected": 200}
    assert shared.engine.db.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 400


# ------------------------------------------------------------------ kill -9 during a bulk accept
# The transaction `stcore review --accept-above` runs (cmd_review -> api.accept_above ->
# Store.accept_above), in a process that starts in a blink because it does not import torch.
BULK = r"""
import sys
from stcore.store import Store
st = Store(sys.argv[1])
with st.tx():
    st.decisions.accept_above(0.9, reviewer="bulk")
"""


def test_kill_9_during_bulk_accept_of_50000_records_all_or_none(tmp_path):
    """A bulk accept of 50,000 of 60,000 items, killed at moments from the start of its write
    to after its commit: every time, all or none are accepted, and the store is intact.
    The first attempt is the real `stcore review --accept-above` command."""
    pristine = synthetic_project(tmp_path / "pristine", n=60_000, above=50_000)
    outcomes = []
    attempts = [("cli", 0.0)] + [("store", d) for d in (0.0, 0.002, 0.005, 0.02, 0.05, 0.1, 0.3, 1.0)] \
        + [("store", None)]
    for attempt, (how, delay) in enumerate(attempts):
        proj = tmp_path / f"p{attempt}"
        shutil.copytree(pristine, proj)
        db, wal = proj / "project.db", proj / "project.db-wal"
        cmd = [sys.executable, "-m", "stcore", "review", str(proj), "--accept-above", "0.9"] if how == "cli" \
            else [sys.executable, "-c", BULK, str(db)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = False
        if delay is not None:
            # The write has begun once the WAL grows past the little written on open.
            deadline = time.time() + 120
            while proc.poll() is None and time.time() < deadline:
                if wal.exists() and wal.stat().st_size > 64 * 1024:
                    break
                time.sleep(0.0005)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed = True
        proc.wait(timeout=120)
        st = Store(db)
        assert st.engine.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        accepted = st.queue.count(statuses=["accepted"])
        history = st.engine.db.execute("SELECT COUNT(*) FROM history").fetchone()[0]
        assert (accepted, history) in ((0, 0), (50_000, 50_000)), (attempt, accepted, history)
        assert st.queue.count(statuses=["pending"]) == 60_000 - accepted
        outcomes.append((how, killed, accepted))
        st.close()
        shutil.rmtree(proj)
    # The last one was not killed and accepted everything; kills landed before the commit.
    assert outcomes[-1] == ("store", False, 50_000)
    assert ("cli", True, 0) in outcomes, outcomes
    assert any(killed and accepted == 0 for how, killed, accepted in outcomes[1:]), outcomes
