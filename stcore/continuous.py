"""Continuous mode: learning while you label. When it is on (a project's meta 'continuous':
{'every': N, 'since': the history mark when it was turned on, 'teacher_before': the teacher
chosen then}), every N human decisions queue one refresh job (kinds.KINDS['refresh']: a head
teacher on the embedding, then the pool's pseudo-labels), in a detached worker.

The trigger (due, maybe_start) runs where decisions are made, so it costs a click one meta
read and one count when on, nothing more; a click never waits for training. There is never more
than one refresh queued or running: the check and the new run are one write transaction. The
decisions are counted from the newest refresh's mark (the history when it was queued), so the
ones made while it runs count towards the next, which the worker starts when the refresh ends.

The teacher: each finished refresh becomes the project's teacher (the pseudo-labels the page
shows are its). The teacher chosen before continuous mode was turned on is kept, and becomes
the teacher again when it is turned off. Light: no torch.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from . import jobs
from .errors import ProjectError, StcoreError, UsageError
from .kinds import KINDS, learnable
from .project import Project
from .store import ACTIVE_STATES

ROLE = "refresh"
DEFAULT_EVERY = 50  # decisions between refreshes


def settings(project: Project) -> dict | None:
    """{'every', 'since', 'teacher_before'} while continuous mode is on, else None."""
    return project.store.meta().get("continuous")


def turn_on(project: Project, every: int = DEFAULT_EVERY) -> dict:
    """Retrain after every `every` decisions from now on; ProjectError saying what is missing
    (an embedding, human labels in two classes)."""
    check_every(every)
    if why := learnable(project):
        raise ProjectError(why)
    before = settings(project)
    on = {"every": every, "since": before["since"] if before else project.store.decisions.last_seq(),
          "teacher_before": before["teacher_before"] if before else project.store.meta().get("teacher")}
    project.store.set_meta(continuous=on, continuous_every=every)
    return on


def check_every(every) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UsageError(f"continuous mode retrains after every N decisions; N must be a whole number of at "
                         f"least 1, not {every!r}")


def choose_every(project: Project, every: int) -> None:
    """N for continuous mode: applied now when the mode is on, kept for when it is turned on otherwise."""
    check_every(every)
    on = settings(project)
    project.store.set_meta(continuous_every=every, **({"continuous": {**on, "every": every}} if on else {}))


def turn_off(project: Project) -> None:
    """No more refreshes (one running goes on to its end); the teacher chosen before comes back."""
    before = settings(project)
    if before is None:
        return
    project.store.set_meta(continuous=None, teacher=before.get("teacher_before"))


def due(project: Project, on: dict | None = None) -> tuple[int, dict | None]:
    """(decisions since the newest refresh was queued, or since continuous mode was turned on;
    the refresh queued or running now, or None). One count and one run read."""
    on = on if on is not None else settings(project)
    if not on:
        return 0, None
    last = project.store.runs.latest(ROLE)
    since = max(int(on["since"]), int((last or {}).get("config", {}).get("upto") or 0))
    return project.store.decisions.count_since(since), last if last and last["state"] in ACTIVE_STATES else None


def maybe_start(project: Project) -> str | None:
    """Queue a refresh and start its detached worker, if one is due: at least `every` decisions
    since the newest refresh was queued, and none queued or running. Its run id, else None.
    Never raises: a refresh that cannot start leaves the decisions as they are, and says why in
    the meta ('continuous_problem', shown by status()). Inside a caller's transaction it does
    nothing (its decisions are not committed yet); api's all_or_nothing asks again after it."""
    if project.store.in_transaction():
        return None
    on = settings(project)
    if not on:
        return None
    try:
        n, active = due(project, on)
        if n < int(on["every"]) or (active is not None and active["id"] not in jobs.notice_dead_workers(project)):
            return None
        cfg, total = KINDS[ROLE].check(project, {})
        with project.store.tx():  # checked again under the write lock: two clicks at once queue one refresh
            n, active = due(project, on)
            if n < int(on["every"]) or active is not None:
                return None
            config = {**dataclasses.asdict(cfg), "upto": project.store.decisions.last_seq()}
            run_id = project.store.runs.create(ROLE, config["device"], config, total, busy_check=False)
        _problem(project, None)
    except StcoreError as e:
        _problem(project, str(e))
        return None
    try:
        jobs.spawn(project, run_id)
    except OSError as e:  # no worker: the run must not hold the next refresh back
        project.store.runs.transition(run_id, ["queued"], state="failed", ended=time.time(),
                                      error=f"its worker could not start: {e}")
        return None
    return run_id


def _problem(project: Project, text: str | None) -> None:
    if project.store.meta().get("continuous_problem") != text:
        project.store.set_meta(continuous_problem=text)
        if text:
            logging.warning("continuous mode: %s", text)


def status(project: Project) -> dict:
    """{'every' (None: off), 'decisions' (since the last refresh was queued), 'running' (the
    active refresh's run row, or None), 'last' (the newest finished refresh: {'id', 'ended',
    'labels', 'seconds'}, or None), 'failed' (the newest refresh, when it failed or was
    interrupted: {'id', 'error'}), 'problem' (why none could start, or None), 'chosen' (N: the
    mode's while on, the one it will use once turned on while off)}."""
    meta = project.store.meta()
    on = meta.get("continuous")
    n, _ = due(project, on)
    newest = project.store.runs.latest(ROLE)
    done = project.store.runs.latest(ROLE, ["finished"])
    return {"every": on["every"] if on else None, "decisions": n,
            "chosen": on["every"] if on else meta.get("continuous_every") or DEFAULT_EVERY,
            "running": newest if newest and newest["state"] in ACTIVE_STATES else None,
            "last": {"id": done["id"], "ended": done["ended"], "labels": (done["result"] or {}).get("labels"),
                     "seconds": round(done["ended"] - (done["started"] or done["ended"]), 1),
                     "ago": round(time.time() - done["ended"], 1)} if done else None,
            "failed": {"id": newest["id"], "state": newest["state"], "error": newest["error"]}
            if newest and newest["state"] in ("failed", "interrupted") else None,
            "problem": meta.get("continuous_problem") if on else None}
