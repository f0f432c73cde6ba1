"""Detached runs: kill -9 and resume, cancel, one job per device, readable failures."""
import os
import signal
import time

import pytest
import torch

from conftest import stcore
from stcore import api, jobs
from stcore.checkpoints import load_checkpoint

pytestmark = pytest.mark.needs_fmnist


def wait_for(pred, timeout=180.0, every=0.2):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError("timed out waiting")


def state(p, run_id):
    api.runs(p)  # notices dead workers first
    return p.store.runs.get(run_id)["state"]


def test_kill_9_then_resume_finishes_with_contiguous_metrics(trained_project):
    p = trained_project
    values = {"role": "teacher", "steps": 200, "eval_every": 20, "log_every": 5}
    run_id = api.start_training(p, values, detach=True)
    run = wait_for(lambda: (r := p.store.runs.get(run_id))["step"] >= 60 and
                   (p.run_dir(run_id) / "latest.pt").exists() and r)
    assert run["state"] == "running" and run["pid"] != os.getpid()
    hb_age = time.time() - p.store.runs.get(run_id)["heartbeat"]
    assert hb_age < 2.5  # the worker beats at least every 2 s
    os.kill(run["pid"], signal.SIGKILL)
    assert wait_for(lambda: state(p, run_id) == "interrupted", timeout=30)
    assert "resume" in p.store.runs.get(run_id)["error"]
    saved = load_checkpoint(p.run_dir(run_id) / "latest.pt")["step"]
    api.resume(p, run_id)
    wait_for(lambda: state(p, run_id) not in ("queued", "running"), timeout=300)
    run = p.store.runs.get(run_id)
    assert run["state"] == "finished", run["error"]
    train_steps = [m["step"] for m in p.store.runs.metrics(run_id, "train")]
    assert train_steps == list(range(5, 201, 5))
    assert [m["step"] for m in p.store.runs.metrics(run_id, "eval")] == list(range(20, 201, 20))
    assert saved >= 20 and run["result"]["accuracy"] > 0.3


def test_cancel_stops_with_a_checkpoint(trained_project):
    p = trained_project
    run_id = api.start_training(p, {"role": "teacher", "steps": 5000, "eval_every": 1000}, detach=True)
    wait_for(lambda: p.store.runs.get(run_id)["step"] >= 10)
    out = stcore("cancel", p.path, run_id, "--wait", "60")
    assert "cancelled" in out.stdout
    run = p.store.runs.get(run_id)
    assert run["state"] == "cancelled" and run["error"] is None
    ck = load_checkpoint(p.run_dir(run_id) / "latest.pt")
    assert 10 <= ck["step"] < 5000 and ck["step"] == run["step"]
    # A cancelled run can be resumed; here we only check it is accepted and then cancel again.
    api.resume(p, run_id)
    assert p.store.runs.get(run_id)["state"] in ("queued", "running")
    api.cancel(p, run_id)
    wait_for(lambda: state(p, run_id) == "cancelled", timeout=120)


def test_second_run_on_a_busy_device_is_refused(trained_project):
    p = trained_project
    run_id = api.start_training(p, {"role": "teacher", "steps": 5000}, detach=True)
    n_runs = len(p.store.runs.list())  # the fixture's teacher and pseudo-label job, and this one
    try:
        r = stcore("train", p.path, "--role", "student", "--device", "cpu", "--detach", check=False)
        assert r.returncode == 2
        assert f"busy with run {run_id}" in r.stderr
        assert len(p.store.runs.list()) == n_runs == 3  # the refused run was never created
    finally:
        api.cancel(p, run_id)
        wait_for(lambda: state(p, run_id) == "cancelled", timeout=120)


class NaNModel(torch.nn.Module):
    def __init__(self, *a, **k):
        super().__init__()
        self.lin = torch.nn.Linear(784, 10)

    def forward(self, x):
        return self.lin(x.flatten(1)) * float("nan")


