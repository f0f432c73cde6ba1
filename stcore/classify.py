"""New images classified with a run's model: each file's class, confidence and margin. The CLI
runs it in its own process (`stcore predict`); the dashboard queues it as a `predict` job, whose
worker writes the predictions as a CSV in the job's run folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from .errors import ProjectError, UsageError
from .project import Project

CHUNK = 4096  # files decoded at a time, so that memory stays bounded for a folder of any size
COLUMNS = ["path", "class", "confidence", "margin"]


def model_run(project: Project, run_id: str | None = None) -> str:
    """The run whose model is exported or predicts: run_id (NotFound where there is none), by
    default the latest finished student, else teacher."""
    if run_id:
        return project.store.runs.get(run_id)["id"]
    done = [r for r in project.store.runs.list("student") if r["state"] == "finished"] or \
           [r for r in project.store.runs.list("teacher") if r["state"] == "finished"]
    if not done:
        raise ProjectError("there is no finished run with a model; train a teacher or a student first")
    return done[-1]["id"]


def files_of(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files of paths (folders read recursively for sources.IMAGE_EXTS) and (path,
    reason) of the files left out; a UsageError where a path is missing or no image file is found."""
    from .sources import IMAGE_EXTS, image_files, printable
    if not paths:
        raise UsageError("give the image files or folders to classify")
    for p in paths:
        if not os.path.exists(p):
            raise UsageError(f"{printable(p)}: no such file or folder")
    files, skipped = image_files(paths)
    if not files:
        raise UsageError(f"no image files ({', '.join(sorted(IMAGE_EXTS))}) in {', '.join(map(printable, paths))}")
    return files, skipped


def classify(project: Project, paths: Sequence[str | os.PathLike], *, run_id: str | None = None,
             device: str = "cpu", batch_size: int = 256,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Classify image files, and the image files under folders, with a run's model (model_run's by
    default). Files are decoded as the project's own images and go through the model as in
    pseudo-labeling, CHUNK files at a time (progress(files done, files) after each). Returns
    {'run', 'items': [{'path', 'class', 'confidence' (top-1 probability), 'margin' (top-1 minus
    top-2)}], 'skipped': [{'path', 'reason'}]}: a file that is not a readable image is skipped,
    never fatal."""
    import torch
    from .devices import resolve
    from .pseudo import faster, image_model, predict, prediction_stats
    from .sources import decode_files, printable
    files, skipped = files_of(paths)
    run_id = model_run(project, run_id)
    device = resolve(device)
    model, classes, items, fast = image_model(project, run_id, device), project.classes, [], False
    chunk = max(256, min(CHUNK, -(-len(files) // 20)))  # progress (and a cancel) every 5% or so
    for start in range(0, len(files), chunk):
        ok, x, bad = decode_files(files[start:start + chunk], project.meta["input_shape"])
        skipped += bad
        if ok:
            # one export for all the chunks: a faster runtime where there are enough files to repay it
            fast = faster(model, torch.from_numpy(x[:2]), len(files), runtime="auto", device=device,
                          say=lambda line: None) if fast is False else fast
            probs = torch.cat([p for _, p in predict(model, torch.from_numpy(x), device=device,
                                                     batch_size=batch_size, fast=fast)])
            pred, conf, margin, _ = prediction_stats(probs)
            items += [{"path": printable(f), "class": classes[c], "confidence": round(a, 6), "margin": round(m, 6)}
                      for f, c, a, m in zip(ok, pred.tolist(), conf.tolist(), margin.tolist())]
        if progress is not None:
            progress(min(start + chunk, len(files)), len(files))
    return {"run": run_id, "items": items, "skipped": [{"path": p, "reason": why} for p, why in skipped]}


def predictions_csv(items: list[dict]) -> str:
    """classify's items as CSV text (COLUMNS)."""
    from .labelformats import csv_safe, csv_text
    return csv_text(COLUMNS, [[csv_safe(it["path"]), csv_safe(it["class"]), it["confidence"], it["margin"]]
                              for it in items])
