"""Training throughput on 1 and 2 processes (DDP under torchrun on the CPU, gloo).

stcore's side is a real run: `api.start_training(..., nproc=N)`, which on 2 processes launches
its ranks with torchrun's elastic launcher. Its images/s are read from the run's own training
rows (every rank's share of each batch counted), after the first row, so the start of the
ranks, the warm-up steps and the final evaluation are left out.

The bare side is the loop a user would write by hand (benchmarks.speed.bare_train) on the same
model, batch, augmentation and data, in N processes started with torch.multiprocessing, the
model wrapped in DistributedDataParallel over gloo when N > 1, each process taking the batch
divided by N and the machine's cores divided by N, as stcore's ranks do.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import statistics

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from stcore import api
from stcore.config import make_config
from stcore.data import training_data
from stcore.models import build
from stcore.project import Project

from .common import alternate, paired_ratio, summary
from .speed import OFFLINE_METHODS, bare_train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bare_rank(rank: int, world: int, port: int, data, cfg, shape: tuple, steps: int, mark: int, out) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = build(cfg.model, *shape)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    local = dataclasses.replace(cfg, batch_size=cfg.batch_size // world, seed=cfg.seed + rank)
    ips = bare_train(net, data, local, steps=steps, mark_every=mark)
    if world > 1:
        dist.destroy_process_group()
    out.put((rank, ips))


def bare_ddp(data, cfg, shape: tuple, *, world: int, steps: int, mark: int) -> float:
    """images/s of the bare loop on world processes: the sum of what each rank trains on."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_bare_rank, args=(r, world, port, data, cfg, shape, steps, mark, out))
             for r in range(world)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a bare DDP rank failed: exit codes {[p.exitcode for p in procs]}")
    return sum(ips for _, ips in results)


def stcore_run(project: Project, values: dict, *, world: int) -> float:
    """images/s of a real stcore run on world processes, from its training rows after the first."""
    run_id = api.start_training(project, {**values, "nproc": world, "device": "cpu"}, detach=False)
    run = project.store.runs.get(run_id)
    if run["state"] != "finished":
        raise RuntimeError(f"the benchmark run {run_id} on {world} processes ended {run['state']}: {run['error']}")
    rows = project.store.runs.metrics(run_id, "train")
    if len(rows) < 2:
        raise RuntimeError(f"the benchmark run {run_id} logged {len(rows)} training rows; give it more steps")
    return statistics.fmean(r["samples_per_s"] for r in rows[1:])


def bench_ddp(project: Project, *, steps: int, repeats: int, log_every: int, overrides: dict | None = None,
              say=print) -> dict:
    """The self-training student (stored pseudo-labels, the same maths on both sides) on 1 and 2
    processes, stcore and bare alternated."""
    values = {"role": "student", "method": "self-training", "steps": steps, "eval_every": steps,
              "log_every": log_every, "rounds": 1, "threshold": 0.0, **(overrides or {})}
    cfg = make_config(values)
    if cfg.method not in OFFLINE_METHODS:
        raise RuntimeError(f"the DDP benchmark compares stored-label students, not {cfg.method}")
    data = training_data(project, role="student", corrected_weight=cfg.corrected_weight,
                         use_unreviewed=cfg.use_unreviewed, needs_pseudo_labels=True)
    c, h, _ = project.meta["input_shape"]
    shape = (c, len(project.classes), h)
    sides = {f"{side}_{n}": (lambda side=side, n=n: stcore_run(project, values, world=n) if side == "stcore"
                             else bare_ddp(data, cfg, shape, world=n, steps=steps, mark=log_every))
             for n in (1, 2) for side in ("stcore", "bare")}
    runs = alternate(sides, repeats)
    for k, v in runs.items():
        say(f"  ddp {k:<9} images/s: {', '.join(f'{x:.0f}' for x in v)}")
    return {
        "config": {"method": cfg.method, "model": cfg.model, "batch_size": cfg.batch_size,
                   "unlabeled_ratio": cfg.unlabeled_ratio, "steps": steps, "log_every": log_every},
        "images_per_step": cfg.batch_size * (1 + cfg.unlabeled_ratio),
        "images_per_s": {k: summary(v, 1) for k, v in runs.items()},
        "ratio_vs_bare": {f"{n}": paired_ratio(runs[f"stcore_{n}"], runs[f"bare_{n}"]) for n in (1, 2)},
        "scaling_2_vs_1": {side: paired_ratio(runs[f"{side}_2"], runs[f"{side}_1"]) for side in ("stcore", "bare")},
    }
