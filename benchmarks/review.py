"""Review-query latency on a synthetic project store of N pool items.

The store is built with the real schema (stcore.store.Store) and filled by direct SQL through
its connection; the queries are timed through the public API that the CLI and dashboard use.
Every query's plan (EXPLAIN QUERY PLAN) is recorded, so a slow one can be explained.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from stcore import api
from stcore.project import Project
from stcore.orders import DEFAULT_ORDER
from stcore.store import Store

from .common import quantile, summary
from stcore import orders

K = 10
CLASSES = [f"class{i}" for i in range(K)]


def build_store(folder: Path, n: int, *, seed: int = 0) -> float:
    """A project folder whose store holds n pseudo-labeled pool items (no images), 100 labeled
    and 1000 test items; ~6% of the pool already reviewed. Returns the seconds it took."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    store = Store(folder / "project.db", create=True)
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, K, n)
    # Confidences skewed high, as a trained teacher's are; the rest spread evenly over other classes.
    conf = 1 / K + (1 - 1 / K) * rng.beta(4.0, 1.2, n)
    rest = (1 - conf) / (K - 1)
    second = rest + rng.random(n) * np.maximum(0, np.minimum(conf, 1 - conf) - rest)  # runner-up prob
    margin = conf - second
    entropy = -(conf * np.log(conf) + (1 - conf) * np.log(np.maximum(rest, 1e-12)))
    hidden = np.where(rng.random(n) < conf, pred, rng.integers(0, K, n))
    status = rng.choice(np.array(["pending", "accepted", "corrected", "rejected"]), n,
                        p=[0.94, 0.04, 0.01, 0.01])
    label = np.where(status == "accepted", pred, np.where(status == "corrected", hidden, -1))
    probs = np.repeat(rest[:, None], K, 1)
    probs[np.arange(n), pred] = conf
    blobs = probs.astype(np.float16)
    rand = rng.integers(0, 2 ** 62, n, dtype=np.int64)
    ids = np.arange(n) + 1000  # leave room for the labeled and test ids
    db = store.engine.db
    # Fill without the indexes and build them afterwards, in one sorted pass each: minutes
    # faster at a million rows than updating seven indexes row by row.
    db.execute("PRAGMA cache_size = -262144")
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
                         "AND tbl_name IN ('items', 'pool')").fetchall()
    with store.tx():
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        db.executemany("INSERT INTO items (id, split, row, source, hidden_label) VALUES (?,?,?,?,?)",
                       ((i, "labeled", i, f"train[{i}]", None) for i in range(100)))
        db.executemany("INSERT INTO items (id, split, row, source, hidden_label) VALUES (?,?,?,?,?)",
                       ((i, "test", i, f"test[{i}]", None) for i in range(1000)))
        db.executemany("INSERT INTO labels (split, item_id, class_id, source, at) VALUES (?, ?, ?, 'initial', 0)",
                       [("labeled", i, i % K) for i in range(100)] + [("test", i, i % K) for i in range(1000)])
        db.executemany("INSERT INTO items (id, split, row, source, hidden_label) VALUES (?,?,?,?,?)",
                       zip(ids.tolist(), ["pool"] * n, ids.tolist(), (f"train[{i}]" for i in ids.tolist()),
                           hidden.tolist()))
        db.executemany(
            "INSERT INTO pool (id, pred, confidence, margin, entropy, probs, teacher_run, status, "
            "reviewer, decided_at, rand) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            zip(ids.tolist(), pred.tolist(), conf.tolist(), margin.tolist(), entropy.tolist(),
                (b.tobytes() for b in blobs), ["teacher-1"] * n, status.tolist(),
                [None if s == "pending" else "synthetic" for s in status.tolist()],
                [None if s == "pending" else 0.0 for s in status.tolist()], rand.tolist()))
        db.executemany("INSERT INTO labels (split, item_id, class_id, source, reviewer, at) "
                       "VALUES ('pool', ?, ?, 'simulated', 'synthetic', 0)",
                       [(i, x) for i, x in zip(ids.tolist(), label.tolist()) if x >= 0])
        for _, sql in indexes:
            db.execute(sql)
    store.items.recount()  # the counts an overview reads, after rows written around the store's methods
    store.classes.add(CLASSES)
    store.set_meta(project_id=f"synthetic-{n}", dataset="synthetic", data_root=None, seed=seed,
                   labels_per_class=10, labeled=100, input_shape=[1, 28, 28], flip=True,
                   hidden_labels=True, created=time.time(), teacher=None)
    db.execute("ANALYZE")  # what a long-lived store would have; harmless if stcore never runs it
    store.close()
    return time.perf_counter() - t0


