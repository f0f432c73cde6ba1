"""Classes that change: merge, remove and split, on both engines. Every edit is one transaction,
keeps every human decision it can, marks the runs trained before stale with the reason, and is
recorded with who made it; a bad edit changes nothing."""
from __future__ import annotations

import json

import pytest

from conftest import assert_counts_fresh
from stcore import api, cli
from stcore.errors import NotFound, ProjectError, UsageError
from test_dashboard import app, grid_data, grid_send, no_errors  # noqa: F401 (app: a fixture)
from test_robustness_data import make_folder


@pytest.fixture(params=["sqlite", "postgresql"])
def animals(request, tmp_path):
    """A folder project of cat, dog and bird (3 labeled and 3 test images each, 6 in the pool),
    with a teacher, pseudo-labels, and two pool items decided by ann."""
    root = make_folder(tmp_path / "data", classes=("cat", "dog", "bird"))
    db = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    p = api.create_project(tmp_path / "p", dataset="folder", data_root=str(root), database=db)
    api.start_training(p, {"role": "teacher", "steps": 2}, detach=False)
    api.start_pseudo_label(p, detach=False)
    pool = p.store.items.pool_order()[0]
    api.set_label(p, [pool[0]], "dog", reviewer="ann")
    api.set_label(p, [pool[1]], "bird", reviewer="ann")
    return p


def labels_by_item(p) -> dict:
    return {(r["split"], r["item_id"]): (r["class"], r["source"], r["reviewer"], r["at"]) for r in api.labels(p)}


def snapshot(p) -> tuple:
    return (p.classes, labels_by_item(p), api.counts(p), [r["stale"] for r in api.runs(p)],
            api.class_history(p), p.store.items.class_counts())


def test_a_merge_keeps_every_decision_under_the_new_name_and_marks_the_runs_stale(animals):
    p = animals
    before = labels_by_item(p)
    preds = {r["id"]: r["pred"] for r in api.review_page(p, limit=100)}
    names = p.classes
    out = api.merge_classes(p, ["dog", "bird"], "animal", reviewer="lead")
    assert p.classes == ["cat", "animal"] and out["classes"] == ["cat", "animal"]
    rename = {"cat": "cat", "dog": "animal", "bird": "animal"}
    assert labels_by_item(p) == {k: (rename[c], *rest) for k, (c, *rest) in before.items()}
    assert out["relabeled"] == sum(c in ("dog", "bird") for c, *_ in before.values()) == 14  # 6 + 6 test + 2
    # the pseudo-labels of the classes merged wait for the next teacher; the others keep theirs
    after = {r["id"]: r["pred"] for r in api.review_page(p, limit=100)}
    for i, k in preds.items():
        assert after[i] == (0 if k is not None and names[k] == "cat" else None), (i, k, after[i])
    assert out["pseudo_cleared"] == sum(k is not None and names[k] != "cat" for k in preds.values())
    teacher = api.runs(p)[0]
    assert teacher["classes_changed"] and "merged dog, bird into animal" in teacher["stale"]
    with pytest.raises(ProjectError, match="no longer fits"):
        api.start_pseudo_label(p, detach=False)
    [edit] = api.class_history(p)
    assert (edit["reviewer"], edit["action"], edit["items"]) == ("lead", "merge", 14)
    # the decisions before the merge named classes by ids that changed: they can no longer be undone
    assert api.undo(p, "ann") == 0 and labels_by_item(p) == {k: (rename[c], *r) for k, (c, *r) in before.items()}
    assert_counts_fresh(p.store)
    # the next teacher trains on the new set
    run = api.start_training(p, {"role": "teacher", "steps": 2}, detach=False)
    assert api.run(p, run)["class_ids"] == [0, 1] and not api.run(p, run)["classes_changed"]
    api.start_pseudo_label(p, detach=False)
    assert {r["pred"] for r in api.review_page(p, limit=100)} <= {0, 1}


def test_an_old_model_with_the_same_class_count_is_refused_not_misread(animals):
    p = animals
    teacher = api.runs(p)[0]["id"]
    api.merge_classes(p, ["dog", "bird"], "animal")
    api.add_classes(p, ["fish"])  # three classes again, but not the three it knew
    assert len(p.classes) == 3
    with pytest.raises(ProjectError, match="merged, removed or split since"):
        api.start_pseudo_label(p, detach=False)
    assert api.run(p, teacher)["classes_changed"]