def test_nan_loss_fails_the_run_with_that_reason(trained_project, monkeypatch):
    import stcore.models
    monkeypatch.setattr(stcore.models, "build", lambda *a, **k: NaNModel())
    p = trained_project
    run_id = api.start_training(p, {"role": "teacher", "steps": 50}, detach=False)
    run = p.store.runs.get(run_id)
    assert run["state"] == "failed"
    assert run["error"].startswith("loss became nan at step 1")
    assert "NonFiniteLoss" in (p.run_dir(run_id) / "log.txt").read_text()


def test_a_dataset_gone_missing_fails_readably(trained_project):
    p = trained_project
    os.remove(p.path / "images" / "train.pt")
    run_id = api.start_training(api.open_project(p.path), {"role": "teacher", "steps": 10}, detach=False)
    run = p.store.runs.get(run_id)
    assert run["state"] == "failed" and "image cache" in run["error"] and "missing" in run["error"]
    assert "Traceback" in (p.run_dir(run_id) / "log.txt").read_text()


def test_an_unavailable_device_at_start_fails_the_run(trained_project, monkeypatch):
    """The device was there when the run was queued and is gone when the worker starts."""
    p = trained_project
    run_id = p.store.runs.create("teacher", "cuda:3", {"role": "teacher", "steps": 5, "device": "cuda:3"}, 5)
    from stcore.worker import execute
    assert execute(p, run_id) == "failed"
    assert "cuda:3" in p.store.runs.get(run_id)["error"] and "available" in p.store.runs.get(run_id)["error"]


def test_a_student_stored_without_a_strength_keeps_full_strength(trained_project, monkeypatch):
    """Runs stored before students had a strength setting augmented at full strength; a resume
    must not switch them to today's default."""
    import stcore.train
    from stcore.worker import execute
    seen = []
    monkeypatch.setattr(stcore.train, "fit", lambda model, data, cfg, **kw: seen.append(cfg.strength)
                        or {"stopped": False, "step": 2, "eval": {"accuracy": 0.5}, "test_probs": None,
                            "ema": model})
    p = trained_project
    for config in ({"role": "student", "steps": 2}, {"role": "student", "steps": 2, "strength": 0.3}):
        assert execute(p, p.store.runs.create("student", "cpu", config, 2)) == "finished"
    assert seen == [1.0, 0.3]


def test_a_dead_queued_worker_is_interrupted(trained_project):
    p = trained_project
    run_id = p.store.runs.create("teacher", "cpu", {"role": "teacher"}, 5)
    p.store.runs.update(run_id, pid=2 ** 22 + 12345)  # no such process
    assert state(p, run_id) == "interrupted"


def test_a_run_records_the_method_rounds_and_strength_it_resolved_to(trained_project, monkeypatch):
    """A later change of the defaults never changes what a queued or resumed run does."""
    p = trained_project
    monkeypatch.setattr(jobs, "spawn", lambda project, run_id: 0)  # queue the runs, start no worker

    def stored(values):
        run_id = api.start_training(p, values, detach=True)
        config = p.store.runs.get(run_id)["config"]
        assert api.cancel(p, run_id) == "cancelled"  # a queued run with no worker: cancelled at once
        return config
    c = stored({"role": "student"})
    assert (c["method"], c["rounds"], c["strength"], c["steps"]) == ("labelprop", 3, 0.3, 1800)
    c = stored({"role": "student", "method": "fixmatch"})  # an alias: the real method is stored
    assert (c["method"], c["rounds"], c["strength"]) == ("consistency", 1, 1.0)
    assert (c["adaptive_threshold"], c["threshold"]) == (False, 0.9)


@pytest.mark.parametrize("rows, expected", [
    ([], None),
    ([("train", 10, {"loss": 1.0})], None),
    ([("phase", 0, {"phase": "building the graph"})], "building the graph"),
    ([("phase", 0, {"phase": "building the graph"}), ("train", 10, {"loss": 1.0})], None),
    ([("train", 600, {"loss": 1.0}), ("phase", 600, {"phase": "re-labeling"})], "re-labeling"),
    ([("phase", 0, {"phase": "a"}), ("train", 600, {"loss": 1.0}), ("phase", 600, {"phase": "b"})], "b"),
])
def test_current_phase_is_the_newest_phase_not_yet_followed_by_training(rows, expected):
    metrics = [{"kind": k, "step": s, "at": 0.0, **v} for k, s, v in rows]
    phase = jobs.current_phase(metrics)
    assert (phase["phase"] if phase else None) == expected
    if phase:  # the row itself, with its progress
        assert phase is next(m for m in metrics if m["kind"] == "phase" and m["phase"] == expected)


