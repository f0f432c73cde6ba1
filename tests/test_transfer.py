"""Labels to and from other tools (stcore/api/export.py, importing.py, labelformats.py), checked
with the real readers: torchvision's ImageFolder, Hugging Face datasets, and our own import of a
Label Studio export into a fresh project. Tiny folder projects of random 6x6 images."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stcore import api
from stcore.cli import main
from stcore.errors import DataError, NotFound, UsageError
from stcore import labelformats
from stcore.labelformats import class_of_dir, csv_text, safe_dir

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
CAT, QUOTED, SLASHED = "cat", 'Çat, "q"', "T-shirt/top"  # non-ASCII, a comma, quotes and a slash


def pictures(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(n)]


PICS = pictures(12)
# Layout A: a folder project with labeled, test and pool images, odd file names included.
LAYOUT_A = {f"labeled/{CAT}/é0,\"x\".png": 0, f"labeled/{CAT}/é1,\"x\".png": 1, f"labeled/{QUOTED}/a0.png": 2,
            f"labeled/{QUOTED}/a1.png": 3, f"test/{CAT}/t0.png": 4, f"test/{QUOTED}/t1.png": 5,
            **{f"unlabeled/ü{i},\"y\".png": 6 + i for i in range(6)}}
# Layout B: the same training pixels, all unlabeled, under other names.
LAYOUT_B = {f"unlabeled/b{k}.png": k for k in (0, 1, 2, 3, 6, 7, 8, 9, 10, 11)}


def write_folder(root: Path, layout: dict[str, int]) -> Path:
    for rel, k in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(PICS[k]).save(root / rel)
    return root


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def human_labels(p, splits=("labeled", "pool")) -> dict[str, str]:
    """The project's human labels by the sha256 of their image's pixels: digest -> class name."""
    out = {}
    for r in api.labels(p):
        if r["split"] in splits:
            out[digest(api.images(p, [r["item_id"]], r["split"])[0])] = p.classes[r["class_id"]]
    return out


def state(p) -> tuple:
    """Everything an import may change."""
    return (api.labels(p), api.history(p, limit=10_000), p.classes, api.counts(p))


@pytest.fixture
def proj(tmp_path):
    """Layout A, with a third class (T-shirt/top), two pool items labeled and four pseudo-labeled
    (confidences 0.9, 0.6, 0.97, 0.3)."""
    p = api.create_project(tmp_path / "a", dataset="folder", data_root=str(write_folder(tmp_path / "data", LAYOUT_A)))
    api.add_classes(p, [SLASHED])
    pool = [r["id"] for r in api.review_page(p, statuses=["pending"], limit=10)]
    api.set_label(p, [pool[0]], SLASHED)
    api.set_label(p, [pool[1]], CAT)
    preds = [(0, 0.9), (1, 0.6), (2, 0.97), (0, 0.3)]
    p.store.items.write_predictions([(c, conf, conf / 2, 1 - conf, None, "teacher-1", i)
                                     for i, (c, conf) in zip(pool[2:], preds)])
    return p


def fresh(tmp_path, name="b", layout=LAYOUT_B):
    root = write_folder(tmp_path / f"data-{name}", layout)
    return api.create_project(tmp_path / name, dataset="folder", data_root=str(root), classes=[CAT, QUOTED])


# ------------------------------------------------------------------ the real readers
def test_imagefolder_export_reads_in_torchvision_with_the_classes_and_counts(proj, tmp_path):
    from torchvision.datasets import ImageFolder
    want = Counter(human_labels(proj).values())
    out = api.export_dataset(proj, tmp_path / "if", "imagefolder")
    ds = ImageFolder(str(tmp_path / "if"))
    assert sorted(ds.classes) == sorted(safe_dir(c) for c in want) and "T-shirt%2Ftop" in ds.classes
    assert Counter(class_of_dir(ds.classes[y]) for _, y in ds.samples) == want
    assert out["files"] == {"linked": sum(want.values()), "copied": 0, "decoded": 0}
    assert {Path(f).name for f, _ in ds.samples} >= {'é0,"x".png', 'ü0,"y".png'}
    # the pending pseudo-labels at least 0.9 confident join the human labels
    ds = ImageFolder(str(api.export_dataset(proj, tmp_path / "if2", "imagefolder", min_confidence=0.9)["path"]))
    assert Counter(class_of_dir(ds.classes[y]) for _, y in ds.samples) == want + Counter([CAT, SLASHED])


def test_the_images_are_pngs_of_the_cache_where_the_originals_are_gone(proj, tmp_path):
    from torchvision.datasets import ImageFolder
    shutil.move(tmp_path / "data", tmp_path / "moved")
    out = api.export_dataset(proj, tmp_path / "if", "imagefolder", copy=True)
    assert out["files"]["decoded"] == out["items"] and out["files"]["linked"] == 0
    ds = ImageFolder(str(tmp_path / "if"))
    got = {digest(np.asarray(img).transpose(2, 0, 1)): class_of_dir(ds.classes[y]) for img, y in ds}
    assert got == human_labels(proj)


def test_hf_export_loads_with_datasets(proj, tmp_path, monkeypatch):
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    datasets = pytest.importorskip("datasets")
    api.export_dataset(proj, tmp_path / "hf", "hf")
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "hf"), cache_dir=str(tmp_path / "hf-cache"))
    assert set(ds) == {"train", "test"}
    train = {digest(np.asarray(r["image"]).transpose(2, 0, 1)): r["label"] for r in ds["train"]}
    assert train == human_labels(proj)  # the exact class names: slash, quotes, comma, non-ASCII
    assert Counter(ds["test"]["label"]) == Counter([CAT, QUOTED])
    assert 'labeled/cat/é0,"x".png' in ds["train"]["source"]


# ------------------------------------------------------------------ round trips through our import
def test_label_studio_export_imported_into_a_fresh_project_gives_the_same_labels(proj, tmp_path):
    out = api.export_dataset(proj, tmp_path / "ls" / "tasks.json", "labelstudio")
    tasks = json.loads(Path(out["path"]).read_text(encoding="utf-8"))
    assert len(tasks) == 10 and out["annotations"] == 6 and out["predictions"] == 4
    scored = [t["predictions"][0] for t in tasks if "predictions" in t]
    assert sorted(s["score"] for s in scored) == pytest.approx([0.3, 0.6, 0.9, 0.97])
    assert SLASHED in Path(out["config"]).read_text(encoding="utf-8")
    b = fresh(tmp_path)
    got = api.import_labels(b, out["path"])
    assert got["matched"] == {"content": 6} and got["classes_added"] == [SLASHED]
    assert got["reasons"] == {"no annotation (predictions are not human labels)": 4}
    assert human_labels(b) == human_labels(proj)
    again = api.import_labels(proj, out["path"])  # into its own project: by path, nothing to change
    assert again["matched"] == {"path": 6} and again["imported"] == 0 and again["unchanged"] == 6


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_our_csv_and_json_round_trip_by_path(proj, tmp_path, fmt):
    out = api.export_dataset(proj, tmp_path / f"labels.{fmt}", fmt)
    b = fresh(tmp_path, "same", LAYOUT_A)  # the same folder again: the same sources
    got = api.import_labels(b, out["path"])
    assert got["matched"] == {"path": 6} and got["imported"] == 2 and got["unchanged"] == 4
    assert got["not_imported"] == 4 and set(got["reasons"]) == {"status pending: not a human label"}
    assert human_labels(b) == human_labels(proj)


def test_imagefolder_export_of_cache_pngs_imports_by_content(proj, tmp_path):
    shutil.move(tmp_path / "data", tmp_path / "moved")
    api.export_dataset(proj, tmp_path / "if", "imagefolder")
    b = fresh(tmp_path)
    got = api.import_labels(b, tmp_path / "if")
    assert got["format"] == "imagefolder" and got["matched"] == {"content": 6}
    assert human_labels(b) == human_labels(proj)


def test_an_import_relabels_each_split_as_its_docstring_says(proj, tmp_path):
    """A labeled item is relabeled, a pool item accepted (the teacher agreed) or corrected, a test
    item's label replaced: all with source 'imported' and the importer's name; undo reverts the
    labeled set and the pool as one action, not the test label."""
    source = {(s, r["id"]): r["source"] for s in ("labeled", "pool", "test") for r in proj.store.items.of_split(s)}
    pending = {r["id"]: r["pred"] for r in api.review_page(proj, statuses=["pending"], limit=10) if r["pred"] is not None}
    agree, differ = sorted(pending)[:2]
    assert proj.classes[pending[differ]] != SLASHED
    rows = [(("labeled", 0), SLASHED), (("pool", agree), proj.classes[pending[agree]]), (("pool", differ), SLASHED),
            (("test", 0), QUOTED)]
    (tmp_path / "in.csv").write_text(csv_text(["path", "label"], [[source[k], c] for k, c in rows]), encoding="utf-8")
    got = api.import_labels(proj, tmp_path / "in.csv", reviewer="ann")
    assert got["by_split"] == {"labeled": 1, "pool": 2, "test": 1} and got["matched"] == {"path": 4}
    now = {r["id"]: r for r in api.items(proj, [0, agree, differ])}
    assert proj.classes[now[0]["label"]] == SLASHED
    assert now[agree]["status"] == "accepted" and now[differ]["status"] == "corrected"
    labels = {(r["split"], r["item_id"]): r for r in api.labels(proj)}
    assert {(labels[k]["source"], labels[k]["reviewer"]) for k, _ in rows} == {("imported", "ann")}
    assert proj.classes[labels[("test", 0)]["class_id"]] == QUOTED
    history = api.history(proj, limit=3)
    assert len({h["batch"] for h in history}) == 1 and {(h["reviewer"], h["source"]) for h in history} == {("ann", "imported")}
    assert api.undo(proj, "ann") == 3
    assert now[0]["label"] != api.items(proj, [0])[0]["label"] and api.items(proj, [agree])[0]["status"] == "pending"
    assert proj.classes[next(r for r in api.labels(proj, "test") if r["item_id"] == 0)["class_id"]] == QUOTED


def test_rows_that_match_nothing_are_reported_and_written_down(proj, tmp_path):
    csv = tmp_path / "odd.csv"
    csv.write_text("id,path,label,status\n,nowhere/x.png,cat,\n999,,cat,\n"
                   f"0,,{CAT},\n1,,{CAT},pending\n", encoding="utf-8")
    got = api.import_labels(proj, csv)
    assert got["rows"] == 4 and got["matched"] == {"id": 1} and got["not_imported"] == 3
    assert got["reasons"] == {"no item has this path or file name, and no image file is there to compare": 1,
                              "no labeled or pool item has this id": 1, "status pending: not a human label": 1}
    listed = Path(got["not_imported_file"]).read_text(encoding="utf-8").splitlines()
    assert listed[0] == "where,reason,id,path,label,file" and len(listed) == 4
    assert Path(got["not_imported_file"]).parent == proj.path / "imports"


LS_TIMES = {"created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:05Z", "lead_time": 4.5}


def ls_min(tasks: list[dict], control: str = "label") -> list[dict]:
    """Tasks of Label Studio's JSON export as its JSON-MIN export writes them: one record per
    annotation, the task's data and id, the control's answer under its name (a name, or
    {"choices": [...]} for several), the annotator and times."""
    out = []
    for task_id, t in enumerate(tasks, 1):
        for n, a in enumerate(t.get("annotations", []), 1):
            chosen = [c for r in a["result"] for c in r["value"]["choices"]]
            out.append({**t["data"], "id": task_id, control: chosen[0] if len(chosen) == 1 else {"choices": chosen},
                        "annotator": 1, "annotation_id": 100 * task_id + n, **LS_TIMES})
    return out


def write_flat(path: Path, records: list[dict]) -> Path:
    """records as Label Studio's CSV (or TSV, by the suffix) export writes them: the columns of
    every record, several choices as JSON text."""
    header = list(dict.fromkeys(k for r in records for k in r))
    cell = lambda v: json.dumps(v) if isinstance(v, dict) else "" if v is None else v  # noqa: E731
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",")
        w.writerow(header)
        w.writerows([cell(r.get(k)) for k in header] for r in records)
    return path


@pytest.mark.parametrize("flavour", ["json-min", "csv", "tsv"])
def test_label_studio_flat_exports_of_our_tasks_import_like_its_json(proj, tmp_path, flavour):
    out = api.export_dataset(proj, tmp_path / "ls" / "tasks.json", "labelstudio")
    records = ls_min(json.loads(Path(out["path"]).read_text(encoding="utf-8")))
    assert len(records) == 6
    if flavour == "json-min":
        flat = tmp_path / "ls" / "min.json"
        flat.write_text(json.dumps(records), encoding="utf-8")
    else:
        flat = write_flat(tmp_path / "ls" / f"min.{flavour}", records)
    assert labelformats.guess_format(flat) == "labelstudio"
    b = fresh(tmp_path)
    got = api.import_labels(b, flat)
    assert got["format"] == "labelstudio" and got["matched"] == {"content": len(records)} and got["not_imported"] == 0
    assert human_labels(b) == human_labels(proj)


def test_a_label_studio_project_of_uploads_imports_by_file_name(tmp_path):
    """A project made in Label Studio: images uploaded (renamed '<8 hex>-<name>'), a Choices
    control named 'choice', two annotators on one task; its JSON-MIN and CSV exports."""
    b = fresh(tmp_path)
    up = lambda name: f"/data/upload/3/{hashlib.md5(name.encode()).hexdigest()[:8]}-{name}"  # noqa: E731
    rec = lambda i, name, choice, n=1: {"image": up(name), "id": i, "choice": choice, "annotator": n,  # noqa: E731
                                        "annotation_id": 10 * i + n, **LS_TIMES}
    records = [rec(1, "b0.png", CAT), rec(2, "b1.png", QUOTED), rec(3, "b6.png", CAT), rec(3, "b6.png", CAT, 2),
               rec(4, "b7.png", CAT), rec(4, "b7.png", QUOTED, 2), rec(5, "b8.png", {"choices": [CAT, QUOTED]}),
               rec(6, "b9.png", None), rec(7, "elsewhere.png", CAT)]
    reasons = {f"its annotations disagree ({CAT}, {QUOTED})": 1,
               f"several choices in one annotation ({CAT}, {QUOTED})": 1, "no choice in its annotations": 1,
               "no item has this path or file name, and no image file is there to compare": 1}
    source = {r["id"]: r["source"] for r in b.store.items.of_split("pool")}
    for flat in (tmp_path / "min.json", tmp_path / "export.csv"):
        if flat.suffix == ".json":
            flat.write_text(json.dumps(records), encoding="utf-8")
        else:
            write_flat(flat, records)
        got = api.import_labels(b, flat)
        assert got["matched"] == {"file name": 3} and got["reasons"] == reasons, flat
        labels = {source[r["item_id"]]: b.classes[r["class_id"]] for r in api.labels(b) if r["split"] == "pool"}
        assert labels == {"unlabeled/b0.png": CAT, "unlabeled/b1.png": QUOTED, "unlabeled/b6.png": CAT}
        assert got["imported"] == (3 if flat.suffix == ".json" else 0)


def test_a_file_name_that_several_images_have_matches_none(tmp_path):
    b = fresh(tmp_path, "dup", {"unlabeled/x/same.png": 0, "unlabeled/y/same.png": 1, "unlabeled/z/one.png": 2})
    (tmp_path / "in.csv").write_text("path,label\n/home/ann/photos/same.png,cat\n/home/ann/photos/one.png,cat\n",
                                     encoding="utf-8")
    got = api.import_labels(b, tmp_path / "in.csv")
    assert got["matched"] == {"file name": 1}
    assert got["reasons"] == {"several items have this file name, and no image file is there to compare": 1}


def fiftyone_export(proj, root: Path, with_classes: bool = True) -> Path:
    """proj's human labels as FiftyOne's FiftyOneImageClassificationDataset writes them:
    root/data/<uuid>.png and root/labels.json, plus an unlabeled image (null), a prediction (a
    confidence) and a multilabel target, which are not human labels."""
    folders = api.export_dataset(proj, root.with_name(root.name + "-if"), "imagefolder")["path"]
    (root / "data").mkdir(parents=True)
    classes, labels = sorted(proj.classes), {}
    for k, f in enumerate(sorted(Path(folders).rglob("*.png"))):
        shutil.copyfile(f, root / "data" / f"{k:08x}.png")
        name = class_of_dir(f.parent.name)
        labels[f"{k:08x}"] = classes.index(name) if with_classes else name
    extra = {"ffffff01": None, "ffffff02": {"label": 0 if with_classes else classes[0], "confidence": 0.93},
             "ffffff03": [0, 1] if with_classes else classes[:2]}
    for uuid in extra:
        shutil.copyfile(next((root / "data").glob("*.png")), root / "data" / f"{uuid}.png")
    doc = {"classes": classes, "labels": {**labels, **extra}} if with_classes else {"labels": {**labels, **extra}}
    (root / "labels.json").write_text(json.dumps(doc), encoding="utf-8")
    return root


@pytest.mark.parametrize("with_classes", [True, False])
def test_a_fiftyone_classification_dataset_imports_by_its_images(proj, tmp_path, with_classes):
    shutil.move(tmp_path / "data", tmp_path / "moved")  # the PNGs of the cache are the only images
    root = fiftyone_export(proj, tmp_path / "fo", with_classes)
    assert labelformats.guess_format(root) == "fiftyone" and labelformats.guess_format(root / "labels.json") == "fiftyone"
    b = fresh(tmp_path)
    got = api.import_labels(b, root)
    assert got["format"] == "fiftyone" and got["matched"] == {"content": 6}
    assert got["reasons"] == {"no label (unlabeled)": 1, "a prediction (it has a confidence), not a human label": 1,
                              "several labels (multilabel)": 1}
    assert human_labels(b) == human_labels(proj)


def test_a_fiftyone_labels_json_alone_matches_by_the_uuid_as_a_file_stem(tmp_path):
    """Uploaded without its data/ folder, a uuid that is an image's file stem finds it."""
    b = fresh(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"classes": [QUOTED, CAT], "labels": {"b0": 1, "b1": 0, "zz": 1}}),
                                          encoding="utf-8")
    got = api.import_labels(b, tmp_path / "labels.json")
    assert got["matched"] == {"file name": 2} and got["not_imported"] == 1
    source = {r["id"]: r["source"] for r in b.store.items.of_split("pool")}
    assert {source[r["item_id"]]: b.classes[r["class_id"]] for r in api.labels(b)} == {
        "unlabeled/b0.png": CAT, "unlabeled/b1.png": QUOTED}


