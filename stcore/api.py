"""The one surface that both faces call: the `stcore` CLI and the dashboard.

Projects (create, open, status and counts), review decisions with their checks, runs (start,
cancel, resume, list, progress), evaluation results and exports. Every function takes plain
values and returns plain data; errors a user can act on are stcore.errors.StcoreError.

Reading a project never imports torch: status, runs, review, cancel and label exports stay
fast. The functions that train, infer or read images import the heavy modules when called.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import jobs
from .access import default_project_path, is_local, password_configured, stcore_home  # noqa: F401 (re-exported)
from .errors import DeviceError, ProjectError, UsageError
from .jobs import current_phase, duration, eta_seconds, phase_eta  # noqa: F401 (re-exported)
from .kinds import KINDS, MAP_METHODS  # noqa: F401 (re-exported)
from .kinds import check_teacher, default_model, embeddings, has_ssl_encoder, recommended_backbone  # noqa: F401
from .metrics import accuracy_by_confidence, agreement, confusion, summarize
from .project import DATASETS, DB, Project, default_reviewer, is_project  # noqa: F401 (re-exported)
from . import orders
from .orders import DEFAULT_ORDER, ORDER_ALIASES, ORDERS  # noqa: F401 (re-exported)
from .store import ACTIVE_STATES, RUN_STATES  # noqa: F401
# The one table of review actions and statuses, for the CLI and the dashboard (re-exported).
from .actions import ACTIONS, LABELED, REVIEW_STATUSES, STATUS_COLORS, STATUSES, table as review_actions  # noqa: F401


# ------------------------------------------------------------------ projects
def open_project(path: str | os.PathLike) -> Project:
    return Project(path)


def migrate_store(path: str | os.PathLike, to: str) -> dict:
    """Copy a project's store to PostgreSQL (to: a postgresql:// URL) or back to SQLite (to:
    'sqlite') and make the copy the project's; no worker may be running. {'from', 'to', 'rows'
    (per table), 'kept' (where the old store stays)}."""
    from .store.location import migrate
    project = Project(path)
    jobs.notice_dead_workers(project)
    if busy := active(runs(project)):
        raise UsageError(f"run {busy[0]['id']} is {busy[0]['state']}; wait for it or cancel it before moving the store")
    project.store.close()
    return migrate(project.path, to)


def create_project(path: str | os.PathLike, **options) -> Project:
    """Decode a dataset once into a new project folder; see data.create_project for the options."""
    from .data import create_project as create
    return create(path, **options)


def ensure_default_project(say=print) -> Path:
    """The default Fashion-MNIST project with 10 labels per class, created on first use."""
    path = default_project_path()
    if not is_project(path):
        say(f"creating the default project in {path} (Fashion-MNIST, 10 labels per class)")
        create_project(path, dataset="fashion-mnist", labels_per_class=10, progress=lambda m: say(f"  {m}"))
    return path


def counts(project: Project) -> dict:
    return project.counts()


def class_counts(project: Project) -> dict[str, dict[int, int]]:
    return project.store.items.class_counts()


def classes(project: Project) -> list[dict]:
    """The classes, in id order: id, name, and how many human labels each has (labeled set and pool)."""
    counts = project.store.items.class_counts()
    return [{"id": k, "name": name, "labels": counts["labeled"].get(k, 0) + counts["accepted"].get(k, 0)
             + counts["corrected"].get(k, 0)} for k, name in enumerate(project.classes)]


def add_classes(project: Project, names: list[str]) -> list[int]:
    """New classes (each given the next id); their ids. Runs trained before are marked stale."""
    return project.store.classes.add(names)


def rename_class(project: Project, cls: str | int, name: str) -> None:
    """Give a class (by name or id) a new name; its labels, pseudo-labels and runs keep it."""
    project.store.classes.rename(project.class_index(cls), name)


def labels(project: Project, split: str | None = None) -> list[dict]:
    """Every human label (of split: labeled, pool or test), with its class, source (initial,
    reviewed, imported, simulated), reviewer, time and batch."""
    names = project.classes
    return [{**r, "class": names[r["class_id"]] if r["class_id"] < len(names) else None}
            for r in project.store.items.labels(split)]


def pseudo_label_accuracy(project: Project) -> dict | None:
    """Agreement of the stored pseudo-labels with hidden labels, overall and above 0.9."""
    return agreement(project.store.items.pseudo_label_agreement())


def status(project: Project) -> dict:
    runs_now = runs(project)
    return {"project": str(project.path), "dataset": project.meta["dataset"], "classes": project.classes,
            "counts": project.counts(), "pseudo_label_accuracy": pseudo_label_accuracy(project),
            "teacher": (project.teacher_run() or {}).get("id"), "embedding": project.store.meta().get("embedding"),
            "runs": [{k: r[k] for k in ("id", "role", "state", "device", "step", "total", "error")}
                     for r in runs_now],
            "skipped": project.store.items.skipped()}


def skipped_files(project: Project) -> list[dict]:
    return project.store.items.skipped()


def teacher(project: Project) -> dict | None:
    return project.teacher_run()


def promote(project: Project, run_id: str) -> list[dict]:
    """Make a finished run the teacher. Returns the classes it is more than 5 points worse at than
    the teacher it replaces (class_regressions; [] if none or nothing to compare): it promotes anyway."""
    previous = (project.teacher_run() or {}).get("id")
    if run(project, run_id)["classes_changed"]:
        raise UsageError(f"run {run_id} was trained before the project's classes changed, so its model no "
                         f"longer fits them; train a new teacher or student and promote that")
    project.promote(run_id)
    try:
        return class_regressions(project, run_id, against=previous)
    except ProjectError:  # a run without a stored evaluation: nothing to compare
        return []


def images(project: Project, ids: list[int], split: str = "pool"):
    """uint8 numpy images (N, C, H, W) of items, in the order of ids."""
    from .data import images_for
    return images_for(project, [int(i) for i in ids], split).numpy()


# ------------------------------------------------------------------ review
@contextmanager
def all_or_nothing(project: Project) -> Iterator[None]:
    """Decisions made inside are one transaction: a bad id or class anywhere changes nothing."""
    with project.store.tx():
        yield


def review(project: Project, ids, action: str, label: str | int | None = None, *,
           reviewer: str | None = None) -> int:
    """action: a name in ACTIONS (accept, correct, reject, reset), for pool item ids; label: the
    class of an action that needs one. Returns the items changed."""
    if action not in ACTIONS:
        raise UsageError(f"unknown review action {action!r}; use {', '.join(ACTIONS)}")
    a = ACTIONS[action]
    lab = project.class_index(label) if a.needs_class else None
    return project.store.decisions.decide(ids, a.status, lab, reviewer=reviewer or default_reviewer())


def still_pending(project: Project, ids: list[int]) -> list[int]:
    """Those of ids (pool items) that are still pending and pseudo-labeled, in their order."""
    pending: set[int] = set()
    for start in range(0, len(ids), 900):
        part = [int(i) for i in ids[start:start + 900]]
        pending |= {r["id"] for r in orders.page(project.store.queue, statuses=["pending"], ids=part, limit=len(part))
                    if r["pred"] is not None}
    return [int(i) for i in ids if int(i) in pending]


def accept_above(project: Project, threshold: float, *, classes=None, conf_max: float | None = None,
                 reviewer: str | None = None) -> int:
    """Accept every pending, pseudo-labeled item with confidence >= threshold (and <= conf_max),
    of the given classes (names or indices; all if None), in one transaction."""
    if not 0 <= threshold <= 1:
        raise UsageError(f"threshold must be within [0, 1], not {threshold}")
    cls = [project.class_index(c) for c in classes] if classes else None
    return project.store.decisions.accept_above(threshold, classes=cls, conf_max=conf_max,
                                      reviewer=reviewer or default_reviewer())


def count_above(project: Project, threshold: float, *, classes=None, conf_max: float | None = None) -> int:
    """How many items accept_above would accept."""
    return project.store.queue.count(classes=classes, statuses=["pending"], conf_min=max(threshold, 1e-9),
                               conf_max=conf_max)


def undo(project: Project, reviewer: str | None = None) -> int:
    """Revert the last decision (one item, or one bulk action) of reviewer, or of anyone when
    None. Returns the items reverted."""
    return project.store.decisions.undo(reviewer)


def last_action(project: Project, reviewer: str | None = None) -> dict | None:
    """{'new_status', 'n', 'at'} of the decision undo(reviewer) would revert, or None."""
    return project.store.decisions.last_batch(reviewer)


def history(project: Project, item_id: int | None = None, limit: int = 100) -> list[dict]:
    return project.store.decisions.history(item_id, limit)


def review_page(project: Project, *, classes=None, statuses=None, conf_min=None, conf_max=None,
                order: str = DEFAULT_ORDER, offset: int = 0, limit: int = 50) -> list[dict]:
    """One page of pool items (id, pred, confidence, margin, entropy, status, label, ...)."""
    return orders.page(project.store.queue, classes=classes, statuses=statuses, conf_min=conf_min, conf_max=conf_max,
                              order=order, offset=offset, limit=limit)


def review_count(project: Project, *, classes=None, statuses=None, conf_min=None, conf_max=None) -> int:
    return project.store.queue.count(classes=classes, statuses=statuses, conf_min=conf_min, conf_max=conf_max)


def simulate_review(project: Project, n: int, *, order: str = DEFAULT_ORDER, reviewer: str = "simulated") -> dict:
    """A perfect reviewer: takes the first n pending pseudo-labeled items in the given order and
    accepts each one whose prediction equals its hidden label, correcting the others."""
    if not project.meta.get("hidden_labels"):
        raise ProjectError("this project has no hidden labels, so a reviewer cannot be simulated")
    rows = [r for r in orders.page(project.store.queue, statuses=["pending"], order=order, limit=n) if r["pred"] is not None]
    if not rows:
        raise ProjectError("no pending pseudo-labels to review; run pseudo-label first")
    truth = project.store.items.hidden_labels([r["id"] for r in rows])
    right = [r["id"] for r in rows if truth[r["id"]] == r["pred"]]
    by_class: dict[int, list[int]] = {}
    for r in rows:
        if truth[r["id"]] != r["pred"]:
            by_class.setdefault(truth[r["id"]], []).append(r["id"])
    with project.store.tx():
        project.store.decisions.decide(right, "accepted", reviewer=reviewer)
        for c, ids in by_class.items():
            project.store.decisions.decide(ids, "corrected", c, reviewer=reviewer)
    return {"reviewed": len(rows), "accepted": len(right), "corrected": len(rows) - len(right), "order": order}


# ------------------------------------------------------------------ runs
def runs(project: Project) -> list[dict]:
    """Every run, oldest first; runs whose worker died are marked interrupted first."""
    jobs.notice_dead_workers(project)
    now = list(range(len(project.classes)))
    return [_with_classes(r, now) for r in project.store.runs.list()]


def run(project: Project, run_id: str) -> dict:
    return _with_classes(project.store.runs.get(run_id), list(range(len(project.classes))))


def _with_classes(run: dict, now: list[int]) -> dict:
    """run, with classes_changed: whether the project's classes changed since it was trained (its
    model then no longer fits: it stays listed, with its results, and a new run is needed)."""
    return {**run, "classes_changed": run.get("class_ids") is not None and run["class_ids"] != now}


def metrics(project: Project, run_id: str, *, after_step: int = -1) -> list[dict]:
    return project.store.runs.metrics(run_id, after_step=after_step)


def active(run_list: list[dict]) -> list[dict]:
    return [r for r in run_list if r["state"] in ACTIVE_STATES]


def devices() -> list[dict]:
    """The devices training can use: name, a label for people, free and total memory."""
    from .devices import available
    return available()


def resolve_device(name: str) -> str:
    from .devices import resolve
    return resolve(name)


def models() -> tuple[str, ...]:
    from .models import MODELS
    return MODELS


def methods() -> dict[str, dict]:
    """The student methods: {name: {'description', 'online', 'options', 'defaults'}}, the default first."""
    from .methods import DEFAULT_METHOD, METHODS
    names = [DEFAULT_METHOD] + [m for m in METHODS if m != DEFAULT_METHOD]
    return {n: {"description": METHODS[n].description, "online": METHODS[n].online,
                "options": METHODS[n].options, "defaults": dict(METHODS[n].defaults)} for n in names}


def method_aliases() -> dict[str, str]:
    """Older method names and what each means ('fixmatch means --method consistency ...')."""
    from .methods import ALIASES, alias_meaning
    return {a: alias_meaning(a) for a in ALIASES}


def train_config(values: dict) -> dict:
    """The whole config a run would get from values (what the user gave), as plain data: the
    method's defaults and the default budget filled in. ConfigError for a bad key or value."""
    from .config import make_config, to_dict
    return to_dict(make_config(values))


