"""`python -m stcore.worker PROJECT RUN_ID`: run one job and write its progress to the store.

A job is a run of the store: a teacher or student (training), a pseudo-labeling pass over the
pool, or an evaluation of a finished run. A reporter thread owns the worker's writes: once a
second it flushes the buffered metric rows, the step and a heartbeat in one short transaction,
and reads the cancel flag. The job itself only appends to a list, so reporting costs it
almost nothing.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Callable
from pathlib import Path

import numpy as np
import torch

from .distributed import Group, join, leave, under_torchrun, write_error
from .errors import NotFound, ProjectError, StcoreError
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
        """The training callback: buffer a row; True once a cancel was requested."""
        with self._lock:
            if kind != "checkpoint":
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
            result = JOBS[run["role"]](project, run, reporter) if group is None else \
                (_embed if run["role"] == "embed" else _train)(project, run, reporter, group)
        if result.get("stopped"):
            store.runs.transition(run_id, ["running"], state="cancelled", ended=time.time())
        else:
            store.runs.transition(run_id, ["running"], state="finished", ended=time.time(),
                             result=result.get("eval"), step=result.get("done", run["total"]))
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
    return store.runs.get(run_id)["state"]


def save_test_probs(run_dir: Path, probs: torch.Tensor) -> None:
    """The probabilities (N, K) of a run's model on the test set, float16, written whole or not at all."""
    tmp = run_dir / f".test_probs.{os.getpid()}.npy"
    np.save(tmp, probs.half().numpy())
    os.replace(tmp, run_dir / "test_probs.npy")


def _train(project: Project, run: dict, reporter: Reporter, group: Group | None = None) -> dict:
    from .checkpoints import model_from, project_tag, run_checkpoint
    from .config import stored_config
    from .data import training_data
    from .devices import resolve
    from .methods import METHODS
    from .models import build
    from .train import fit, total_steps

    cfg = stored_config(run["config"])
    device = group.device if group else resolve(cfg.device)
    teacher = _teacher(project, cfg)
    data = training_data(project, role=cfg.role, corrected_weight=cfg.corrected_weight,
                         use_unreviewed=cfg.use_unreviewed,
                         needs_pseudo_labels=cfg.role == "student" and (cfg.model == "head"
                                                                        or not METHODS[cfg.method].online))
    if cfg.role == "student" and METHODS[cfg.method].pool_labels == "graph":
        from .embed import attach
        attach(project, data)
    total = total_steps(cfg, data)
    project.store.runs.update(run["id"], total=total)
    run_dir = project.run_dir(run["id"])
    run_dir.mkdir(parents=True, exist_ok=True)
    for tmp in run_dir.glob(".*.tmp"):  # half-written checkpoints of a worker that was killed
        tmp.unlink(missing_ok=True)
    if cfg.model == "head":
        return _train_head(project, run, cfg, data, teacher, total, reporter)
    c, h, _ = project.meta["input_shape"]
    model, resume = build(cfg.model, c, len(project.classes), h), None
    if (run_dir / "latest.pt").exists():
        resume = run_checkpoint(project, run["id"])
        project.store.runs.truncate_metrics(run["id"], resume["step"])
    else:
        project.store.runs.truncate_metrics(run["id"], 0)
        if cfg.role == "student" and cfg.init == "teacher":
            if teacher is None:
                raise ProjectError("the student starts from the teacher's weights, and there is no finished "
                                   "teacher; train one, or use --init scratch")
            ck = run_checkpoint(project, teacher["id"])
            if ck["config"].get("model") not in (cfg.model, "head"):  # a head shares no layers with a network
                raise ProjectError(f"the teacher is a {ck['config'].get('model')}, the student a {cfg.model}; "
                                   f"use the same model, or --init scratch")
            if ck["config"].get("model") == cfg.model:
                model = model_from(project, ck, f"the teacher {teacher['id']}")
        if cfg.init == "ssl":
            from .ssl import start_from_encoder
            start_from_encoder(project, model, cfg.model)
    if group is not None:  # the other ranks train the same model on the same data
        group.share({"kind": "train", "model": model, "data": data, "cfg": cfg, "resume": resume})
    out = fit(model, data, cfg, device=device, callback=reporter.report, checkpoint_dir=run_dir, resume=resume,
              extra={**project_tag(project), "teacher_run": (teacher or {}).get("id")}, group=group)
    if group is not None:
        write_ranks(run_dir, group.gather(rank_report(group, out)))
    if out["test_probs"] is not None:
        save_test_probs(run_dir, out["test_probs"])
    return {**out, "done": total}


# ------------------------------------------------------------------ several processes
def rank_report(group: Group, out: dict) -> dict:
    from .distributed import weights_digest
    return {"rank": group.rank, "device": group.device, "step": out["step"],
            "weights": weights_digest(out["model"]), "ema_weights": weights_digest(out["ema"])}


