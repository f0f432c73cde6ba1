"""Import labels from other tools: a CSV, our own JSON export, a Label Studio export, or a
folder of class folders (stcore/labelformats.py reads them), as human labels with source
'imported'. A bad file or row refuses the whole import and changes nothing; rows that match no
item are reported and written to a file, never dropped silently."""
from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from pathlib import Path

from .. import labelformats
from ..errors import DataError, UsageError
from ..labelformats import LabelRow
from ..project import Project, default_reviewer
from .classes import add_classes
from .continuous import decided

SPLITS = ("labeled", "pool", "test")


def import_labels(project: Project, source: str | os.PathLike, *, fmt: str | None = None,
                  new_classes: bool = True, reviewer: str | None = None, label_column: str | None = None) -> dict:
    """Make the labels of source (a file, or a folder for fmt 'imagefolder'; fmt guessed when
    None) the human labels of the items they name, in one transaction and one history batch
    by reviewer (default: this user), through the review decisions:
    - a pool item becomes accepted (the teacher's class was the same) or corrected, whatever
      the overlap (an import settles items, as an admin does);
    - an item of the labeled set is relabeled (undo reverts both, as one action);
    - a test item's label is replaced, outside the history (see Decisions.relabel): the
      test accuracy then measures against the imported labels.
    A row names its item by path (items.source), else by id (the labeled set and the pool;
    only when the row gives no path, since an id means nothing in another project), else by
    its image file's pixels, decoded as the project decodes its images, else, where that file
    is not on this machine, by its file name when exactly one labeled or pool item has it and no
    other row names it (never a test item: a test label is not undone). label_column: the class
    column of a CSV or a flat Label Studio export (labelformats.read). Unknown classes are
    added (as add_classes does), or refused (UsageError) with new_classes False. Returns {'format', 'rows', 'imported',
    'unchanged', 'matched' (by path, id, content, file name), 'by_split', 'classes_added', 'not_imported',
    'reasons' (reason -> rows), 'not_imported_file' (a CSV in PROJECT/imports/, or None)}."""
    fmt = fmt or labelformats.guess_format(source)
    rows = labelformats.read(source, fmt, label_column=label_column)
    names = _class_names(project, rows, new_classes)
    found, how, why = _match(project, rows)
    targets = _targets(rows, found, names)
    new = list(dict.fromkeys(names[r.label.lower()] for k, r in enumerate(rows)
                             if k in found and names[r.label.lower()] not in project.classes))
    who = reviewer or default_reviewer()
    with project.store.tx():
        if new:
            add_classes(project, new, reviewer=who)
        changed, same = _write(project, targets, who)
    decided(project)
    missed = [(rows[k], reason) for k, reason in sorted(why.items())]
    return {"format": fmt, "rows": len(rows), "imported": sum(changed.values()), "unchanged": same,
            "matched": dict(Counter(how.values())), "by_split": changed, "classes_added": new,
            "not_imported": len(missed), "reasons": dict(Counter(reason for _, reason in missed)),
            "not_imported_file": _write_missed(project, Path(source), missed)}


def _class_names(project: Project, rows: list[LabelRow], new_classes: bool) -> dict[str, str]:
    """Each label of rows (lower case) -> the class name it means: the project's class of that
    name (any case), else the label itself, a new class. New classes refused unless new_classes."""
    have = {c.lower(): c for c in project.classes}
    out: dict[str, str] = {}
    for r in rows:
        if r.skip or r.label is None or r.label.lower() in out:
            continue
        if r.label.lower() not in have and not new_classes:
            raise UsageError(f"{r.where}: the project has no class {r.label!r} and --no-new-classes refuses new "
                             f"ones; add it first (`stcore classes P --add NAME`) or leave the option out")
        out[r.label.lower()] = have.get(r.label.lower(), r.label)
    return out


def _match(project: Project, rows: list[LabelRow]) -> tuple[dict, dict, dict]:
    """(row index -> (split, item id), row index -> how it matched, row index -> why not)."""
    by_source, by_id = {}, {}
    for split in SPLITS:
        for r in project.store.items.of_split(split):
            by_source.setdefault(r["source"], (split, r["id"]))
            if split != "test":
                by_id[r["id"]] = (split, r["id"])
    found, how, why, by_pixels, by_name = {}, {}, {}, [], []
    for k, r in enumerate(rows):
        if r.skip:
            why[k] = r.skip
        elif r.path is not None and r.path in by_source:
            found[k], how[k] = by_source[r.path], "path"
        elif r.path is None and r.id is not None and r.id in by_id:
            found[k], how[k] = by_id[r.id], "id"
        elif r.file is not None and r.file.is_file():
            by_pixels.append(k)
        elif r.path is None and r.id is not None:
            why[k] = "no labeled or pool item has this id"
        elif r.name:
            by_name.append(k)
        else:
            why[k] = "its image file is missing"
    if by_pixels:  # the hash index costs a pass over the image cache: only when something needs it
        _match_pixels(project, rows, by_pixels, found, how, why)
    if by_name:
        _match_names({s: item for s, item in by_source.items() if item[0] != "test"}, rows, by_name, found, how, why)
    return found, how, why