class _Tracer:
    """Keeps the last SQL statement a connection ran, with its values bound, for EXPLAIN."""

    def __init__(self, db):
        self.db, self.sql = db, []
        db.set_trace_callback(self.sql.append)

    def plan(self, fn) -> list[str]:
        self.sql.clear()
        fn()
        selects = [s for s in self.sql if s.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE"))]
        self.db.set_trace_callback(None)
        try:
            out = []
            for s in selects:
                rows = self.db.execute("EXPLAIN QUERY PLAN " + s).fetchall()
                out.append(" | ".join(r[-1] for r in rows))
            return out
        finally:
            self.db.set_trace_callback(self.sql.append)


def _ms(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of repeats calls. SQLite works in this thread, so on a shared
    machine the CPU time is close to what the wall time would be on an idle one."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
    return wall, cpu


def _s(fn) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), time.thread_time()
    out = fn()
    return time.perf_counter() - t0, time.thread_time() - c0, out


def bench_queries(folder: Path, *, repeats: int, bulk: int, bulk_repeats: int, seed: int = 0) -> dict:
    """Time the review page's queries on the store in folder (see build_store)."""
    p = Project(folder)
    store = p.store
    rng = random.Random(seed)
    n = store.queue.count()

    def filtered_args():
        lo = rng.uniform(0.3, 0.8)
        return dict(classes=[rng.randrange(K)], statuses=["pending"], conf_min=lo,
                    conf_max=min(1.0, lo + rng.uniform(0.1, 0.3)))

    queries = {
        # The query: one class, one status, a confidence range, sorted by confidence.
        "page_filtered": lambda: orders.page(store.queue, **filtered_args(), order="confidence", limit=100),
        # The review page's default: every pending item, in the default order (balanced margin).
        "page_default": lambda: orders.page(store.queue, statuses=["pending"], order=DEFAULT_ORDER, limit=100),
        "page_default_offset_5000": lambda: orders.page(store.queue, statuses=["pending"], order=DEFAULT_ORDER,
                                                       limit=100, offset=5000),
        "page_least_confidence": lambda: orders.page(store.queue, statuses=["pending"], order="least-confidence", limit=100),
        "page_filtered_by_margin": lambda: orders.page(store.queue, **filtered_args(), order="margin", limit=100),
        "page_filtered_by_entropy": lambda: orders.page(store.queue, **filtered_args(), order="entropy", limit=100),
        "page_class_random": lambda: orders.page(store.queue, classes=[rng.randrange(K)], statuses=["pending"],
                                                order="random", limit=100),
        # A status few items have (1% rejected here), which no index leads with on PostgreSQL.
        "page_rare_status": lambda: orders.page(store.queue, statuses=["rejected"], order="confidence", limit=100),
        "count_filtered": lambda: store.queue.count(**filtered_args()),
        # What an overview shows: counts by status, per class, and pseudo-label accuracy.
        "overview_counts": lambda: (api.counts(p), api.class_counts(p)),
        "pseudo_label_accuracy": lambda: api.pseudo_label_accuracy(p),
    }
    out: dict = {"items": n, "engine": store.engine.name, "queries": {}, "plans": {}}
    tracer = _Tracer(store.engine.db) if store.engine.name == "sqlite" else None
    for name, fn in queries.items():
        fn()  # warm the page cache: we measure queries, not the first read of the file
        reps = repeats if name.startswith(("page", "count")) else max(3, repeats // 10)
        wall, cpu = _ms(fn, reps)
        out["queries"][name] = {**summary(wall, 2), "cpu_p50": round(quantile(cpu, 0.5), 2),
                                "cpu_p95": round(quantile(cpu, 0.95), 2)}
        if tracer:  # SQLite's plans (on PostgreSQL the work is in the server, and its CPU is not ours)
            out["plans"][name] = tracer.plan(fn)
    if tracer:
        store.engine.db.set_trace_callback(None)

    # Bulk decisions: accept `bulk` pending items by id (a selection of pages), then undo it,
    # so that every repeat starts from the same state; and accept-above a threshold that
    # matches about `bulk` items.
    ids = [r["id"] for r in orders.page(store.queue, statuses=["pending"], order="random", limit=bulk)]
    thr = store.engine.one("SELECT confidence FROM pool WHERE status='pending' AND pred IS NOT NULL "
                           "ORDER BY confidence DESC LIMIT 1 OFFSET ?", (bulk - 1,))[0]
    t: dict[str, list[float]] = {k: [] for k in ("accept", "accept_cpu", "undo", "undo_cpu", "above", "above_cpu")}
    for _ in range(bulk_repeats):
        wall, cpu, changed = _s(lambda: store.decisions.decide(ids, "accepted", reviewer="bench"))
        assert changed == len(ids), (changed, len(ids))
        t["accept"].append(wall)
        t["accept_cpu"].append(cpu)
        wall, cpu, _ = _s(store.decisions.undo)
        t["undo"].append(wall)
        t["undo_cpu"].append(cpu)
        wall, cpu, _ = _s(lambda: store.decisions.accept_above(thr, reviewer="bench"))
        t["above"].append(wall)
        t["above_cpu"].append(cpu)
        store.decisions.undo()
    out["bulk"] = {"items": len(ids), "accept_s": summary(t["accept"]), "accept_cpu_s": summary(t["accept_cpu"]),
                   "undo_s": summary(t["undo"]), "undo_cpu_s": summary(t["undo_cpu"]),
                   "accept_above_s": summary(t["above"]), "accept_above_cpu_s": summary(t["above_cpu"])}
    store.close()
    return out


def bench_review(workdir: Path, sizes: dict[str, int], *, repeats: int, bulk: int, bulk_repeats: int,
                 say=print, database: str | None = None) -> dict:
    """sizes: label -> item count, e.g. {'60k': 60000, '1m': 1000000}. database: a postgresql://
    URL to measure the store there (built on SQLite, then moved with `stcore migrate`)."""
    out = {}
    for label, n in sizes.items():
        folder = workdir / (f"review-{label}" + ("-pg" if database else ""))
        build_s = build_store(folder, n)
        if database:
            t0 = time.perf_counter()
            api.migrate_store(folder, database)
            build_s += time.perf_counter() - t0
        try:
            res = bench_queries(folder, repeats=repeats, bulk=min(bulk, n // 5), bulk_repeats=bulk_repeats)
            res["status_s"] = status_seconds(folder, repeats=5)
        finally:
            if database:
                Project(folder).store.engine.drop()
        res["build_s"] = round(build_s, 1)
        q = res["queries"]
        say(f"  review {label} on {res['engine']} ({n} items, built in {build_s:.1f} s): page p50/p95 "
            f"{q['page_filtered']['p50']:.1f}/{q['page_filtered']['p95']:.1f} ms, default page p95 "
            f"{q['page_default']['p95']:.1f} ms, overview {q['overview_counts']['median']:.0f} ms, "
            f"bulk accept {res['bulk']['items']} {res['bulk']['accept_above_s']['median']:.3f} s, "
            f"stcore status {res['status_s']['median']:.2f} s")
        out[label] = res
    return out


def status_seconds(folder: Path, *, repeats: int) -> dict:
    """Wall seconds of `stcore status PROJECT`, each a fresh process, as a user runs it."""
    import subprocess
    import sys
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stcore", "status", str(folder)], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return summary(times)