def start_training(project: Project, values: dict, *, detach: bool = True) -> str:
    """Check and start a teacher or student run (values: config fields, role required); see start_job."""
    return start_job(project, values.get("role", "teacher"), values, detach=detach)


def start_job(project: Project, kind: str, values: dict, *, detach: bool = True) -> str:
    """Check and start a run of a job kind (kinds.KINDS) with values, the config fields a user gave;
    the rest take the kind's defaults. An unknown key or a wrong type is a ConfigError, and the
    kind's checks (the device, the teacher, the backbone...) refuse what would fail in the
    worker, before any run is created. detach: a detached worker; else in this process,
    returning when it ends."""
    if kind not in KINDS:
        raise UsageError(f"unknown job kind {kind!r}; use one of {', '.join(KINDS)}")
    cfg, total = KINDS[kind].check(project, values)
    config = dataclasses.asdict(cfg)
    if config.get("nnodes", 1) > 1:  # queued: each machine starts its share with its torchrun line (node_commands)
        return jobs.create(project, kind, config, total=total)
    return _start(project, kind, config, total, detach)


def job_defaults(kind: str) -> dict:
    """The config a run of a job kind gets when the user gives nothing, as plain data."""
    return dataclasses.asdict(KINDS[kind].config({}))


def resumable(run_row: dict) -> bool:
    """Whether a run can be resumed now: it stopped (interrupted, cancelled or failed), its kind
    goes on from where it stopped, and the project's classes are those it trained on. The Runs
    table and the live panel both ask this."""
    kind = KINDS.get(run_row["role"])
    return (run_row["state"] in ("interrupted", "cancelled", "failed") and kind is not None and kind.resumes
            and not run_row.get("classes_changed"))


