"""Bad checkpoints are refused before anything starts; a worker killed while it saves, or a
disk that fills up, leaves a project whose last checkpoint still loads."""
from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from stcore import api, cli, worker
from stcore.checkpoints import run_checkpoint
from stcore.kinds import check_teacher
from stcore.project import Project
from test_robustness_options import state
from test_robustness_store import one_error_line

pytestmark = pytest.mark.needs_fmnist


def latest(p: Project, run: str = "teacher-1") -> Path:
    return p.run_dir(run) / "latest.pt"


def tamper(path: Path, **changes) -> None:
    ck = torch.load(path, weights_only=True)
    for k, v in changes.items():
        if k == "model":
            ck["config"]["model"] = v
        elif v is None:
            ck.pop(k, None)
        else:
            ck[k] = v
    torch.save(ck, path)


class Boom:
    """Unpickling this runs code: what a malicious checkpoint would do."""
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _foreign(path: Path, tmp: Path):
    tamper(path, project_id=uuid.uuid4().hex)


def _classes(path: Path, tmp: Path):
    tamper(path, classes=["a", "b", "c", "d", "e"])


def _shape(path: Path, tmp: Path):
    tamper(path, input_shape=[3, 32, 32])


def _unlabeled_wrong_head(path: Path, tmp: Path):
    """No metadata to go by, and a head for 5 classes: the weights themselves are checked."""
    from stcore.models import build
    ck = torch.load(path, weights_only=True)
    ck["ema"] = build("cnn", 1, 5, 28).state_dict()
    for k in ("project_id", "classes", "input_shape"):
        ck.pop(k, None)
    torch.save(ck, path)


def _garbage(path: Path, tmp: Path):
    path.write_bytes(os.urandom(4096))


def _truncated(path: Path, tmp: Path):
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _pickle(path: Path, tmp: Path):
    torch.save({"ema": {}, "config": {"model": "cnn"}, "payload": Boom(str(tmp / "pwned"))}, path)


