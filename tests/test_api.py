"""stcore.api, the one surface both faces call: its checks, its reads and writes, and the loop
from a project to the next student, end to end."""
from __future__ import annotations

import csv
import gzip
import io
import os
import pickle
import struct
import time

import numpy as np
import pytest

from stcore import api
from stcore.data import training_data
from stcore.sources import load
from stcore.errors import DataError, NotFound, ProjectError, UsageError
from stcore.metrics import confusion, summarize

needs_fmnist = pytest.mark.needs_fmnist


def pending_ids(project, n):
    return [r["id"] for r in api.review_page(project, statuses=["pending"], limit=n)]


# ------------------------------------------------------------------ review checks
@needs_fmnist
def test_review_refuses_bad_actions_classes_and_ids_and_changes_nothing(trained_project):
    p = trained_project
    a, b = pending_ids(p, 2)
    with pytest.raises(UsageError, match="unknown review action 'approve'"):
        api.review(p, [a], "approve")
    with pytest.raises(NotFound, match="Jumper"):
        api.review(p, [a], "correct", "Jumper")
    with pytest.raises(Exception, match="10000000"):
        with api.all_or_nothing(p):
            api.review(p, [a], "accept")
            api.review(p, [10_000_000], "reject")
    assert api.counts(p)["accepted"] == 0 and api.counts(p)["rejected"] == 0
    assert api.review(p, [a], "correct", "Coat") == 1
    assert api.review(p, [b], "correct", 3) == 1
    rows = {r["id"]: r for r in api.review_page(p, statuses=["corrected"], limit=10)}
    assert rows[a]["label"] == p.classes.index("Coat") and rows[b]["label"] == 3


