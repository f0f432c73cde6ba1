"""Runs as detached jobs: start a worker process, notice dead ones, cancel, resume; and read a
run's progress (its current phase, its ETA). Light: no torch here.

A run's state in the store is the truth for every reader. Noticing dead workers is its own
step (notice_dead_workers): a run whose worker's pid is gone, or whose heartbeat is older than
HEARTBEAT_TIMEOUT, is marked interrupted, and can be resumed.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

from .errors import UsageError
from .kinds import KINDS
from .project import Project
from .store import ACTIVE_STATES

HEARTBEAT_TIMEOUT = 30.0   # seconds without a heartbeat before a running worker counts as dead
START_TIMEOUT = 120.0      # seconds a queued run may wait for its worker to start
ROLES = tuple(KINDS)  # a run's role is the name of its job kind


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        # Reap our own exited children, so they do not linger as zombies that look alive.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except OSError:  # not our child (ChildProcessError), or no such process
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): kill(0) succeeded


def notice_dead_workers(project: Project) -> list[str]:
    """Mark active runs whose worker is gone as interrupted; returns their ids."""
    now, dead_runs = time.time(), []
    for run in project.store.runs.list():
        if run["state"] not in ACTIVE_STATES:
            continue
        why = ""
        if run["pid"] and not pid_alive(run["pid"]):
            why = f"the worker (pid {run['pid']}) is gone"
        elif run["state"] == "running" and run["heartbeat"] and now - run["heartbeat"] > HEARTBEAT_TIMEOUT:
            why = f"no heartbeat for {now - run['heartbeat']:.0f} s"
        elif run["state"] == "queued" and not run["pid"] and now - run["created"] > START_TIMEOUT \
                and int(run["config"].get("nnodes") or 1) == 1:  # the machines of a larger run start by hand
            why = "the worker never started"
        if why and project.store.runs.transition(run["id"], ACTIVE_STATES, state="interrupted", ended=now,
                                            error=f"interrupted: {why}; resume it with stcore resume"):
            dead_runs.append(run["id"])
    return dead_runs


def spawn(project: Project, run_id: str) -> int:
    """Start `python -m stcore.worker PROJECT RUN` in a new session: it outlives the terminal or
    page that started it. Its output goes to the run's log.txt.

    On POSIX the worker is not our child: a shell starts it in the background and exits at once
    (a double fork), so the worker is adopted by init, which reaps it when it ends. A child of a
    long-lived process (the dashboard's server) would stay a zombie until that process ends."""
    log = project.run_dir(run_id) / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "stcore.worker", str(project.path), run_id]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if os.name == "posix":
        out = subprocess.run(["/bin/sh", "-c", 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!', "sh",
                              str(log), *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             start_new_session=True, cwd=str(project.path), env=env, check=True)
        pid = int(out.stdout.split()[-1])
    else:
        with open(log, "ab") as f:
            pid = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=str(project.path), env=env).pid
    project.store.runs.update(run_id, pid=pid)
    return pid


def create(project: Project, role: str, config: dict, *, total: int = 0) -> str:
    """A queued run on config['device'] (already resolved); DeviceBusy when another active run of
    this project holds that device."""
    notice_dead_workers(project)  # a dead run must not hold its device
    return project.store.runs.create(role, config["device"], config, total)


def cancel(project: Project, run_id: str) -> str:
    """Ask a run to stop. A live worker stops at its next step and saves a checkpoint; a run with
    no live worker is marked cancelled at once. Returns the state now."""
    notice_dead_workers(project)
    run = project.store.runs.get(run_id)
    if run["state"] not in ACTIVE_STATES:
        return run["state"]
    project.store.runs.update(run_id, cancel_requested=1)
    if not pid_alive(run["pid"]) and run["state"] == "queued":
        project.store.runs.transition(run_id, ACTIVE_STATES, state="cancelled", ended=time.time())
    return project.store.runs.get(run_id)["state"]


def requeue(project: Project, run_id: str) -> dict:
    """Put an interrupted, cancelled or failed run back in the queue, to continue from its checkpoint."""
    notice_dead_workers(project)
    run = project.store.runs.get(run_id)
    if run["state"] in ACTIVE_STATES or run["state"] == "finished":
        raise UsageError(f"run {run_id} is {run['state']}; only interrupted, cancelled or failed runs "
                         f"can be resumed")
    if run["role"] not in KINDS or not KINDS[run["role"]].resumes:
        raise UsageError(f"a {run['role']} job is not resumed; start it again")
    project.store.runs.requeue(run_id, run["device"])
    return run