def test_remove_to_unlabeled_sends_the_items_back_to_be_labeled(animals):
    p = animals
    counts = api.counts(p)
    out = api.remove_class(p, "cat", "unlabeled", reviewer="lead")
    assert p.classes == ["bird", "dog"]  # a folder's classes come in name order
    assert out["unlabeled"] == 6 and out["unlabeled_in"] == {"pool": 0, "labeled": 3, "test": 3}
    assert api.counts(p)["labeled"] == counts["labeled"] - 3 and api.counts(p)["pool"] == counts["pool"] + 3
    assert api.counts(p)["pending"] == counts["pending"] + 3
    assert "cat" not in {r["class"] for r in api.labels(p)}
    assert len(api.labels(p, "test")) == 6  # the cat test images have no label, so no score
    moved = [h for h in api.history(p, limit=50) if h["reviewer"] == "lead"]
    assert len(moved) == 3 and {(h["old_status"], h["new_status"]) for h in moved} == {("labeled", "pending")}
    assert_counts_fresh(p.store)
    # remove to another class: the labels go there, the decisions with them
    out = api.remove_class(p, "bird", "dog")
    assert p.classes == ["dog"] and out["relabeled"] == 7 and {r["class"] for r in api.labels(p)} == {"dog"}


def test_a_split_offers_its_parts_first_for_the_items_it_took(animals):
    p = animals
    dog = {k[1] for k, v in labels_by_item(p).items() if v[0] == "dog" and k[0] != "test"}
    out = api.split_class(p, "dog", ["puppy", "hound"], reviewer="lead")
    assert p.classes == ["bird", "cat", "puppy", "hound"] and out["unlabeled_in"]["labeled"] == 3
    offers = api.offers(p)
    assert set(offers) == dog and all(v == [2, 3] for v in offers.values())
    first = sorted(dog)[0]
    api.set_label(p, [first], "hound", reviewer="ann")
    assert first not in api.offers(p) and len(api.offers(p)) == len(dog) - 1
    # a split into an existing class offers it too
    out = api.split_class(p, "bird", ["cat", "owl"])
    assert p.classes == ["cat", "puppy", "hound", "owl"]
    assert {tuple(v) for v in api.offers(p).values()} == {(1, 2), (0, 3)}


@pytest.mark.parametrize("edit, error", [
    (lambda p: api.merge_classes(p, ["dog"], "dog"), "into itself"),
    (lambda p: api.merge_classes(p, ["dog", "dog"], "cat"), "names a class twice"),
    (lambda p: api.merge_classes(p, ["dog", "wolf"], "cat"), "unknown class 'wolf'"),
    (lambda p: api.merge_classes(p, ["dog", "bird"], "Cat "), None),  # an existing class, any case: fine
    (lambda p: api.remove_class(p, "dog", "dog"), "into itself"),
    (lambda p: api.remove_class(p, "dog", "wolf"), "'wolf' is not a class"),
    (lambda p: api.split_class(p, "dog", ["puppy"]), "two or more"),
    (lambda p: api.split_class(p, "dog", ["Dog", "puppy"]), "into itself"),
    (lambda p: api.split_class(p, "dog", ["a", "A"]), "names a class twice"),
    (lambda p: api.split_class(p, "dog", ["a", " "]), "non-empty"),
])
def test_a_bad_edit_is_one_clear_error_and_changes_nothing(animals, edit, error):
    p = animals
    before = snapshot(p)
    if error is None:
        edit(p)
        assert p.classes == ["cat"]
        return
    with pytest.raises((UsageError, NotFound), match=error) as e:
        edit(p)
    assert "\n" not in str(e.value) and snapshot(p) == before


def test_an_edit_waits_for_a_run_in_progress(animals):
    p = animals
    before = snapshot(p)
    run = p.store.runs.create("teacher", "cpu", {"role": "teacher"}, 10)
    with pytest.raises(UsageError, match=f"run {run} is training"):
        api.merge_classes(p, ["dog", "bird"], "animal")
    assert snapshot(p)[:2] == before[:2]


