import sqlite3
import threading

import pytest

from conftest import make_store
from stcore.errors import DeviceBusy, StoreError
from stcore.store import SCHEMA_VERSION, Store


def test_reopen_keeps_everything(tmp_path):
    s = make_store(tmp_path / "project.db", 50)
    s.decide([1, 2], "accepted", reviewer="ann")
    s.decide([3], "corrected", 7, reviewer="ann")
    s.close()
    s2 = Store(tmp_path / "project.db")
    assert s2.status_counts() == {"pending": 47, "accepted": 2, "corrected": 1, "rejected": 0}
    row = s2.page(statuses=["corrected"])[0]
    assert (row["id"], row["label"], row["reviewer"]) == (3, 7, "ann")
    assert s2.meta()["schema_version"] == SCHEMA_VERSION


def test_accept_takes_the_prediction_and_correct_the_class(store):
    store.decide([5], "accepted")
    store.decide([6], "corrected", 2)
    rows = {r["id"]: r for r in store.page(statuses=["accepted", "corrected"], order="id")}
    assert rows[5]["label"] == 5 % 10 and rows[5]["status"] == "accepted"
    assert rows[6]["label"] == 2 and rows[6]["status"] == "corrected"


def test_history_and_undo(store):
    store.decide([1], "accepted", reviewer="a")
    store.decide([1], "corrected", 4, reviewer="b")
    store.decide([2, 3, 4], "rejected", reviewer="b")
    hist = store.history(1)
    assert [(h["old_status"], h["new_status"]) for h in hist] == [("accepted", "corrected"), ("pending", "accepted")]
    assert store.undo() == 3  # the bulk reject, as one action
    assert store.status_counts()["rejected"] == 0
    assert store.undo() == 1  # the correction: back to accepted
    row = store.page(statuses=["accepted"])[0]
    assert (row["id"], row["label"]) == (1, 1)
    assert store.undo() == 1
    assert store.undo() == 0
    assert store.status_counts()["pending"] == 1000


def test_same_decision_twice_is_not_a_change(store):
    assert store.decide([1], "accepted") == 1
    assert store.decide([1], "accepted") == 0
    assert len(store.history(1)) == 1


def test_bulk_with_an_unknown_id_changes_nothing(store):
    with pytest.raises(KeyError, match="99999"):
        store.decide([1, 2, 99999], "accepted")
    assert store.status_counts()["accepted"] == 0
    assert store.history() == []


def test_accept_above_is_one_transaction_with_filters(store):
    expected = store.count(statuses=["pending"], conf_min=0.8, classes=[3])
    assert expected > 0
    n = store.accept_above(0.8, classes=[3])
    assert n == expected
    assert store.count(statuses=["accepted"]) == n
    assert all(r["pred"] == 3 and r["confidence"] >= 0.8 for r in store.page(statuses=["accepted"], limit=1000))
    assert store.undo() == n
    assert store.count(statuses=["accepted"]) == 0


def test_failed_bulk_rolls_back(store, monkeypatch):
    """An error half-way through a bulk decision leaves no trace (all or nothing)."""
    real = store._apply

    def boom(*a, **k):
        real(*a, **k)
        raise RuntimeError("crash after the update")
    monkeypatch.setattr(store, "_apply", boom)
    with pytest.raises(RuntimeError):
        store.accept_above(0.5)
    assert store.count(statuses=["accepted"]) == 0
    assert store.history() == []


@pytest.mark.parametrize("order,key,reverse", [("confidence", "confidence", False),
                                                ("confidence-desc", "confidence", True),
                                                ("margin", "margin", False), ("entropy", "entropy", True)])
def test_page_orders_and_filters(store, order, key, reverse):
    rows = store.page(classes=[1, 2], statuses=["pending"], conf_min=0.2, conf_max=0.9, order=order, limit=40)
    assert len(rows) == 40
    assert all(r["pred"] in (1, 2) and 0.2 <= r["confidence"] <= 0.9 for r in rows)
    vals = [r[key] for r in rows]
    assert vals == sorted(vals, reverse=reverse)
    nxt = store.page(classes=[1, 2], statuses=["pending"], conf_min=0.2, conf_max=0.9, order=order,
                     offset=40, limit=40)
    assert not {r["id"] for r in rows} & {r["id"] for r in nxt}


def test_random_order_is_stable_and_not_id_order(store):
    a = [r["id"] for r in store.page(order="random", limit=30)]
    assert a == [r["id"] for r in store.page(order="random", limit=30)]
    assert a != sorted(a)


