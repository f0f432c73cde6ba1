"""Runs: start a job of any kind (kinds.KINDS), list and follow runs, cancel and resume them,
and what a run would cost before it starts."""
from __future__ import annotations

import dataclasses
import os

from .. import jobs
from ..errors import DeviceError, UsageError
from ..kinds import KINDS, classes_changed
from ..project import Project
from ..store import ACTIVE_STATES


def runs(project: Project) -> list[dict]:
    """Every run, oldest first; runs whose worker died are marked interrupted first."""
    jobs.notice_dead_workers(project)
    now = list(range(len(project.classes)))
    return [_with_classes(r, now) for r in project.store.runs.list()]


def run(project: Project, run_id: str) -> dict:
    return _with_classes(project.store.runs.get(run_id), list(range(len(project.classes))))


def _with_classes(run: dict, now: list[int]) -> dict:
    """run, with classes_changed: whether the project's classes changed since it was trained (its
    model then no longer fits: it stays listed, with its results, and a new run is needed), and
    stale: why, where an edit of the classes said so."""
    return {**run, "classes_changed": classes_changed(run, len(now))}


def running_in(project: Project, pid: int) -> str | None:
    """The id of the run that process pid is running now, if any."""
    return project.store.runs.running_of(pid)


def metrics(project: Project, run_id: str, *, after_step: int = -1) -> list[dict]:
    return project.store.runs.metrics(run_id, after_step=after_step)


def active(run_list: list[dict]) -> list[dict]:
    return [r for r in run_list if r["state"] in ACTIVE_STATES]


def devices() -> list[dict]:
    """The devices training can use: name, a label for people, free and total memory."""
    from ..devices import available
    return available()


def resolve_device(name: str) -> str:
    from ..devices import resolve
    return resolve(name)


def models() -> tuple[str, ...]:
    from ..models import MODELS
    return MODELS


def methods() -> dict[str, dict]:
    """The student methods: {name: {'description', 'online', 'options', 'defaults'}}, the default first."""
    from ..methods import DEFAULT_METHOD, METHODS
    names = [DEFAULT_METHOD] + [m for m in METHODS if m != DEFAULT_METHOD]
    return {n: {"description": METHODS[n].description, "online": METHODS[n].online,
                "options": METHODS[n].options, "defaults": dict(METHODS[n].defaults)} for n in names}


def method_aliases() -> dict[str, str]:
    """Older method names and what each means ('fixmatch means --method consistency ...')."""
    from ..methods import ALIASES, alias_meaning
    return {a: alias_meaning(a) for a in ALIASES}


def train_config(values: dict) -> dict:
    """The whole config a run would get from values (what the user gave), as plain data: the
    method's defaults and the default budget filled in. ConfigError for a bad key or value."""
    from ..config import make_config, to_dict
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
    from ..store import world_size as of_config
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
    from ..distributed import node_command
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
                    nproc: int | None = None, runtime: str | None = None, detach: bool = True) -> str:
    """Embed every image of the project with a backbone (by default the one recommended for its
    images), in a worker; once it finishes, the graph and the pseudo-labels read this embedding.
    The ssl backbone first pretrains on the project's images for epochs or minutes, whichever
    ends first. nproc (or several GPUs in device): a network backbone's batches shared among
    that many processes. runtime: what runs the forward passes on one CPU process (auto: the
    fastest installed, see stcore/runtime.py)."""
    return start_job(project, "embed", _given(backbone=backbone, device=device, weights=weights, image_size=image_size,
                                              batch_size=batch_size, epochs=epochs, minutes=minutes, seed=seed,
                                              nproc=nproc, runtime=runtime), detach=detach)


def start_label_issues(project: Project, *, device: str | None = None, detach: bool = True) -> str:
    """Rank the human labels (labeled, accepted, corrected) by how likely each is wrong, in a
    worker: each label against what its neighbours in the embedding say, from the other labels."""
    return start_job(project, "label-issues", _given(device=device), detach=detach)


def start_duplicates(project: Project, *, threshold: float | None = None, device: str | None = None,
                     detach: bool = True) -> str:
    """Find near-identical images among every split (the test set included), in a worker: pairs
    whose embedding rows have a cosine similarity of at least threshold."""
    return start_job(project, "duplicates", _given(threshold=threshold, device=device), detach=detach)


def start_map(project: Project, *, method: str | None = None, device: str | None = None, detach: bool = True) -> str:
    """Lay the current embedding (the labeled set and the pool) out in 2-D, in a worker: UMAP
    up to the exact neighbour search's size, PCA above it or when asked."""
    return start_job(project, "map", _given(method=method, device=device), detach=detach)


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
    from ..worker import run
    project.store.runs.update(run_id, pid=os.getpid())
    run(project, run_id)


def cancel(project: Project, run_id: str) -> str:
    """Ask a run to stop at its next step, with a checkpoint. Returns its state now."""
    return jobs.cancel(project, run_id)


def resume(project: Project, run_id: str, *, detach: bool = True) -> str:
    """Continue an interrupted, cancelled or failed run from its latest checkpoint."""
    stopped = project.store.runs.get(run_id)
    if stopped["role"] in ("teacher", "student") and (project.run_dir(run_id) / "latest.pt").exists():
        from ..checkpoints import run_checkpoint
        run_checkpoint(project, run_id)  # a damaged or foreign checkpoint is refused here, not in the worker
    try:
        from ..devices import resolve_many
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


def estimate_training(project: Project, values: dict) -> dict | None:
    """How long a run with these values (as for start_training) would take, measured from the
    newest run of the same role, model and device that logged its pace: {'seconds', 'per_step',
    'steps', 'from_run'}; None when no such run has been measured yet."""
    from ..jobs import training_pace
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
