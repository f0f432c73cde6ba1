"""Exports: the labels as CSV or JSON, the labeled images for other tools (a folder of class
folders, the Hugging Face imagefolder layout, Label Studio tasks), and a run's model."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from .. import labelformats
from ..errors import ProjectError, UsageError
from ..classify import model_run
from ..labelformats import HUMAN, csv_safe as _csv_safe, safe_dir
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
    of a run, by default model_run's."""
    from ..checkpoints import export_bytes
    run_id = model_run(project, run_id)
    return run_id, export_bytes(project, run_id)


def export_model(project: Project, dest: str | os.PathLike, run_id: str | None = None) -> str:
    """Write a run's model (by default model_run's) to dest: ONNX where dest ends in .onnx
    (onnxfile.onnx_bytes), else model_bytes' dict. Returns the run id."""
    if Path(dest).suffix.lower() == ".onnx":
        from ..onnxfile import onnx_bytes
        run_id = model_run(project, run_id)
        blob = onnx_bytes(project, run_id)
    else:
        run_id, blob = model_bytes(project, run_id)
    _atomic_write(Path(dest), blob)
    return run_id


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


# ------------------------------------------------------------------ datasets for other tools
# Each format: (what it writes, what reads it). The CLI's --format and the Export page read this table.
FORMATS = {
    "csv": ("a file", "spreadsheets, pandas; `stcore import` reads it back"),
    "json": ("a file", "scripts; `stcore import` reads it back"),
    "imagefolder": ("a folder", "torchvision's ImageFolder, Keras' image_dataset_from_directory, FiftyOne's "
                                 "ImageClassificationDirectoryTree: DEST/<class>/<image>"),
    "hf": ("a folder", 'Hugging Face datasets: load_dataset("imagefolder", data_dir=DEST), train/ and test/ '
                       "with metadata.csv"),
    "labelstudio": ("a file", "Label Studio: import the tasks (your labels as annotations, the teacher's as "
                              "predictions); the images go beside it"),
}


