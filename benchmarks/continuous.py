"""Continuous mode, measured (issue 25): a Fashion-MNIST project with no label, the pixel
embedding, 100 labels of the app's choice, then continuous mode every 50 decisions. A reviewer
clicks one decision at a time (api.review, correcting to the hidden label), as the Review page
does. For each of `rounds` rounds: the seconds from the 50th decision to the refresh that it
queued having finished (the pool's pseudo-labels written by a head teacher that learned it),
and the latency of each click made while that refresh runs, in the clicking process (the
Streamlit server's place), with the refresh's worker on the same cores.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stcore import api

from .common import summary


def _click(project, item: int, label: int) -> float:
    t0 = time.perf_counter()
    api.review(project, [item], "correct", label, reviewer="bench")
    return time.perf_counter() - t0


def bench_continuous(workdir: Path, *, limit: int | None, every: int = 50, rounds: int = 3, start_labels: int = 100,
                     click_every: float = 0.2, seed: int = 0, say=print) -> dict:
    t0 = time.perf_counter()
    p = api.create_project(workdir / "continuous", dataset="fashion-mnist", labeled=0, seed=seed, limit=limit,
                           download=False)
    setup = {"create_s": round(time.perf_counter() - t0, 1)}
    t0 = time.perf_counter()
    api.start_embedding(p, backbone="pixels", detach=False)
    setup["embed_s"] = round(time.perf_counter() - t0, 1)
    api.simulate_review(p, start_labels)
    api.set_continuous(p, every)
    pool = api.counts(p)["pool"]
    rng = np.random.default_rng(seed)
    pending = [r["id"] for r in api.review_page(p, statuses=["pending"], order="random", limit=pool)]
    rng.shuffle(pending)
    truth = p.store.items.hidden_labels(pending)
    queue = iter(pending)
    out, pooled = [], []
    for r in range(rounds):
        _wait_idle(p)
        before = {x["id"] for x in api.runs(p) if x["role"] == "refresh"}
        need = every - api.continuous_status(p)["decisions"]
        clicks = [_click(p, i, truth[i]) for i in (next(queue) for _ in range(need - 1))]
        last = next(queue)
        t0 = time.perf_counter()
        clicks.append(_click(p, last, truth[last]))
        new = [x for x in api.runs(p) if x["role"] == "refresh" and x["id"] not in before]
        assert len(new) == 1, f"the {every}th decision queued {len(new)} refreshes"
        run_id, during = new[0]["id"], []
        while api.run(p, run_id)["state"] in api.ACTIVE_STATES:
            time.sleep(max(0.0, click_every - (during[-1] if during else 0)))
            i = next(queue)
            during.append(_click(p, i, truth[i]))
        seconds = time.perf_counter() - t0
        pooled += during
        run = api.run(p, run_id)
        assert run["state"] == "finished", run["error"]
        worker_s = run["ended"] - run["started"]
        out.append({"reflects_s": round(seconds, 2), "worker_run_s": round(worker_s, 2),
                    "worker_start_s": round(run["started"] - run["created"], 2),
                    "labels": run["result"]["labels"], "pseudo_labels_s": run["result"]["pseudo"]["seconds"],
                    "test_accuracy": run["result"].get("accuracy"), "clicks_during": len(during),
                    "click_during": summary(during) if during else None, "click_before": summary(clicks)})
        say(f"  round {r + 1}: the {every}th decision reflected in {seconds:.1f} s (worker start "
            f"{out[-1]['worker_start_s']} s, run {worker_s:.1f} s); {len(during)} clicks meanwhile, p95 "
            f"{(out[-1]['click_during'] or {}).get('p95', 0) * 1000:.0f} ms, max {max(during, default=0) * 1000:.0f} ms")
    api.set_continuous(p, None)
    _wait_idle(p)
    return {"items": pool, "every": every, "setup": setup, "rounds": out,
            "reflects_s": summary([r["reflects_s"] for r in out]),
            "click_during_refresh_s": summary(pooled) if pooled else None}


def _wait_idle(p, timeout: float = 300) -> None:
    end = time.time() + timeout
    while any(r["state"] in api.ACTIVE_STATES for r in api.runs(p)) and time.time() < end:
        time.sleep(0.2)
