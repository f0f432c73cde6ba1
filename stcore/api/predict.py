"""New images classified with a run's model: each file's class, confidence and margin, in this
process (`stcore predict`) or as a detached `predict` job (the dashboard) whose predictions are a
CSV in the job's run folder."""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ..classify import COLUMNS as PREDICTION_COLUMNS, classify, predictions_csv  # noqa: F401 (the faces read it here)
from ..labelformats import csv_unsafe
from ..errors import NotFound, UsageError
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


def start_predict(project: Project, paths: Sequence[str | os.PathLike] = (), *, uploads: Sequence[tuple[str, bytes]] = (),
                  run_id: str | None = None, device: str | None = None, detach: bool = True) -> str:
    """Queue a `predict` job that classifies paths (files, or folders read recursively; made
    absolute here, as the worker runs in the project's folder) or uploads ((name, bytes) kept
    by save_uploads for the job) with a run's model (default: the latest finished student, else
    teacher; pinned when queued). Uploads of a job that is refused are removed again. Its result
    says how many files it classified per class and which it skipped; predictions() reads them."""
    if bool(paths) == bool(uploads):
        raise UsageError("give either image files or folders on this machine, or uploaded images")
    folder = save_uploads(project, uploads) if uploads else None
    try:
        given = [folder] if folder else [os.path.abspath(os.fspath(x)) for x in paths]
        return start_job(project, "predict", _given(paths="\n".join(given), run=run_id, device=device), detach=detach)
    except BaseException:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def predictions(project: Project, job_id: str) -> list[dict]:
    """The predictions of a finished `predict` job: [{'path', 'class', 'confidence', 'margin'}],
    in the files' order. NotFound where its file is gone."""
    text = predictions_bytes(project, job_id).decode("utf-8")
    return [{"path": csv_unsafe(r["path"]), "class": csv_unsafe(r["class"]), "confidence": float(r["confidence"]),
             "margin": float(r["margin"])} for r in csv.DictReader(io.StringIO(text, newline=""))]


def predictions_bytes(project: Project, job_id: str) -> bytes:
    """The predictions CSV of a finished `predict` job as its worker wrote it."""
    path = project.run_dir(job_id) / PREDICTIONS_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"the predictions of {job_id} are gone ({path} was removed); classify the images again") from None


def save_uploads(project: Project, files: Sequence[tuple[str, bytes]]) -> str:
    """Uploaded images (name, bytes) as files of a new folder PROJECT/uploads/predict-<time>-<x>/,
    for a predict job to read after the page that took them is gone (they stay there: delete the
    folder when done). Each keeps its name but for path separators, control characters and a
    leading dot; a name given twice gets -2, -3, ... Returns the folder's path."""
    (project.path / "uploads").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"predict-{time.strftime('%Y%m%d-%H%M%S')}-", dir=project.path / "uploads"))
    used: set[str] = set()
    for k, (name, blob) in enumerate(files):
        base = re.sub(r"[\x00-\x1f\x7f/\\:]+", "_", os.path.basename(name.replace("\\", "/"))).lstrip(".") or f"image-{k}.png"
        stem, suffix = os.path.splitext(base)
        safe, n = base, 1
        while safe.lower() in used:
            n += 1
            safe = f"{stem}-{n}{suffix}"
        used.add(safe.lower())
        (folder / safe).write_bytes(blob)
    return str(folder)