def summary(run_row: dict) -> str | None:
    """A finished run's result in one line (its kind's summary), else None."""
    kind = KINDS.get(run_row["role"])
    if run_row["state"] != "finished" or not run_row.get("result") or kind is None:
        return None
    return kind.summary(run_row["result"])


def _given(**values) -> dict:
    """The keyword arguments a caller gave (not None): the rest take the job kind's defaults."""
    return {k: v for k, v in values.items() if v is not None}


def world_size(run_row: dict) -> int:
    """The processes a run trains on (1 but for runs under torchrun)."""
    from .store import world_size as of_config
    return of_config(run_row.get("config") or {})


def batch_per_process(run_row: dict) -> int | None:
    """The batch each process of a run on several processes takes (the run's batch divided among
    them), else None."""
    world, batch = world_size(run_row), (run_row.get("config") or {}).get("batch_size")
    return batch // world if world > 1 and batch else None


def placement(run_row: dict) -> str:
    """Where a run trains, for people: its device, or its processes and the batch each takes."""
    world = world_size(run_row)
    if world == 1:
        return run_row["device"]
    return f"{world} processes ({run_row['device']}), batch {batch_per_process(run_row)} each"


def node_commands(project: Project, run_id: str, endpoint: str | None = None) -> list[list[str]]:
    """The torchrun line each machine of a run on several machines runs, node 0 first. endpoint: host:port
    of the rendezvous, reachable from every machine (default: this machine's name, port 29400)."""
    import socket
    from .distributed import node_command
    run_row = project.store.runs.get(run_id)
    cfg = run_row["config"]
    if int(cfg.get("nnodes") or 1) < 2:
        raise UsageError(f"run {run_id} runs on one machine; it needs no torchrun lines")
    endpoint = endpoint or f"{socket.gethostname()}:29400"
    return [node_command(project.path, run_id, nnodes=int(cfg["nnodes"]), nproc=int(cfg.get("nproc") or 1),
                         node_rank=k, endpoint=endpoint, device=run_row["device"]) for k in range(int(cfg["nnodes"]))]