def test_unknown_order_and_status_are_errors(store):
    with pytest.raises(ValueError, match="unknown order"):
        store.page(order="bogus")
    with pytest.raises(ValueError, match="unknown status"):
        store.count(statuses=["maybe"])


def test_busy_device_is_refused_with_the_run_named(store):
    r1 = store.create_run("teacher", "cpu", {}, 10)
    with pytest.raises(DeviceBusy, match=r1):
        store.create_run("student", "cpu", {}, 10)
    store.update_run(r1, state="finished")
    assert store.create_run("student", "cpu", {}, 10) == "student-2"


def test_not_a_store(tmp_path):
    p = tmp_path / "x.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a stcore project store"):
        Store(p)


def test_concurrent_writer_and_readers_lose_nothing(tmp_path):
    """A worker writing metrics, readers polling and a reviewer bulk-deciding, all at once."""
    path = tmp_path / "project.db"
    s = make_store(path, 20000)
    run = s.create_run("student", "cpu", {}, 300)
    s.close()
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker():
        st = Store(path)
        try:
            for step in range(1, 301):
                st.heartbeat(run, step, [("train", step, {"loss": 1.0 / step})])
        except BaseException as e:
            errors.append(e)
        finally:
            st.close()

    def reader():
        st = Store(path)
        try:
            while not stop.is_set():
                st.page(statuses=["pending"], order="confidence", limit=100)
                st.status_counts()
                st.metrics(run)
        except BaseException as e:
            errors.append(e)
        finally:
            st.close()

    def reviewer():
        st = Store(path)
        try:
            for k in range(20):
                st.decide(list(range(k * 500, k * 500 + 500)), "accepted")
        except BaseException as e:
            errors.append(e)
        finally:
            st.close()

    threads = [threading.Thread(target=f) for f in (worker, reviewer, reader, reader)]
    for t in threads:
        t.start()
    threads[0].join()
    threads[1].join()
    stop.set()
    for t in threads[2:]:
        t.join()
    assert not errors, errors
    s = Store(path)
    assert [m["step"] for m in s.metrics(run)] == list(range(1, 301))
    assert s.status_counts()["accepted"] == 10000
    assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_one_store_shared_by_threads_keeps_their_transactions_apart(store):
    """The dashboard shares one Store between sessions (threads): a failing bulk action in one
    thread must not take another thread's decision down with it."""
    started, release = threading.Event(), threading.Event()
    errors = []

    def slow_failing_bulk():
        try:
            with store.tx():
                store.decide([1, 2, 3], "rejected")
                started.set()
                release.wait(5)
                raise RuntimeError("the bulk action fails")
        except RuntimeError:
            pass
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=slow_failing_bulk)
    t.start()
    started.wait(5)
    done = threading.Event()

    def other_session():
        store.decide([500], "accepted")  # waits for the write lock, then commits on its own
        done.set()
    t2 = threading.Thread(target=other_session)
    t2.start()
    release.set()
    t.join()
    t2.join()
    assert not errors and done.is_set()
    assert store.status_counts()["rejected"] == 0
    assert store.page(statuses=["accepted"])[0]["id"] == 500


def test_write_predictions_with_reindex_keeps_indexes_and_values(store):
    def indexes():
        return sorted(r[0] for r in store.db.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='pool' AND sql IS NOT NULL"))
    before = indexes()
    assert len(before) >= 6
    store.write_predictions([(9, 0.99, 0.9, 0.01, None, "teacher-2", i) for i in range(100)], reindex=True)
    assert indexes() == before
    rows = store.page(classes=[9], conf_min=0.98, order="confidence-desc", limit=200)
    assert {r["id"] for r in rows if r["teacher_run"] == "teacher-2"} == set(range(100))
    plan = " ".join(r[3] for r in store.db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM pool WHERE status='pending' AND pred=9 ORDER BY confidence LIMIT 10"))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan


def test_class_counts_put_each_decision_under_its_decided_class(store):
    """The Project page's class chart: accepted items under their predicted class, corrected
    ones under the class the person gave (not the teacher's)."""
    rows = store.page(statuses=["pending"], limit=3)
    a, c = rows[0], rows[1]
    store.decide([a["id"]], "accepted")
    store.decide([c["id"]], "corrected", (c["pred"] + 1) % 10)
    counts = store.class_counts()
    assert counts["accepted"] == {a["pred"]: 1}
    assert counts["corrected"] == {(c["pred"] + 1) % 10: 1}
    assert sum(counts["pseudo"].values()) == 1000
