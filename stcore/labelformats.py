"""Label files of other tools, read and written as plain data (no project, no store here):
CSV (`path,label` or `id,label`, or our own export), our JSON export, Label Studio's JSON
tasks, folders of class folders, and the Hugging Face imagefolder metadata.csv.

A file that cannot be read as its format raises DataError naming the file and the row, so that
an import is refused whole rather than half done."""
from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote
from xml.sax.saxutils import quoteattr

from .errors import DataError, UsageError

FORMATS = ("csv", "json", "labelstudio", "imagefolder")
# Statuses of our own export whose label a person gave; the others are not imported.
HUMAN = ("labeled", "accepted", "corrected")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
LOCAL_FILES = "/data/local-files/?d="  # Label Studio's URL of a file under its local-files document root


@dataclass(frozen=True)
class LabelRow:
    """One row of a label file. where: its place for messages ('line 4', 'task 2'); path: the
    image's path as the project records it (items.source), where the file names one; file: an
    image file to compare by content; skip: why the row gives no human label (it is reported,
    not imported)."""
    where: str
    label: str | None
    id: int | None = None
    path: str | None = None
    file: Path | None = None
    skip: str | None = None
    raw: dict = field(default_factory=dict, compare=False)


def guess_format(source: str | os.PathLike) -> str:
    """csv, json, labelstudio or imagefolder, from a folder, the suffix and (for .json) the content."""
    p = Path(source)
    if not p.exists():
        raise UsageError(f"{p} does not exist")
    if p.is_dir():
        return "imagefolder"
    if p.suffix.lower() == ".csv":
        return "csv"
    if p.suffix.lower() == ".json":
        return "labelstudio" if isinstance(_load_json(p), list) else "json"
    raise UsageError(f"cannot tell the format of {p}: give --format ({', '.join(FORMATS)})")


def read(source: str | os.PathLike, fmt: str | None = None) -> list[LabelRow]:
    """The rows of a label file (or folder) of format fmt (guessed when None)."""
    p = Path(source)
    if not p.exists():
        raise UsageError(f"{p} does not exist")
    fmt = fmt or guess_format(p)
    readers = {"csv": read_csv, "json": read_json, "labelstudio": read_labelstudio, "imagefolder": read_imagefolder}
    if fmt not in readers:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if (fmt == "imagefolder") != p.is_dir():
        raise UsageError(f"{p} is {'a folder' if p.is_dir() else 'a file'}: the {fmt} format reads "
                         f"{'a folder of class folders' if fmt == 'imagefolder' else 'a file'}")
    return readers[fmt](p)


# ------------------------------------------------------------------ readers
def _text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8-sig")  # a BOM from a spreadsheet app is not part of the header
    except UnicodeDecodeError as e:
        raise DataError(f"{p} is not UTF-8 text (byte {e.start}); save it as UTF-8") from e


