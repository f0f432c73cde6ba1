"""Label files of other tools, read and written as plain data (no project, no store here):
CSV (`path,label` or `id,label`, or our own export), our JSON export, Label Studio's exports
(JSON tasks, and the flat JSON-MIN, CSV and TSV), FiftyOne's image classification dataset
(labels.json and data/), folders of class folders, and the Hugging Face imagefolder metadata.csv.

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
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import quoteattr

from .errors import DataError, UsageError

FORMATS = ("csv", "json", "labelstudio", "fiftyone", "imagefolder")
# Statuses of our own export whose label a person gave; the others are not imported.
HUMAN = ("labeled", "accepted", "corrected")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
LOCAL_FILES = "/data/local-files/?d="  # Label Studio's URL of a file under its local-files document root
# Columns of Label Studio's flat exports (JSON-MIN, CSV, TSV) that are not the task's data nor a
# control's answer; `annotation_id` and `lead_time` mark a file as one of those exports.
LS_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history"}
LS_MARK = {"annotation_id", "lead_time"}
# Our tasks' own data fields (labelstudio_task): they name the item, never a class.
OUR_DATA = {"stcore_id", "source"}
# Label Studio renames an uploaded file to '<8 hex digits>-<its name>'.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


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

    @property
    def name(self) -> str | None:
        """The image's file name, from its path or its image reference: an import's last way to
        find the item where no file is on this machine (see file_name)."""
        ref = self.path or self.raw.get("image")
        return file_name(str(ref)) if ref else None

    @property
    def uploaded(self) -> bool:
        """Whether the image is a Label Studio upload, whose name Label Studio made safe (upload_name)."""
        return not self.path and str(self.raw.get("image") or "").startswith("/data/upload/")


def file_name(ref: str) -> str | None:
    """The file name a path or image reference ends in: a Label Studio local-files URL, an upload
    (/data/upload/3/8f3a2b1c-cat.png gives cat.png), a web or bucket address, or a plain path."""
    if LOCAL_FILES in ref:  # also after Label Studio's host: http://host:8080/data/local-files/?d=...
        ref = unquote(ref.split(LOCAL_FILES, 1)[1])
    elif "://" in ref or ref.startswith("/data/"):
        ref = unquote(urlsplit(ref).path)
    name = ref.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if ref.startswith("/data/upload/"):
        name = _UPLOAD_PREFIX.sub("", name)
    return name or None


def upload_name(name: str) -> str:
    """A file name as Label Studio stores an upload of it (Django's get_valid_filename): spaces
    made '_', and every character but letters, digits, '-', '_' and '.' dropped."""
    return re.sub(r"[^-\w.]", "", name.strip().replace(" ", "_"))


def guess_format(source: str | os.PathLike) -> str:
    """One of FORMATS, from a folder (fiftyone where it holds labels.json), the suffix and the
    content (a .json: a list is Label Studio's, a dict of `labels` FiftyOne's, else ours)."""
    p = Path(source)
    if not p.exists():
        raise UsageError(f"{p} does not exist")
    if p.is_dir():
        return "fiftyone" if (p / "labels.json").is_file() else "imagefolder"
    if p.suffix.lower() in (".csv", ".tsv"):
        return "labelstudio" if LS_MARK <= set(_header(p)) else "csv"
    if p.suffix.lower() == ".json":
        data = _load_json(p)
        return ("labelstudio" if isinstance(data, list) else
                "fiftyone" if isinstance(data, dict) and isinstance(data.get("labels"), dict) else "json")
    raise UsageError(f"cannot tell the format of {p}: give --format ({', '.join(FORMATS)})")


def read(source: str | os.PathLike, fmt: str | None = None, *, label_column: str | None = None) -> list[LabelRow]:
    """The rows of a label file (or folder) of format fmt (guessed when None). label_column: the
    column that holds the class in a CSV (default `label`) or a flat Label Studio export (default:
    the only column that is neither metadata nor the task's data)."""
    p = Path(source)
    if not p.exists():
        raise UsageError(f"{p} does not exist")
    fmt = fmt or guess_format(p)
    readers = {"csv": read_csv, "json": read_json, "labelstudio": read_labelstudio, "fiftyone": read_fiftyone,
               "imagefolder": read_imagefolder}
    if fmt not in readers:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt != "fiftyone" and (fmt == "imagefolder") != p.is_dir():
        raise UsageError(f"{p} is {'a folder' if p.is_dir() else 'a file'}: the {fmt} format reads "
                         f"{'a folder of class folders' if fmt == 'imagefolder' else 'a file'}")
    if label_column is not None and fmt not in ("csv", "labelstudio"):
        raise UsageError(f"--label-column is for CSV files and Label Studio exports, not the {fmt} format")
    return readers[fmt](p, label_column.strip().lower()) if label_column else readers[fmt](p)


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


def csv_safe(v):
    """Keep spreadsheet apps from running a cell as a formula (CSV injection); csv_unsafe reverses it."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def csv_unsafe(v: str) -> str:
    """Undo our CSV export's guard against spreadsheet formulas (csv_safe)."""
    return v[1:] if v[:1] == "'" and v[1:2] in ("=", "+", "-", "@", "\t", "\r") else v


def _int(v, where: str, p: Path) -> int | None:
    if v is None or str(v).strip() == "":
        return None
    try:
        return int(str(v).strip())
    except ValueError:
        try:  # a column with empty cells, through pandas, writes 12 as 12.0
            if float(v) == int(float(v)):
                return int(float(v))
        except (ValueError, OverflowError):
            pass
        raise DataError(f"{p}, {where}: id {v!r} is not a whole number") from None


def _row(p: Path, where: str, rec: dict, status: str | None, column: str = "label") -> LabelRow:
    """A row from a record of our export's columns (id, source or path, label (or column), status)."""
    label = csv_unsafe(str(rec.get(column) or "")).strip() or None
    path = rec.get("path") or rec.get("source") or rec.get("file_name")
    path = csv_unsafe(str(path)) if path not in (None, "") else None
    skip = None
    if status and status not in HUMAN:
        skip = f"status {status}: not a human label"
    elif label is None:
        raise DataError(f"{p}, {where}: no label; give each row a class name")
    file = (p.parent / path) if path else None
    return LabelRow(where, label, _int(rec.get("id"), where, p), path, file, skip, dict(rec))


def _csv_records(p: Path) -> tuple[list[str], list[tuple[str, dict]]]:
    """(the header, lower case; each row as (where, {column: value})) of a CSV, or a TSV by its
    suffix. A row whose field count differs from the header's is a DataError."""
    reader = csv.reader(io.StringIO(_text(p), newline=""), delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{p} is empty; it needs a header such as `path,label` or `id,label`") from None
    except csv.Error as e:
        raise DataError(f"{p}, line 1: {e}") from None
    records = []
    try:
        for values in reader:
            where = f"line {reader.line_num}"
            if not values:
                continue
            if len(values) != len(header):
                raise DataError(f"{p}, {where}: {len(values)} fields where the header has {len(header)}")
            records.append((where, dict(zip(header, values))))
    except csv.Error as e:
        raise DataError(f"{p}, line {reader.line_num}: {e}") from None
    return header, records


def _header(p: Path) -> list[str]:
    """The first line of a CSV or TSV as column names (lower case), for guess_format."""
    with open(p, encoding="utf-8-sig", errors="replace", newline="") as f:
        line = f.readline()
    row = next(csv.reader([line], delimiter="\t" if p.suffix.lower() == ".tsv" else ","), [])
    return [h.strip().lower() for h in row]


def read_csv(p: Path, label_column: str | None = None) -> list[LabelRow]:
    """A header with `label` (or label_column) and `id`, `path`, `source` or `file_name`; our
    export's `status` column, where present, keeps its pending pseudo-labels and rejections out.
    A Label Studio CSV or TSV export (its `annotation_id` and `lead_time` columns) is read as
    read_labelstudio does."""
    header, records = _csv_records(p)
    if LS_MARK <= set(header):
        return _labelstudio_flat(p, records, label_column)
    column = label_column or "label"
    if column not in header or not {"id", "path", "source", "file_name"} & set(header):
        raise DataError(f"{p}, line 1: the header {','.join(header)!r} needs a `{column}` column and an `id`, "
                        f"`path`, `source` or `file_name` column" + ("" if label_column else
                                                                     " (--label-column names another class column)"))
    return [_row(p, where, rec, rec.get("status") or None, column) for where, rec in records]


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


def read_labelstudio(p: Path, label_column: str | None = None) -> list[LabelRow]:
    """Label Studio's JSON export: a list of tasks, each with `data` (the image, and our
    stcore_id and source where we wrote the task) and `annotations` whose results are choices.
    A task's label is its annotations' choice; cancelled annotations are left out, and tasks
    with none, or whose annotations disagree, are reported, not imported. Its flat exports
    (JSON-MIN, and CSV or TSV by the suffix) are read by _labelstudio_flat."""
    if p.suffix.lower() in (".csv", ".tsv"):
        header, records = _csv_records(p)
        if not LS_MARK <= set(header):
            raise DataError(f"{p} is not a Label Studio CSV export (it has no `annotation_id` and `lead_time` "
                            f"columns); for a CSV of paths or ids and labels, use --format csv")
        return _labelstudio_flat(p, records, label_column)
    data = _load_json(p)
    if not isinstance(data, list):
        raise DataError(f"{p} is not a Label Studio export (a JSON list of tasks)")
    if data and isinstance(data[0], dict) and "data" not in data[0] and LS_MARK & set(data[0]):
        for k, rec in enumerate(data, 1):
            if not isinstance(rec, dict):
                raise DataError(f"{p}, item {k}: not an object")
        return _labelstudio_flat(p, [(f"item {k}", rec) for k, rec in enumerate(data, 1)], label_column)
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
                             _our_source(d), file, skip, {"image": image, "id": task.get("id")}))
    return rows


def _our_source(data: dict) -> str | None:
    """The item's path in a task we wrote (labelstudio_task: stcore_id beside source); a `source`
    in another project's tasks is its own data, not our path."""
    return (data.get("source") or None) if data.get("stcore_id") not in (None, "") else None


def _is_image_ref(v) -> bool:
    return isinstance(v, str) and (v.startswith("/data/") or Path(file_name(v) or "").suffix.lower() in IMAGE_EXTS)


def _choice_column(p: Path, candidates: list[str], given: str | None) -> str:
    """The column of a flat Label Studio export that holds the Choices control's answer: the one
    given, else the only candidate. Several candidates (task data besides the image) are refused,
    naming them: a data column must never be read as the class."""
    if given:
        if given not in candidates:
            raise DataError(f"{p} has no answer column {given!r}; its columns besides the metadata and the image "
                            f"are: {', '.join(candidates) or 'none'}")
        return given
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DataError(f"{p} has no column with the annotations' choices: was the project's control a Choices?")
    raise DataError(f"{p}: cannot tell which column holds the class ({', '.join(candidates)}); give the "
                    f"Choices control's name with --label-column (on the dashboard: Label column)")


def _flat_choices(value, p: Path, where: str, column: str) -> list[str]:
    """The choices of one annotation's answer in a flat export: a name, or {"choices": [...]}
    (several choices; in a CSV, as JSON text), or a list of those."""
    if isinstance(value, str) and value.startswith(("{", "[")):  # a CSV cell holds JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [c for v in value for c in _flat_choices(v, p, where, column)]
    if isinstance(value, dict):
        if not isinstance(value.get("choices"), list):
            raise DataError(f"{p}, {where}: `{column}` is not a choice ({', '.join(value) or 'an empty object'}); "
                            f"only classification (Choices) annotations can be imported")
        return [str(c) for c in value["choices"]]
    return [str(value)]


def _labelstudio_flat(p: Path, records: list[tuple[str, dict]], label_column: str | None = None) -> list[LabelRow]:
    """Label Studio's JSON-MIN, CSV or TSV export: one record per annotation, with the task's
    data fields and `id`, and each control's answer in a column named after the control. The
    class column is label_column, else the one left when the metadata (LS_META), our own fields
    and the image are set aside (see _choice_column). A task's annotations make one row; one with several choices,
    or annotations that disagree, is reported, not imported."""
    keys = list(dict.fromkeys(k for _, rec in records for k in rec))
    image_key = "image" if "image" in keys else next(
        (k for k in keys if k not in LS_META | OUR_DATA and any(_is_image_ref(rec.get(k)) for _, rec in records[:20])), None)
    column = (_choice_column(p, [k for k in keys if k not in LS_META | OUR_DATA and k != image_key], label_column)
              if records else "")
    tasks: dict[str, list] = {}  # task id (or the record's place) -> [where, record, choices, problem]
    for where, rec in records:
        task = str(rec.get("id") or "").strip()
        entry = tasks.setdefault(task or where, [f"{where} (task {task})" if task else where, rec, set(), None])
        chosen = _flat_choices(rec.get(column), p, entry[0], column)
        if len(chosen) > 1:
            entry[3] = f"several choices in one annotation ({', '.join(chosen)})"
        entry[2].update(chosen)
    rows = []
    for where, rec, chosen, problem in tasks.values():
        labels = sorted(chosen)
        skip = problem or ("no choice in its annotations" if not labels else
                           f"its annotations disagree ({', '.join(labels)})" if len(labels) > 1 else None)
        image = rec.get(image_key) if image_key else None
        rows.append(LabelRow(where, None if skip else labels[0], _int(rec.get("stcore_id"), where, p), _our_source(rec),
                             local_file(str(image), p.parent) if image else None, skip, {"image": image, "id": rec.get("id")}))
    return rows


def read_fiftyone(p: Path) -> list[LabelRow]:
    """FiftyOne's image classification dataset (fo.types.FiftyOneImageClassificationDataset):
    DIR/labels.json, {"classes": [...] (optional), "labels": {uuid: target}}, and the images in
    DIR/data/<uuid>.<ext> (a uuid may be a relative path under data/, or an absolute path). p is
    DIR or its labels.json. A target is an index into classes (a name where there are none), or
    {"label": target, "confidence": ...}. A target with a confidence is a prediction, and null
    (unlabeled) and a list (several labels) give no single class: these are reported, not imported."""
    labels_file = p / "labels.json" if p.is_dir() else p
    data = _load_json(labels_file)
    if not isinstance(data, dict) or not isinstance(data.get("labels"), dict):
        raise DataError(f"{labels_file} is not a FiftyOne labels.json ({{\"classes\": [...], \"labels\": {{...}}}})")
    classes = data.get("classes")
    if classes is not None and not isinstance(classes, list):
        raise DataError(f"{labels_file}: `classes` is not a list of class names")
    files = {}  # data/'s files by their path under data/ without the suffix (the uuid)
    for dirpath, _, names in os.walk(labels_file.parent / "data"):
        for name in names:
            f = Path(dirpath) / name
            files.setdefault(f.relative_to(labels_file.parent / "data").with_suffix("").as_posix(), f)
    rows = []
    for uuid, target in data["labels"].items():
        where, conf = f"label {uuid!r}", None
        if isinstance(target, dict):
            target, conf = target.get("label"), target.get("confidence")
        skip = ("no label (unlabeled)" if target is None else "several labels (multilabel)" if isinstance(target, list)
                else "a prediction (it has a confidence), not a human label" if conf is not None else None)
        label = None
        if skip is None and classes is not None:
            if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < len(classes):
                raise DataError(f"{labels_file}, {where}: {target!r} is not an index into its {len(classes)} classes")
            label = str(classes[target])
        elif skip is None:
            label = str(target).strip()
            if not label:
                raise DataError(f"{labels_file}, {where}: an empty class name; give it a class or null")
        file = Path(uuid) if os.path.isabs(uuid) else files.get(uuid)
        rows.append(LabelRow(where, label, file=file, skip=skip, raw={"image": file.name if file else uuid}))
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