def start_pseudo_label(project: Project, *, device: str | None = None, teacher_run: str | None = None,
                       batch_size: int | None = None, detach: bool = True) -> str:
    """Pseudo-label the whole pool with a teacher (the current one by default)."""
    return start_job(project, "pseudo-label", _given(device=device, teacher_run=teacher_run, batch_size=batch_size),
                     detach=detach)


BACKBONES = ("pixels", "ssl", "efficientnet-lite0", "torchvision:ARCH", "file:PATH")


def start_embedding(project: Project, backbone: str | None = None, *, device: str | None = None,
                    weights: str | None = None, image_size: int | None = None, batch_size: int | None = None,
                    epochs: float | None = None, minutes: float | None = None, seed: int | None = None,
                    nproc: int | None = None, detach: bool = True) -> str:
    """Embed every image of the project with a backbone (by default the one recommended for its
    images), in a worker; once it finishes, the graph and the pseudo-labels read this embedding.
    The ssl backbone first pretrains on the project's images for epochs or minutes, whichever
    ends first. nproc (or several GPUs in device): a network backbone's batches shared among
    that many processes."""
    return start_job(project, "embed", _given(backbone=backbone, device=device, weights=weights, image_size=image_size,
                                              batch_size=batch_size, epochs=epochs, minutes=minutes, seed=seed,
                                              nproc=nproc), detach=detach)