def _load_json(p: Path):
    try:
        return json.loads(_text(p))
    except json.JSONDecodeError as e:
        raise DataError(f"{p} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from e


def _unformula(v: str) -> str:
    """Undo our CSV export's guard against spreadsheet formulas (api.export._csv_safe)."""
    return v[1:] if v[:1] == "'" and v[1:2] in ("=", "+", "-", "@", "\t", "\r") else v


def _int(v, where: str, p: Path) -> int | None:
    if v is None or str(v).strip() == "":
        return None
    try:
        return int(str(v).strip())
    except ValueError:
        raise DataError(f"{p}, {where}: id {v!r} is not a whole number") from None


def _row(p: Path, where: str, rec: dict, status: str | None) -> LabelRow:
    """A row from a record of our export's columns (id, source or path, label, status)."""
    label = _unformula(str(rec.get("label") or "")).strip() or None
    path = rec.get("path") or rec.get("source") or rec.get("file_name")
    path = _unformula(str(path)) if path not in (None, "") else None
    skip = None
    if status and status not in HUMAN:
        skip = f"status {status}: not a human label"
    elif label is None:
        raise DataError(f"{p}, {where}: no label; give each row a class name")
    file = (p.parent / path) if path else None
    return LabelRow(where, label, _int(rec.get("id"), where, p), path, file, skip, dict(rec))


def read_csv(p: Path) -> list[LabelRow]:
    """A header with `label` and `id`, `path`, `source` or `file_name`; our export's `status`
    column, where present, keeps its pending pseudo-labels and rejections out."""
    reader = csv.reader(io.StringIO(_text(p), newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{p} is empty; it needs a header such as `path,label` or `id,label`") from None
    except csv.Error as e:
        raise DataError(f"{p}, line 1: {e}") from None
    if "label" not in header or not {"id", "path", "source", "file_name"} & set(header):
        raise DataError(f"{p}, line 1: the header {','.join(header)!r} needs a `label` column and an `id`, "
                        f"`path`, `source` or `file_name` column")
    rows = []
    try:
        for values in reader:
            where = f"line {reader.line_num}"
            if not values:
                continue
            if len(values) != len(header):
                raise DataError(f"{p}, {where}: {len(values)} fields where the header has {len(header)}")
            rec = dict(zip(header, values))
            rows.append(_row(p, where, rec, rec.get("status") or None))
    except csv.Error as e:
        raise DataError(f"{p}, line {reader.line_num}: {e}") from None
    return rows


def read_json(p: Path) -> list[LabelRow]:
    """Our export: {"classes": [...], "items": [{"id", "source", "label", "status", ...}]}."""
    data = _load_json(p)
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise DataError(f"{p} is not a labels JSON of stcore ({{\"classes\": [...], \"items\": [...]}}); "
                        f"a Label Studio export is a list of tasks (--format labelstudio)")
    rows = []
    for k, rec in enumerate(data["items"], 1):
        if not isinstance(rec, dict):
            raise DataError(f"{p}, item {k}: not an object")
        rows.append(_row(p, f"item {k}", rec, rec.get("status") or None))
    return rows


def _choices(results, p: Path, where: str) -> list[str]:
    if not isinstance(results, list):
        raise DataError(f"{p}, {where}: `result` is not a list")
    return [str(c) for r in results if isinstance(r, dict) and r.get("type") == "choices"
            for c in (r.get("value") or {}).get("choices", [])]


def local_file(url: str, base: Path) -> Path | None:
    """The local file a Label Studio image reference names: its local-files URL or a plain path
    (relative to base); None for a web address or an upload."""
    if url.startswith(LOCAL_FILES):
        return base / unquote(url[len(LOCAL_FILES):])
    if "://" in url or url.startswith("/data/"):
        return None
    return base / unquote(url)


def read_labelstudio(p: Path) -> list[LabelRow]:
    """Label Studio's JSON export: a list of tasks, each with `data` (the image, and our
    stcore_id and source where we wrote the task) and `annotations` whose results are choices.
    A task's label is its annotations' choice; cancelled annotations are left out, and tasks
    with none, or whose annotations disagree, are reported, not imported."""
    data = _load_json(p)
    if not isinstance(data, list):
        raise DataError(f"{p} is not a Label Studio export (a JSON list of tasks)")
    rows = []
    for k, task in enumerate(data, 1):
        where = f"task {k}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DataError(f"{p}, {where}: a task needs a `data` object")
        d = task["data"]
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise DataError(f"{p}, {where}: `annotations` is not a list")
        labels = sorted({c for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")
                         for c in _choices(a.get("result", []), p, where)})
        skip = ("no annotation (predictions are not human labels)" if not labels else
                f"its annotations disagree ({', '.join(labels)})" if len(labels) > 1 else None)
        image = d.get("image") or next((v for k, v in d.items() if isinstance(v, str) and k != "source"), None)
        file = local_file(str(image), p.parent) if image else None
        rows.append(LabelRow(where, labels[0] if len(labels) == 1 else None, _int(d.get("stcore_id"), where, p),
                             d.get("source") or None, file, skip, {"image": image, "id": task.get("id")}))
    return rows


def read_imagefolder(p: Path) -> list[LabelRow]:
    """DIR/<class>/**/<image>: the class is the folder's name, read back through class_of_dir
    (our exports' safe names). Files directly in DIR, and other files, are reported."""
    rows = []
    for d in sorted(x for x in p.iterdir() if not x.name.startswith(".")):
        if not d.is_dir():
            rows.append(LabelRow(d.name, None, skip="not in a class folder", raw={"path": d.name}))
            continue
        for dirpath, dirnames, files in os.walk(d, followlinks=True):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            for f in sorted(n for n in files if not n.startswith(".")):
                rel = (Path(dirpath) / f).relative_to(p).as_posix()
                ok = Path(f).suffix.lower() in IMAGE_EXTS
                rows.append(LabelRow(rel, class_of_dir(d.name), file=Path(dirpath) / f,
                                     skip=None if ok else "not an image file", raw={"path": rel}))
    if not rows:
        raise DataError(f"{p} has no class folders; the imagefolder format is DIR/<class>/<image>")
    return rows


# ------------------------------------------------------------------ names on disk
# Characters a folder name cannot hold on Linux, macOS or Windows, and '%' so that the mapping
# reverses: each is written as %XX (its UTF-8 bytes), like a URL. Everything else, non-ASCII
# letters, commas and spaces included, stays as it is: 'T-shirt/top' -> 'T-shirt%2Ftop'.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f%/\\:*?"<>|]')


def safe_dir(name: str) -> str:
    """A class name as one folder name (see _UNSAFE); '.', '..' and a trailing dot or space,
    which Windows drops, are encoded too. class_of_dir reverses it."""
    s = _UNSAFE.sub(lambda m: quote(m.group(), safe=""), name)
    if s in (".", ".."):
        return s.replace(".", "%2E")
    return s[:-1] + f"%{ord(s[-1]):02X}" if s and s[-1] in ". " else s


def class_of_dir(name: str) -> str:
    """The class name a folder of safe_dir stands for."""
    return unquote(name)


# ------------------------------------------------------------------ writers
def csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def labelstudio_task(image: str, data: dict, label: str | None, *, pred: str | None = None,
                     score: float | None = None, model: str | None = None) -> dict:
    """One Label Studio task: data.image and data, a human label as an annotation and the
    teacher's as a prediction with its score (the control is `label` on `image`, as in
    labeling_config)."""
    def result(name: str) -> list[dict]:
        return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [name]}}]
    task: dict = {"data": {"image": image, **data}}
    if label is not None:
        task["annotations"] = [{"result": result(label)}]
    if pred is not None:
        task["predictions"] = [{"model_version": model or "teacher", "score": score, "result": result(pred)}]
    return task


def labeling_config(classes: list[str]) -> str:
    """The Label Studio labeling config the tasks of labelstudio_task need: one choice per class."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Image name="image" value="$image"/>\n  <Choices name="label" toName="image" '
            f'choice="single" showInLine="true">\n{choices}\n  </Choices>\n</View>\n')
