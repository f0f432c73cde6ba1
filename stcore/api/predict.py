"""New images classified with a run's model: each file's class, confidence and margin."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import UsageError
from ..project import Project
from .export import _atomic_write, _csv_safe, model_run

CHUNK = 4096  # files decoded at a time, so that memory stays bounded for a folder of any size
PREDICTION_COLUMNS = ["path", "class", "confidence", "margin"]


def predict_files(project: Project, paths: Sequence[str | os.PathLike], *, run_id: str | None = None,
                  device: str = "cpu", batch_size: int = 256) -> dict:
    """Classify image files, and the image files (sources.IMAGE_EXTS) under folders, with a run's
    model (by default export's: the latest finished student, else teacher). Files are decoded as
    the project's own images and go through the model as in pseudo-labeling, a batch at a time.
    Returns {'run', 'items': [{'path', 'class', 'confidence' (top-1 probability), 'margin'
    (top-1 minus top-2)}], 'skipped': [{'path', 'reason'}]}: a file that is not a readable
    image is skipped, never fatal."""
    import torch
    from ..devices import resolve
    from ..pseudo import faster, image_model, predict, prediction_stats
    from ..sources import IMAGE_EXTS, decode_files, image_files, printable
    if not paths:
        raise UsageError("give the image files or folders to classify")
    for p in paths:
        if not os.path.exists(p):
            raise UsageError(f"{printable(p)}: no such file or folder")
    run_id = model_run(project, run_id)
    files, skipped = image_files(paths)
    if not files:
        raise UsageError(f"no image files ({', '.join(sorted(IMAGE_EXTS))}) in {', '.join(map(printable, paths))}")
    device = resolve(device)
    model, classes, items, fast = image_model(project, run_id, device), project.classes, [], False
    for start in range(0, len(files), CHUNK):
        ok, x, bad = decode_files(files[start:start + CHUNK], project.meta["input_shape"])
        skipped += bad
        if not ok:
            continue
        # one export for all the chunks: a faster runtime where there are enough files to repay it
        fast = faster(model, torch.from_numpy(x[:2]), len(files), runtime="auto", device=device,
                       say=lambda line: None) if fast is False else fast
        probs = torch.cat([p for _, p in predict(model, torch.from_numpy(x), device=device, batch_size=batch_size,
                                                 fast=fast)])
        pred, conf, margin, _ = prediction_stats(probs)
        items += [{"path": printable(f), "class": classes[c], "confidence": round(a, 6), "margin": round(m, 6)}
                  for f, c, a, m in zip(ok, pred.tolist(), conf.tolist(), margin.tolist())]
    return {"run": run_id, "items": items, "skipped": [{"path": p, "reason": why} for p, why in skipped]}


def write_predictions(result: dict, dest: str | os.PathLike) -> str:
    """Write predict_files' items as CSV (PREDICTION_COLUMNS) atomically; returns dest's absolute path."""
    from ..labelformats import csv_text
    dest = Path(dest).expanduser().absolute()
    rows = [[_csv_safe(it["path"]), _csv_safe(it["class"]), it["confidence"], it["margin"]] for it in result["items"]]
    _atomic_write(dest, csv_text(PREDICTION_COLUMNS, rows).encode("utf-8"))
    return str(dest)
