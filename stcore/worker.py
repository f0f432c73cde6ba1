"""`python -m stcore.worker PROJECT RUN_ID`: run one job and write its progress to the store.

A job is a run of the store, of one of the kinds in kinds.KINDS (a teacher or student, an
embedding, a pseudo-labeling pass over the pool, ...); this module runs it. A reporter thread
owns the worker's writes: once a second it flushes the buffered metric rows, the step and a
heartbeat in one short transaction, and reads the cancel flag. The job itself only appends to
a list, so reporting costs it almost nothing.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

from . import continuous
from .distributed import Group, join, leave, under_torchrun, write_error
from .errors import StcoreError
from .kinds import KINDS
from .project import Project
from .store import Store
from .store.location import engine_of

FLUSH_EVERY = 1.0  # seconds between heartbeats (the contract is at most 2 s)


class Reporter:
    def __init__(self, project_path, run_id: str):
        self.store = Store(engine_of(Path(project_path)))  # its own connections, for the reporter's thread
        self.run_id = run_id
        self.step = 0
        self.cancel = threading.Event()
        self._rows: list[tuple[str, int, dict]] = []
        self._lock = threading.Lock()
        self._io = threading.Lock()  # one flush at a time on the reporter's connection
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reporter", daemon=True)

    def __enter__(self):
        self.flush()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.flush()
        self.store.close()

    def report(self, kind: str, step: int, values: dict) -> bool:
        """The training callback: buffer a row; True once a cancel was requested. An evaluation
        of no test images (a project without a test set) is not a row: its accuracy is none, not 0."""
        with self._lock:
            if kind != "checkpoint" and not (kind == "eval" and values.get("n") == 0):
                self._rows.append((kind, step, values))
            self.step = step
        if kind == "eval":
            # A checkpoint follows an evaluation: store the metrics up to this step first, so that
            # a worker killed after the checkpoint resumes with no gap in its metric history.
            self.flush()
        return self.cancel.is_set()

    def progress(self, done: int, total: int) -> None:
        """The progress callback of item-counting jobs; KeyboardInterrupt once cancelled."""
        self.step = done
        if self.cancel.is_set():
            raise KeyboardInterrupt("cancelled")

    def flush(self) -> None:
        with self._io:
            with self._lock:
                rows, self._rows = self._rows, []
                step = self.step
            if self.store.runs.heartbeat(self.run_id, step, rows):
                self.cancel.set()

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_EVERY):
            try:
                self.flush()
            except Exception:  # a transient store error must not kill the heartbeat; retried next tick
                logging.exception("heartbeat failed")


def one_line(e: BaseException) -> str:
    """A failure's reason, in one line a person can act on."""
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return "CUDA out of memory; lower --batch-size or --unlabeled-ratio, or pick a device with more free memory"
    if isinstance(e, StcoreError):
        return str(e).splitlines()[0]
    full = next((x for x in _chain(e) if isinstance(x, OSError) and x.errno == errno.ENOSPC
                 or "No space left on device" in str(x)), None)
    if full is not None:
        where = f" writing {full.filename}" if getattr(full, "filename", None) else ""
        return (f"the disk is full{where}; the last complete checkpoint is kept: free some space, "
                f"then resume the run")
    if isinstance(e, FileNotFoundError):
        return f"a file has gone missing: {e.filename}; re-create or restore the project's data"
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {msg}"[:500] + " (full traceback in the run's log.txt)"


def _chain(e: BaseException | None):
    """e and the exceptions it was raised from (torch wraps OSErrors of a writer in RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def execute(project: Project, run_id: str, group: Group | None = None, pid: int | None = None) -> str:
    """Run the job; returns its final state. Never raises for a failure of the job itself, except
    a Ctrl-C that is not a cancel (a foreground run stopped from its terminal). group: rank 0
    of a run on several processes; pid: the process that stands for the run (its supervisor)."""
    store = project.store
    now = time.time()
    if not store.runs.transition(run_id, ["queued"], state="running", pid=pid or os.getpid(), started=now,
                            heartbeat=now):
        return store.runs.get(run_id)["state"]
    run = store.runs.get(run_id)
    reporter = Reporter(project.path, run_id)
    # SIGTERM (and Ctrl-C in the foreground) stop the run cleanly, with a checkpoint, as a cancel does.
    handler = lambda *_: reporter.cancel.set()
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    log = project.run_dir(run_id) / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with reporter:
            job = KINDS[run["role"]].run  # a group only for the kinds that run on several processes
            result = job(project, run, reporter) if group is None else job(project, run, reporter, group)
        if result.get("stopped"):
            store.runs.transition(run_id, ["running"], state="cancelled", ended=time.time())
        elif store.runs.transition(run_id, ["running"], state="finished", ended=time.time(),
                                   result=result.get("eval"), step=result.get("done", run["total"])):
            if KINDS[run["role"]].after:
                KINDS[run["role"]].after(project, store.runs.get(run_id))
    except BaseException as e:  # every failure, KeyboardInterrupt included, must leave a true state
        cancelled = isinstance(e, KeyboardInterrupt) and reporter.cancel.is_set()
        with open(log, "a") as f:
            traceback.print_exc(file=f)
        store.runs.transition(run_id, ["running"], state="cancelled" if cancelled else "failed",
                         ended=time.time(), error=None if cancelled else one_line(e))
        if isinstance(e, KeyboardInterrupt) and not cancelled and threading.current_thread() is threading.main_thread():
            raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if run["role"] == continuous.ROLE:  # decisions made meanwhile may call for the next refresh now
        continuous.maybe_start(project)
    return store.runs.get(run_id)["state"]


# ------------------------------------------------------------------ several processes
def follow(project_path: str, run_id: str, group: Group) -> int:
    """A rank other than 0: train (or embed) what rank 0 sends, report to it, and write this rank's
    reason if it fails (it never touches the store)."""
    from .tasks import rank_report
    from .train import fit
    run_dir = Path(project_path) / "runs" / run_id
    try:
        job = group.share()
        if job.get("kind") == "embed":
            from .embed import follow as embed_rows
            embed_rows(job, group)
            return 0
        out = fit(job["model"], job["data"], job["cfg"], device=group.device, resume=job["resume"],
                  callback=lambda *_: group.stop.is_set(), group=group)
        group.gather(rank_report(group, out))
        return 0
    except BaseException as e:
        traceback.print_exc()
        write_error(run_dir, group.rank, one_line(e))
        return 1


def lead(project: Project, run_id: str, group: Group) -> int:
    """Rank 0: the run's worker, as on one process."""
    state = execute(project, run_id, group, pid=int(os.environ.get("STCORE_SUPERVISOR") or 0) or None)
    if state == "failed":
        write_error(project.run_dir(run_id), 0, project.store.runs.get(run_id)["error"] or "failed")
    return 0 if state in ("finished", "cancelled") else 1


def supervise(project: Project, run_id: str) -> str:
    """A run on several processes of this machine: start its ranks and wait for them. When a rank
    fails, the run fails with that rank's reason (the first rank to fail, when one failure made
    the others fail too). Returns the run's final state."""
    from .distributed import launch
    from .store import ACTIVE_STATES, world_size
    run = project.store.runs.get(run_id)
    nproc = int(run["config"].get("nproc") or 1)
    me = os.getpid()
    # This process stands for the run: it is the run's pid while queued and, once rank 0 claims the
    # run, while running. A resume of this run starts another process; from then on this one
    # changes nothing, even if it is still winding down.
    project.store.runs.transition(run_id, ["queued"], pid=me)
    before = os.environ.get("STCORE_SUPERVISOR")
    os.environ["STCORE_SUPERVISOR"] = str(me)
    try:
        failure = launch(project.path, run_id, nproc, run["config"]["device"])
    finally:
        if before is None:
            os.environ.pop("STCORE_SUPERVISOR")
        else:
            os.environ["STCORE_SUPERVISOR"] = before
    if failure is not None:
        rank, reason = failure
        prefix = f"rank {rank} of {world_size(run['config'])} failed: "
        if rank != 0 or project.store.runs.get(run_id)["state"] in ACTIVE_STATES:
            project.store.runs.transition(run_id, [*ACTIVE_STATES, "failed", "cancelled"], owner=me, state="failed",
                                     ended=time.time(), error=prefix + reason.removeprefix(prefix))
    else:
        project.store.runs.transition(run_id, ACTIVE_STATES, owner=me, state="failed", ended=time.time(),
                                 error="the ranks ended without rank 0 finishing the run; see the run's log.txt")
    return project.store.runs.get(run_id)["state"]


def main(argv: list[str] | None = None) -> int:
    """One run's worker. Under torchrun, one rank of it (--device: the run's device, read by each
    rank for its own); a run on several processes started without torchrun supervises its ranks."""
    argv = sys.argv[1:] if argv is None else argv
    device = None
    if len(argv) == 4 and argv[2] == "--device":
        argv, device = argv[:2], argv[3]
    if len(argv) != 2:
        print("usage: python -m stcore.worker PROJECT RUN_ID [--device DEVICE]", file=sys.stderr)
        return 2
    # The ranks of a run on the CPU share this machine's cores rather than each taking all of them.
    shared = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    torch.set_num_threads(int(os.environ.get("STCORE_THREADS") or min(torch.get_num_threads(), shared)))
    if under_torchrun():
        group = join(device or "cpu")
        try:
            return lead(Project(argv[0]), argv[1], group) if group.lead else follow(argv[0], argv[1], group)
        finally:
            leave()
    try:
        state = run(Project(argv[0]), argv[1])
    except StcoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if state in ("finished", "cancelled") else 1


def run(project: Project, run_id: str) -> str:
    """Run a queued run in this process (or its ranks, for several processes); its final state."""
    from .errors import UsageError
    config = project.store.runs.get(run_id)["config"]
    if int(config.get("nnodes") or 1) > 1:
        raise UsageError(f"run {run_id} spans {config['nnodes']} machines: each one runs its torchrun line "
                         f"(stcore nodes {project.path} {run_id} prints them)")
    return supervise(project, run_id) if int(config.get("nproc") or 1) > 1 else execute(project, run_id)


if __name__ == "__main__":
    sys.exit(main())