def test_a_fiftyone_target_outside_its_classes_refuses_the_import(proj, tmp_path):
    root = fiftyone_export(proj, tmp_path / "fo")
    doc = json.loads((root / "labels.json").read_text(encoding="utf-8"))
    doc["labels"]["00000002"] = 7
    (root / "labels.json").write_text(json.dumps(doc), encoding="utf-8")
    before = state(proj)
    with pytest.raises(DataError, match=r"label '00000002': 7 is not an index into its 3 classes"):
        api.import_labels(proj, root)
    assert state(proj) == before


def ls_record(i: int, image: str, n: int = 1, **answer) -> dict:
    return {"image": image, "id": i, **answer, "annotator": n, "annotation_id": 10 * i + n, **LS_TIMES}


def test_a_data_column_is_never_read_as_the_class_unless_named(tmp_path):
    """Tasks that carry a `label` of their own beside the control `choice`: refused, naming both,
    until --label-column says which is the answer."""
    b = fresh(tmp_path)
    records = [ls_record(1, "/data/upload/1/0a0b0c0d-b0.png", label="dog", choice=CAT),
               ls_record(2, "/data/upload/1/0a0b0c0e-b1.png", label="dog", choice=QUOTED)]
    (tmp_path / "min.json").write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataError, match=r"cannot tell which column holds the class \(label, choice\); give "):
        api.import_labels(b, tmp_path / "min.json")
    with pytest.raises(DataError, match="no answer column 'answer'"):
        api.import_labels(b, tmp_path / "min.json", label_column="answer")
    got = api.import_labels(b, tmp_path / "min.json", label_column="choice")
    assert got["matched"] == {"file name": 2} and got["classes_added"] == []
    assert sorted(b.classes[r["class_id"]] for r in api.labels(b)) == sorted([CAT, QUOTED])
    (tmp_path / "in.csv").write_text("path,class\nunlabeled/b2.png,cat\n", encoding="utf-8")  # a CSV's own name
    assert api.import_labels(b, tmp_path / "in.csv", label_column="class")["matched"] == {"path": 1}


