import threading

import pytest

from conftest import make_store
from stcore.errors import DeviceBusy, StoreError, UsageError
from stcore.store import SCHEMA_VERSION, Store
from stcore import orders


def test_reopen_keeps_everything(tmp_path):
    s = make_store(tmp_path / "project.db", 50)
    s.decisions.decide([1, 2], "accepted", reviewer="ann")
    s.decisions.decide([3], "corrected", 7, reviewer="ann")
    s.close()
    s2 = Store(tmp_path / "project.db")
    assert s2.items.status_counts() == {"pending": 47, "accepted": 2, "corrected": 1, "rejected": 0}
    row = orders.page(s2.queue, statuses=["corrected"])[0]
    assert (row["id"], row["label"], row["reviewer"]) == (3, 7, "ann")
    assert s2.meta()["schema_version"] == SCHEMA_VERSION


def test_accept_takes_the_prediction_and_correct_the_class(store):
    store.decisions.decide([5], "accepted")
    store.decisions.decide([6], "corrected", 2)
    rows = {r["id"]: r for r in orders.page(store.queue, statuses=["accepted", "corrected"], order="id")}
    assert rows[5]["label"] == 5 % 10 and rows[5]["status"] == "accepted"
    assert rows[6]["label"] == 2 and rows[6]["status"] == "corrected"


def test_history_and_undo(store):
    store.decisions.decide([1], "accepted", reviewer="a")
    store.decisions.decide([1], "corrected", 4, reviewer="b")
    store.decisions.decide([2, 3, 4], "rejected", reviewer="b")
    hist = store.decisions.history(1)
    assert [(h["old_status"], h["new_status"]) for h in hist] == [("accepted", "corrected"), ("pending", "accepted")]
    assert store.decisions.undo() == 3  # the bulk reject, as one action
    assert store.items.status_counts()["rejected"] == 0
    assert store.decisions.undo() == 1  # the correction: back to accepted
    row = orders.page(store.queue, statuses=["accepted"])[0]
    assert (row["id"], row["label"]) == (1, 1)
    assert store.decisions.undo() == 1
    assert store.decisions.undo() == 0
    assert store.items.status_counts()["pending"] == 1000


def test_same_decision_twice_is_not_a_change(store):
    assert store.decisions.decide([1], "accepted") == 1
    assert store.decisions.decide([1], "accepted") == 0
    assert len(store.decisions.history(1)) == 1


def test_bulk_with_an_unknown_id_changes_nothing(store):
    with pytest.raises(KeyError, match="99999"):
        store.decisions.decide([1, 2, 99999], "accepted")
    assert store.items.status_counts()["accepted"] == 0
    assert store.decisions.history() == []


def test_accept_above_is_one_transaction_with_filters(store):
    expected = store.queue.count(statuses=["pending"], conf_min=0.8, classes=[3])
    assert expected > 0
    n = store.decisions.accept_above(0.8, classes=[3])
    assert n == expected
    assert store.queue.count(statuses=["accepted"]) == n
    assert all(r["pred"] == 3 and r["confidence"] >= 0.8 for r in orders.page(store.queue, statuses=["accepted"], limit=1000))
    assert store.decisions.undo() == n
    assert store.queue.count(statuses=["accepted"]) == 0


def test_failed_bulk_rolls_back(store, monkeypatch):
    """An error half-way through a bulk decision leaves no trace (all or nothing)."""
    real = store.decisions._apply

    def boom(*a, **k):
        real(*a, **k)
        raise RuntimeError("crash after the update")
    monkeypatch.setattr(store.decisions, "_apply", boom)
    with pytest.raises(RuntimeError):
        store.decisions.accept_above(0.5)
    assert store.queue.count(statuses=["accepted"]) == 0
    assert store.decisions.history() == []


@pytest.mark.parametrize("order,key,reverse", [("confidence", "confidence", False),
                                                ("confidence-desc", "confidence", True),
                                                ("margin", "margin", False), ("entropy", "entropy", True)])
def test_page_orders_and_filters(store, order, key, reverse):
    rows = orders.page(store.queue, classes=[1, 2], statuses=["pending"], conf_min=0.2, conf_max=0.9, order=order, limit=40)
    assert len(rows) == 40
    assert all(r["pred"] in (1, 2) and 0.2 <= r["confidence"] <= 0.9 for r in rows)
    vals = [r[key] for r in rows]
    assert vals == sorted(vals, reverse=reverse)
    nxt = orders.page(store.queue, classes=[1, 2], statuses=["pending"], conf_min=0.2, conf_max=0.9, order=order,
                     offset=40, limit=40)
    assert not {r["id"] for r in rows} & {r["id"] for r in nxt}


def test_random_order_is_stable_and_not_id_order(store):
    a = [r["id"] for r in orders.page(store.queue, order="random", limit=30)]
    assert a == [r["id"] for r in orders.page(store.queue, order="random", limit=30)]
    assert a != sorted(a)


def test_unknown_order_and_status_are_errors(store):
    with pytest.raises(ValueError, match="unknown order"):
        orders.page(store.queue, order="bogus")
    with pytest.raises(ValueError, match="unknown status"):
        store.queue.count(statuses=["maybe"])


def test_busy_device_is_refused_with_the_run_named(store):
    r1 = store.runs.create("teacher", "cpu", {}, 10)
    with pytest.raises(DeviceBusy, match=r1):
        store.runs.create("student", "cpu", {}, 10)
    store.runs.update(r1, state="finished")
    assert store.runs.create("student", "cpu", {}, 10) == "student-2"


def test_not_a_store(tmp_path):
    p = tmp_path / "x.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a stcore project store"):
        Store(p)