def export_dataset(project: Project, dest: str | os.PathLike, fmt: str, *, copy: bool = False,
                   min_confidence: float | None = None, images: str | os.PathLike | None = None,
                   image_url: str | None = None) -> dict:
    """Write the project's labels as fmt (a key of FORMATS) at dest:
    - csv, json: labels_csv, labels_json (a file);
    - imagefolder: dest/<class>/<image> (a new folder) of the human-labeled images, and with
      min_confidence also the pending pseudo-labels at least that confident. Class folders are
      named by labelformats.safe_dir ('T-shirt/top' -> 'T-shirt%2Ftop'; non-ASCII kept);
    - hf: the same under dest/train/, the test split under dest/test/, each with a metadata.csv
      (file_name, label: the exact class name, id, source, status, confidence);
    - labelstudio: dest a JSON list of tasks (every labeled and pool item but the rejected), its
      labeling config beside it (<stem>-config.xml), the images in images (default
      <stem>-images/ beside it), each referenced as image_url + its path, by default Label
      Studio's local-files URL relative to dest's folder (serve that folder as
      LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT).
    Images are links to the original files where the project has them (folder projects), or
    copies with copy, else PNGs of the image cache. Returns {'format', 'path', 'items', ...}."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise UsageError(f"--min-confidence must be within [0, 1], not {min_confidence}")
    dest = Path(dest).expanduser().absolute()
    if fmt in ("csv", "json"):
        rows = label_rows(project)
        _atomic_write(dest, (labels_csv if fmt == "csv" else labels_json)(project, rows).encode("utf-8"))
        return {"format": fmt, "path": str(dest), "items": len(rows)}
    if fmt == "labelstudio":
        return _labelstudio(project, dest, Path(images).expanduser().absolute() if images else None, image_url, copy)
    splits = {"train": _chosen(_train_items(project), min_confidence)}
    if fmt == "hf":
        splits["test"] = _test_items(project)
    under = (lambda split: f"{split}/") if fmt == "hf" else (lambda split: "")
    splits = {split: [{**it, "folder": under(split) + safe_dir(it["label"])} for it in its]
              for split, its in splits.items() if its}
    items = [it for its in splits.values() for it in its]
    with _new_folder(dest) as tmp:
        files = _write_images(project, items, tmp, copy)
        if fmt == "hf":
            for split, its in splits.items():
                (tmp / split / "metadata.csv").write_text(_metadata_csv(its, split), encoding="utf-8")
    return {"format": fmt, "path": str(dest), "items": len(items), "classes": sorted({it["label"] for it in items}),
            "files": files}


def _train_items(project: Project) -> list[dict]:
    """Every labeled and pool item: split, id, row (of the image cache), source, label (its
    human label's class name, or None), pred and confidence (of a pending pseudo-label), status, run."""
    classes, out = project.classes, []
    for split, item, source, pred, decided, status, conf, run in project.store.items.export_rows():
        human = decided if status in HUMAN else None
        guess = pred if status == "pending" else None
        out.append({"split": split, "id": item, "source": source, "status": status, "run": run,
                    "label": classes[human] if human is not None else None,
                    "pred": classes[guess] if guess is not None else None,
                    "confidence": conf if guess is not None else None})
    for split in ("labeled", "pool"):
        rows = project.store.items.rows(split, [it["id"] for it in out if it["split"] == split])
        for it in out:
            if it["split"] == split:
                it["row"] = rows[it["id"]]
    return out


def _test_items(project: Project) -> list[dict]:
    ids, labels = project.store.items.test_set()
    classes, at = project.classes, {r["id"]: r for r in project.store.items.of_split("test")}
    return [{"split": "test", "id": i, "row": at[i]["row"], "source": at[i]["source"], "status": "test",
             "label": classes[c], "pred": None, "confidence": None, "run": None} for i, c in zip(ids, labels)]


def _chosen(items: list[dict], min_confidence: float | None) -> list[dict]:
    """The human-labeled items, and with min_confidence the pending pseudo-labels at least that
    confident, labeled with them."""
    out = [it for it in items if it["label"] is not None]
    if min_confidence is not None:
        out += [{**it, "label": it["pred"]} for it in items
                if it["pred"] is not None and it["confidence"] is not None and it["confidence"] >= min_confidence]
    return out


@contextmanager
def _new_folder(dest: Path) -> Iterator[Path]:
    """A temporary folder beside dest that becomes dest once it is complete: a failure leaves
    no half export. dest must be new or empty."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not empty; choose a new folder for the export")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_images(project: Project, items: list[dict], root: Path, copy: bool) -> dict[str, int]:
    """Each item's image as root/<item's folder>/<name>, its path relative to root set as
    item['file']: the original file linked (or copied) where the project's data root has it
    (its name kept), else a PNG of its row of the image cache (the source's name, .png).
    Returns how many files were linked, copied and decoded."""
    data_root, cache, used = project.meta.get("data_root"), {}, set()
    done = {"linked": 0, "copied": 0, "decoded": 0}
    for it in items:
        original = Path(data_root, it["source"]) if data_root else None
        have = original is not None and original.is_file()
        rel = _unique(used, it["folder"], original.name if have else Path(it["source"]).stem + ".png", it["id"])
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if have and copy:
            shutil.copyfile(original, target)
        elif have:
            os.symlink(original.resolve(), target)
        else:
            _png(project, cache, it, target)
        done["copied" if have and copy else "linked" if have else "decoded"] += 1
        it["file"] = rel
    return done


def _unique(used: set, folder: str, name: str, item_id: int) -> str:
    """folder/name, or folder/<stem>-<id><suffix> where two images of a folder share a name
    (compared in lower case, for file systems that ignore case)."""
    rel = f"{folder}/{name}" if folder else name
    if rel.lower() in used:
        stem, suffix = os.path.splitext(name)
        rel = f"{folder}/{stem}-{item_id}{suffix}" if folder else f"{stem}-{item_id}{suffix}"
    used.add(rel.lower())
    return rel


def _png(project: Project, cache: dict, item: dict, target: Path) -> None:
    from PIL import Image
    from ..data import images
    split = "test" if item["split"] == "test" else "train"
    if split not in cache:
        cache[split] = images(project, split).numpy()
    a = cache[split][item["row"]]
    Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(target)


def _metadata_csv(items: list[dict], split: str) -> str:
    """Hugging Face's metadata.csv: file_name (relative to the split's folder), then the columns
    the dataset gets; label holds the exact class name."""
    return labelformats.csv_text(
        ["file_name", "label", "id", "source", "status", "confidence"],
        [[it["file"][len(split) + 1:], it["label"], it["id"], it["source"], it["status"], it["confidence"]]
         for it in items])


def _labelstudio(project: Project, dest: Path, images: Path | None, image_url: str | None, copy: bool) -> dict:
    images = images or dest.with_name(f"{dest.stem}-images")
    items = [{**it, "folder": ""} for it in _train_items(project) if it["status"] != "rejected"]
    with _new_folder(images) as tmp:
        files = _write_images(project, items, tmp, copy)
    if image_url is None:
        rel = Path(os.path.relpath(images, dest.parent)).as_posix()
        image_url = labelformats.LOCAL_FILES + quote(f"{rel}/")
    tasks = [labelformats.labelstudio_task(image_url + quote(it["file"]), {"stcore_id": it["id"], "source": it["source"]},
                                           it["label"], pred=it["pred"], score=it["confidence"], model=it["run"])
             for it in items]
    # one task a line: json's C encoder (an indent would switch to the slower pure-Python one)
    text = "[\n" + ",\n".join(json.dumps(t, ensure_ascii=False) for t in tasks) + "\n]\n"
    _atomic_write(dest, text.encode("utf-8"))
    config = dest.with_name(f"{dest.stem}-config.xml")
    _atomic_write(config, labelformats.labeling_config(project.classes).encode("utf-8"))
    return {"format": "labelstudio", "path": str(dest), "items": len(tasks), "images": str(images),
            "config": str(config), "files": files,
            "annotations": sum(it["label"] is not None for it in items),
            "predictions": sum(it["pred"] is not None for it in items)}