def test_label_studio_csv_quirks_read_as_label_studio_writes_them(tmp_path):
    """Uploads renamed as Label Studio's storage does (spaces to _, punctuation dropped), its
    `history` column, a list of choices as JSON text, a `source` of the tasks' own data, a
    local-files URL with its host, and ids written as 12.0."""
    b = fresh(tmp_path, "odd", {"unlabeled/IMG 1 (2).png": 0, "unlabeled/cat's.png": 1, "unlabeled/c.png": 2,
                                "unlabeled/d.png": 3})
    records = [ls_record(1, "/data/upload/3/1a2b3c4d-IMG_1_2.png", animal=CAT, history="[]", source="camera-3"),
               ls_record(2, "/data/upload/3/1a2b3c4e-cats.png", animal=QUOTED, history="[]", source="camera-3"),
               ls_record(3, "/data/upload/3/1a2b3c4f-c.png", animal=json.dumps([CAT, QUOTED]), history="[]"),
               ls_record(4, "http://ls.local:8080/data/local-files/?d=photos%2Fd.png", animal=CAT, history="[]")]
    got = api.import_labels(b, write_flat(tmp_path / "export.csv", records))
    assert got["matched"] == {"file name": 3}
    assert got["reasons"] == {f"several choices in one annotation ({CAT}, {QUOTED})": 1}
    source = {r["id"]: r["source"] for r in b.store.items.of_split("pool")}
    assert {source[r["item_id"]]: b.classes[r["class_id"]] for r in api.labels(b)} == {
        "unlabeled/IMG 1 (2).png": CAT, "unlabeled/cat's.png": QUOTED, "unlabeled/d.png": CAT}
    assert labelformats.read(write_flat(tmp_path / "ids.csv", [{**records[0], "stcore_id": "12.0"}]))[0].id == 12


