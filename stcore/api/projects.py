"""Projects: create, open and migrate them; their classes, labels, counts and status."""
from __future__ import annotations

import os
from pathlib import Path

from .. import jobs
from ..access import default_project_path
from ..errors import UsageError
from ..metrics import agreement
from ..project import Project, is_project
from .runs import active, runs


def open_project(path: str | os.PathLike) -> Project:
    return Project(path)


def migrate_store(path: str | os.PathLike, to: str) -> dict:
    """Copy a project's store to PostgreSQL (to: a postgresql:// URL) or back to SQLite (to:
    'sqlite') and make the copy the project's; no worker may be running. {'from', 'to', 'rows'
    (per table), 'kept' (where the old store stays)}."""
    from ..store.location import migrate
    project = Project(path)
    jobs.notice_dead_workers(project)
    if busy := active(runs(project)):
        raise UsageError(f"run {busy[0]['id']} is {busy[0]['state']}; wait for it or cancel it before moving the store")
    project.store.close()
    return migrate(project.path, to)


def create_project(path: str | os.PathLike, **options) -> Project:
    """Decode a dataset once into a new project folder; see data.create_project for the options."""
    from ..data import create_project as create
    return create(path, **options)


def ensure_default_project(say=print) -> Path:
    """The default Fashion-MNIST project with 10 labels per class, created on first use."""
    path = default_project_path()
    if not is_project(path):
        say(f"creating the default project in {path} (Fashion-MNIST, 10 labels per class)")
        create_project(path, dataset="fashion-mnist", labels_per_class=10, progress=lambda m: say(f"  {m}"))
    return path


def info(project: Project) -> dict:
    """What a face shows of a project: its id, folder, dataset, image shape [C, H, W] and classes."""
    return {"id": project.meta["project_id"], "path": str(project.path), "dataset": project.meta["dataset"],
            "input_shape": list(project.meta["input_shape"]), "classes": project.classes}


def counts(project: Project) -> dict:
    return project.counts()


def class_counts(project: Project) -> dict[str, dict[int, int]]:
    return project.store.items.class_counts()


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


def images(project: Project, ids: list[int], split: str = "pool"):
    """uint8 numpy images (N, C, H, W) of items, in the order of ids."""
    from ..data import images_for
    return images_for(project, [int(i) for i in ids], split).numpy()