def start_label_issues(project: Project, *, device: str | None = None, detach: bool = True) -> str:
    """Rank the human labels (labeled, accepted, corrected) by how likely each is wrong, in a
    worker: each label against what its neighbours in the embedding say, from the other labels."""
    return start_job(project, "label-issues", _given(device=device), detach=detach)


def similar(project: Project, item_id: int, k: int = 12) -> dict:
    """{'id', 'over', 'neighbours': [{'id', 'similarity', 'label', 'status'}, ...]}: the k images
    nearest to a labeled or pool item in the project's embedding, most similar first. A lookup
    of a few tens of milliseconds at 60,000 images, so it runs here, not in a worker."""
    from .quality import similar as nearest
    if k < 1:
        raise UsageError(f"--k must be at least 1, not {k}")
    return nearest(project, int(item_id), k)


def start_duplicates(project: Project, *, threshold: float | None = None, device: str | None = None,
                     detach: bool = True) -> str:
    """Find near-identical images among every split (the test set included), in a worker: pairs
    whose embedding rows have a cosine similarity of at least threshold."""
    return start_job(project, "duplicates", _given(threshold=threshold, device=device), detach=detach)


def label_issues(project: Project) -> dict | None:
    """The latest finished label-issues ranking ({'issues', 'checked', 'over'}) with its run id
    and whether the human labels changed since ('stale'), or None."""
    done = [r for r in project.store.runs.list("label-issues") if r["state"] == "finished" and r["result"]]
    if not done:
        return None
    result = done[-1]["result"]
    return {**result, "run": done[-1]["id"], "stale": project.store.items.human_labels_digest() != result["labels"]}


# ------------------------------------------------------------------ the map
MAP_POINTS = 100_000  # the Map page draws at most this many points (a fixed random sample above)
SELECTION = "map"     # the store's name for the map's selection


def start_map(project: Project, *, method: str | None = None, device: str | None = None, detach: bool = True) -> str:
    """Lay the current embedding (the labeled set and the pool) out in 2-D, in a worker: UMAP
    up to the exact neighbour search's size, PCA above it or when asked."""
    return start_job(project, "map", _given(method=method, device=device), detach=detach)


def map_points(project: Project, *, limit: int = MAP_POINTS, seed: int = 0) -> dict | None:
    """The map's points as columns ('id', 'x', 'y', 'split', 'pred', 'confidence', 'status',
    'label': the human or decided class, 'truth': the hidden class where known), with
    'method', 'embedding', 'stale' (the embedding changed since), 'total' and 'shown' (a fixed
    random sample of limit points above limit); None when the project has no map yet."""
    import numpy as np
    from .projection import load
    found = load(project)
    if found is None:
        return None
    xy, meta = found
    items = project.store.items.map_items()
    if len(items) != len(xy):
        return {**meta, "stale": True, "total": len(items), "shown": 0, **{k: [] for k in MAP_COLUMNS}}
    keep = np.arange(len(items))
    if len(items) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
    cols = {name: [items[i][k] for i in keep] for k, name in enumerate(("id", "row", "split", "pred", "confidence",
                                                                      "status", "label", "truth"))}
    rows = np.asarray(cols.pop("row"), dtype=np.int64)
    return {**meta, "total": len(items), "shown": len(keep), "x": xy[rows, 0].tolist(), "y": xy[rows, 1].tolist(),
            **cols}


MAP_COLUMNS = ("id", "x", "y", "split", "pred", "confidence", "status", "label", "truth")


def set_selection(project: Project, ids: list[int]) -> int:
    """Keep a list of labeled or pool item ids (a selection on the map) for the Review page."""
    return project.store.queue.set_selection(SELECTION, ids)


def selection(project: Project) -> list[int]:
    return project.store.queue.selection(SELECTION)


def items(project: Project, ids: list[int]) -> list[dict]:
    """Review rows of labeled and pool items in the order given (a labeled item: status
    'labeled', its label, no prediction)."""
    return project.store.queue.rows_by_id(ids)


