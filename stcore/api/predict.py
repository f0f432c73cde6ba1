"""New images classified with a run's model: each file's class, confidence and margin, in this
process (`stcore predict`) or as a detached `predict` job (the dashboard) whose predictions are a
CSV in the job's run folder."""
from __future__ import annotations

import csv
import io
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ..classify import COLUMNS as PREDICTION_COLUMNS, classify, predictions_csv  # noqa: F401 (the faces read it here)
from ..labelformats import csv_unsafe
from ..project import Project
from ..tasks import PREDICTIONS_FILE
from .export import _atomic_write
from .runs import _given, start_job



def predict_files(project: Project, paths: Sequence[str | os.PathLike], *, run_id: str | None = None,
                  device: str = "cpu", batch_size: int = 256) -> dict:
    """classify.classify in this process: {'run', 'items': [{'path', 'class', 'confidence',
    'margin'}], 'skipped': [{'path', 'reason'}]}."""
    return classify(project, paths, run_id=run_id, device=device, batch_size=batch_size)


def write_predictions(result: dict, dest: str | os.PathLike) -> str:
    """Write predict_files' items as CSV (PREDICTION_COLUMNS) atomically; returns dest's absolute path."""
    dest = Path(dest).expanduser().absolute()
    _atomic_write(dest, predictions_csv(result["items"]).encode("utf-8"))
    return str(dest)


def start_predict(project: Project, paths: Sequence[str | os.PathLike], *, run_id: str | None = None,
                  device: str | None = None, detach: bool = True) -> str:
    """Queue a `predict` job that classifies paths (files, or folders read recursively) with a run's
    model (default: the latest finished student, else teacher; pinned when queued). Its result
    says how many files it classified per class and which it skipped; predictions() reads them."""
    return start_job(project, "predict", _given(paths="\n".join(map(os.fspath, paths)), run=run_id, device=device),
                     detach=detach)


def predictions(project: Project, job_id: str) -> list[dict]:
    """The predictions of a finished `predict` job: [{'path', 'class', 'confidence', 'margin'}],
    in the files' order."""
    text = (project.run_dir(job_id) / PREDICTIONS_FILE).read_text(encoding="utf-8")
    return [{"path": csv_unsafe(r["path"]), "class": csv_unsafe(r["class"]), "confidence": float(r["confidence"]),
             "margin": float(r["margin"])} for r in csv.DictReader(io.StringIO(text, newline=""))]


def save_uploads(project: Project, files: Sequence[tuple[str, bytes]]) -> str:
    """Uploaded images (name, bytes) as files of a new folder PROJECT/uploads/predict-<time>-<x>/, for a
    predict job to read after the page that took them is gone; each name made a safe file name
    (and unique). Returns the folder's path."""
    (project.path / "uploads").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"predict-{time.strftime('%Y%m%d-%H%M%S')}-", dir=project.path / "uploads"))
    used: set[str] = set()
    for k, (name, blob) in enumerate(files):
        stem, suffix = os.path.splitext(os.path.basename(name))
        stem = re.sub(r"[^\w.-]+", "_", stem).strip("._") or f"image-{k}"
        suffix = suffix.lower() or ".png"  # a file that is not an image is skipped by the job, with why
        safe = f"{stem}{suffix}" if f"{stem}{suffix}".lower() not in used else f"{stem}-{k}{suffix}"
        used.add(safe.lower())
        (folder / safe).write_bytes(blob)
    return str(folder)
