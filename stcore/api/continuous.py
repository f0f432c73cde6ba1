"""Continuous mode: learning while you label (stcore/continuous.py). When on, every N human
decisions queue a refresh job: a head teacher on the embedding and the pool's pseudo-labels,
which becomes the teacher. The review functions ask after each decision (decided()); a click
never waits for training."""
from __future__ import annotations

from .. import continuous
from ..project import Project

DEFAULT_EVERY = continuous.DEFAULT_EVERY


def set_continuous(project: Project, every: int | None = DEFAULT_EVERY) -> dict:
    """Turn continuous mode on (retrain after every `every` human decisions) or off (None).
    Turning it on needs an embedding and human labels in two classes (ProjectError says which is
    missing); from then on each finished refresh is the teacher. Turning it off gives back the
    teacher chosen before, and lets a running refresh finish. Returns continuous_status()."""
    if every is None:
        continuous.turn_off(project)
    else:
        continuous.turn_on(project, every)
    return continuous_status(project)


def set_continuous_every(project: Project, every: int) -> dict:
    """N for continuous mode, stored in the project: used from now on when the mode is on, and
    when it is next turned on otherwise (UsageError unless a whole number of at least 1)."""
    continuous.choose_every(project, every)
    return continuous_status(project)


def continuous_status(project: Project) -> dict:
    """{'every' (None: off), 'decisions' since the last refresh was queued, 'running' (the
    refresh queued or running, a run row, or None), 'last' (the newest finished one: 'id',
    'ended', 'ago' and 'seconds', 'labels' it learned from), 'failed' ({'id', 'state', 'error'}
    when the newest one failed or was interrupted), 'problem' (why none could start), 'chosen'
    (N while on; while off, the N it will use once turned on)}."""
    return continuous.status(project)


def decided(project: Project) -> str | None:
    """After decisions: queue a refresh if continuous mode is on and one is due (its run id)."""
    return continuous.maybe_start(project)