def write_ranks(run_dir: Path, reports: list[dict]) -> None:
    """runs/RUN/ranks.json: where each rank ran and a hash of the weights it ended with."""
    tmp = run_dir / f".ranks.{os.getpid()}.json"
    tmp.write_text(json.dumps(reports, indent=1))
    os.replace(tmp, run_dir / "ranks.json")


def follow(project_path: str, run_id: str, group: Group) -> int:
    """A rank other than 0: train (or embed) what rank 0 sends, report to it, and write this rank's
    reason if it fails (it never touches the store)."""
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


def _train_head(project: Project, run: dict, cfg, data, teacher: dict | None, total: int, reporter: Reporter) -> dict:
    """A head on the project's embedding (--model head): a teacher, or a student that starts from
    a head teacher's weights where it has one, learning the stored (spread) pseudo-labels."""
    from . import embed
    from .checkpoints import project_tag, run_checkpoint
    from .head import fit_head, standardize_on
    from .methods import METHODS
    from .models import build
    z = embed.load(project)
    if z is None:
        raise ProjectError("--model head learns on the project's embedding, and there is none; "
                           "run `stcore embed` first")
    train_z, data.z_test = z
    data.z_lab, data.z_unl = train_z[data.rows_lab], train_z[data.rows_unl]
    torch.manual_seed(cfg.seed)  # the head's initial weights, as a run's seed fixes the network's
    model = build("head", 0, len(project.classes), 0, dims=train_z.shape[1])
    standardize_on(model, train_z)
    run_dir, resume = project.run_dir(run["id"]), None
    if (run_dir / "latest.pt").exists():
        resume = run_checkpoint(project, run["id"])
        project.store.runs.truncate_metrics(run["id"], resume["step"])
    else:
        project.store.runs.truncate_metrics(run["id"], 0)
    if resume is None and cfg.role == "student" and cfg.init == "teacher" and teacher is not None:
        ck = run_checkpoint(project, teacher["id"])
        if ck["config"].get("model") == "head" and ck["ema"]["linear.weight"].shape[1] == train_z.shape[1]:
            model.load_state_dict(ck["ema"])  # else the head starts fresh: there is nothing to start from
    if cfg.role == "student" and data.p_unl is not None and METHODS[cfg.method].pool_labels == "graph" and resume is None:
        # labelprop: the pool's labels are spread again with today's human labels (reviews included)
        from .pseudo import spread_over_embedding
        reporter.report("phase", 0, {"phase": f"spreading the labels over the graph of {len(data.z_unl):,} pool "
                                              f"images", "done": 0, "total": 0, "started": time.time()})
        spread = spread_over_embedding(project, data.rows_unl, data.p_unl, corrected_weight=cfg.corrected_weight)
        data.p_unl = spread if spread is not None else data.p_unl
    out = fit_head(model, data, cfg, total=total, callback=reporter.report, checkpoint_dir=run_dir,
                   resume=resume, extra={**project_tag(project), "teacher_run": (teacher or {}).get("id"),
                                         "embedding": project.store.meta().get("embedding")})
    if out["test_probs"] is not None:
        save_test_probs(run_dir, out["test_probs"])
    return {**out, "done": total}


def _teacher(project: Project, cfg) -> dict | None:
    """The teacher a student learns from: the one named in its config, else the current one."""
    if cfg.role != "student" and not cfg.teacher_run:
        return None
    try:
        return project.store.runs.get(cfg.teacher_run) if cfg.teacher_run else project.teacher_run()
    except NotFound as e:
        raise ProjectError(f"the student's teacher {cfg.teacher_run} is gone ({e})") from e


def _pseudo_label(project: Project, run: dict, reporter: Reporter) -> dict:
    from .devices import resolve
    from .metrics import agreement
    from .pseudo import pseudo_label
    cfg = run["config"]
    summary = pseudo_label(project, project.store.runs.get(cfg["teacher_run"]), device=resolve(cfg.get("device", "cpu")),
                           batch_size=int(cfg.get("batch_size", 1024)), progress=reporter.progress,
                           phase=lambda text: reporter.report("phase", reporter.step, {
                               "phase": text, "done": 0, "total": 0, "started": time.time()}))
    summary["accuracy"] = agreement(project.store.items.pseudo_label_agreement())
    return {"eval": summary, "done": summary["items"]}


