"""Exports: the labels as CSV or JSON, and a run's model."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ..errors import ProjectError
from ..project import Project


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
    from ..checkpoints import export_bytes
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
