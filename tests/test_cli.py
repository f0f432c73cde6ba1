"""The whole loop through the CLI, as a user runs it, on a slice of real Fashion-MNIST."""
import csv
import json

import pytest
import torch

from conftest import stcore

pytestmark = pytest.mark.needs_fmnist


def test_the_loop_from_init_to_export(tmp_path):
    P = tmp_path / "proj"
    out = json.loads(stcore("init", P, "--dataset", "fashion-mnist", "--labels-per-class", "10", "--seed", "0",
                            "--limit", "3000", "--json").stdout)
    assert (out["labeled"], out["pool"]) == (100, 2900)
    stcore("train", P, "--role", "teacher", "--steps", "40", "--device", "cpu")
    stcore("pseudo-label", P)
    rev = json.loads(stcore("review", P, "--accept-above", "0.9", "--json").stdout)
    assert rev["counts"]["accepted"] == rev["accepted_above"]
    stcore("review", P, "--correct", "5=Trouser", "--reject", "6", "--reviewer", "tester")
    stcore("train", P, "--role", "student", "--steps", "40", "--device", "cpu")
    ev = json.loads(stcore("evaluate", P, "--json").stdout)
    assert set(ev) == {"teacher", "student"}
    for role in ev.values():
        assert 0 < role["accuracy"] <= 1
        assert len(role["per_class"]) == 10 and len(role["confusion"]) == 10
        assert sum(map(sum, role["confusion"])) == 600  # limit 3000 -> 600 test images
        assert set(role["precision"]) == set(role["recall"]) == set(role["per_class"])
    st = json.loads(stcore("status", P, "--json").stdout)
    c = st["counts"]
    assert c["corrected"] == 1 and c["rejected"] == 1 and c["labeled"] == 100 and c["pool"] == 2900
    assert st["pseudo_label_accuracy"]["n"] == 2900
    assert [r["state"] for r in st["runs"]] == ["finished"] * 3
    listing = stcore("runs", P).stdout.splitlines()  # the text form, a pseudo-label run among them
    assert len(listing) == 3 and all(" finished " in line and "  acc 0." in line for line in listing)
    stcore("export", P, "--labels", tmp_path / "labels.csv", "--model", tmp_path / "student.pt")
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert list(rows[0]) == ["id", "source", "label", "status", "teacher_confidence", "teacher_run"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["5"]["label"] == "Trouser" and by_id["5"]["status"] == "corrected"
    assert by_id["6"]["status"] == "rejected" and by_id["6"]["label"] == ""
    # the teacher's confidence is given for its own labels only, never for a human's
    assert by_id["5"]["teacher_confidence"] == by_id["6"]["teacher_confidence"] == ""
    assert all(r["teacher_confidence"] == "" for r in rows if r["status"] == "labeled")
    assert all(float(r["teacher_confidence"]) >= 0.9 for r in rows if r["status"] == "accepted")
    model = torch.load(tmp_path / "student.pt", weights_only=True)
    assert model["run"].startswith("student") and model["classes"][1] == "Trouser"
    stcore("export", P, "--labels", tmp_path / "labels.json")
    assert len(json.load(open(tmp_path / "labels.json"))["items"]) == len(rows)


def test_python_m_and_console_script_agree(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    exe = Path(sys.executable).parent / "stcore"
    a = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    assert a == stcore("--help").stdout.replace("__main__.py", "stcore")


def test_review_decisions_and_undo_from_the_cli(trained_project):
    P = trained_project.path
    stcore("review", P, "--accept", "150", "151", "--reviewer", "ann")
    stcore("review", P, "--correct", "152=Bag")
    c = json.loads(stcore("review", P, "--undo", "--json").stdout)["counts"]
    assert (c["accepted"], c["corrected"]) == (2, 0)
    hist = trained_project.store.decisions.history(150)
    assert hist[0]["reviewer"] == "ann" and hist[0]["new_status"] == "accepted"


def test_history_says_who_decided_what_and_undo_reverts_only_that_reviewers_action(trained_project):
    P = trained_project.path
    stcore("review", P, "--accept", "150", "153", "--reviewer", "ann")
    stcore("review", P, "--correct", "150=Bag", "--reviewer", "bob")
    stcore("review", P, "--accept", "151", "--reviewer", "bob")
    out = json.loads(stcore("review", P, "--undo", "--reviewer", "ann", "--json").stdout)
    assert out["undone"] == 1  # ann's accept of 153; 150 keeps bob's newer correction
    assert [r["status"] for r in trained_project.store.queue.rows([150, 151, 153])] == [
        "corrected", "accepted", "pending"]
    rows = json.loads(stcore("history", P, "150", "--json").stdout)["history"]
    assert [(r["reviewer"], r["new_status"], r["new_label"], r["undone"]) for r in rows] == [
        ("bob", "corrected", "Bag", 0), ("ann", "accepted", rows[1]["new_label"], 1)]
    assert all(isinstance(r["at"], float) and r["item_id"] == 150 for r in rows)
    bobs = json.loads(stcore("history", P, "--reviewer", "bob", "--json").stdout)["history"]
    assert [r["item_id"] for r in bobs] == [151, 150]
    text = stcore("history", P, "150").stdout
    assert "bob" in text and "corrected (Bag)" in text and "[undone]" in text
    assert "no decisions yet on item 152" in stcore("history", P, "152").stdout
    r = stcore("history", P, "--limit", "0", check=False)
    assert r.returncode == 2 and "--limit" in r.stderr


@pytest.mark.parametrize("args,message", [
    (("review", "--correct", "150=Spaceship"), "unknown class 'Spaceship'"),
    (("review", "--accept", "987654"), "unknown pool item id"),
    (("train", "--role", "teacher", "--device", "cuda:7"), "not available here; available: cpu"),
    (("train", "--role", "teacher", "--steps", "-3"), "steps must be positive"),
    (("train", "--role", "teacher", "--lr", "0"), "lr (learning rate) must be positive"),
    (("train", "--role", "student", "--threshold", "1.5"), "threshold must be within [0, 1]"),
    (("train", "--role", "teacher", "--model", "vgg99"), "unknown model 'vgg99'"),
    (("train", "--role", "student", "--method", "magic"), "method 'magic' is not a student method"),
])
def test_bad_input_is_one_line_error(trained_project, args, message):
    before = trained_project.counts(), len(trained_project.store.runs.list())
    r = stcore(args[0], trained_project.path, *args[1:], check=False)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (trained_project.counts(), len(trained_project.store.runs.list())) == before


def test_a_folder_that_is_not_a_project(tmp_path):
    (tmp_path / "x").mkdir()
    r = stcore("status", tmp_path / "x", check=False)
    assert r.returncode == 2 and "is not a stcore project" in r.stderr


def test_watch_and_runs_show_a_finished_run(trained_project):
    P = trained_project.path
    out = stcore("watch", P, "teacher-1").stdout
    assert "teacher-1 finished" in out and "30/30" in out and "100%" in out
    runs = json.loads(stcore("runs", P, "--json").stdout)
    r = runs[0]
    assert {"id", "role", "state", "device", "pid", "step", "total", "started", "heartbeat", "last_metrics",
            "error"} <= set(r)
    assert r["state"] == "finished" and r["last_metrics"]["accuracy"] > 0


@pytest.mark.needs_fmnist
def test_a_reader_that_leaves_early_is_not_an_error(small_project):
    """`stcore status P | true`: the reader is gone before stcore prints; no 'error: Broken pipe'."""
    import subprocess
    import sys
    r = subprocess.run(f"{sys.executable} -m stcore status {small_project.path} | true; echo \"${{PIPESTATUS[0]}}\"",
                       shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "0" and "error" not in r.stderr, r.stderr


def test_promote_says_which_classes_the_new_teacher_is_worse_at(trained_project):
    P = trained_project.path
    stcore("train", P, "--role", "student", "--steps", "4", "--batch-size", "16")
    out = json.loads(stcore("promote", P, "student-3", "--json").stdout)
    assert out["teacher"] == "student-3" and isinstance(out["regressions"], list)
    assert all(r["drop"] > 5 and {"name", "before", "after", "drop"} == set(r) for r in out["regressions"])
    text = stcore("promote", P, "teacher-1").stdout  # back to the first: its own notes, if any
    assert text.splitlines()[0] == "teacher-1 is now the teacher"