BAD_CHECKPOINTS = {
    "another project's": (_foreign, "belongs to another project"),
    "another class count": (_classes, "trained for 5 classes"),
    "another input shape": (_shape, "expects input [3, 32, 32]"),
    "weights of another shape, no metadata": (_unlabeled_wrong_head, "do not fit this project"),
    "random bytes": (_garbage, "cannot load"),
    "half a file": (_truncated, "cannot load"),
    "a malicious pickle": (_pickle, "cannot load"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_teacher_checkpoint_is_refused_before_a_run_starts(trained_project, tmp_path, capsys, case):
    """`--teacher-run` (or the current teacher) pointing at a checkpoint copied in from elsewhere."""
    p = trained_project
    make, expect = BAD_CHECKPOINTS[case]
    make(latest(p), tmp_path)
    for argv in (["train", str(p.path), "--role", "student", "--steps", "5", "--teacher-run", "teacher-1"],
                 ["train", str(p.path), "--role", "student", "--steps", "5"],
                 ["pseudo-label", str(p.path)],
                 ["export", str(p.path), "--model", str(tmp_path / "m.pt"), "--run", "teacher-1"]):
        before = state(p.path)
        assert cli.main(argv) == 2, argv
        msg = one_error_line(capsys.readouterr().err)
        assert expect in msg and "Traceback" not in msg, (argv, msg)
        assert state(p.path) == before  # no run was created
    assert not (tmp_path / "pwned").exists()  # weights_only: the pickle's code never ran
    assert not (tmp_path / "m.pt").exists()


def test_student_of_another_model_is_refused_before_a_run_starts(trained_project, capsys):
    before = state(trained_project.path)
    assert cli.main(["train", str(trained_project.path), "--role", "student", "--model", "resnet18",
                     "--steps", "5"]) == 2
    assert "use the same --model" in one_error_line(capsys.readouterr().err)
    assert state(trained_project.path) == before


def test_resume_refuses_a_foreign_checkpoint_and_leaves_the_run_alone(trained_project, capsys):
    p = trained_project
    p.store.runs.update("teacher-1", state="interrupted")
    tamper(latest(p), project_id=uuid.uuid4().hex)
    assert cli.main(["resume", str(p.path), "teacher-1"]) == 2
    assert "belongs to another project" in one_error_line(capsys.readouterr().err)
    run = p.store.runs.get("teacher-1")
    assert run["state"] == "interrupted"


def test_matching_checkpoint_passes_the_same_checks(trained_project):
    """The control: an untouched teacher passes check_teacher (so the refusals above are real)."""
    from stcore.config import make_config
    check_teacher(trained_project, make_config(role="student", steps=5))


# ------------------------------------------------------------------ kill -9 while saving
def test_worker_killed_while_saving_keeps_the_previous_checkpoint(small_project):
    """A detached teacher that checkpoints every step is stopped while a temporary checkpoint
    file exists, then killed with SIGKILL. The previous checkpoint loads, the run reads as
    interrupted, and resume cleans the leftover and finishes."""
    p = small_project
    r = subprocess.run([sys.executable, "-m", "stcore", "train", str(p.path), "--role", "teacher",
                        "--steps", "12", "--eval-every", "1", "--batch-size", "16", "--detach"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.strip()
    run_dir = p.run_dir(run_id)
    deadline, caught = time.time() + 120, None
    while time.time() < deadline and caught is None:
        pid = p.store.runs.get(run_id)["pid"]
        tmps = list(run_dir.glob(".*.tmp")) if (run_dir / "latest.pt").exists() else []
        if pid and tmps:
            os.kill(pid, signal.SIGSTOP)
            if any(t.exists() for t in tmps):  # stopped in the middle of a save
                caught = pid
            else:
                os.kill(pid, signal.SIGCONT)
        assert p.store.runs.get(run_id)["state"] in ("queued", "running"), p.store.runs.get(run_id)
        time.sleep(0.001)
    assert caught, "never saw the worker in the middle of a save"
    os.kill(caught, signal.SIGKILL)
    while worker_alive(caught):
        time.sleep(0.05)
    assert list(run_dir.glob(".*.tmp"))  # the half-written file is still there...
    ck = run_checkpoint(p, run_id)       # ...and the previous checkpoint loads
    assert 1 <= ck["step"] < 12
    assert cli.main(["runs", str(p.path), "--json"]) == 0
    assert p.store.runs.get(run_id)["state"] == "interrupted"
    assert cli.main(["resume", str(p.path), run_id, "--foreground"]) == 0
    assert p.store.runs.get(run_id)["state"] == "finished"
    assert not list(run_dir.glob(".*.tmp"))
    steps = [m["step"] for m in p.store.runs.metrics(run_id, "eval")]
    assert steps == list(range(1, 13))


def worker_alive(pid: int) -> bool:
    from stcore.jobs import pid_alive
    return pid_alive(pid)


# ------------------------------------------------------------------ a full disk
def full_disk_on_fsync(monkeypatch, after: int = 0) -> None:
    """Make fsync of temporary files fail with ENOSPC after `after` successful calls: on
    ext4, XFS and NFS a full disk often shows up only at fsync (delayed allocation)."""
    real, calls = os.fsync, {"n": 0}

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if target.endswith(".tmp"):
            calls["n"] += 1
            if calls["n"] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")
def test_full_disk_while_checkpointing_fails_the_run_clearly_and_keeps_the_last_checkpoint(
        small_project, monkeypatch, capsys):
    p = small_project
    full_disk_on_fsync(monkeypatch, after=1)  # the first checkpoint (latest.pt, the only one) is written
    assert cli.main(["train", str(p.path), "--role", "teacher", "--steps", "10", "--eval-every", "5",
                     "--batch-size", "16"]) == 1
    run = p.store.runs.get("teacher-1")
    assert run["state"] == "failed"
    assert run["error"].startswith("the disk is full") and "resume" in run["error"]
    assert not list(p.run_dir("teacher-1").glob(".*.tmp"))
    assert run_checkpoint(p, "teacher-1")["step"] == 5
    monkeypatch.undo()
    assert cli.main(["resume", str(p.path), "teacher-1", "--foreground"]) == 0
    assert p.store.runs.get("teacher-1")["state"] == "finished"
    assert run_checkpoint(p, "teacher-1")["step"] == 10
    con = sqlite3.connect(p.path / "project.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("what", ["--labels", "--model"])
def test_full_disk_while_exporting_is_one_line_and_keeps_the_old_file(trained_project, tmp_path, monkeypatch,
                                                                      capsys, what):
    dest = tmp_path / ("out.csv" if what == "--labels" else "out.pt")
    dest.write_bytes(b"the previous export")
    full_disk_on_fsync(monkeypatch)
    assert cli.main(["export", str(trained_project.path), what, str(dest)]) == 2
    msg = one_error_line(capsys.readouterr().err)
    assert str(dest) in msg and "No space left on device" in msg and "free some space" in msg
    assert dest.read_bytes() == b"the previous export"
    assert sorted(f.name for f in tmp_path.iterdir()) == [dest.name, "p"]  # no temporary left behind


def test_full_disk_inside_torch_save_is_named(tmp_path):
    """torch.save wraps the writer's OSError in a RuntimeError; the run's reason still says 'disk full'."""
    import io

    class Full(io.FileIO):
        written = 0

        def write(self, b):
            Full.written += len(b)
            if Full.written > 10_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(b)
    with pytest.raises(Exception) as e:
        with Full(tmp_path / "x.pt", "wb") as f:
            torch.save({"w": torch.zeros(100_000)}, f)
    assert worker.one_line(e.value).startswith("the disk is full")


def test_full_disk_in_the_store_is_one_line(tmp_path, monkeypatch, capsys):
    from test_robustness_store import synthetic_project
    proj = synthetic_project(tmp_path / "p")

    from stcore.store.engine import SQLiteEngine
    real = SQLiteEngine.connect

    def connect(self):  # SQLite's own error, from the statement that writes the decisions
        conn = real(self)

        class Full:
            def __getattr__(self, name):
                return getattr(conn, name)

            def execute(self, sql, *params):
                if sql.startswith("UPDATE pool SET status"):
                    raise sqlite3.OperationalError("database or disk is full")
                return conn.execute(sql, *params)
        return Full()
    monkeypatch.setattr(SQLiteEngine, "connect", connect)
    assert cli.main(["review", str(proj), "--accept-above", "0.5"]) == 2
    msg = one_error_line(capsys.readouterr().err)
    assert "database or disk is full" in msg and "free some space" in msg and "rolled back" in msg
    monkeypatch.setattr(SQLiteEngine, "connect", real)
    assert api.counts(api.open_project(proj))["accepted"] == 0  # nothing of it was kept
