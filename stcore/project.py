"""A project folder and its store: the light handle every command opens (no torch here).

PROJECT/
  project.db      the store (SQLite, WAL), or store.json: where it is on PostgreSQL
  images/         train.pt and test.pt: uint8 tensors decoded once, memory-mapped on load
  runs/RUN_ID/    latest.pt (the checkpoint), test_probs.npy (its test-set probabilities), log.txt
"""
from __future__ import annotations

import getpass
import numbers
import os
from pathlib import Path

from .errors import NotFound, ProjectError, StoreError, UsageError
from .store import STATUSES, Store
from .store.location import DB, engine_of, is_project
# What a project can be made from: built-in datasets, or a folder of the user's own images.
BUILTIN_DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100")
DATASETS = (*BUILTIN_DATASETS, "folder")


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Project:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            raise ProjectError(f"{self.path} does not exist; create a project with "
                               f"`stcore init {path}`")
        if not is_project(self.path):
            raise ProjectError(f"{self.path} is not a stcore project (it has no {DB}); create one with "
                               f"`stcore init {path}`, or pick the folder that holds {DB}")
        try:
            self.store = Store(engine_of(self.path))
        except StoreError as e:
            raise ProjectError(str(e)) from e
        self.meta = self.store.meta()

    @property
    def classes(self) -> list[str]:
        """The class names; a class's index in this list is its id (ids run from 0, in order)."""
        return self.store.classes.names()

    def class_index(self, name_or_index: str | int) -> int:
        """A class given by name (any case) or index -> index; NotFound naming the choices. An int
        is an index, so a class named '1' at index 0 is not mistaken for index 1."""
        classes = self.classes
        if not classes:
            raise NotFound("the project has no classes yet; add them with `stcore classes PROJECT --add NAME`")
        if isinstance(name_or_index, numbers.Integral) and not isinstance(name_or_index, bool):
            if 0 <= int(name_or_index) < len(classes):
                return int(name_or_index)
            raise NotFound(f"class index {name_or_index} is out of range: the project has {len(classes)} "
                           f"classes ({', '.join(classes)})")
        s = str(name_or_index).strip()
        if s in classes:
            return classes.index(s)
        if s.lstrip("-").isdigit() and 0 <= int(s) < len(classes):
            return int(s)
        lower = [c.lower() for c in classes]
        if s.lower() in lower:
            return lower.index(s.lower())
        raise NotFound(f"unknown class {s!r}; use a name ({', '.join(classes)}) "
                       f"or an index 0-{len(classes) - 1}")

    def check_trainable(self) -> None:
        """UsageError saying what to do when a model has nothing to learn from yet: fewer than
        two classes, or no human label in the labeled set or the pool."""
        if len(self.classes) < 2:
            raise UsageError(f"the project has {len(self.classes)} class(es); a classifier needs at least two: "
                             f"add them with `stcore classes {self.path} --add NAME ...`")
        if not self.store.items.count_labels():
            raise UsageError("the project has no labels yet: label some images first (Review page, or "
                             f"`stcore review {self.path} --correct ID=CLASS ...`), then train")

    def run_dir(self, run_id: str) -> Path:
        return self.path / "runs" / run_id

    def image_cache(self, split: str) -> Path:
        """images/train.pt (labeled set and pool) or images/test.pt."""
        return self.path / "images" / f"{'test' if split == 'test' else 'train'}.pt"

    def counts(self) -> dict:
        """Items per split, pseudo-labeled pool items, and pool items per review status."""
        st = self.store.items.status_counts()
        split = self.store.items.split_counts()
        return {"labeled": split["labeled"], "pool": sum(st.values()), "test": split["test"],
                "pseudo_labeled": split["pseudo_labeled"], **st}

    def teacher_run(self) -> dict | None:
        """The current teacher: the run chosen with promote(), else the latest finished teacher."""
        chosen = self.store.meta().get("teacher")
        if chosen:
            try:
                run = self.store.runs.get(chosen)
                if run["state"] == "finished":
                    return run
            except NotFound:
                pass
        done = [r for r in self.store.runs.list("teacher") if r["state"] == "finished"]
        return done[-1] if done else None

    def promote(self, run_id: str) -> None:
        """Make a finished run (usually a student) the teacher for pseudo-labels and the next student."""
        run = self.store.runs.get(run_id)
        if run["role"] not in ("teacher", "student") or run["state"] != "finished":
            raise UsageError(f"run {run_id} is {run['role']} and {run['state']}; only a finished "
                             f"teacher or student can become the teacher")
        self.store.set_meta(teacher=run_id)
        self.meta = self.store.meta()


__all__ = ["DB", "Project", "ProjectError", "STATUSES", "default_reviewer", "is_project"]
