"""Start a detached worker, read its liveness, cancel and resume runs.

A run's state in the store is the truth for every reader. A reader that lists runs
checks each active one: if its worker's pid is gone, or its heartbeat is older than
HEARTBEAT_TIMEOUT, the run is marked interrupted (and can be resumed).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .config import TrainConfig, to_dict
from .devices import resolve
from .store import ACTIVE_STATES

HEARTBEAT_TIMEOUT = 30.0   # seconds without a heartbeat before a running worker counts as dead
START_TIMEOUT = 120.0      # seconds a queued run may wait for its worker to start


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        # Reap our own exited children, so they do not linger as zombies that look alive.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    except OSError:
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


def refresh(project) -> None:
    """Mark active runs whose worker is gone as interrupted."""
    now = time.time()
    for run in project.store.runs():
        if run["state"] not in ACTIVE_STATES:
            continue
        dead, why = False, ""
        if run["pid"] and not pid_alive(run["pid"]):
            dead, why = True, f"the worker (pid {run['pid']}) is gone"
        elif run["state"] == "running" and run["heartbeat"] and now - run["heartbeat"] > HEARTBEAT_TIMEOUT:
            dead, why = True, f"no heartbeat for {now - run['heartbeat']:.0f} s"
        elif run["state"] == "queued" and not run["pid"] and now - run["created"] > START_TIMEOUT:
            dead, why = True, "the worker never started"
        if dead:
            project.store.transition(run["id"], ACTIVE_STATES, state="interrupted", ended=now,
                                     error=f"interrupted: {why}; resume it with stcore resume")


def current_phase(metrics: list[dict]) -> str | None:
    """What a run is doing between training steps (building a graph, re-labeling the pool),
    from its metric rows: the newest 'phase' row, unless training rows have come after it."""
    phases = [m for m in metrics if m["kind"] == "phase"]
    if not phases:
        return None
    last = max(phases, key=lambda m: m["step"])
    trained = max((m["step"] for m in metrics if m["kind"] == "train"), default=-1)
    return last["phase"] if last["step"] >= trained else None


def eta_seconds(run: dict, metrics: list[dict], now: float | None = None) -> float | None:
    """Seconds left for a running run, at its training pace in this attempt: the time since its
    first training row after it (re)started, per step trained since then. What came before that
    row (starting the worker, loading data, building a graph; the steps and downtime before a
    resume) is not a step's cost. None until there is a pace to go by."""
    total, step = run.get("total") or 0, run.get("step") or 0
    if run.get("state") != "running" or not total or step >= total:
        return None
    started = run.get("started") or 0.0
    if run.get("role") == "pseudo-label":  # it counts items and reports no training rows
        first_step, first_at = 0, started
    else:
        train = [m for m in metrics if m["kind"] == "train" and m["at"] >= started]
        if not train:
            return None
        first = min(train, key=lambda m: m["step"])
        first_step, first_at = first["step"], first["at"]
    done = step - first_step
    if done <= 0 or not first_at:
        return None
    return max(0.0, (now if now is not None else time.time()) - first_at) / done * (total - step)


def list_runs(project) -> list[dict]:
    refresh(project)
    return project.store.runs()