def set_label(project: Project, ids: list[int], label: str | int, *, reviewer: str | None = None) -> int:
    """Give items the class label, whichever their split: pool items are corrected, items of
    the labeled set relabeled; one transaction, and one action for undo. Returns the items changed."""
    lab = project.class_index(label)
    rows = project.store.queue.rows_by_id(ids)
    known = {r["id"] for r in rows}
    missing = [int(i) for i in ids if int(i) not in known]
    if missing:
        raise UsageError(f"unknown item id(s): {', '.join(map(str, missing[:5]))}; ids are on each Review card")
    pool = [r["id"] for r in rows if r["split"] == "pool"]
    labeled = [r["id"] for r in rows if r["split"] == "labeled"]
    who = reviewer or default_reviewer()
    with project.store.tx():
        batch = project.store.decisions.next_batch()
        n = project.store.decisions.decide(pool, "corrected", lab, reviewer=who, batch=batch) if pool else 0
        return n + (project.store.decisions.relabel(labeled, lab, reviewer=who, batch=batch) if labeled else 0)


def duplicates(project: Project) -> dict | None:
    """The latest finished duplicates search ({'pairs', 'threshold', 'over', 'images'}) with its
    run id, or None."""
    done = [r for r in project.store.runs.list("duplicates") if r["state"] == "finished" and r["result"]]
    return {**done[-1]["result"], "run": done[-1]["id"]} if done else None


def start_evaluation(project: Project, run_id: str, *, device: str | None = None, detach: bool = True) -> str:
    """Evaluate a finished run on the whole test set again, in a worker (evaluate --recompute)."""
    return start_job(project, "evaluate", _given(run=run_id, device=device), detach=detach)


def _start(project: Project, role: str, config: dict, total: int, detach: bool) -> str:
    run_id = jobs.create(project, role, config, total=total)
    if detach:
        jobs.spawn(project, run_id)
    else:
        _execute_here(project, run_id)
    return run_id


def _execute_here(project: Project, run_id: str) -> None:
    from .worker import run
    project.store.runs.update(run_id, pid=os.getpid())
    run(project, run_id)


def cancel(project: Project, run_id: str) -> str:
    """Ask a run to stop at its next step, with a checkpoint. Returns its state now."""
    return jobs.cancel(project, run_id)


def resume(project: Project, run_id: str, *, detach: bool = True) -> str:
    """Continue an interrupted, cancelled or failed run from its latest checkpoint."""
    stopped = project.store.runs.get(run_id)
    if stopped["role"] in ("teacher", "student") and (project.run_dir(run_id) / "latest.pt").exists():
        from .checkpoints import run_checkpoint
        run_checkpoint(project, run_id)  # a damaged or foreign checkpoint is refused here, not in the worker
    try:
        from .devices import resolve_many
        resolve_many(stopped["device"], int(stopped["config"].get("nproc") or 1))
    except DeviceError as e:
        raise DeviceError(f"run {run_id} ran on {stopped['device']}, which is not here now: {e}") from e
    jobs.requeue(project, run_id)
    if int(stopped["config"].get("nnodes") or 1) > 1:
        return run_id  # queued again: each machine runs its torchrun line once more
    if detach:
        jobs.spawn(project, run_id)
    else:
        _execute_here(project, run_id)
    return run_id


def accuracy_of(project: Project, run_row: dict) -> tuple[float | None, bool]:
    """(a run's test accuracy, whether it is final): its final result, else (cancelled, failed,
    running) its last evaluation along the way, else None. A pseudo-label job's is its agreement
    with the hidden labels."""
    acc = (run_row.get("result") or {}).get("accuracy")
    if acc is not None:
        return (acc.get("accuracy") if isinstance(acc, dict) else acc), True
    evals = project.store.runs.metrics(run_row["id"], "eval")
    return (evals[-1]["accuracy"] if evals else None), False


# ------------------------------------------------------------------ evaluation
def evaluation(project: Project, run_id: str | None = None) -> dict:
    """{'teacher': {...}, 'student': {...}} for the latest finished run of each role, or {role: {...}}
    for one run: accuracy, per-class accuracy, precision, recall, F1, support and the confusion
    matrix, as the run's worker stored them."""
    chosen = [project.store.runs.get(run_id)] if run_id else [
        done[-1] for role in ("teacher", "student")
        if (done := [r for r in project.store.runs.list(role) if r["state"] == "finished"])]
    out = {}
    for r in chosen:
        if not r["result"]:
            raise ProjectError(f"run {r['id']} has no stored evaluation; `stcore evaluate "
                               f"{project.path} --run {r['id']} --recompute` computes it")
        out[r["role"]] = {"run": r["id"], **r["result"]}
    return out


