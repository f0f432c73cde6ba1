"""A project's data: the labeled split chosen from a dataset, the image cache, the tensors one
run trains on (assembled from the store), and a new project written from a decoded dataset
(sources.py decodes it)."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import ProjectError, UsageError
from .project import Project, is_project
from .sources import Arrays, load


# ---------------------------------------------------------------- splits
def choose_labeled(labels: torch.Tensor, *, per_class: int | None = None, total: int | None = None,
                   seed: int = 0, num_classes: int | None = None) -> list[int]:
    """Deterministic labeled subset of the training split: per_class items of each class,
    or total items overall. Returns sorted row indices."""
    if (per_class is None) == (total is None):
        raise UsageError("give exactly one of labels per class or a total number of labels")
    g = torch.Generator().manual_seed(seed)
    if total is not None:
        if not 0 <= total < len(labels):
            raise UsageError(f"--labeled {total} must be between 0 and {len(labels) - 1} "
                             f"(the training split has {len(labels)} images)")
        return sorted(torch.randperm(len(labels), generator=g)[:total].tolist())
    if per_class < 0:
        raise UsageError(f"--labels-per-class must be 0 or more, got {per_class}")
    num_classes = num_classes or int(labels.max()) + 1
    chosen = []
    for c in range(num_classes):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < per_class:
            raise UsageError(f"--labels-per-class {per_class} is more than class {c} has ({len(idx)} images); "
                             f"choose at most {len(idx)}")
        chosen += idx[torch.randperm(len(idx), generator=g)[:per_class]].tolist()
    return sorted(chosen)


# ---------------------------------------------------------------- a project's images
def images(project: Project, split: str) -> torch.Tensor:
    """The project's uint8 image cache (N, C, H, W) of a split ('test', or the training images
    that hold the labeled set and the pool), memory-mapped: decoded once, shared by every process."""
    p = project.image_cache(split)
    if not p.exists():
        raise ProjectError(f"the image cache {p} is missing; re-create the project "
                           f"(`stcore init`) from its dataset")
    return torch.load(p, mmap=True, weights_only=True)


def images_for(project: Project, ids: list[int], split: str = "pool") -> torch.Tensor:
    """uint8 images of items, in the order of ids."""
    rows = project.store.items.rows(split, ids)
    missing = [i for i in ids if int(i) not in rows]
    if missing:
        raise ProjectError(f"no {split} item(s) {', '.join(map(str, missing[:5]))}")
    src = images(project, split)
    return src[[rows[int(i)] for i in ids]] if ids else src[:0]


@dataclass
class TrainData:
    """The tensors one run trains on: uint8 images (N, C, H, W). w_lab weighs each human label
    (corrections weigh more). p_unl holds the teacher's probabilities for x_unl (K columns), or None."""
    x_lab: torch.Tensor
    y_lab: torch.Tensor
    w_lab: torch.Tensor
    x_unl: torch.Tensor
    p_unl: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    flip: bool = True
    class_prior: torch.Tensor | None = None  # (K,) label counts of the original labeled set
    rows_lab: list[int] = field(default_factory=list)  # rows of x_lab and x_unl in the image cache
    rows_unl: list[int] = field(default_factory=list)
    z_lab: torch.Tensor | None = None  # their rows of the project's embedding, where it has one
    z_unl: torch.Tensor | None = None
    knn: tuple[torch.Tensor, torch.Tensor] | None = None  # the embedding's k-NN lists (neighbours.py)


def training_data(project: Project, *, role: str, corrected_weight: float, use_unreviewed: bool,
                  needs_pseudo_labels: bool) -> TrainData:
    """Assemble a run's tensors from the store's current decisions: the labeled set plus accepted
    and corrected pool items (corrections weigh corrected_weight), and for a student the pending
    pool (only its pseudo-labeled items when needs_pseudo_labels)."""
    project.check_trainable()
    store, k = project.store, len(project.classes)
    lab, reviewed = store.items.labeled_set(), store.items.reviewed_set()
    rows = [r for r, _ in lab] + [r for r, _, _ in reviewed]
    y = [c for _, c in lab] + [c for _, c, _ in reviewed]
    w = [1.0] * len(lab) + [corrected_weight if s == "corrected" else 1.0 for _, _, s in reviewed]
    train = images(project, "train")
    x_unl, p_unl, rows_unl = train[:0], None, []
    if role == "student" and use_unreviewed:
        unl = store.items.unreviewed_set(pseudo_labeled_only=needs_pseudo_labels)
        if needs_pseudo_labels and not unl:
            raise UsageError("no unreviewed pseudo-labels; run pseudo-label first")
        rows_unl = [r for r, _ in unl]
        x_unl = train[rows_unl] if unl else train[:0]
        if unl and all(b is not None for _, b in unl):
            p_unl = torch.from_numpy(np.frombuffer(b"".join(b for _, b in unl), dtype=np.float16)
                                     .reshape(-1, k).astype(np.float32))
    _, test_labels = store.items.test_set()
    return TrainData(x_lab=train[rows], y_lab=torch.tensor(y, dtype=torch.long), w_lab=torch.tensor(w),
                     x_unl=x_unl, p_unl=p_unl, x_test=images(project, "test"),
                     y_test=torch.tensor(test_labels, dtype=torch.long), classes=project.classes,
                     class_prior=torch.bincount(torch.tensor([c for _, c in lab] or y, dtype=torch.long), minlength=k),
                     flip=bool(project.meta.get("flip", True)), rows_lab=rows, rows_unl=rows_unl)