def test_the_cli_lists_counts_previews_edits_and_their_history(tmp_path, capsys):
    root = make_folder(tmp_path / "data", classes=("cat", "dog", "bird"))
    p = api.create_project(tmp_path / "p", dataset="folder", data_root=str(root))
    path = str(p.path)

    def run(*args) -> dict:
        assert cli.main(["classes", path, *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)
    rows = run()["classes"]
    assert [(r["name"], r["labeled"], r["test"], r["pending"]) for r in rows] == [("bird", 3, 3, 0), ("cat", 3, 3, 0),
                                                                                ("dog", 3, 3, 0)]
    out = run("--merge", "dog", "bird", "--into", "animal", "--dry-run")
    assert out["edit"]["applied"] is False and out["edit"]["relabeled"] == 12 and len(out["classes"]) == 3
    out = run("--merge", "dog", "bird", "--into", "animal")
    assert [r["name"] for r in out["classes"]] == ["cat", "animal"] and out["classes"][1]["labeled"] == 6
    run("--rename", "animal=beast")
    run("--split", "beast", "--into", "dog", "bird")
    edits = run("--history")["edits"]
    assert [e["action"] for e in edits] == ["split", "rename", "merge"]
    assert edits[1]["detail"] == "renamed animal to beast"
    assert cli.main(["classes", path, "--remove", "cat"]) == 2
    assert "--to OTHER" in capsys.readouterr().err


@pytest.fixture
def animals_sqlite(tmp_path):
    root = make_folder(tmp_path / "data", classes=("cat", "dog", "bird"))
    p = api.create_project(tmp_path / "p", dataset="folder", data_root=str(root))
    api.start_training(p, {"role": "teacher", "steps": 2}, detach=False)
    api.start_pseudo_label(p, detach=False)
    return p


def test_the_project_page_checks_an_edit_says_what_changes_and_makes_it_on_confirm(app, animals_sqlite):
    p = animals_sqlite
    at = app(p)
    at.segmented_control(key="cl_kind").set_value("merge").run()
    at.multiselect(key="cl_merge_from").set_value(["dog", "bird"])
    at.text_input(key="cl_merge_into").set_value("animal")
    at.button(key="cl_check").click().run()
    no_errors(at, "project")
    said = " ".join(w.value for w in at.warning)
    assert "Merged dog, bird into animal" in said and "12 human label(s) move" in said, said
    assert p.classes == ["bird", "cat", "dog"]  # checked, not made
    at.button(key="cl_cancel").click().run()
    assert not at.warning and p.classes == ["bird", "cat", "dog"]
    at.button(key="cl_check").click().run()
    at.button(key="cl_confirm").click().run()
    no_errors(at, "project")
    assert p.classes == ["cat", "animal"]
    assert any("items changed" in s.value for s in at.success)
    table = next(d.value for d in at.dataframe if "what" in d.value.columns)
    assert list(table["what"]) == ["merged dog, bird into animal"]
    # a bad edit: said why, nothing changed
    at.segmented_control(key="cl_kind").set_value("split").run()
    at.selectbox(key="cl_split_name").set_value("animal")
    at.text_input(key="cl_split_into").set_value("dog")
    at.button(key="cl_check").click().run()
    assert any("two or more" in e.value for e in at.error) and p.classes == ["cat", "animal"]


def test_the_review_page_offers_a_splits_parts_first(app, animals_sqlite):
    p = animals_sqlite
    api.split_class(p, "dog", ["puppy", "hound"])
    at = app(p, "review")
    at.segmented_control(key="rv_view").set_value("split").run()
    no_errors(at, "review")
    data = grid_data(at)
    assert p.classes == ["bird", "cat", "puppy", "hound"]
    assert data["key_order"][:2] == [2, 3] and len(data["cards"]) == 3
    assert all(c["note"] == "split: puppy or hound?" for c in data["cards"])
    first = data["cards"][0]
    grid_send(at, {"kind": "decide", "ids": [first["id"]], "action": "correct", "label": 3})
    no_errors(at, "review")
    assert [r["class"] for r in api.labels(p) if r["item_id"] == first["id"] and r["split"] == "pool"] == ["hound"]
    assert len(grid_data(at)["cards"]) == 2 and first["id"] not in api.offers(p)