def test_predictions(project: Project, run_id: str) -> list[int] | None:
    """The predicted class of every test item (in the order of test_items), as the run saved them
    with its final checkpoint; None for a run that saved none (start_evaluation makes them)."""
    import numpy as np
    p = project.run_dir(run_id) / "test_probs.npy"
    if not p.exists():
        return None
    probs = np.load(p)
    return probs.argmax(1).tolist() if len(probs) else []


def test_items(project: Project) -> tuple[list[int], list[int]]:
    """(ids, labels) of the test set."""
    return project.store.items.test_set()


def summary_of(project: Project, predictions: list[int]) -> dict:
    """Accuracy and per-class metrics of predictions of the test set."""
    _, labels = project.store.items.test_set()
    return summarize(confusion(labels, predictions, len(project.classes)), project.classes)


def calibration(project: Project, bins: int = 10) -> dict:
    """Pseudo-label accuracy by confidence bin: of items a person decided one at a time
    (accepted = right, corrected = wrong; bulk accepts would count the teacher as right by
    construction) and, where known, against hidden labels."""
    out = {"reviewed": accuracy_by_confidence(project.store.decisions.single_decisions(), bins)}
    hidden = project.store.items.hidden_agreement_by_item()
    if hidden:
        out["hidden"] = accuracy_by_confidence(hidden, bins)
    return out


# ------------------------------------------------------------------ exports
EXPORT_COLUMNS = ["id", "source", "label", "status", "teacher_confidence", "teacher_run"]


def label_rows(project: Project) -> list[dict]:
    """Every labeled item, every decision, and every pending pseudo-label, for export.
    teacher_confidence is the teacher's confidence in the row's label: empty for human labels
    (the labeled set, corrections) and for rejected items."""
    classes, out = project.classes, []
    for split, item, source, pred, decided, status, conf, teacher_run in project.store.items.export_rows():
        label = decided if status in ("labeled", "accepted", "corrected") else pred if status == "pending" else None
        if status == "pending" and pred is None:
            continue  # not pseudo-labeled yet
        teacher_says = status in ("accepted", "pending") and conf is not None
        out.append({"id": item, "source": source, "label": classes[label] if label is not None else "",
                    "status": status, "teacher_confidence": round(conf, 6) if teacher_says else None,
                    "teacher_run": teacher_run if status != "labeled" else None})
    return out


