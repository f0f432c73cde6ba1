"""Classes as data and projects that start with no labels: stable class ids, renames that touch
no label, classes added later (runs trained before are marked, not broken), and folders with only
unlabeled images."""
from __future__ import annotations

import json

import pytest

from stcore import api, cli
from stcore.errors import DataError, ProjectError, UsageError
from test_robustness_data import make_folder, png


def _init(capsys, *args) -> dict:
    assert cli.main(["init", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_builtin_dataset_with_no_labels_trains_once_a_person_labels(tmp_path, capsys):
    out = _init(capsys, tmp_path / "z", "--dataset", "fashion-mnist", "--labeled", "0", "--limit", "300")
    assert (out["labeled"], out["pool"]) == (0, 300) and len(out["classes"]) == 10
    p = api.open_project(tmp_path / "z")
    with pytest.raises(UsageError, match="no labels yet.*--correct"):
        api.start_training(p, {"role": "teacher", "steps": 2}, detach=False)
    assert api.runs(p) == []  # refused before any run was made
    assert cli.main(["review", str(tmp_path / "z"), "--correct", "0=Bag", "1=Bag", "2=Trouser", "--json"]) == 0
    capsys.readouterr()
    got = {r["item_id"]: (r["class"], r["source"]) for r in api.labels(p, "pool")}
    assert got == {0: ("Bag", "reviewed"), 1: ("Bag", "reviewed"), 2: ("Trouser", "reviewed")}
    run = api.start_training(p, {"role": "teacher", "steps": 2}, detach=False)
    assert api.run(p, run)["state"] == "finished" and api.run(p, run)["class_ids"] == list(range(10))


def test_a_folder_with_only_unlabeled_images_and_classes_txt(tmp_path, capsys):
    root = tmp_path / "data"
    for i in range(5):
        png(root / "unlabeled" / f"u{i}.png", color=(30 * i, 10, 10))
    (root / "classes.txt").write_text("cat\ndog\n\nbird\n")
    out = _init(capsys, tmp_path / "p", "--dataset", "folder", "--data-root", root)
    assert out["classes"] == ["cat", "dog", "bird"] and (out["labeled"], out["pool"]) == (0, 5)
    # --classes wins over the file
    out = _init(capsys, tmp_path / "q", "--dataset", "folder", "--data-root", root, "--classes", "ant, bee")
    assert out["classes"] == ["ant", "bee"]


def test_a_folder_with_no_classes_yet_gets_them_added_later(tmp_path, capsys):
    root = tmp_path / "data"
    for i in range(4):
        png(root / "unlabeled" / f"u{i}.png", color=(30 * i, 10, 10))
    out = _init(capsys, tmp_path / "p", "--dataset", "folder", "--data-root", root)
    assert out["classes"] == [] and out["pool"] == 4
    p = api.open_project(tmp_path / "p")
    with pytest.raises(UsageError, match="0 class.*--add"):
        api.start_training(p, {"role": "teacher", "steps": 2}, detach=False)
    with pytest.raises(Exception, match="no classes yet"):
        api.set_label(p, [0], "cat")
    assert cli.main(["classes", str(tmp_path / "p"), "--add", "cat", "dog", "--json"]) == 0
    assert [c["name"] for c in json.loads(capsys.readouterr().out)["classes"]] == ["cat", "dog"]
    assert api.set_label(p, [0, 1], "dog") == 2


def test_labeled_folders_must_be_among_the_declared_classes(tmp_path):
    root = make_folder(tmp_path / "data")
    with pytest.raises(DataError, match="labeled/dog/ is not one of the classes given.*--classes or classes.txt"):
        api.create_project(tmp_path / "p", dataset="folder", data_root=str(root), classes=["cat", "bird"])
    p = api.create_project(tmp_path / "q", dataset="folder", data_root=str(root), classes=["bird", "cat", "dog"])
    assert p.classes == ["bird", "cat", "dog"]
    assert {api.labels(p, "labeled")[0]["class"], api.labels(p, "labeled")[-1]["class"]} == {"cat", "dog"}
    with pytest.raises(UsageError, match="--classes names the classes of a folder dataset"):
        api.create_project(tmp_path / "r", dataset="mnist", classes=["a", "b"])


def test_a_rename_touches_no_label_and_no_run(tmp_path, capsys):
    root = make_folder(tmp_path / "data")
    p = api.create_project(tmp_path / "p", dataset="folder", data_root=str(root))
    api.set_label(p, [p.store.items.pool_order()[0][0]], "dog", reviewer="ann")
    before = [(r["item_id"], r["class_id"], r["source"], r["reviewer"], r["at"]) for r in api.labels(p)]
    run = api.start_training(p, {"role": "teacher", "steps": 2}, detach=False)
    assert cli.main(["classes", str(p.path), "--rename", "dog", "puppy"]) == 0
    assert "puppy" in capsys.readouterr().out
    assert p.classes == ["cat", "puppy"]
    assert [(r["item_id"], r["class_id"], r["source"], r["reviewer"], r["at"]) for r in api.labels(p)] == before
    assert not api.run(p, run)["classes_changed"]
    assert api.start_pseudo_label(p, detach=False)  # the renamed project still uses the run
    with pytest.raises(UsageError, match="already has a class named 'cat'"):
        api.rename_class(p, "puppy", "Cat")
    with pytest.raises(UsageError, match="non-empty"):
        api.rename_class(p, "puppy", "  ")


def test_a_class_added_after_a_run_marks_it_changed_and_using_it_says_why(tmp_path):
    root = make_folder(tmp_path / "data")
    p = api.create_project(tmp_path / "p", dataset="folder", data_root=str(root))
    run = api.start_training(p, {"role": "teacher", "steps": 2}, detach=False)
    assert api.add_classes(p, ["bird"]) == [2]
    assert api.run(p, run)["classes_changed"] and [r["classes_changed"] for r in api.runs(p)] == [True]
    assert api.run(p, run)["result"]["accuracy"] is not None  # its results are kept
    with pytest.raises(ProjectError, match="trained on 2 classes and the project now has 3 \\(added since: bird\\)"):
        api.start_pseudo_label(p, detach=False)
    with pytest.raises(UsageError, match="before the project's classes changed"):
        api.promote(p, run)
    with pytest.raises(UsageError, match="already has a class named 'bird'"):
        api.add_classes(p, ["Bird"])


def test_a_folder_with_no_labeled_images_goes_from_zero_labels_to_a_trained_teacher(tmp_path):
    root = tmp_path / "data"
    for i in range(8):
        png(root / "unlabeled" / f"u{i}.png", color=(200, 30, 30) if i % 2 else (30, 30, 200))
    (root / "classes.txt").write_text("red\nblue\n")
    p = api.create_project(tmp_path / "p", dataset="folder", data_root=str(root))
    assert api.counts(p)["labeled"] == 0 and p.classes == ["red", "blue"]
    api.start_embedding(p, "pixels", detach=False)
    picks = [i["id"] for i in api.suggest(p, count=4, strategy="typical")["items"]]
    assert len(set(picks)) == 4
    assert api.set_label(p, picks[:2], "red", reviewer="ann") + api.set_label(p, picks[2:], "blue", reviewer="ann") == 4
    run = api.start_training(p, {"role": "teacher", "steps": 3}, detach=False)
    assert api.run(p, run)["state"] == "finished"
    assert api.start_pseudo_label(p, detach=False) and api.counts(p)["pseudo_labeled"] == 8