# ------------------------------------------------------------------ reading progress
def current_phase(metrics: list[dict]) -> dict | None:
    """What a run is doing between training steps (building a graph, re-labeling the pool), from
    its metric rows: the newest 'phase' row, unless training rows have come after it."""
    phases = [m for m in metrics if m["kind"] == "phase"]
    if not phases:
        return None
    last = max(phases, key=lambda m: m["step"])
    trained = max((m["step"] for m in metrics if m["kind"] == "train"), default=-1)
    return last if last["step"] >= trained else None


def phase_eta(row: dict, now: float | None = None) -> float | None:
    """Seconds left in a phase, at its own pace so far; None until it has progressed."""
    done, total, started = row.get("done") or 0, row.get("total") or 0, row.get("started")
    if not started or done <= 0 or not total or done >= total:
        return None
    return max(0.0, (now if now is not None else time.time()) - started) / done * (total - done)


def eta_seconds(run: dict, metrics: list[dict], now: float | None = None) -> float | None:
    """Seconds left for a running run. Training: its pace over the training rows of this attempt,
    not counting the time spent in phases between them (a graph, a re-labeling), plus the
    re-labelings still to come, each as long as the last one. Item-counting jobs: their pace
    since start. None until there is a pace to go by."""
    total, step = run.get("total") or 0, run.get("step") or 0
    if run.get("state") != "running" or not total or step >= total:
        return None
    now = now if now is not None else time.time()
    started = run.get("started") or 0.0
    if run.get("role") not in ("teacher", "student"):  # they count items and report no training rows
        return (now - started) / step * (total - step) if step > 0 and started else None
    train = sorted((m for m in metrics if m["kind"] == "train" and m["at"] >= started), key=lambda m: m["step"])
    if not train or step <= train[0]["step"]:
        return None
    phases = [m for m in metrics if m["kind"] == "phase" and m["at"] >= started and m.get("started")]
    in_phases = sum(max(0.0, p["at"] - p["started"]) for p in phases if p["step"] > train[0]["step"])
    pace = max(0.0, now - train[0]["at"] - in_phases) / (step - train[0]["step"])
    rounds = int((run.get("config") or {}).get("rounds") or 1)
    round_len = math.ceil(total / rounds)
    relabels_left = sum(1 for r in range(1, rounds) if r * round_len > step)
    last_relabel = max((p["at"] - p["started"] for p in phases if p["step"] > 0), default=0.0)
    return pace * (total - step) + relabels_left * last_relabel


def duration(run: dict, now: float | None = None) -> float | None:
    """Seconds a run has been running, over all its attempts."""
    if not run.get("started"):
        return None
    end = run.get("ended") or (now if now is not None else time.time())
    return (run.get("earlier_seconds") or 0.0) + max(0.0, end - run["started"])


def training_pace(run: dict, metrics: list[dict]) -> dict | None:
    """How fast a teacher or student trained, from its metric rows: {'per_sample': seconds per
    image a step sees, 'phases': seconds spent between steps (a graph, re-labelings)}; None
    when it logged too few training rows to tell."""
    train = sorted((m for m in metrics if m["kind"] == "train"), key=lambda m: m["at"])
    if len(train) < 2 or train[-1]["step"] <= train[0]["step"]:
        return None
    phases = [m for m in metrics if m["kind"] == "phase" and m.get("started")]
    inside = sum(max(0.0, p["at"] - p["started"]) for p in phases if train[0]["at"] < p["at"] <= train[-1]["at"])
    cfg = run.get("config") or {}
    per_step = int(cfg.get("batch_size") or 64) * (1 + int(cfg.get("unlabeled_ratio") or 3) * (run["role"] == "student"))
    seconds = max(0.0, train[-1]["at"] - train[0]["at"] - inside)
    return {"per_sample": seconds / (train[-1]["step"] - train[0]["step"]) / per_step,
            "phases": sum(max(0.0, p["at"] - p["started"]) for p in phases)}