def test_file_names_never_reach_the_test_set_nor_a_name_two_rows_give(proj, tmp_path):
    """A CSV of another dataset's paths: the test item t0.png keeps its label (a test label is
    not undone), and two rows naming one file match neither."""
    before = {r["item_id"]: r["class_id"] for r in api.labels(proj, "test")}
    (tmp_path / "other.csv").write_text("path,label\n/home/bob/other/t0.png,cat\n/home/bob/a/a0.png,cat\n"
                                        "/home/bob/b/a0.png,cat\n", encoding="utf-8")
    got = api.import_labels(proj, tmp_path / "other.csv")
    assert got["matched"] == {} and got["reasons"] == {
        "no item has this path or file name, and no image file is there to compare": 1,
        "several rows name this file, and no image file is there to compare": 2}
    assert {r["item_id"]: r["class_id"] for r in api.labels(proj, "test")} == before


def test_relabeling_the_test_set_stays_out_of_the_history(new_engine):
    """The history names items by id, which the test split numbers anew (store/decisions.py)."""
    from stcore.store import Store
    s = Store(new_engine(), create=True)
    s.classes.add(["a", "b"])
    s.items.add("labeled", [0], [0], ["l0"], [0])
    s.items.add("test", [0, 1], [0, 1], ["t0", "t1"], [0, 1])
    assert s.decisions.relabel([0, 1], 1, reviewer="ann", source="imported", split="test") == 1
    labels = {(r["split"], r["item_id"]): r for r in s.items.labels()}
    assert (labels[("test", 0)]["class_id"], labels[("test", 0)]["reviewer"]) == (1, "ann")
    assert labels[("labeled", 0)]["class_id"] == 0 and s.decisions.history() == []
    with pytest.raises(NotFound, match="unknown test item"):
        s.decisions.relabel([7], 1, split="test")


