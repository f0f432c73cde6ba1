"""Continuous mode (stcore/continuous.py, api.set_continuous): a refresh job after every N human
decisions, never two at once, and no decision lost when a refresh crashes. On a 300-image
Fashion-MNIST project with the pixel embedding; the refresh runs in this process where a test
says so (jobs.spawn replaced), else in a real detached worker."""
from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from stcore import api, jobs, kinds, worker
from stcore.errors import ProjectError

import test_dashboard

pytestmark = pytest.mark.needs_fmnist
app = test_dashboard.app  # the AppTest fixture
EVERY = 10


@pytest.fixture
def labeling(zero_label_project):
    """The zero-label project, embedded (pixels), with 20 human labels of the app's choice."""
    api.start_embedding(zero_label_project, backbone="pixels", detach=False)
    api.simulate_review(zero_label_project, 20)
    return zero_label_project


def in_process(monkeypatch) -> list[str]:
    """Run each spawned refresh here, to its end; returns the run ids started."""
    started = []

    def spawn(project, run_id):
        started.append(run_id)
        project.store.runs.update(run_id, pid=os.getpid())
        worker.run(project, run_id)
        return os.getpid()
    monkeypatch.setattr(jobs, "spawn", spawn)
    return started


def queue_only(monkeypatch) -> list[str]:
    """Queue each refresh and start no worker; returns the run ids queued."""
    started = []
    monkeypatch.setattr(jobs, "spawn", lambda project, run_id: started.append(run_id) or 0)
    return started


def refreshes(project) -> list[dict]:
    return [r for r in api.runs(project) if r["role"] == "refresh"]


def test_off_by_default(labeling, monkeypatch):
    started = queue_only(monkeypatch)
    assert api.continuous_status(labeling)["every"] is None
    api.simulate_review(labeling, 3 * EVERY)
    assert started == [] and refreshes(labeling) == []


def test_turning_it_on_says_what_is_missing(zero_label_project):
    with pytest.raises(ProjectError, match="embedding"):
        api.set_continuous(zero_label_project, EVERY)
    api.start_embedding(zero_label_project, backbone="pixels", detach=False)
    with pytest.raises(ProjectError, match="two classes"):
        api.set_continuous(zero_label_project, EVERY)
    api.set_label(zero_label_project, [0, 1], 3)
    with pytest.raises(ProjectError, match=f"only {zero_label_project.classes[3]} has some"):
        api.set_continuous(zero_label_project, EVERY)
    assert api.continuous_status(zero_label_project)["every"] is None


def test_retrains_after_n_decisions_and_becomes_the_teacher(labeling, monkeypatch):
    started = in_process(monkeypatch)
    assert api.set_continuous(labeling, EVERY)["every"] == EVERY
    api.simulate_review(labeling, EVERY - 1)
    assert started == [] and api.continuous_status(labeling)["decisions"] == EVERY - 1
    pool = api.counts(labeling)["pool"]
    ids = [r["id"] for r in api.review_page(labeling, statuses=["pending"], order="random", limit=1)]
    api.set_label(labeling, ids, 0)  # the Nth decision: a refresh, run here to its end
    assert len(started) == 1
    run = api.run(labeling, started[0])
    assert run["state"] == "finished", run["error"]
    assert run["result"]["labels"] == 20 + EVERY and run["result"]["pseudo"]["items"] == pool
    assert api.teacher(labeling)["id"] == run["id"] and api.counts(labeling)["pseudo_labeled"] == pool
    status = api.continuous_status(labeling)
    assert status["last"]["id"] == run["id"] and status["decisions"] == 0 and status["running"] is None
    api.simulate_review(labeling, EVERY)  # reviews of its pseudo-labels count as decisions too
    assert len(started) == 2


def test_never_two_refreshes_at_once(labeling, monkeypatch):
    started = queue_only(monkeypatch)
    api.set_continuous(labeling, EVERY)
    api.simulate_review(labeling, EVERY)
    assert len(started) == 1
    for _ in range(3):  # while it is queued, more than N decisions queue nothing
        api.simulate_review(labeling, EVERY)
    assert [r["id"] for r in refreshes(labeling)] == started
    assert api.continuous_status(labeling)["running"]["id"] == started[0]
    # it runs; the decisions made meanwhile are due, so its end queues the next one (one only)
    labeling.store.runs.update(started[0], pid=os.getpid())
    assert worker.run(labeling, started[0]) == "finished"
    assert len(started) == 2 and [r["state"] for r in refreshes(labeling)] == ["finished", "queued"]


