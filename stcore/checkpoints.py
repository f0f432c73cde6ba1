"""Checkpoints: written whole or not at all, read as data only, and checked against the project
before their weights are used.

A run's checkpoint (runs/RUN/latest.pt) is one dict: model, EMA, optimizer, scheduler, step,
config, RNG state, and the project id, classes and input shape it was trained for.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from .errors import ProjectError


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file, fsync, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path, map_location: str = "cpu") -> dict:
    # weights_only=True: a checkpoint is data, never code (no arbitrary unpickling).
    return torch.load(path, map_location=map_location, weights_only=True)


def project_tag(project) -> dict:
    """What a checkpoint records of the project it belongs to."""
    classes = project.classes
    return {"project_id": project.meta["project_id"], "classes": classes, "class_ids": list(range(len(classes))),
            "class_set": class_set(project), "input_shape": project.meta["input_shape"]}


def class_set(project) -> int:
    """How many times the project's class set was merged, removed from or split: a model made
    before the last such edit no longer fits, whatever its class count."""
    return int(project.store.meta().get("class_set", 0))


def class_ids(ck: dict) -> list[int] | None:
    """The ids of the classes a checkpoint was trained on (older ones: one per class name)."""
    if ck.get("class_ids") is not None:
        return [int(i) for i in ck["class_ids"]]
    return list(range(len(ck["classes"]))) if ck.get("classes") is not None else None


def stale_classes(project, ids: list[int] | None) -> str | None:
    """Why a model trained on the classes of ids no longer fits the project's, or None when it
    does (a renamed class still fits: its id is the same)."""
    names = project.classes
    now = list(range(len(names)))
    if ids is None or list(ids) == now:
        return None
    added = [names[i] for i in now if i not in ids]
    return (f"it was trained on {len(ids)} classes and the project now has {len(now)}"
            + (f" (added since: {', '.join(added[:5])})" if added else "")
            + "; train a new teacher or student on the current classes")


def check(project, ck: dict, where: object) -> None:
    """Refuse a checkpoint from another project, or for another class count or input shape."""
    if not isinstance(ck, dict) or "ema" not in ck or "config" not in ck:
        raise ProjectError(f"{where} is not a stcore checkpoint")
    if ck.get("project_id") not in (None, project.meta["project_id"]):
        raise ProjectError(f"{where} belongs to another project; it cannot be used here")
    stale = stale_classes(project, class_ids(ck))
    if stale is None and int(ck.get("class_set", 0)) != class_set(project):
        stale = "the classes were merged, removed or split since it was trained; train a new teacher or student"
    if stale:
        raise ProjectError(f"{where} no longer fits the project's classes: {stale}")
    if ck.get("classes") is not None and len(ck["classes"]) != len(project.classes):  # metadata that disagrees
        raise ProjectError(f"{where} was trained for {len(ck['classes'])} classes "
                           f"({', '.join(map(str, ck['classes'][:5]))}...), this project has {len(project.classes)}")
    if ck.get("input_shape") is not None and list(ck["input_shape"]) != list(project.meta["input_shape"]):
        raise ProjectError(f"{where} expects input {ck['input_shape']}, this project's images are "
                           f"{project.meta['input_shape']}")


def run_checkpoint(project, run_id: str) -> dict:
    """A run's latest checkpoint, checked against the project; ProjectError naming the file."""
    p = project.run_dir(run_id) / "latest.pt"
    if not p.exists():
        raise ProjectError(f"run {run_id} has no checkpoint ({p})")
    try:
        ck = load_checkpoint(p)
    except Exception as e:  # torch raises several types for a damaged or foreign file
        raise ProjectError(f"cannot load {p}: {type(e).__name__}: {e}") from e
    check(project, ck, p)
    return ck


def model_from(project, ck: dict, where: object) -> torch.nn.Module:
    """Build the checkpoint's model for this project and load its EMA weights; ProjectError
    when they do not fit (a checkpoint without metadata, made for other classes or channels)."""
    from .models import build
    c, h, _ = project.meta["input_shape"]
    name = ck["config"].get("model", "cnn")
    dims = ck["ema"]["linear.weight"].shape[1] if name == "head" and "linear.weight" in ck.get("ema", {}) else None
    try:
        model = build(name, c, len(project.classes), h, dims=dims)
        model.load_state_dict(ck["ema"])
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise ProjectError(f"{where}: the weights do not fit this project's {ck['config'].get('model')} "
                           f"({len(project.classes)} classes, input {project.meta['input_shape']}): "
                           f"{str(e).strip().splitlines()[0][:200]}") from e
    return model


def run_model(project, run_id: str, device: str = "cpu") -> torch.nn.Module:
    """The EMA model of a run's checkpoint, in eval mode on device."""
    return model_from(project, run_checkpoint(project, run_id), f"run {run_id}").to(device).eval()


def export_bytes(project, run_id: str) -> bytes:
    """A weights_only-loadable dict of a run: EMA weights, config, classes, input shape."""
    ck = run_checkpoint(project, run_id)
    model_from(project, ck, f"run {run_id}")  # never export weights under metadata they do not match
    buf = io.BytesIO()
    torch.save({"model": ck["ema"], "config": ck["config"], "run": run_id, **project_tag(project)}, buf)
    return buf.getvalue()