# ------------------------------------------------------------------ bad input changes nothing
BAD = {
    "no label column": ("in.csv", "path,class\nx.png,cat\n", DataError, "line 1"),
    "a row with a field too many": ("in.csv", "id,label\n0,cat\n1,cat,extra\n", DataError, "line 3"),
    "an id that is not a number": ("in.csv", "id,label\nseven,cat\n", DataError, "line 2"),
    "a row with no label": ("in.csv", "id,label\n0,cat\n1,\n", DataError, "line 3"),
    "two classes for one item": ("in.csv", "id,label\n0,cat\n0,T-shirt/top\n", DataError, "line 2 and line 3"),
    "broken JSON": ("in.json", '{"items": [', DataError, "not valid JSON"),
    "a task without data": ("ls.json", '[{"annotations": []}]', DataError, "task 1"),
    "a flat export with two answer columns": ("ls.csv", "image,id,animal,mood,annotation_id,lead_time\n"
                                              "a.png,1,cat,calm,1,2.0\n", DataError, r"\(animal, mood\)"),
    "a flat export of boxes": ("ls.json", '[{"image": "a.png", "id": 1, "box": {"x": 1, "rectanglelabels": ["cat"]}, '
                               '"annotation_id": 1, "lead_time": 2}]', DataError, "item 1 \\(task 1\\): `box` is not a choice"),
    "a new class refused": ("in.csv", "id,label\n0,cat\n1,dog\n", UsageError, "line 3: the project has no class 'dog'"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_refused_whole_and_changes_nothing(proj, tmp_path, case):
    name, text, error, where = BAD[case]
    (tmp_path / name).write_text(text, encoding="utf-8")
    before = state(proj)
    with pytest.raises(error, match=where):
        api.import_labels(proj, tmp_path / name, new_classes=False)
    assert state(proj) == before and not (proj.path / "imports").exists()


def test_one_bad_row_in_100000_refuses_the_import(proj, tmp_path):
    lines = ["id,label"] + [f"{k % 8},{CAT}" for k in range(100_000)]
    lines[76_543] = "x7,cat"
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = state(proj)
    with pytest.raises(DataError, match=r"line 76544: id 'x7' is not a whole number"):
        api.import_labels(proj, tmp_path / "big.csv")
    assert state(proj) == before


# ------------------------------------------------------------------ the CLI
def test_the_cli_imports_exports_and_refuses_in_one_line(proj, tmp_path, capsys):
    assert main(["export", str(proj.path), "--format", "labelstudio", str(tmp_path / "t.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"]["items"] == 10
    assert main(["export", str(proj.path), "--labels", str(tmp_path / "l.csv")]) == 0  # the old option still works
    b = fresh(tmp_path)
    assert main(["import", str(b.path), str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "6 matched (6 by content)" in out and "4 rows not imported" in out and "not-imported.csv" in out
    (tmp_path / "bad.csv").write_text("id,label\n0,dog\n", encoding="utf-8")
    assert main(["import", str(proj.path), str(tmp_path / "bad.csv"), "--no-new-classes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: line 2: the project has no class 'dog'") and err.count("\n") == 1
    assert main(["export", str(proj.path), "--format", "tfrecord", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: unknown export format 'tfrecord'; use one of csv, json,")


# ------------------------------------------------------------------ the Export page
def export_page(project, tmp_path, monkeypatch):
    """The dashboard's Export page on project, as an AppTest (tmp_path is the allowed root)."""
    from streamlit import config
    from streamlit.testing.v1 import AppTest
    config.set_option("server.address", "127.0.0.1")
    monkeypatch.setenv("STCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STCORE_DATA_ROOTS", str(tmp_path))
    monkeypatch.delenv("STCORE_PASSWORD", raising=False)
    monkeypatch.setenv("STCORE_PROJECT", str(project.path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    return at.switch_page("views/export.py").run()


def test_the_export_page_offers_each_format_and_writes_a_folder(proj, tmp_path, monkeypatch):
    at = export_page(proj, tmp_path, monkeypatch)
    assert not at.exception and not at.error
    assert at.radio(key="ex_fmt").options == ["Class folders", "Hugging Face", "Label Studio"]
    at.radio(key="ex_fmt").set_value("hf").run()
    assert any("load_dataset" in c.value for c in at.caption)
    at.text_input(key="ex_dest_hf").set_value(str(tmp_path / "out")).run()
    at.button(key="ex_write").click().run()
    assert not at.error and "Wrote 8 images" in at.success[0].value
    assert (tmp_path / "out" / "train" / "metadata.csv").is_file()
    at.button(key="ex_write").click().run()  # the folder is there now: said in one line, nothing written
    assert "exists and is not empty" in at.error[0].value


def test_the_export_page_imports_a_file_typed_in_and_says_what_it_did(proj, tmp_path, monkeypatch):
    out = api.export_dataset(proj, tmp_path / "labels.csv", "csv")
    b = fresh(tmp_path, "same", LAYOUT_A)  # the same folder again: the same sources
    at = export_page(b, tmp_path, monkeypatch)
    assert not at.exception and not at.error and at.button(key="im_go").disabled  # nothing given yet
    (tmp_path / "bad.csv").write_text("path,label\n/elsewhere/x.png,\n", encoding="utf-8")
    before = state(b)
    at.text_input(key="im_path").set_value(str(tmp_path / "bad.csv")).run()
    at.button(key="im_go").click().run()
    assert len(at.error) == 1 and "line 2" in at.error[0].value and state(b) == before  # refused whole
    at.text_input(key="im_path").set_value(out["path"]).run()
    at.button(key="im_go").click().run()
    assert not at.error, [e.value for e in at.error]
    said = at.success[0].value.replace("\\", "")  # as shown: markdown's escapes removed
    assert said == f"10 rows (csv): 6 matched (6 by path); 2 labels imported, 4 already so; new classes: {SLASHED}"
    assert "4 rows not imported: 4 status pending" in at.warning[0].value.replace("\\", "")
    assert human_labels(b) == human_labels(proj)