def test_eta_goes_by_the_training_pace_not_the_time_before_the_first_step_or_in_phases():
    # A labelprop student (3 rounds of 600 steps): 100 s of start-up and graph building, then
    # 10 steps a second.
    run = {"role": "student", "state": "running", "step": 200, "total": 1800, "started": 1000.0,
           "config": {"method": "labelprop", "rounds": 3}}
    graph = {"kind": "phase", "step": 0, "at": 1099.0, "started": 1001.0, "phase": "building the graph"}
    rows = [graph] + [{"kind": "train", "step": s, "at": 1100.0 + (s - 10) / 10, "loss": 1.0}
                      for s in range(10, 201, 10)]
    # 19 s for 190 steps: 1600 steps to go take 160 s, not 14 min; no re-labeling seen yet to go by
    assert jobs.eta_seconds(run, rows, now=1119.0) == pytest.approx(19 / 190 * 1600)
    # After round 2's re-labeling at step 600 (30 s), the time spent in it is not training time,
    # and round 3's re-labeling, still to come, is expected to take as long.
    relabel = {"kind": "phase", "step": 600, "at": 1189.0, "started": 1159.0, "phase": "re-labeling"}
    later = rows + [{"kind": "train", "step": s, "at": 1100.0 + (s - 10) / 10, "loss": 1.0}
                    for s in range(210, 601, 10)] + [relabel] + \
        [{"kind": "train", "step": s, "at": 1190.0 + (s - 610) / 10, "loss": 1.0} for s in range(610, 901, 10)]
    # (1219 - 1100 - 30) s for 890 steps = 0.1 s a step; 900 steps (90 s) plus one re-labeling (30 s)
    assert jobs.eta_seconds({**run, "step": 900}, later, now=1219.0) == pytest.approx(90.0 + 30.0)
    # In the last round (after a 20 s re-labeling at step 1200) no re-labeling is left:
    # (1279 - 1100 - 30 - 20) s for 1290 steps = 0.1 s a step, and 500 steps to go.
    last = later + [{"kind": "train", "step": s, "at": 1190.0 + (s - 610) / 10, "loss": 1.0}
                    for s in range(910, 1201, 10)] + \
        [{"kind": "phase", "step": 1200, "at": 1269.0, "started": 1249.0, "phase": "re-labeling"}] + \
        [{"kind": "train", "step": s, "at": 1270.0 + (s - 1210) / 10, "loss": 1.0} for s in range(1210, 1301, 10)]
    assert jobs.eta_seconds({**run, "step": 1300}, last, now=1279.0) == pytest.approx(50.0)
    # A resumed run: rows (and phases) from before it restarted say nothing about its pace now.
    resumed = {**run, "step": 900, "started": 5000.0}
    old = [{"kind": "train", "step": s, "at": 1100.0 + s / 10, "loss": 1.0} for s in range(10, 601, 10)] + [relabel]
    new = [{"kind": "train", "step": s, "at": 5030.0 + (s - 610) / 10, "loss": 1.0} for s in range(610, 901, 10)]
    # 29 s for 290 steps: 900 steps take 90 s; round 3's re-labeling is not known in this attempt
    assert jobs.eta_seconds(resumed, old + new, now=5059.0) == pytest.approx(29 / 290 * 900)
    assert jobs.eta_seconds(resumed, old, now=5059.0) is None  # no step yet in this attempt
    # Item-counting jobs (pseudo-labeling, evaluation) go by their pace since start.
    pl = {"role": "pseudo-label", "state": "running", "step": 15_000, "total": 60_000, "started": 1000.0}
    assert jobs.eta_seconds(pl, [], now=1010.0) == pytest.approx(30.0)
    ev = {"role": "evaluate", "state": "running", "step": 2_000, "total": 10_000, "started": 1000.0}
    assert jobs.eta_seconds(ev, [], now=1004.0) == pytest.approx(16.0)
    for done in ({**run, "state": "finished"}, {**run, "step": 1800}, {**pl, "step": 0}):
        assert jobs.eta_seconds(done, rows, now=1119.0) is None


