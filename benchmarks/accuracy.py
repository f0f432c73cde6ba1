"""Accuracy and the value of review, through the CLI with its defaults (what a user gets):

    stcore init P --dataset fashion-mnist --labels-per-class 10 --seed S
    stcore train P --role teacher
    stcore pseudo-label P
    [stcore review P --simulate 200 [--order random]]
    stcore train P --role student

One teacher and one set of pseudo-labels per seed, copied into a folder per student setting.
The commands run in this process (stcore.cli.main), so a wall time leaves out only Python's
start-up (a second or two per command).
"""
from __future__ import annotations

import io
import json
import shutil
import statistics
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from stcore.cli import main as stcore_main

STUDENT_SETTINGS = {
    "student_no_review": [],
    "student_review_default": ["--simulate", "{n}"],
    "student_review_random": ["--simulate", "{n}", "--order", "random"],
}


def stcore(*args) -> tuple[float, dict]:
    """Run `stcore ARGS --json` in this process; (seconds, its JSON output)."""
    argv = [str(a) for a in args] + ["--json"]
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        rc = stcore_main(argv)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"stcore {' '.join(argv)} exited {rc}: {(out.getvalue() + err.getvalue())[-800:]}")
    return seconds, json.loads(out.getvalue())


def _stats(per_seed: dict[int, float], wall: dict[int, float], **extra) -> dict:
    v = list(per_seed.values())
    return {"mean": round(statistics.mean(v), 4), "std": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0,
            "per_seed": {str(k): round(x, 4) for k, x in per_seed.items()},
            "wall_s": round(statistics.mean(wall.values()), 1),
            "wall_s_per_seed": {str(k): round(x, 1) for k, x in wall.items()}, **extra}


def bench_accuracy(workdir: Path, *, seeds: list[int], limit: int | None, budget: list[str], review_n: int,
                   ceiling_args: list[str], say=print) -> dict:
    """budget: extra train flags (empty = the CLI defaults; --quick passes a few steps).
    ceiling_args: init flags and train flags for the fully supervised model, as (init, train)."""
    lim = ["--limit", limit] if limit else []
    acc: dict[str, dict[int, float]] = {"teacher": {}, **{k: {} for k in STUDENT_SETTINGS}}
    wall: dict[str, dict[int, float]] = {k: {} for k in acc}
    detail: dict[str, dict] = {}
    for seed in seeds:
        base = workdir / f"acc-seed{seed}"
        stcore("init", base, "--dataset", "fashion-mnist", "--labels-per-class", 10, "--seed", seed, *lim)
        t_teacher, r = stcore("train", base, "--role", "teacher", *budget)
        acc["teacher"][seed], wall["teacher"][seed] = r["accuracy"], t_teacher
        t_pl, pl = stcore("pseudo-label", base)
        d = detail[str(seed)] = {"teacher_s": round(t_teacher, 1), "pseudo_label_s": round(t_pl, 1),
                                 "pseudo_label_accuracy": (pl.get("accuracy") or {}).get("accuracy")}
        say(f"  seed {seed}: teacher {r['accuracy']:.4f} in {t_teacher:.0f} s, pseudo-labels in {t_pl:.0f} s")
        for name, review in STUDENT_SETTINGS.items():
            folder = workdir / f"acc-seed{seed}-{name}"
            shutil.copytree(base, folder)
            t_review = 0.0
            if review:
                t_review, rv = stcore("review", folder, *[a.format(n=review_n) for a in review])
                d[name + "_review"] = rv.get("simulated")
            t_student, r = stcore("train", folder, "--role", "student", *budget)
            acc[name][seed] = r["accuracy"]
            wall[name][seed] = t_teacher + t_pl + t_review + t_student
            d[name + "_student_s"] = round(t_student, 1)
            say(f"  seed {seed}: {name} {r['accuracy']:.4f}, total {wall[name][seed]:.0f} s")
            shutil.rmtree(folder)  # each copy holds the image cache; keep the disk use flat
        shutil.rmtree(base)
    out = {k: _stats(acc[k], wall[k]) for k in acc}
    out["teacher"]["note"] = "wall_s: teacher training only"
    for k in STUDENT_SETTINGS:
        out[k]["note"] = "wall_s: teacher + pseudo-label + review + student"

    init_flags, train_flags = ceiling_args
    folder = workdir / "acc-ceiling"
    stcore("init", folder, "--dataset", "fashion-mnist", "--seed", 0, *init_flags, *lim)
    t, r = stcore("train", folder, "--role", "teacher", *train_flags)
    shutil.rmtree(folder)
    say(f"  supervised ceiling: {r['accuracy']:.4f} in {t:.0f} s")
    out["supervised_ceiling"] = _stats({0: r["accuracy"]}, {0: t},
                                       note="seed 0 only: stcore init " + " ".join(map(str, init_flags))
                                       + " ; stcore train --role teacher " + " ".join(map(str, train_flags)))
    out["details"] = {"seeds": seeds, "review_n": review_n, "budget_flags": budget or "CLI defaults",
                      "limit": limit, "per_seed": detail}
    return out
