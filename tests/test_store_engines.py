"""The store on both engines: many writers at once, a project on PostgreSQL from the CLI, the
whole loop there, and a store moved from SQLite to PostgreSQL and back with everything kept."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import assert_counts_fresh, make_store, stcore
from stcore import api, orders
from stcore.store import Store
from test_dashboard import app, grid_data, grid_send, no_errors  # noqa: F401 (app: a fixture)

WRITER = """
import sys
from stcore.store import Store
from stcore.store.postgres import PostgresEngine
where, who, first, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
url, _, schema = where.partition("#")
st = Store(PostgresEngine(url, schema) if schema else url)
for i in range(first, first + n):
    match i % 3:
        case 0: st.decisions.decide([i], "accepted", reviewer=who)
        case 1: st.decisions.decide([i], "corrected", (i + 1) % 10, reviewer=who)
        case 2: st.decisions.decide([i], "rejected", reviewer=who)
print("done")
"""


def where_of(store: Store) -> str:
    e = store.engine
    return str(e.path) if e.name == "sqlite" else f"{e.url}#{e.schema}"


def test_eight_processes_decide_200_items_each_and_every_decision_is_stored_once(new_engine):
    store = make_store(new_engine(), 1600)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, where_of(store), f"r{k}", str(200 * k), "200"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "done", err
    history = store.decisions.history(limit=10_000)
    assert len(history) == 1600 and len({h["item_id"] for h in history}) == 1600
    assert {h["reviewer"] for h in history} == {f"r{k}" for k in range(8)}
    assert all(h["reviewer"] == f"r{h['item_id'] // 200}" for h in history)
    assert store.items.status_counts() == {"pending": 0, "accepted": 534, "corrected": 533, "rejected": 533}
    rows = {r["id"]: r for r in store.queue.rows(list(range(1600)))}
    assert all(rows[i]["label"] == (i + 1) % 10 for i in range(1, 1600, 3))
    # each reviewer undoes only their own last action
    assert store.decisions.undo(reviewer="r3") == 1
    assert store.queue.rows([799])[0]["status"] == "pending"
    assert store.queue.rows([1599])[0]["status"] != "pending"


def test_undo_reverts_the_reviewers_own_last_action(store):
    store.decisions.decide([1, 2], "accepted", reviewer="ann")
    store.decisions.decide([3], "rejected", reviewer="bob")
    assert store.decisions.last_batch(reviewer="ann")["n"] == 2
    assert store.decisions.undo(reviewer="ann") == 2
    assert [r["status"] for r in store.queue.rows([1, 2, 3])] == ["pending", "pending", "rejected"]
    assert store.decisions.undo(reviewer="ann") == 0  # nothing of ann's left
    assert store.decisions.undo() == 1  # anyone's: bob's


def test_an_undo_leaves_what_another_reviewer_decided_since_and_loses_nothing(store):
    """ann accepts 1 and 2; bob then corrects 2. ann's undo reverts 1 only: bob's decision on 2
    stands, with its label. bob's undo afterwards takes 2 back to what it was before both."""
    store.decisions.decide([1, 2], "accepted", reviewer="ann")
    store.decisions.decide([2], "corrected", 4, reviewer="bob")
    assert store.decisions.undo(reviewer="ann") == 1
    assert [(r["status"], r["label"]) for r in store.queue.rows([1, 2])] == [("pending", None), ("corrected", 4)]
    assert {(i, c) for i, _, c, _ in store.items.human_labels()} >= {(2, 4)}
    assert 1 not in {i for i, *_ in store.items.human_labels()}
    assert store.decisions.undo(reviewer="bob") == 1
    assert [(r["status"], r["label"]) for r in store.queue.rows([1, 2])] == [("pending", None), ("pending", None)]
    assert 2 not in {i for i, *_ in store.items.human_labels()}
    assert store.decisions.undo() == 0