def test_the_progress_line_names_the_phase_of_a_running_run():
    from stcore.terminal import progress_line
    run = {"id": "student-3", "state": "running", "step": 600, "total": 1800, "started": time.time() - 60}
    metrics = [{"kind": "train", "step": 600, "at": 0.0, "loss": 0.5},
               {"kind": "phase", "step": 600, "at": 0.0, "phase": "re-labeling 100 pool images for round 2 of 3"}]
    assert progress_line(run, metrics).endswith("re-labeling 100 pool images for round 2 of 3...")
    assert "re-labeling" not in progress_line({**run, "state": "cancelled"}, metrics)
    metrics[1].update(done=40, total=100, started=time.time() - 5)  # with its progress
    assert progress_line(run, metrics).endswith("round 2 of 3 40/100...")


def test_training_pace_leaves_out_the_phases_and_counts_the_images_a_step_sees():
    # A student, batch 64 + 3 x 64 unlabeled: 256 images a step; 0.1 s a step between phases.
    run = {"role": "student", "config": {"batch_size": 64, "unlabeled_ratio": 3}}
    rows = [{"kind": "phase", "step": 0, "at": 1050.0, "started": 1000.0, "phase": "graph"}] + \
        [{"kind": "train", "step": s, "at": 1050.0 + s / 10, "loss": 1.0} for s in range(10, 301, 10)] + \
        [{"kind": "phase", "step": 300, "at": 1100.0, "started": 1080.0, "phase": "re-labeling"}] + \
        [{"kind": "train", "step": s, "at": 1100.0 + (s - 300) / 10, "loss": 1.0} for s in range(310, 601, 10)]
    pace = jobs.training_pace(run, rows)
    assert pace["per_sample"] == pytest.approx(0.1 / 256)
    assert pace["phases"] == pytest.approx(70.0)
    teacher = {"role": "teacher", "config": {"batch_size": 32}}
    assert jobs.training_pace(teacher, rows)["per_sample"] == pytest.approx(0.1 / 32)
    assert jobs.training_pace(teacher, rows[:2]) is None  # one training row: no pace yet


def test_estimate_training_scales_the_last_like_runs_pace(trained_project):
    p = trained_project
    assert api.estimate_training(p, {"role": "student", "model": "cnn", "device": "cpu", "steps": 100}) is None
    teacher = api.teacher(p)  # the fixture's 30-step cnn teacher on the cpu
    est = api.estimate_training(p, {"role": "teacher", "model": "cnn", "device": "cpu", "steps": 300,
                                    "batch_size": 128})
    pace = jobs.training_pace(teacher, api.metrics(p, teacher["id"]))
    assert est["from_run"] == teacher["id"] and est["steps"] == 300
    assert est["per_step"] == pytest.approx(pace["per_sample"] * 128)
    assert est["seconds"] == pytest.approx(300 * est["per_step"] + pace["phases"])
    assert api.estimate_training(p, {"role": "teacher", "model": "resnet18", "device": "cpu", "steps": 300}) is None


def zombie_children(pid: int) -> list[int]:
    """Pids of the exited, unreaped children of process pid (Linux /proc)."""
    found = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(stat))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_a_finished_job_leaves_no_zombie_behind_the_process_that_started_it(trained_project):
    """The dashboard's server starts every job: a worker that ended must not stay its <defunct> child."""
    p = trained_project
    run_id = api.start_training(p, {"role": "teacher", "steps": 2, "eval_every": 2}, detach=True)
    wait_for(lambda: state(p, run_id) == "finished")
    pid = p.store.runs.get(run_id)["pid"]
    def ended():  # read from /proc: pid_alive would reap our own child and hide the zombie
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True
    wait_for(ended, timeout=30)  # it exits just after it says finished
    assert zombie_children(os.getpid()) == []