def _spawn(project, run_id: str) -> int:
    log = project.run_dir(run_id) / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        proc = subprocess.Popen([sys.executable, "-m", "stcore.worker", str(project.path), run_id],
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True,  # outlives the terminal or page that started it
                                cwd=str(project.path), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    project.store.update_run(run_id, pid=proc.pid)
    return proc.pid


def start(project, role: str, config: dict, *, total: int = 0, detach: bool = True) -> str:
    """Create a run and start its worker. The device is checked first (DeviceError), and a
    device already used by an active run of this project is refused (DeviceBusy)."""
    device = resolve(config.get("device", "cpu"))
    config = {**config, "device": device}
    refresh(project)
    run_id = project.store.create_run(role, device, config, total)
    if detach:
        _spawn(project, run_id)
    else:
        from .worker import execute
        project.store.update_run(run_id, pid=os.getpid())
        execute(project, run_id, foreground=True)
    return run_id


def check_teacher(project, cfg: TrainConfig) -> None:
    """Before a run is created: the teacher a student starts from must exist and have a
    checkpoint that fits this project (its id, class count, input shape and model);
    ProjectError otherwise, so that a bad teacher never gets as far as a failed run."""
    from .project import ProjectError
    if not (cfg.role == "student" and cfg.init == "teacher"):
        if cfg.teacher_run:
            project.store.run(cfg.teacher_run)  # KeyError naming the known runs
        return
    teacher = project.store.run(cfg.teacher_run) if cfg.teacher_run else project.teacher_run()
    if teacher is None:
        raise ProjectError("the student starts from the teacher's weights, and there is no finished teacher; "
                           "train one (stcore train PROJECT --role teacher), or use --init scratch")
    ck = project.load_checkpoint(teacher["id"])  # refuses another project's, or a wrong class count or shape
    if ck["config"].get("model") != cfg.model:
        raise ProjectError(f"the teacher {teacher['id']} is a {ck['config'].get('model')}, the student a "
                           f"{cfg.model}; use the same --model, or --init scratch")
    project.model_from(ck, f"the teacher {teacher['id']}")  # the weights themselves must fit too


def start_training(project, cfg: TrainConfig, *, detach: bool = True) -> str:
    from .train import default_steps
    check_teacher(project, cfg)
    # The run records the method, rounds and augmentation strength it resolved to, so that a
    # later change of the defaults never changes a queued or resumed run, and its page says
    # what it does.
    values = {**to_dict(cfg), "method": cfg.resolved_method, "rounds": cfg.resolved_rounds}
    if cfg.role == "student":
        values["strength"] = cfg.resolved_strength
    return start(project, cfg.role, values, total=cfg.steps or default_steps(cfg), detach=detach)


def start_pseudo_label(project, *, device: str = "cpu", teacher_run: str | None = None,
                       batch_size: int = 1024, detach: bool = True) -> str:
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, not {batch_size}")
    teacher = project.store.run(teacher_run) if teacher_run else project.teacher_run()
    if teacher is None:
        from .project import ProjectError
        raise ProjectError("there is no finished teacher yet; train one first")
    project.load_model(teacher["id"])  # a missing, damaged or foreign checkpoint is refused now
    return start(project, "pseudo-label", {"device": device, "teacher_run": teacher["id"],
                                           "batch_size": batch_size},
                 total=project.counts()["pool"], detach=detach)


def cancel(project, run_id: str) -> str:
    """Ask a run to stop. A live worker stops at its next step and saves a checkpoint;
    a run with no live worker is marked cancelled at once. Returns the state now."""
    refresh(project)
    run = project.store.run(run_id)
    if run["state"] not in ACTIVE_STATES:
        return run["state"]
    project.store.update_run(run_id, cancel_requested=1)
    if not pid_alive(run["pid"]) and run["state"] == "queued":
        project.store.transition(run_id, ACTIVE_STATES, state="cancelled", ended=time.time())
    return project.store.run(run_id)["state"]


def resume(project, run_id: str, *, detach: bool = True) -> str:
    """Continue an interrupted, cancelled or failed run from its latest checkpoint."""
    from .project import ProjectError
    refresh(project)
    run = project.store.run(run_id)
    if run["state"] in ACTIVE_STATES or run["state"] == "finished":
        raise ProjectError(f"run {run_id} is {run['state']}; only interrupted, cancelled or failed runs "
                           f"can be resumed")
    if run["role"] == "pseudo-label":
        raise ProjectError("a pseudo-label job is not resumed; start it again")
    if (project.run_dir(run_id) / "latest.pt").exists():
        project.load_checkpoint(run_id)  # a damaged or foreign checkpoint is refused here, not in the worker
    resolve(run["device"])
    project.store.requeue(run_id, run["device"])
    if detach:
        _spawn(project, run_id)
    else:
        from .worker import execute
        project.store.update_run(run_id, pid=os.getpid())
        execute(project, run_id, foreground=True)
    return run_id


def log_path(project, run_id: str) -> Path:
    return project.run_dir(run_id) / "log.txt"