def test_a_refresh_that_raises_loses_no_decision(labeling, monkeypatch):
    started = in_process(monkeypatch)
    api.set_continuous(labeling, EVERY)
    during = []

    def crash(project, run, reporter):
        # a reviewer goes on labeling while the refresh runs, then the refresh fails
        ids = [r["id"] for r in api.review_page(project, statuses=["pending"], order="random", limit=5)]
        api.set_label(project, ids, 1)
        during.extend(ids)
        raise RuntimeError("boom")
    monkeypatch.setitem(kinds.KINDS, "refresh", dataclasses.replace(kinds.KINDS["refresh"], run=crash))
    before = {r["item_id"] for r in api.labels(labeling, "pool")}
    api.simulate_review(labeling, EVERY)
    run = api.run(labeling, started[0])
    assert run["state"] == "failed" and "RuntimeError: boom" in run["error"]
    labeled = {r["item_id"]: r["class_id"] for r in api.labels(labeling, "pool")}
    assert len(labeled) == len(before) + EVERY + 5 and all(labeled[i] == 1 for i in during)
    assert len(api.history(labeling, limit=1000)) == 20 + EVERY + 5
    assert api.continuous_status(labeling)["failed"]["error"].startswith("RuntimeError: boom")
    assert api.teacher(labeling) is None  # a failed refresh is never the teacher


def test_a_killed_refresh_worker_loses_no_decision(labeling):
    api.set_continuous(labeling, EVERY)
    api.simulate_review(labeling, EVERY)  # a real detached worker
    run = refreshes(labeling)[0]
    deadline = time.time() + 120
    while api.run(labeling, run["id"])["state"] == "queued" and time.time() < deadline:
        time.sleep(0.02)
    api.simulate_review(labeling, 3)  # decisions while it runs
    os.kill(api.run(labeling, run["id"])["pid"], signal.SIGKILL)
    while jobs.pid_alive(api.run(labeling, run["id"])["pid"]):
        time.sleep(0.05)
    run = api.run(labeling, run["id"])
    if run["state"] == "finished":
        pytest.skip("the refresh finished before it could be killed")
    assert len(api.labels(labeling, "pool")) == 20 + EVERY + 3
    assert [r["state"] for r in refreshes(labeling)] == ["interrupted"]  # api.runs noticed the dead worker
    assert "is gone" in api.run(labeling, run["id"])["error"]
    assert api.continuous_status(labeling)["running"] is None


def test_the_review_page_turns_it_on_and_says_what_is_missing(app, zero_label_project, monkeypatch):
    queue_only(monkeypatch)
    api.start_embedding(zero_label_project, backbone="pixels", detach=False)
    at = app(zero_label_project, "review")
    toggle = next(t for t in at.toggle if "Learn while I label" in t.label)
    toggle.set_value(True).run()
    assert any("two classes" in e.value for e in at.error), [e.value for e in at.error]  # says what is missing
    assert api.continuous_status(zero_label_project)["every"] is None
    api.simulate_review(zero_label_project, 20)
    at.run()
    next(t for t in at.toggle if "Learn while I label" in t.label).set_value(True).run()
    assert api.continuous_status(zero_label_project)["every"] == api.CONTINUOUS_EVERY
    assert any(f"after {api.CONTINUOUS_EVERY} decisions (0 so far)" in c.value for c in at.caption)
    at.number_input(key="rv_every").set_value(20).run()  # N set on the page
    assert api.continuous_status(zero_label_project)["every"] == 20
    assert any("after 20 decisions (0 so far)" in c.value for c in at.caption)
    next(t for t in at.toggle if "Learn while I label" in t.label).set_value(False).run()
    assert api.continuous_status(zero_label_project)["every"] is None
    assert at.number_input(key="rv_every").value == 20  # kept for the next time it is turned on
    api.set_continuous(zero_label_project, 70)  # set elsewhere (the CLI): the page shows it, and keeps it
    at.run()
    assert at.number_input(key="rv_every").value == 70 and api.continuous_status(zero_label_project)["every"] == 70
    next(t for t in at.toggle if "Learn while I label" in t.label).set_value(False).run()
    at.number_input(key="rv_every").set_value(30).run()  # N typed while the mode is off: stored in the project
    assert api.continuous_status(zero_label_project)["every"] is None
    fresh = app(zero_label_project, "review")  # a reload
    assert fresh.number_input(key="rv_every").value == 30
    next(t for t in fresh.toggle if "Learn while I label" in t.label).set_value(True).run()
    assert api.continuous_status(zero_label_project)["every"] == 30