# ---------------------------------------------------------------- a new project
def create_project(path: str | os.PathLike, *, dataset: str = "fashion-mnist",
                   labels_per_class: int | None = None, labeled: int | None = None, seed: int = 0,
                   data_root: str | None = None, image_size: int | None = None, download: bool = True,
                   limit: int | None = None, progress=None, database: str | None = None,
                   classes: Sequence[str] | None = None) -> Project:
    """Decode the dataset once, choose the labeled split and write the store. limit keeps only the
    first N training and N/5 test images (for quick trials and tests). database: where the store
    goes (see store.location.database_choice): a SQLite file in the folder unless a PostgreSQL URL."""
    from .store.location import database_choice
    path = Path(path).expanduser().resolve()
    database = database_choice(database) or "sqlite"  # a wrong --database is refused before any decoding
    if is_project(path):
        raise ProjectError(f"{path} is already a project; open it instead, or choose a new folder")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ProjectError(f"{path} exists and is not empty; choose a new or empty folder for the project")
    if dataset == "folder" and (labels_per_class is not None or labeled not in (None, 0)):
        raise UsageError("--labels-per-class and --labeled choose the labeled images of a built-in "
                         "dataset; a folder dataset's labeled images are those in "
                         "DATA_ROOT/labeled/<class>/: leave both out (or --labeled 0 for none)")
    if labels_per_class is None and labeled is None and dataset != "folder":
        labels_per_class = 10
    say = progress or (lambda msg: None)
    say(f"reading {dataset}")
    arrays = load(dataset, data_root=data_root, image_size=image_size, download=download, classes=classes)
    if limit:
        _keep_first(arrays, limit)
    lab = ([] if labeled == 0 else arrays.labeled) if arrays.labeled is not None else choose_labeled(
        arrays.train_y, per_class=labels_per_class, total=labeled, seed=seed, num_classes=len(arrays.classes))
    created_dir = not path.exists()
    try:
        write_project(path, arrays, lab, say, database=database, dataset=dataset, seed=seed,
                      labels_per_class=labels_per_class,
                       data_root=str(Path(data_root).expanduser().resolve()) if data_root else None)
    except BaseException:
        if created_dir:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return Project(path)


def _keep_first(arrays: Arrays, limit: int) -> None:
    # clone: a slice saved with torch.save would write the whole dataset's storage
    arrays.train_x, arrays.train_y = arrays.train_x[:limit].clone(), arrays.train_y[:limit]
    arrays.train_sources = arrays.train_sources[:limit]
    n_test = max(1, limit // 5)
    arrays.test_x, arrays.test_y = arrays.test_x[:n_test].clone(), arrays.test_y[:n_test]
    arrays.test_sources = arrays.test_sources[:n_test]
    if arrays.labeled is not None:
        arrays.labeled = [i for i in arrays.labeled if i < limit]


def write_project(path: Path, arrays: Arrays, lab: list[int], say, *, database: str | None = None, **meta) -> None:
    """A new project folder from decoded arrays (lab: the labeled rows; meta: dataset, seed, ...):
    the image cache, then the store, made the project's only once it is complete."""
    from .store.location import new_store
    (path / "images").mkdir(parents=True, exist_ok=True)
    (path / "runs").mkdir(exist_ok=True)
    say("writing the image cache")
    torch.save(arrays.train_x.contiguous(), path / "images" / "train.pt")
    torch.save(arrays.test_x.contiguous(), path / "images" / "test.pt")
    project_id = uuid.uuid4().hex
    store, done, abort = new_store(path, database, project_id)
    try:
        _fill_store(store, arrays, lab, project_id, **meta)
    except BaseException:
        abort()
        raise
    done()


def _fill_store(store, arrays: Arrays, lab: list[int], project_id: str, **meta) -> None:
    labset = set(lab)
    pool = [i for i in range(len(arrays.train_y)) if i not in labset]
    y = arrays.train_y.tolist()
    store.items.add("labeled", lab, lab, [arrays.train_sources[i] for i in lab], [y[i] for i in lab])
    store.items.add("pool", pool, pool, [arrays.train_sources[i] for i in pool], [None] * len(pool),
                    [y[i] if arrays.hidden and y[i] >= 0 else None for i in pool], seed=meta["seed"])
    ty = arrays.test_y.tolist()
    store.items.add("test", list(range(len(ty))), list(range(len(ty))), arrays.test_sources, ty)
    store.items.set_skipped(arrays.skipped)
    _, c, h, w = arrays.train_x.shape
    store.classes.add(arrays.classes)
    store.set_meta(project_id=project_id, labeled=len(lab),
                   input_shape=[c, h, w], flip=arrays.flip, hidden_labels=arrays.hidden,
                   created=time.time(), teacher=None, **meta)