@needs_fmnist
def test_accept_above_checks_its_threshold_and_matches_its_count(trained_project):
    p = trained_project
    with pytest.raises(UsageError, match="threshold"):
        api.accept_above(p, 1.5)
    conf = sorted(r["confidence"] for r in api.review_page(p, statuses=["pending"], limit=5000))
    t = conf[len(conf) // 2]
    expected = api.count_above(p, t)
    assert expected == sum(c >= t for c in conf) > 0
    assert api.accept_above(p, t) == expected == api.counts(p)["accepted"]
    assert api.undo(p) == expected and api.counts(p)["accepted"] == 0


@needs_fmnist
def test_simulated_review_accepts_right_pseudo_labels_and_corrects_wrong_ones(trained_project):
    p = trained_project
    out = api.simulate_review(p, 50)
    assert out["reviewed"] == 50 and out["accepted"] + out["corrected"] == 50
    decided = api.review_page(p, statuses=["accepted", "corrected"], limit=100)
    truth = p.store.items.hidden_labels([r["id"] for r in decided])
    for r in decided:
        if r["status"] == "accepted":
            assert r["pred"] == truth[r["id"]]
        else:
            assert r["label"] == truth[r["id"]] != r["pred"]


# ------------------------------------------------------------------ what a run learns from
@needs_fmnist
def test_training_data_learns_accepted_and_corrected_items_not_rejected_ones(trained_project):
    p = trained_project
    acc, cor, rej = pending_ids(p, 3)
    api.review(p, [acc], "accept")
    api.review(p, [cor], "correct", "Bag")
    api.review(p, [rej], "reject")
    before = training_data(p, role="teacher", corrected_weight=2.0, use_unreviewed=False,
                           needs_pseudo_labels=False)
    assert len(before.x_lab) == 100 + 2  # the labeled set plus the accepted and the corrected item
    pool_x = api.images(p, [acc, cor, rej])
    rows = {bytes(x.tobytes()): (int(y), float(w)) for x, y, w in
            zip(before.x_lab.numpy(), before.y_lab, before.w_lab)}
    pred = {r["id"]: r["pred"] for r in api.review_page(p, statuses=["accepted"], limit=5)}
    assert rows[pool_x[0].tobytes()] == (pred[acc], 1.0)
    assert rows[pool_x[1].tobytes()] == (p.classes.index("Bag"), 2.0)  # a correction weighs more
    assert pool_x[2].tobytes() not in rows
    student = training_data(p, role="student", corrected_weight=2.0, use_unreviewed=True,
                            needs_pseudo_labels=True)
    unl = {x.tobytes() for x in student.x_unl.numpy()}
    assert pool_x[2].tobytes() not in unl and pool_x[0].tobytes() not in unl  # decided: not unlabeled
    assert len(student.x_unl) == api.counts(p)["pending"]


# ------------------------------------------------------------------ reads do not write
@needs_fmnist
def test_reading_runs_from_the_store_does_not_mark_dead_workers_but_api_runs_does(small_project):
    p = small_project
    run_id = p.store.runs.create("teacher", "cpu", {"role": "teacher"}, 10)
    p.store.runs.update(run_id, state="running", pid=2 ** 22 + 12345, started=1.0, heartbeat=1.0)
    assert p.store.runs.get(run_id)["state"] == "running"
    api.counts(p), api.teacher(p), p.store.runs.list()
    assert p.store.runs.get(run_id)["state"] == "running"  # reads of the project changed nothing
    assert {r["id"]: r["state"] for r in api.runs(p)}[run_id] == "interrupted"
    assert "resume" in api.run(p, run_id)["error"]


# ------------------------------------------------------------------ metrics, calibration, exports
def test_precision_recall_and_f1_match_hand_computed_values():
    # true: a a a b b c ; predicted: a a b b c c
    s = summarize(confusion([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3), ["a", "b", "c"])
    assert s["accuracy"] == round(4 / 6, 4)
    assert s["precision"] == {"a": 1.0, "b": 0.5, "c": 0.5}
    assert s["recall"] == s["per_class"] == {"a": round(2 / 3, 4), "b": 0.5, "c": 1.0}
    assert s["f1"] == {"a": 0.8, "b": 0.5, "c": round(2 / 3, 4)}
    assert s["support"] == {"a": 3, "b": 2, "c": 1} and s["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


@needs_fmnist
def test_calibration_counts_single_decisions_not_bulk_accepts(trained_project):
    p = trained_project
    api.accept_above(p, 0.0)  # everything, in bulk: says nothing about the teacher's calibration
    assert sum(b["n"] for b in api.calibration(p)["reviewed"]) == 0
    api.undo(p)
    ids = pending_ids(p, 3)
    for i in ids:
        api.review(p, [i], "accept")
    api.review(p, pending_ids(p, 1), "correct", "Bag")
    bins = api.calibration(p)["reviewed"]
    assert sum(b["n"] for b in bins) == 4
    assert sum(b["n"] for b in api.calibration(p)["hidden"]) == api.counts(p)["pseudo_labeled"]


@needs_fmnist
def test_exported_confidence_is_the_teachers_and_empty_for_human_labels(trained_project, tmp_path):
    p = trained_project
    acc, cor, rej = pending_ids(p, 3)
    api.review(p, [acc], "accept")
    api.review(p, [cor], "correct", "Bag")
    api.review(p, [rej], "reject")
    n = api.export_labels(p, tmp_path / "labels.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "labels.csv").read_text())))
    assert n == len(rows) and list(rows[0]) == api.EXPORT_COLUMNS
    by_status = {}
    for r in rows:
        by_status.setdefault(r["status"], []).append(r)
    assert all(r["teacher_confidence"] == "" and r["teacher_run"] == "" for r in by_status["labeled"])
    assert [r["label"] for r in by_status["corrected"]] == ["Bag"]
    assert by_status["corrected"][0]["teacher_confidence"] == "" == by_status["rejected"][0]["teacher_confidence"]
    assert 0 < float(by_status["accepted"][0]["teacher_confidence"]) <= 1
    assert all(0 < float(r["teacher_confidence"]) <= 1 for r in by_status["pending"])


# ------------------------------------------------------------------ the loop, end to end
@needs_fmnist
def test_promote_then_pseudo_label_then_the_next_student_learns_from_it(trained_project):
    p = trained_project
    first_teacher = api.teacher(p)["id"]
    api.simulate_review(p, 30)
    student = api.start_training(p, {"role": "student", "method": "self-training", "threshold": 0.3, "steps": 40,
                                     "eval_every": 20}, detach=False)
    row = api.run(p, student)
    assert row["state"] == "finished" and row["config"]["teacher_run"] == first_teacher
    with pytest.raises(NotFound):
        api.promote(p, "student-999")
    api.promote(p, student)
    assert api.teacher(p)["id"] == student
    job = api.start_pseudo_label(p, detach=False)
    assert api.run(p, job)["state"] == "finished"
    pending = api.review_page(p, statuses=["pending"], limit=3)
    assert {r["teacher_run"] for r in pending} == {student}
    nxt = api.start_training(p, {"role": "student", "method": "self-training", "threshold": 0.3, "steps": 40,
                                 "eval_every": 20}, detach=False)
    assert api.run(p, nxt)["config"]["teacher_run"] == student
    acc, final = api.accuracy_of(p, api.run(p, nxt))
    assert final and acc > 0.3  # ten classes: chance is 0.1
    ev = api.evaluation(p)
    assert ev["student"]["run"] == nxt and ev["student"]["accuracy"] == acc
    preds = api.test_predictions(p, nxt)
    assert len(preds) == len(api.test_items(p)[0]) and api.summary_of(p, preds)["accuracy"] == acc


@needs_fmnist
def test_a_run_cancelled_from_the_api_stops_and_resumes_to_the_end(trained_project):
    p = trained_project
    run_id = api.start_training(p, {"role": "teacher", "steps": 4000, "eval_every": 2000}, detach=True)
    deadline = time.time() + 120
    while api.run(p, run_id)["step"] < 5:
        assert time.time() < deadline, api.run(p, run_id)
        time.sleep(0.2)
    api.cancel(p, run_id)
    while api.run(p, run_id)["state"] not in ("cancelled", "failed", "finished"):
        assert time.time() < deadline
        time.sleep(0.2)
    stopped = api.run(p, run_id)
    assert stopped["state"] == "cancelled" and 5 <= stopped["step"] < 4000
    assert (p.run_dir(run_id) / "latest.pt").exists()
    acc, final = api.accuracy_of(p, stopped)
    assert not final
    with pytest.raises(ProjectError, match="--recompute"):
        api.evaluation(p, run_id)  # a cancelled run has no final evaluation, and says how to get one
    assert api.resume(p, run_id, detach=False) == run_id
    done = api.run(p, run_id)
    assert done["state"] == "finished" and done["step"] == 4000 and api.accuracy_of(p, done)[1]


# ------------------------------------------------------------------ local copies of built-in datasets
def _idx(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def test_mnist_reads_a_local_copy_of_its_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
             "train-labels-idx1-ubyte": (np.arange(12) % 10).astype(np.uint8),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
             "t10k-labels-idx1-ubyte": np.arange(5).astype(np.uint8)}
    for name, arr in files.items():
        with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
            f.write(_idx(arr))
    a = load("mnist", data_root=str(tmp_path), download=False)
    assert a.train_x.shape == (12, 1, 28, 28) and a.test_x.shape == (5, 1, 28, 28)
    assert (a.train_x[3, 0].numpy() == files["train-images-idx3-ubyte"][3]).all()
    assert a.train_y.tolist() == files["train-labels-idx1-ubyte"].tolist() and a.classes[0] == "0"
    assert not a.flip  # digits are not mirror-symmetric


def test_cifar10_reads_a_local_copy_in_torchvisions_layout(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batches = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 3}
    first = None
    for name, n in batches.items():
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        first = data[0] if first is None else first
        with open(root / name, "wb") as f:
            pickle.dump({"data": data, "labels": [int(x) for x in rng.integers(0, 10, n)]}, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    a = load("cifar10", data_root=str(tmp_path), download=False)
    assert a.train_x.shape == (20, 3, 32, 32) and a.test_x.shape == (3, 3, 32, 32)
    assert a.classes == names
    assert (a.train_x[0].numpy().reshape(-1) == first).all()  # channels first, values kept


def test_cifar100_reads_a_local_copy_in_torchvisions_layout(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    names = [f"class{i}" for i in range(100)]
    labels = {}
    for name, n in (("train", 6), ("test", 4)):
        labels[name] = [int(x) for x in rng.integers(0, 100, n)]
        with open(root / name, "wb") as f:  # fine labels (the 100 classes) beside the 20 coarse ones
            pickle.dump({"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                         "fine_labels": labels[name], "coarse_labels": [x // 5 for x in labels[name]]}, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names, "coarse_label_names": [f"super{i}" for i in range(20)]}, f)
    a = load("cifar100", data_root=str(tmp_path), download=False)
    assert a.train_x.shape == (6, 3, 32, 32) and a.test_x.shape == (4, 3, 32, 32)
    assert a.classes == names and a.train_y.tolist() == labels["train"] and a.test_y.tolist() == labels["test"]


def test_cifar10_reads_a_local_copy_as_train_and_test_class_folders(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"not an image")
    a = load("cifar10", data_root=str(tmp_path), download=False)
    assert a.classes == ["cat", "dog"] and a.train_x.shape == (6, 3, 32, 32) and a.test_x.shape == (4, 3, 32, 32)
    assert a.train_y.tolist() == [0, 0, 0, 1, 1, 1] and a.hidden  # every pool label known, kept hidden
    assert a.train_sources[0] == "train/cat/0.png"
    assert [p for p, _ in a.skipped] == ["train/cat/broken.jpg"]
    small = load("cifar10", data_root=str(tmp_path), image_size=16, download=False)
    assert small.train_x.shape == (6, 3, 16, 16)


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["a", "b"]}, f)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({"data": Evil(), "labels": [0]}, f)
    with pytest.raises(DataError, match="refused to load posix.system"):
        load("cifar10", data_root=str(tmp_path), download=False)
    assert not (tmp_path / "ran").exists()


# ------------------------------------------------------------------ before a bulk accept, before a promote
@needs_fmnist
def test_bulk_accept_impact_says_what_accept_above_would_do_and_changes_nothing(trained_project):
    p = trained_project
    k = max(range(10), key=lambda c: api.count_above(p, 0.3, classes=[c]))
    n = api.count_above(p, 0.3, classes=[k])
    before_counts = api.counts(p)
    r = api.bulk_accept_impact(p, 0.3, classes=[p.classes[k]])
    assert api.counts(p) == before_counts and r["n"] == n > 0
    assert r["accepted"][p.classes[k]] == n and sum(r["accepted"].values()) == n
    assert sum(r["before"].values()) == 100 and r["after"][p.classes[k]] == r["before"][p.classes[k]] + n
    assert 0 < r["expected_wrong"] < n and r["estimate"] == "confidence"
    assert (r["warning"] is not None) == (r["largest_after"]["share"] > 0.5
                                          or r["largest_after"]["share"] > 3 * r["before"][r["largest_after"]["class"]] / 100)
    api.accept_above(p, 0.3, classes=[k])
    counts = api.class_counts(p)
    assert {c: counts["labeled"].get(i, 0) + counts["accepted"].get(i, 0) for i, c in enumerate(p.classes)} == r["after"]
    with pytest.raises(UsageError, match="threshold"):
        api.bulk_accept_impact(p, 1.5)


@needs_fmnist
def test_ids_accept_impact_counts_only_the_pending_pseudo_labeled_items(trained_project):
    p = trained_project
    a, b, c = pending_ids(p, 3)
    api.review(p, [c], "reject")
    r = api.ids_accept_impact(p, [a, b, c, 10_000_000])
    rows = {x["id"]: x for x in api.review_page(p, statuses=["pending"], limit=5000)}
    assert r["n"] == 2 and r["accepted"][p.classes[rows[a]["pred"]]] >= 1
    assert r["expected_wrong"] == pytest.approx(2 - rows[a]["confidence"] - rows[b]["confidence"], abs=0.06)


@needs_fmnist
def test_class_regressions_against_the_teacher_and_promote_returns_them(trained_project):
    p = trained_project
    teacher = api.teacher(p)["id"]
    student = api.start_training(p, {"role": "student", "steps": 4, "batch_size": 16, "eval_every": 4}, detach=False)
    t, s = api.evaluation(p, teacher)["teacher"]["per_class"], api.evaluation(p, student)["student"]["per_class"]
    every = api.class_regressions(p, student, points=-101)  # every class 'dropped' by more than -101 points
    assert [r["name"] for r in every] == sorted(t, key=lambda c: -(t[c] - s[c]))
    assert every[0] == {"name": every[0]["name"], "before": t[every[0]["name"]], "after": s[every[0]["name"]],
                        "drop": round(100 * (t[every[0]["name"]] - s[every[0]["name"]]), 1)}
    real = [r["name"] for r in api.class_regressions(p, student)]
    assert real == [c for c in sorted(t, key=lambda c: -(t[c] - s[c])) if 100 * (t[c] - s[c]) > 5]
    assert api.class_regressions(p, teacher) == []  # the teacher against itself
    assert [r["name"] for r in api.promote(p, student)] == real  # it promotes all the same
    assert api.teacher(p)["id"] == student and api.class_regressions(p, student) == []