def test_the_kept_counts_equal_a_fresh_count_after_every_kind_of_write(new_engine):
    """Status, split and pseudo-label counts (read by `stcore status` without counting the pool)
    stay exact through decisions, bulk accepts, undo, pseudo-labels and a transaction rolled back."""
    from stcore.store import Store
    s = Store(new_engine(), create=True)
    ids = list(range(300))
    s.items.add("pool", ids, ids, [f"train[{i}]" for i in ids], [None] * 300, [i % 7 for i in ids])
    s.items.add("labeled", [1000, 1001], [300, 301], ["a", "b"], [0, 1])
    assert_counts_fresh(s)
    # pseudo-labels for part of the pool, agreeing with the hidden label on some
    s.items.write_predictions([(i % 5, (i % 10) / 9, 0.1, 0.5, None, "t1", i) for i in range(250)])
    assert_counts_fresh(s)
    assert s.items.split_counts()["pseudo_labeled"] == 250 and 0 < s.items.pseudo_label_agreement()[1] < 250
    s.decisions.decide([0, 1, 2], "accepted", reviewer="ann")
    s.decisions.decide([2, 3], "corrected", 4, reviewer="bob")
    s.decisions.decide([3, 4], "rejected", reviewer="ann")
    s.decisions.decide([4], "rejected", reviewer="ann")  # no change: nothing logged
    assert_counts_fresh(s)
    assert s.decisions.accept_above(0.5, reviewer="cy") > 50
    assert_counts_fresh(s)
    s.decisions.relabel([1000], 3, reviewer="cy")
    assert s.decisions.undo(reviewer="bob") == 1  # bob's correction of 2; item 3 was rejected by ann since
    assert_counts_fresh(s)
    while s.decisions.undo():
        assert_counts_fresh(s)
    with pytest.raises(Exception):
        with s.tx():
            s.decisions.decide([5, 6], "accepted", reviewer="ann")
            s.decisions.decide([10**6], "accepted")  # unknown: the whole transaction rolls back
    assert s.items.status_counts()["accepted"] == 0
    assert_counts_fresh(s)
    # a new teacher's pass changes the agreement; new pool items come in pending
    s.items.write_predictions([(i % 7, 0.95, 0.1, 0.5, None, "t2", i) for i in range(300)], reindex=True)
    s.items.add("pool", [500, 501], [500, 501], ["c", "d"], [None, None], [1, None])
    assert_counts_fresh(s)
    assert s.items.pseudo_label_agreement() == (300, 300, 300, 300)
    s.close()


def test_the_review_orders_agree_on_both_engines(tmp_path, pg_url):
    """The same store on SQLite and on PostgreSQL gives the same pages in every order (NULLs
    first, ties by id), and the same counts."""
    from stcore.store.location import copy_store
    from stcore.store.postgres import PostgresEngine
    a = make_store(tmp_path / "a.db", 500)
    a.decisions.decide(list(range(0, 500, 7)), "accepted")
    a.items.write_predictions([(None, None, None, None, None, None, i) for i in range(3, 500, 11)])
    b = Store(PostgresEngine(pg_url, "t_orders"), create=True)
    try:
        copy_store(a, b)
        for order in [*orders.ORDERS, *orders.ORDER_ALIASES]:
            for f in ({}, {"statuses": ["pending"]}, {"classes": [1, 4], "conf_min": 0.3}):
                pa = orders.page(a.queue, **f, order=order, offset=5, limit=40)
                pb = orders.page(b.queue, **f, order=order, offset=5, limit=40)
                assert [r["id"] for r in pa] == [r["id"] for r in pb], (order, f)
        assert a.items.status_counts() == b.items.status_counts()
        assert a.items.class_counts() == b.items.class_counts()
        assert_counts_fresh(b)  # the kept counts come over with the copy
    finally:
        b.engine.drop()
        b.close()


@pytest.mark.needs_fmnist
def test_the_whole_loop_runs_on_postgresql_from_the_cli(tmp_path, pg_url, monkeypatch):
    proj = tmp_path / "team"
    out = json.loads(stcore("init", str(proj), "--limit", "600", "--database", pg_url, "--json").stdout)
    assert out["labeled"] == 100 and not (proj / "project.db").exists() and (proj / "store.json").is_file()
    assert "@" in json.loads((proj / "store.json").read_text())["url"]
    stcore("train", str(proj), "--role", "teacher", "--steps", "6", "--eval-every", "3")
    stcore("pseudo-label", str(proj))
    first = [r["id"] for r in api.review_page(api.open_project(proj), statuses=["pending"], limit=2)]
    stcore("review", str(proj), "--accept", *map(str, first))
    stcore("train", str(proj), "--role", "student", "--steps", "6", "--eval-every", "3")
    status = json.loads(stcore("status", str(proj), "--json").stdout)
    assert status["counts"]["accepted"] == 2
    assert [r["state"] for r in status["runs"]] == ["finished"] * 3
    # and it moves back to a file, everything kept
    moved = json.loads(stcore("migrate", str(proj), "--to", "sqlite", "--json").stdout)
    assert moved["rows"]["history"] == 2 and (proj / "project.db").is_file() and not (proj / "store.json").exists()
    again = json.loads(stcore("status", str(proj), "--json").stdout)
    assert again["counts"] == status["counts"] and [r["id"] for r in again["runs"]] == [r["id"] for r in status["runs"]]