def _match_names(by_source: dict, rows: list[LabelRow], ks: list[int], found: dict, how: dict, why: dict) -> None:
    """Rows whose image is not on this machine (a Label Studio upload, a bucket, another
    machine's folder), by file name: the one item of by_source whose path ends in that name (a
    name without a suffix, as FiftyOne's uuids, by its stem; an upload's, by the name Label
    Studio made of it). A name that several items, or several rows, have matches none."""
    index: dict[str, list[tuple[str, int]]] = {}
    for source, item in by_source.items():
        name = labelformats.file_name(source) or ""
        keys = {name, "upload:" + labelformats.upload_name(name)}
        if Path(name).suffix:
            keys.add(Path(name).stem + "/")  # '/': no file name ends so
        for key in keys:
            index.setdefault(key, []).append(item)
    named = Counter(rows[k].name for k in ks)
    for k in ks:
        name = rows[k].name or ""
        hits = (index.get("upload:" + name, []) if rows[k].uploaded else
                index.get(name) or ([] if Path(name).suffix else index.get(name + "/", [])))
        if len(hits) == 1 and named[name] == 1:
            found[k], how[k] = hits[0], "file name"
        else:
            why[k] = ("several rows name this file, and no image file is there to compare" if hits and named[name] > 1
                      else "several items have this file name, and no image file is there to compare" if hits
                      else "no item has this path or file name, and no image file is there to compare")


def _digest(a) -> bytes:
    return hashlib.blake2b(a.tobytes(), digest_size=16).digest()


def _match_pixels(project: Project, rows: list[LabelRow], ks: list[int], found: dict, how: dict, why: dict) -> None:
    from ..data import images
    from ..sources import decode_like
    index: dict[bytes, list[tuple[str, int]]] = {}
    for split, cache in (("labeled", "train"), ("pool", "train"), ("test", "test")):
        items = project.store.items.of_split(split)
        if items:
            x = images(project, cache).numpy()
            for r in items:
                index.setdefault(_digest(x[r["row"]]), []).append((split, r["id"]))
    shape = project.meta["input_shape"]
    for k in ks:
        try:
            hits = index.get(_digest(decode_like(rows[k].file, shape)), [])
        except Exception as e:  # a missing or damaged file (PIL raises many types): this row is reported
            why[k] = f"its image file cannot be read ({type(e).__name__})"
            continue
        if len(hits) == 1:
            found[k], how[k] = hits[0], "content"
        else:
            why[k] = "several items have the same pixels" if hits else "no item has the same pixels"


def _targets(rows: list[LabelRow], found: dict, names: dict) -> dict[tuple[str, int], tuple[str, LabelRow]]:
    """(split, id) -> (class name, the row that gives it); DataError where two rows give one item
    two classes."""
    out: dict[tuple[str, int], tuple[str, LabelRow]] = {}
    for k, item in found.items():
        name = names[rows[k].label.lower()]
        if item in out and out[item][0] != name:
            first = out[item][1]
            raise DataError(f"{first.where} and {rows[k].where} give one image ({item[0]} item {item[1]}) two classes, "
                            f"{out[item][0]!r} and {name!r}; keep one of them")
        out.setdefault(item, (name, rows[k]))
    return out


def _write(project: Project, targets: dict, who: str) -> tuple[dict[str, int], int]:
    """Inside a transaction: the labels, grouped by split, class and decision. Returns (items
    changed per split, items that had that label already)."""
    store, index = project.store, {c: i for i, c in enumerate(project.classes)}
    train = [i for split, i in targets if split != "test"]
    now = {r["id"]: r for r in store.queue.rows_by_id(train)}
    test_ids, test_labels = store.items.test_set()
    test_now = dict(zip(test_ids, test_labels))
    groups: dict[tuple[str, str, int], list[int]] = {}
    same = 0
    for (split, i), (name, _) in targets.items():
        c = index[name]
        current = test_now.get(i) if split == "test" else now[i]["label"]
        if current == c and (split != "pool" or now[i]["status"] in ("accepted", "corrected")):
            same += 1
            continue
        status = "accepted" if split == "pool" and now[i]["pred"] == c else "corrected"
        groups.setdefault((split, status, c), []).append(i)
    batch, d = store.decisions.next_batch(), store.decisions
    changed = {s: 0 for s in SPLITS}
    for (split, status, c), ids in groups.items():
        if split == "pool":
            n = d.decide(ids, status, c if status == "corrected" else None, reviewer=who, batch=batch,
                         source="imported")
        else:
            n = d.relabel(ids, c, reviewer=who, batch=batch, source="imported", split=split)
        changed[split] += n
    return changed, same


def _write_missed(project: Project, source: Path, missed: list[tuple[LabelRow, str]]) -> str | None:
    """The rows not imported, with why, as PROJECT/imports/<source>-<time>-not-imported.csv."""
    if not missed:
        return None
    folder = project.path / "imports"
    folder.mkdir(exist_ok=True)
    dest = folder / f"{source.stem or 'import'}-{time.strftime('%Y%m%d-%H%M%S')}-not-imported.csv"
    header = ["where", "reason", "id", "path", "label", "file"]
    dest.write_text(labelformats.csv_text(header, [[r.where, reason, r.id, r.path or r.raw.get("image"), r.label,
                                                    r.file] for r, reason in missed]), encoding="utf-8")
    return str(dest)