def test_concurrent_writer_and_readers_lose_nothing(tmp_path):
    """A worker writing metrics, readers polling and a reviewer bulk-deciding, all at once."""
    path = tmp_path / "project.db"
    s = make_store(path, 20000)
    run = s.runs.create("student", "cpu", {}, 300)
    s.close()
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker():
        st = Store(path)
        try:
            for step in range(1, 301):
                st.runs.heartbeat(run, step, [("train", step, {"loss": 1.0 / step})])
        except BaseException as e:
            errors.append(e)
        finally:
            st.close()

    def reader():
        st = Store(path)
        try:
            while not stop.is_set():
                orders.page(st.queue, statuses=["pending"], order="confidence", limit=100)
                st.items.status_counts()
                st.runs.metrics(run)
        except BaseException as e:
            errors.append(e)
        finally:
            st.close()

    def reviewer():
        st = Store(path)
        try:
            for k in range(20):
                st.decisions.decide(list(range(k * 500, k * 500 + 500)), "accepted")
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
    assert [m["step"] for m in s.runs.metrics(run)] == list(range(1, 301))
    assert s.items.status_counts()["accepted"] == 10000
    assert s.engine.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_one_store_shared_by_threads_keeps_their_transactions_apart(store):
    """The dashboard shares one Store between sessions (threads): a failing bulk action in one
    thread must not take another thread's decision down with it."""
    started, release = threading.Event(), threading.Event()
    errors = []

    def slow_failing_bulk():
        try:
            with store.tx():
                store.decisions.decide([1, 2, 3], "rejected")
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
        store.decisions.decide([500], "accepted")  # waits for the write lock, then commits on its own
        done.set()
    t2 = threading.Thread(target=other_session)
    t2.start()
    release.set()
    t.join()
    t2.join()
    assert not errors and done.is_set()
    assert store.items.status_counts()["rejected"] == 0
    assert orders.page(store.queue, statuses=["accepted"])[0]["id"] == 500


def test_write_predictions_with_reindex_keeps_indexes_and_values(store):
    """A whole pseudo-labeling pass on SQLite drops the pool's indexes and builds them again."""
    if store.engine.name != "sqlite":
        pytest.skip("SQLite's own bulk path (PostgreSQL's is a COPY and one UPDATE: test_bulk_predictions)")

    def indexes():
        return sorted(r[0] for r in store.engine.db.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='pool' AND sql IS NOT NULL"))
    before = indexes()
    assert len(before) >= 6
    store.items.write_predictions([(9, 0.99, 0.9, 0.01, None, "teacher-2", i) for i in range(100)], reindex=True)
    assert indexes() == before
    rows = orders.page(store.queue, classes=[9], conf_min=0.98, order="confidence-desc", limit=200)
    assert {r["id"] for r in rows if r["teacher_run"] == "teacher-2"} == set(range(100))
    plan = " ".join(r[3] for r in store.engine.db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM pool WHERE status='pending' AND pred=9 ORDER BY confidence LIMIT 10"))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan


def test_class_counts_put_each_decision_under_its_decided_class(store):
    """The Project page's class chart: accepted items under their predicted class, corrected
    ones under the class the person gave (not the teacher's)."""
    rows = orders.page(store.queue, statuses=["pending"], limit=3)
    a, c = rows[0], rows[1]
    store.decisions.decide([a["id"]], "accepted")
    store.decisions.decide([c["id"]], "corrected", (c["pred"] + 1) % 10)
    counts = store.items.class_counts()
    assert counts["accepted"] == {a["pred"]: 1}
    assert counts["corrected"] == {(c["pred"] + 1) % 10: 1}
    assert sum(counts["pseudo"].values()) == 1000


def test_a_count_by_status_alone_reads_the_kept_counts_and_equals_a_scan(store):
    rows = orders.page(store.queue, statuses=["pending"], limit=30)
    store.decisions.decide([r["id"] for r in rows[:10]], "accepted")
    store.decisions.decide([r["id"] for r in rows[10:15]], "corrected", 2)
    store.decisions.decide([r["id"] for r in rows[15:18]], "rejected")
    store.decisions.undo()  # the rejection taken back
    for statuses in (None, [], ["pending"], ["accepted", "corrected"], ["rejected"], ["accepted", "pending"]):
        where = f" WHERE status IN ({','.join('?' * len(statuses))})" if statuses else ""
        scanned = store.engine.one(f"SELECT COUNT(*) FROM pool{where}", statuses or ())[0]
        assert store.queue.count(statuses=statuses) == scanned, statuses
    assert store.queue.count(statuses=["accepted"], classes=[rows[0]["pred"]], conf_min=0.0) == sum(
        r["pred"] == rows[0]["pred"] for r in rows[:10])  # with a class: counted from the pool
    with pytest.raises(UsageError, match="unknown status"):
        store.queue.count(statuses=["maybe"])


def test_bulk_predictions_write_every_value_on_both_engines(store):
    probs = bytes(range(20))
    rows = [(i % 3, 0.5 + i / 4000, 0.25, 0.75, probs, "teacher-9", i) for i in range(0, 1000, 2)]
    store.items.write_predictions(rows, reindex=True)
    got = {r["id"]: r for r in store.queue.rows(list(range(0, 1000, 2)))}
    assert all((got[i]["pred"], got[i]["confidence"], got[i]["teacher_run"]) == (i % 3, 0.5 + i / 4000, "teacher-9")
               for i in range(0, 1000, 2))
    assert store.queue.rows([1])[0]["teacher_run"] == "teacher-1"  # the others are as they were
    assert dict(store.items.unreviewed_set(pseudo_labeled_only=True))[0] == probs