def _evaluate(project: Project, run: dict, reporter: Reporter) -> dict:
    """Evaluate a finished run's model on the whole test set again: its stored result and its
    test-set probabilities are replaced."""
    from .checkpoints import run_model
    from .data import images
    from .devices import resolve
    from .metrics import confusion, summarize
    from .models import EmbeddingHead
    from .train import predict_probs
    target = run["config"]["run"]
    device = resolve(run["config"].get("device", "cpu"))
    model = run_model(project, target, device=device)
    if isinstance(model, EmbeddingHead):  # a head reads the embedding, not the images
        from .embed import load
        probs = model.probs(load(project)[1])
    else:
        probs = predict_probs(model, images(project, "test"), device=device, progress=reporter.progress)
    _, labels = project.store.items.test_set()
    result = summarize(confusion(labels, probs.argmax(1).tolist() if len(probs) else [], len(project.classes)),
                       project.classes)
    save_test_probs(project.run_dir(target), probs)
    project.store.runs.update(target, result=result)
    return {"eval": result, "done": len(labels)}


def _embed(project: Project, run: dict, reporter: Reporter, group: Group | None = None) -> dict:
    """Embed every image of the project (train then test) with a backbone; a resumed job goes on
    from the last rows it reported as written. group: rank 0 of several processes."""
    from . import embed
    from .data import images
    from .devices import resolve
    cfg = run["config"]
    device = group.device if group else resolve(cfg.get("device", "cpu"))
    train, test = images(project, "train"), images(project, "test")
    everything = torch.cat([train, test]) if len(test) else train
    started, start, batch = time.time(), int(run.get("step") or 0), int(cfg.get("batch_size", 256))
    progress, pretrained = reporter.progress, None
    if cfg["backbone"] == "ssl":  # its steps are pretraining steps; the embedding pass is a phase after them
        pretrained = _pretrain(project, run, train, device, reporter)
        if pretrained.get("stopped"):
            return pretrained
        start, progress = 0, _phase_progress(reporter, pretrained["steps"], "embedding the images")
    else:
        project.store.runs.update(run["id"], total=len(everything))
    backbone = embed.build(cfg["backbone"], project, weights=cfg.get("weights"), image_size=cfg.get("image_size"))
    caches = [str(project.image_cache(split)) for split, x in (("train", train), ("test", test)) if len(x)]
    embed.compute(project, backbone, everything, device=device, batch_size=batch, start=start, progress=progress,
                  group=group, job={"kind": "embed", "images": caches})
    info = embed.finish(project, backbone, {"train": len(train), "test": len(test)}, device=device,
                        seconds=time.time() - started + float(run.get("earlier_seconds") or 0),
                        extra={"pretraining": pretrained} if pretrained else None)
    return {"eval": info, "done": pretrained["steps"] if pretrained else len(everything)}


def _pretrain(project: Project, run: dict, train: torch.Tensor, device: str, reporter: Reporter) -> dict:
    """The ssl backbone's self-supervised pretraining, on the labeled set and the pool; its steps
    are the run's steps."""
    from .ssl import pretrain
    cfg = run["config"]
    return pretrain(project, train, project.run_dir(run["id"]) / "ssl-state.pt", device=device,
                    batch_size=int(cfg.get("batch_size", 256)), epochs=float(cfg["epochs"]),
                    minutes=float(cfg["minutes"]), seed=int(cfg.get("seed", 0)), report=reporter.report,
                    set_total=lambda n: project.store.runs.update(run["id"], total=n),
                    forget_after=lambda step: project.store.runs.truncate_metrics(run["id"], step))


def _phase_progress(reporter: Reporter, step: int, text: str) -> Callable[[int, int], None]:
    """A progress callback that reports a phase row at the run's last step (cancel included)."""
    started = time.time()

    def progress(done: int, total: int) -> None:
        if reporter.report("phase", step, {"phase": text, "done": done, "total": total, "started": started}):
            raise KeyboardInterrupt("cancelled")
    return progress


def _quality(project: Project, run: dict, reporter: Reporter) -> dict:
    """Rank the human labels by how likely each is wrong (role label-issues), or find
    near-duplicate images (role duplicates); the steps follow the neighbour search."""
    from .devices import resolve
    from .quality import duplicates, label_issues
    total, cfg = [run["total"]], run["config"]

    def progress(done: int, of: int) -> None:
        if of != total[0]:
            total[0] = of
            project.store.runs.update(run["id"], total=of)
        reporter.progress(done, of)
    device = resolve(cfg.get("device", "cpu"))
    if run["role"] == "duplicates":
        out = duplicates(project, threshold=float(cfg["threshold"]), device=device, progress=progress)
    else:
        out = label_issues(project, device=device, progress=progress)
    return {"eval": out, "done": total[0]}


def _map(project: Project, run: dict, reporter: Reporter) -> dict:
    """Lay the embedding out in 2-D for the Map page; the steps follow the neighbour search."""
    from .projection import compute
    meta = compute(project, run["config"].get("method", "auto"), progress=reporter.progress)
    return {"eval": meta, "done": meta["rows"]}


JOBS = {"teacher": _train, "student": _train, "pseudo-label": _pseudo_label, "evaluate": _evaluate,
        "embed": _embed, "label-issues": _quality, "duplicates": _quality, "map": _map}


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