@pytest.mark.needs_fmnist
def test_a_project_moves_to_postgresql_and_back_with_everything_kept(trained_project, pg_url):
    p = trained_project
    pending = [r["id"] for r in api.review_page(p, statuses=["pending"], limit=6)]
    api.review(p, pending[:2], "accept", reviewer="ann")
    api.set_label(p, pending[2:3], 4, reviewer="bob")
    api.review(p, pending[3:4], "reject", reviewer="ann")
    before = snapshot(p)
    p.store.close()
    out = api.migrate_store(p.path, pg_url)
    assert out["rows"]["history"] == 4 and (p.path / "store.json").is_file()
    on_pg = api.open_project(p.path)
    assert on_pg.store.engine.name == "postgresql" and snapshot(on_pg) == before
    api.review(on_pg, pending[4:5], "accept", reviewer="cy")  # it works there, and history goes on
    assert on_pg.store.decisions.history(limit=1)[0]["seq"] == before["history"][0]["seq"] + 1
    on_pg.store.close()
    left = on_pg.store.engine  # the schema a move back leaves in the database
    try:
        api.migrate_store(p.path, "sqlite")
        back = api.open_project(p.path)
        assert back.store.engine.name == "sqlite"
        assert snapshot(back)["counts"]["accepted"] == before["counts"]["accepted"] + 1
        assert [h["reviewer"] for h in back.store.decisions.history()][:5] == ["cy", "ann", "bob", "ann", "ann"]
    finally:  # every copy of the test project shares its id, hence this schema's name: later tests make it again
        left.drop()


def test_migrate_refuses_a_wrong_target_and_changes_nothing(trained_project):
    with pytest.raises(Exception, match="--to must be sqlite or a postgresql://"):
        api.migrate_store(trained_project.path, "mysql://x")
    with pytest.raises(Exception, match="already on SQLite"):
        api.migrate_store(trained_project.path, "sqlite")
    assert api.open_project(trained_project.path).store.engine.name == "sqlite"


def snapshot(p) -> dict:
    s = p.store
    return {"meta": s.meta(), "counts": p.counts(), "history": s.decisions.history(limit=1000),
            "runs": [{k: v for k, v in r.items() if k != "pid"} for r in s.runs.list()],
            "metrics": {r["id"]: s.runs.metrics(r["id"]) for r in s.runs.list()},
            "pool": orders.page(s.queue, order="id", limit=100_000), "labeled": s.items.labeled_set(),
            "test": s.items.test_set(), "skipped": s.items.skipped()}


def test_a_bad_database_url_is_one_clear_error(tmp_path):
    r = stcore("init", str(tmp_path / "x"), "--limit", "600", "--database", "mysql://nope", check=False)
    assert r.returncode == 2 and "--database must be sqlite or a postgresql://" in r.stderr
    r = stcore("init", str(tmp_path / "y"), "--limit", "600", "--database",
               f"postgresql://nobody@/nodb?host={tmp_path}", check=False)
    assert r.returncode == 2 and "cannot reach the project's PostgreSQL database" in r.stderr
    assert not (tmp_path / "y" / "store.json").exists()


@pytest.mark.needs_fmnist
def test_the_dashboard_reviews_and_trains_a_project_on_postgresql(app, tmp_path, pg_url):
    """The Review grid decides, the sidebar counts, and the Train page starts a run, on a store on PostgreSQL."""
    p = api.create_project(tmp_path / "team", dataset="fashion-mnist", limit=600, download=False, database=pg_url)
    api.start_training(p, {"role": "teacher", "steps": 4, "eval_every": 2}, detach=False)
    api.start_pseudo_label(p, detach=False)
    at = app(p, "review")
    no_errors(at, "review")
    first = grid_data(at)["cards"][0]
    grid_send(at, {"kind": "decide", "ids": [first["id"]], "action": "accept", "label": None, "expect": first["pred"]})
    no_errors(at, "review")
    assert api.counts(p)["accepted"] == 1 and p.store.queue.rows([first["id"]])[0]["status"] == "accepted"
    at.switch_page("views/train.py").run()
    no_errors(at, "train")
    assert at.button(key="tr_start_teacher")
