"""Runs on several processes (DDP under torchrun, gloo on the CPU): identical weights on every
rank, learning in line with one process, two "nodes" on 127.0.0.1, cancel and resume, a killed
rank, and the checks that refuse a run that cannot be split."""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import stcore
from stcore import api
from stcore.config import TrainConfig
from stcore.errors import ConfigError, DeviceBusy, DeviceError, UsageError


def wait_for(pred, timeout=240.0, every=0.2):
    end = time.time() + timeout
    while time.time() < end:
        if v := pred():
            return v
        time.sleep(every)
    raise AssertionError("timed out waiting")


def ranks(p, run_id) -> list[dict]:
    return json.loads((p.run_dir(run_id) / "ranks.json").read_text())


def rank_pids(run_id: str) -> dict[int, int]:
    """The rank processes of a run on this machine, by rank (read from /proc)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            env = dict(kv.split(b"=", 1) for kv in (d / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        if b"stcore.worker" in cmd and run_id.encode() in cmd and b"RANK" in env:
            out[int(env[b"RANK"])] = int(d.name)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ training on two processes
@pytest.mark.needs_fmnist
def test_two_processes_end_with_identical_weights_and_learn_like_one(small_project):
    p = small_project
    values = {"role": "teacher", "steps": 40, "eval_every": 20, "log_every": 10, "device": "cpu"}
    one = api.start_training(p, values, detach=False)
    two = api.start_training(p, {**values, "nproc": 2}, detach=False)
    r1, r2 = p.store.runs.get(one), p.store.runs.get(two)
    assert r2["state"] == "finished", r2["error"]
    reports = ranks(p, two)
    assert [r["rank"] for r in reports] == [0, 1] and {r["step"] for r in reports} == {40}
    assert reports[0]["weights"] == reports[1]["weights"]
    assert reports[0]["ema_weights"] == reports[1]["ema_weights"]
    a1, a2 = r1["result"]["accuracy"], r2["result"]["accuracy"]
    assert a1 > 0.25 and a2 > 0.25 and abs(a1 - a2) < 0.15, (a1, a2)
    assert [m["step"] for m in p.store.runs.metrics(two, "train")] == [10, 20, 30, 40]
    # Each process took half the batch; runs says so.
    listed = {r["id"]: r for r in json.loads(stcore("runs", p.path, "--json").stdout)}
    assert listed[two]["world_size"] == 2 and listed[two]["batch_per_process"] == 32
    assert listed[one]["world_size"] == 1 and listed[one]["batch_per_process"] is None
    assert "2 processes (cpu), batch 32 each" in stcore("runs", p.path).stdout


@pytest.mark.needs_fmnist
def test_two_nodes_of_one_process_on_this_machine(small_project):
    p = small_project
    endpoint = f"127.0.0.1:{free_port()}"
    out = json.loads(stcore("train", p.path, "--role", "teacher", "--steps", "40", "--eval-every", "20",
                            "--nnodes", "2", "--rdzv-endpoint", endpoint, "--json").stdout)
    run_id = out["run"]
    assert p.store.runs.get(run_id)["state"] == "queued" and len(out["nodes"]) == 2
    assert [shlex.split(c)[:5] for c in out["nodes"]] == [["torchrun", "--nnodes", "2", "--node-rank", str(k)]
                                                          for k in (0, 1)]
    assert stcore("nodes", p.path, run_id, "--rdzv-endpoint", endpoint, "--json").stdout.count("torchrun") == 2
    # Each "node" runs its line (torchrun is python -m torch.distributed.run).
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *shlex.split(c)[1:]],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in out["nodes"]]
    logs = [pr.communicate(timeout=300)[0] for pr in procs]
    assert [pr.returncode for pr in procs] == [0, 0], logs
    run = p.store.runs.get(run_id)
    assert run["state"] == "finished", (run["error"], logs)
    reports = ranks(p, run_id)
    assert len(reports) == 2 and reports[0]["weights"] == reports[1]["weights"]
    assert run["result"]["accuracy"] > 0.25


@pytest.mark.needs_fmnist
def test_cancel_stops_every_rank_and_resume_finishes(small_project):
    p = small_project
    run_id = api.start_training(p, {"role": "teacher", "steps": 300, "eval_every": 100, "log_every": 5,
                                    "nproc": 2, "device": "cpu"}, detach=True)
    wait_for(lambda: p.store.runs.get(run_id)["step"] >= 20)
    assert len(rank_pids(run_id)) == 2
    api.cancel(p, run_id)
    wait_for(lambda: p.store.runs.get(run_id)["state"] == "cancelled", timeout=120)
    wait_for(lambda: not rank_pids(run_id), timeout=60)  # every rank stopped
    stopped = p.store.runs.get(run_id)["step"]
    assert 20 <= stopped < 300
    api.resume(p, run_id)
    wait_for(lambda: p.store.runs.get(run_id)["state"] not in ("queued", "running"), timeout=300)
    run = p.store.runs.get(run_id)
    assert run["state"] == "finished", run["error"]
    assert [m["step"] for m in p.store.runs.metrics(run_id, "train")] == list(range(5, 301, 5))
    reports = ranks(p, run_id)
    assert {r["step"] for r in reports} == {300} and reports[0]["weights"] == reports[1]["weights"]


@pytest.mark.needs_fmnist
def test_a_killed_rank_fails_the_run_with_that_ranks_reason(small_project):
    p = small_project
    run_id = api.start_training(p, {"role": "teacher", "steps": 5000, "eval_every": 1000, "nproc": 2,
                                    "device": "cpu"}, detach=True)
    wait_for(lambda: p.store.runs.get(run_id)["step"] >= 10)
    pids = wait_for(lambda: (found := rank_pids(run_id)) and len(found) == 2 and found)
    os.kill(pids[1], signal.SIGKILL)
    wait_for(lambda: p.store.runs.get(run_id)["error"] and p.store.runs.get(run_id)["error"].startswith("rank 1 of 2"),
             timeout=120)
    run = p.store.runs.get(run_id)
    assert run["state"] == "failed" and "killed by SIGKILL" in run["error"], run["error"]
    wait_for(lambda: not rank_pids(run_id), timeout=60)  # rank 0 did not outlive it
    assert api.run(p, run_id)["state"] == "failed"  # and nothing later reads it as interrupted


@pytest.mark.needs_fmnist
def test_a_labelprop_student_trains_on_two_processes(trained_project):
    p = trained_project
    run_id = api.start_training(p, {"role": "student", "method": "labelprop", "rounds": 1, "steps": 30,
                                    "eval_every": 15, "nproc": 2, "device": "cpu"}, detach=False)
    run = p.store.runs.get(run_id)
    assert run["state"] == "finished", run["error"]
    reports = ranks(p, run_id)
    assert len(reports) == 2 and reports[0]["weights"] == reports[1]["weights"]
    assert run["result"]["accuracy"] > 0.3


# ------------------------------------------------------------------ refused before anything starts
@pytest.mark.parametrize("kw, says", [
    ({"nproc": 0}, "nproc"),
    ({"nnodes": 0}, "nnodes"),
    ({"model": "head", "nproc": 2}, "a head trains in one process"),
    ({"batch_size": 3, "nproc": 2, "nnodes": 2}, "use a batch size of at least 4"),
])
def test_a_run_that_cannot_be_split_is_refused(kw, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        TrainConfig(**{"role": "teacher", **kw})


def test_devices_for_several_processes(monkeypatch):
    import stcore.devices as devices
    gpus = [{"name": n} for n in ("cpu", "cuda:0", "cuda:1", "cuda:2")]
    monkeypatch.setattr(devices, "available", lambda: gpus)
    assert devices.resolve_many("cpu", 3) == ("cpu", 3)
    assert devices.resolve_many("cuda", 2) == ("cuda:0,cuda:1", 2)
    assert devices.resolve_many("cuda:1", 2) == ("cuda:1,cuda:2", 2)
    assert devices.resolve_many("cuda:2,cuda:0", None) == ("cuda:2,cuda:0", 2)
    assert devices.resolve_many("cuda:1", None) == ("cuda:1", 1)
    for name, nproc, says in [("cuda:1", 3, "needs 3 GPUs"), ("cuda:0,cuda:0", None, "different GPUs"),
                              ("cuda:0,cpu", None, "different GPUs"), ("cuda:0,cuda:1", 3, "not --nproc 3"),
                              ("cuda:7", 1, "not available")]:
        with pytest.raises(DeviceError, match=says):
            devices.resolve_many(name, nproc)
    monkeypatch.setattr(devices, "available", lambda: [{"name": "cpu"}, {"name": "mps"}])
    with pytest.raises(DeviceError, match="runs one process"):
        devices.resolve_many("mps", 2)


def test_a_gpu_held_by_a_run_on_several_is_busy(store):
    store.runs.create("teacher", "cuda:0,cuda:1", {}, 10)
    with pytest.raises(DeviceBusy, match="cuda:0,cuda:1"):
        store.runs.create("student", "cuda:1", {}, 10)
    store.runs.create("student", "cuda:2,cuda:3", {}, 10)  # other GPUs are free


def test_the_cause_of_a_failure_is_the_killed_rank_then_the_first_reason():
    from stcore.distributed import cause, rank_device

    class F:
        def __init__(self, code):
            self.exitcode = code

        def signal_name(self):
            return signal.Signals(-self.exitcode).name

    assert cause({0: F(1), 1: F(-9)}, {"rank": 0, "reason": "connection closed"})[0] == 1
    assert cause({0: F(1), 1: F(-15)}, {"rank": 0, "reason": "out of memory"}) == (0, "out of memory")
    assert cause({1: F(3), 2: F(1)}, None)[0] == 1
    assert rank_device("cuda", 1) == "cuda:1" and rank_device("cuda:2,cuda:3", 1) == "cuda:3"
    assert rank_device("cpu", 5) == "cpu"
    with pytest.raises(DeviceError, match="no device"):
        rank_device("cuda:0,cuda:1", 2)


@pytest.mark.needs_fmnist
def test_a_run_on_several_machines_is_only_queued_here(small_project):
    p = small_project
    run_id = api.start_training(p, {"role": "teacher", "steps": 10, "nnodes": 2, "nproc": 1})
    assert p.store.runs.get(run_id)["state"] == "queued"
    lines = api.node_commands(p, run_id, "head:29400")
    assert [c[c.index("--node-rank") + 1] for c in lines] == ["0", "1"]
    assert all("head:29400" in c and run_id in c for c in lines)
    r = stcore("train", p.path, "--role", "teacher", "--nproc", "2", "--model", "head", check=False)
    assert r.returncode == 2 and "a head trains in one process" in r.stderr


# ------------------------------------------------------------------ embedding on two processes
@pytest.mark.needs_fmnist
def test_an_embedding_on_two_processes_equals_one_and_stops_and_resumes(small_project):
    import numpy as np
    p = small_project
    opts = {"device": "cpu", "image_size": 64, "batch_size": 8}
    one = api.start_embedding(p, "efficientnet-lite0", **opts, detach=False)
    assert p.store.runs.get(one)["state"] == "finished", p.store.runs.get(one)["error"]
    npy = p.path / "embeddings" / "efficientnet-lite0.npy"
    single = np.load(npy)
    two = api.start_embedding(p, "efficientnet-lite0", **opts, nproc=2, detach=True)
    wait_for(lambda: p.store.runs.get(two)["step"] >= 160)
    assert len(rank_pids(two)) == 2
    api.cancel(p, two)
    wait_for(lambda: p.store.runs.get(two)["state"] == "cancelled", timeout=120)
    wait_for(lambda: not rank_pids(two), timeout=60)
    assert 160 <= p.store.runs.get(two)["step"] < len(single)
    api.resume(p, two, detach=False)
    run = p.store.runs.get(two)
    assert run["state"] == "finished", run["error"]
    assert api.world_size(run) == 2 and api.placement(run) == "2 processes (cpu), batch 4 each"
    # Every row, from either rank, before and after the resume; a batch of 4 instead of 8 changes the
    # convolutions' rounding only.
    np.testing.assert_allclose(np.load(npy).astype(np.float32), single.astype(np.float32), atol=0.02, rtol=0.01)


def test_an_embedding_that_runs_in_one_process_refuses_several(small_project):
    for backbone, says in (("pixels", "one PCA over every image"), ("ssl", "trains on one device")):
        with pytest.raises(UsageError, match=says):
            api.start_embedding(small_project, backbone, nproc=2)
    assert not api.runs(small_project)