def labels_csv(project: Project, rows: list[dict] | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(EXPORT_COLUMNS)
    w.writerows([r["id"], _csv_safe(r["source"]), _csv_safe(r["label"]), r["status"], r["teacher_confidence"],
                 r["teacher_run"]] for r in (label_rows(project) if rows is None else rows))
    return buf.getvalue()


def labels_json(project: Project, rows: list[dict] | None = None) -> str:
    """{"classes": [...], "items": [...]}, one item a line (json's C encoder: an indent would
    switch it to the pure-Python one, four times slower at 60,000 items)."""
    items = ",\n".join(json.dumps(r) for r in (label_rows(project) if rows is None else rows))
    return f'{{"classes": {json.dumps(project.classes)},\n"items": [\n{items}\n]}}\n'


def export_labels(project: Project, dest: str | os.PathLike) -> int:
    """Write labels.csv or labels.json (by the suffix) atomically; returns the rows written."""
    dest, rows = Path(dest), label_rows(project)
    text = labels_json(project, rows) if dest.suffix.lower() == ".json" else labels_csv(project, rows)
    _atomic_write(dest, text.encode("utf-8"))
    return len(rows)


def model_bytes(project: Project, run_id: str | None = None) -> tuple[str, bytes]:
    """(run id, bytes of a weights_only-loadable dict: EMA weights, config, classes, input shape)
    of a run, by default the latest finished student, else teacher."""
    from .checkpoints import export_bytes
    if run_id is None:
        done = [r for r in project.store.runs.list("student") if r["state"] == "finished"] or \
               [r for r in project.store.runs.list("teacher") if r["state"] == "finished"]
        if not done:
            raise ProjectError("there is no finished run to export; train a teacher or a student first")
        run_id = done[-1]["id"]
    return run_id, export_bytes(project, run_id)


def export_model(project: Project, dest: str | os.PathLike, run_id: str | None = None) -> str:
    run_id, blob = model_bytes(project, run_id)
    _atomic_write(Path(dest), blob)
    return run_id


def _csv_safe(v):
    """Keep spreadsheet apps from running a cell as a formula (CSV injection)."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def _atomic_write(dest: Path, blob: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        raise ProjectError(f"could not write {dest}: {e.strerror or e}; free some space or choose "
                           f"another path") from e
    finally:
        tmp.unlink(missing_ok=True)


def estimate_training(project: Project, values: dict) -> dict | None:
    """How long a run with these values (as for start_training) would take, measured from the
    newest run of the same role, model and device that logged its pace: {'seconds', 'per_step',
    'steps', 'from_run'}; None when no such run has been measured yet."""
    from .jobs import training_pace
    cfg = train_config(values)
    samples = cfg["batch_size"] * (1 + cfg["unlabeled_ratio"] * (cfg["role"] == "student"))
    for r in reversed(runs(project)):
        rc = r.get("config") or {}
        if r["role"] != cfg["role"] or rc.get("model") != cfg["model"] or r["device"] != values.get("device", r["device"]):
            continue
        pace = training_pace(r, metrics(project, r["id"]))
        if pace is None:
            continue
        steps = cfg["steps"]
        if not steps:  # a budget in epochs: its steps follow from the data, in the worker
            return None
        per_step = pace["per_sample"] * samples
        return {"seconds": per_step * steps + pace["phases"], "per_step": per_step, "phases": pace["phases"],
                "steps": steps, "from_run": r["id"]}
    return None


# ------------------------------------------------------------------ insights: before a bulk accept, before a promote
def bulk_accept_impact(project: Project, threshold: float, *, classes=None, conf_max: float | None = None) -> dict:
    """What accept_above(project, threshold, classes=..., conf_max=...) would do, without doing it:
    {'n', 'accepted', 'before', 'after' (class name -> human labels: the labeled set, accepted and
    corrected items), 'largest_before', 'largest_after' ({'class', 'count', 'share'}),
    'expected_wrong' (how many of the n the reviewed items' accuracy at their confidence, else the
    confidence itself, expects to be wrong), 'estimate' (which of the two), 'calibrated_items',
    'warning' (a sentence when the largest class would take over the human labels, else None)}."""
    if not 0 <= threshold <= 1:
        raise UsageError(f"threshold must be within [0, 1], not {threshold}")
    cls = [project.class_index(c) for c in classes] if classes else None
    n = count_above(project, threshold, classes=cls, conf_max=conf_max)
    rows = review_page(project, classes=cls, statuses=["pending"], conf_min=max(threshold, 1e-9), conf_max=conf_max,
                       order="confidence", limit=n) if n else []
    return _accept_impact(project, rows)


def ids_accept_impact(project: Project, ids: list[int]) -> dict:
    """bulk_accept_impact for accepting these pool items (those still pending and pseudo-labeled)."""
    return _accept_impact(project, [r for r in items(project, ids)
                                    if r["status"] == "pending" and r["pred"] is not None])


def _accept_impact(project: Project, rows: list[dict]) -> dict:
    from .insights import CALIBRATION_BINS, accept_impact
    counts, human = class_counts(project), {}
    for part in ("labeled", "accepted", "corrected"):
        for c, n in counts[part].items():
            human[c] = human.get(c, 0) + n
    return accept_impact(project.classes, human, [(r["pred"], r["confidence"]) for r in rows],
                         calibration(project, CALIBRATION_BINS)["reviewed"])


def class_regressions(project: Project, run_id: str, *, against: str | None = None, points: float = 5.0) -> list[dict]:
    """The classes whose test accuracy in run_id is more than `points` percentage points below
    that of `against` (default: the project's teacher), worst first: [{'name', 'before', 'after'
    (accuracies, fractions), 'drop' (percentage points)}]. [] when there is nothing to compare
    against (no teacher, or run_id is the teacher). Both runs need a stored evaluation (ProjectError)."""
    from .insights import class_regressions as regressions
    against = against or (project.teacher_run() or {}).get("id")
    if not against or against == run_id:
        return []
    (after,), (before,) = evaluation(project, run_id).values(), evaluation(project, against).values()
    return regressions(before["per_class"], after["per_class"], points=points)
