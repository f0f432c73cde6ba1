"""Bad options: each is a one-line `error:` from the CLI, exit code 2, no traceback, and
nothing in the project changes (no run created, no decision recorded, no folder made)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stcore import cli
from test_robustness_store import one_error_line, synthetic_project


def state(proj: Path) -> tuple:
    """Everything a bad command could change: runs, decisions, history and the runs/ folder."""
    con = sqlite3.connect(proj / "project.db")
    out = (con.execute("SELECT * FROM runs").fetchall(),
           con.execute("SELECT p.id, p.status, l.class_id, p.reviewer FROM pool p LEFT JOIN labels l ON l.split='pool' AND l.item_id=p.id ORDER BY p.id").fetchall(),
           con.execute("SELECT COUNT(*) FROM history").fetchone(),
           sorted(p.name for p in (proj / "runs").glob("*")) if (proj / "runs").exists() else [])
    con.close()
    return out


@pytest.fixture
def proj(tmp_path) -> Path:
    return synthetic_project(tmp_path / "p", n=60)


def run_bad(capsys, argv: list[str], proj: Path, expect: str) -> str:
    before = state(proj)
    assert cli.main(argv) == 2
    msg = one_error_line(capsys.readouterr().err)
    assert expect in msg, msg
    assert state(proj) == before
    return msg


# ------------------------------------------------------------------ train
BAD_TRAIN = {
    "zero steps": (["--steps", "0"], "steps must be positive, not 0"),  # refused by the config itself
    "negative steps": (["--steps", "-5"], "steps must be positive, not -5"),
    "zero epochs": (["--epochs", "0"], "epochs must be positive, not 0"),
    "zero batch size": (["--batch-size", "0"], "batch size must be positive"),
    "negative batch size": (["--batch-size", "-8"], "batch size must be positive"),
    "zero lr": (["--lr", "0"], "lr (learning rate) must be positive"),
    "negative lr": (["--lr", "-0.1"], "lr (learning rate) must be positive"),
    "nan lr": (["--lr", "nan"], "--lr must be a finite number"),
    "infinite lr": (["--lr", "inf"], "--lr must be a finite number"),
    "threshold above 1": (["--threshold", "1.5"], "threshold must be within [0, 1]"),
    "threshold below 0": (["--threshold", "-0.1"], "threshold must be within [0, 1]"),
    "nan threshold": (["--threshold", "nan"], "--threshold must be a finite number"),
    "unknown model": (["--model", "vgg99"], "unknown model 'vgg99'"),
    "unknown method": (["--method", "magic"], "method 'magic' is not a teacher method"),
    "student method for a teacher": (["--method", "fixmatch"], "is not a teacher method"),
    "zero unlabeled ratio": (["--unlabeled-ratio", "0"], "unlabeled ratio must be positive"),
    "unknown device": (["--device", "tpu:7"], "tpu:7"),
    "unknown teacher run": (["--teacher-run", "teacher-99"], "no run 'teacher-99'"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_bad_train_option(proj, capsys, case):
    flags, expect = BAD_TRAIN[case]
    run_bad(capsys, ["train", str(proj), "--role", "teacher", *flags], proj, expect)


def test_bad_student_method(proj, capsys):
    run_bad(capsys, ["train", str(proj), "--role", "student", "--method", "nope", "--init", "scratch"], proj,
            "method 'nope' is not a student method")


def test_student_without_a_teacher_is_refused_before_a_run_exists(proj, capsys):
    run_bad(capsys, ["train", str(proj), "--role", "student", "--steps", "5"], proj, "no finished teacher")


def test_argparse_errors_exit_2_without_traceback(proj, capsys):
    for argv in (["train", str(proj), "--role", "teacher", "--steps", "ten"],
                 ["train", str(proj), "--role", "boss"],
                 ["init", str(proj.parent / "new"), "--dataset", "imagenet"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "error: argument" in err and "Traceback" not in err
    assert not (proj.parent / "new").exists()


# ------------------------------------------------------------------ pseudo-label
@pytest.mark.parametrize("flags, expect", [(["--batch-size", "0"], "--batch-size must be positive"),
                                           (["--run", "teacher-42"], "no run 'teacher-42'"),
                                           ([], "no finished teacher")])
def test_bad_pseudo_label_option(proj, capsys, flags, expect):
    run_bad(capsys, ["pseudo-label", str(proj), *flags], proj, expect)


# ------------------------------------------------------------------ review
BAD_REVIEW = {
    "unknown class": (["--correct", "5=unicorn"], "unknown class 'unicorn'"),
    "class index out of range": (["--correct", "5=10"], "unknown class '10'"),
    "unknown id in --correct": (["--correct", "99999=c1"], "unknown pool item id(s): 99999"),
    "unknown id in --accept": (["--accept", "3", "99999"], "unknown pool item id(s): 99999"),
    "unknown id in --reject": (["--reject", "123456"], "unknown pool item id(s): 123456"),
    "labeled item is not in the pool": (["--accept", "60"], "unknown pool item id(s): 60"),
    "malformed --correct": (["--correct", "5"], "--correct takes ID=CLASS"),
    "non-numeric id": (["--correct", "x=c1"], "numeric ID"),
    "threshold above 1": (["--accept-above", "1.5"], "threshold must be within [0, 1]"),
    "threshold below 0": (["--accept-above", "-0.2"], "threshold must be within [0, 1]"),
    "nan threshold": (["--accept-above", "nan"], "threshold must be within [0, 1]"),
    "unknown --class": (["--accept-above", "0.5", "--class", "griffin"], "unknown class 'griffin'"),
    # Everything asked is one transaction: the good part of a mixed request is not kept either.
    "good accept, bad correct": (["--accept", "1", "2", "--correct", "3=c2", "4=unicorn"], "unknown class"),
    "good accept, bad threshold": (["--accept", "1", "--accept-above", "7"], "threshold must be within"),
    "good reject, unknown id": (["--reject", "1", "--accept", "77777"], "77777"),
    "nothing to do": ([], "nothing to do"),
}


@pytest.mark.parametrize("case", sorted(BAD_REVIEW))
def test_bad_review_option_changes_nothing(proj, capsys, case):
    flags, expect = BAD_REVIEW[case]
    run_bad(capsys, ["review", str(proj), *flags], proj, expect)


def test_good_mixed_review_is_recorded(proj, capsys):
    """The control for the cases above: the same kinds of request, valid, are all recorded."""
    assert cli.main(["review", str(proj), "--accept", "1", "2", "--correct", "3=c2", "4=7", "--reject", "5"]) == 0
    con = sqlite3.connect(proj / "project.db")
    got = dict(((i, (s, l)) for i, s, l in con.execute("SELECT p.id, p.status, l.class_id FROM pool p LEFT JOIN labels l ON l.split='pool' "
                                                   "AND l.item_id=p.id WHERE p.id <= 5")))
    assert got == {0: ("pending", None), 1: ("accepted", 1), 2: ("accepted", 2), 3: ("corrected", 2),
                   4: ("corrected", 7), 5: ("rejected", None)}


# ------------------------------------------------------------------ init
needs_fmnist = pytest.mark.needs_fmnist


@needs_fmnist
@pytest.mark.parametrize("flags, expect", [
    (["--labels-per-class", "50", "--limit", "200"], "is more than class"),
    (["--labels-per-class", "-3"], "--labels-per-class must be 0 or more"),
    (["--labeled", "-1"], "--labeled -1 must be between 0"),
    (["--image-size", "0"], "--image-size must be between"),
])
def test_bad_init_option_creates_nothing(tmp_path, capsys, flags, expect):
    dest = tmp_path / "new"
    assert cli.main(["init", str(dest), "--no-download", *flags]) == 2
    assert expect in one_error_line(capsys.readouterr().err)
    assert not dest.exists()


def test_folder_dataset_without_data_root(tmp_path, capsys):
    assert cli.main(["init", str(tmp_path / "new"), "--dataset", "folder"]) == 2
    assert "needs --data-root DIR" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "new").exists()
