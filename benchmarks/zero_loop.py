"""The whole default loop from zero labels (issue 25), through the CLI with its defaults:

    stcore init P --dataset fashion-mnist --labeled 0 --seed S
    stcore embed P
    N labels: stcore review P --simulate N                (the app's order: typical items)
              stcore review P --simulate N --order random  (random items, as a user picking by hand)
              10 per class at random, by their hidden class (a user cannot do this without labels)
    stcore train P --role teacher --seed S
    stcore pseudo-label P
    stcore train P --role student --seed S

The seed S is the project's (which seeds the app's clustering and the random choice) and the
runs'. The labels are given by a perfect labeler (the hidden classes) as pool decisions, whichever way
they are chosen. One embedded project per seed, copied into a folder per choice. The commands
run in this process (benchmarks.accuracy.stcore), so a wall time leaves out Python's start-up.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from stcore import api

from .accuracy import _stats, stcore


def label_per_class(folder: Path, per_class: int, seed: int) -> dict:
    """Give per_class random pool items of each class their hidden class, as a labeler would."""
    p = api.open_project(folder)
    ids, _ = p.store.items.pool_order()
    truth = p.store.items.hidden_labels(ids)
    rng = np.random.default_rng(seed)
    with p.store.tx():
        for c in range(len(p.classes)):
            members = [i for i in ids if truth[i] == c]
            chosen = rng.choice(members, per_class, replace=False).tolist()
            p.store.decisions.decide(chosen, "corrected", c, reviewer="simulated", source="simulated")
    p.store.close()
    return {"reviewed": per_class * len(p.classes), "order": "per-class"}


def bench_zero_loop(workdir: Path, *, seeds: list[int], budgets: list[int], per_class_at: int,
                    limit: int | None, budget: list[str], say=print) -> dict:
    """budgets: label counts N; per_class_at: the N at which 10 per class (N / classes) is tried too.
    budget: extra train flags (empty = the CLI defaults)."""
    lim = ["--limit", limit] if limit else []
    arms = [(f"{how}_{n}", how, n) for n in budgets for how in ("typical", "random")] + \
        [(f"per_class_{per_class_at}", "per_class", per_class_at)]
    teacher: dict[str, dict[int, float]] = {a[0]: {} for a in arms}
    student: dict[str, dict[int, float]] = {a[0]: {} for a in arms}
    wall: dict[str, dict[int, float]] = {a[0]: {} for a in arms}
    detail: dict[str, dict] = {}
    for seed in seeds:
        base = workdir / f"zero-seed{seed}"
        t0 = time.perf_counter()
        stcore("init", base, "--dataset", "fashion-mnist", "--labeled", 0, "--seed", seed, *lim)
        t_init = time.perf_counter() - t0
        t_embed, _ = stcore("embed", base)
        d = detail[str(seed)] = {"init_s": round(t_init, 1), "embed_s": round(t_embed, 1)}
        say(f"  seed {seed}: init {t_init:.0f} s, embed {t_embed:.0f} s")
        for name, how, n in arms:
            folder = workdir / f"zero-seed{seed}-{name}"
            shutil.copytree(base, folder)
            t0 = time.perf_counter()
            if how == "per_class":
                label_per_class(folder, n // 10, seed)
            else:
                stcore("review", folder, "--simulate", n, *(["--order", "random"] if how == "random" else []))
            t_label = time.perf_counter() - t0
            t_teacher, r = stcore("train", folder, "--role", "teacher", "--seed", seed, *budget)
            t_pl, pl = stcore("pseudo-label", folder)
            t_student, s = stcore("train", folder, "--role", "student", "--seed", seed, *budget)
            teacher[name][seed], student[name][seed] = r["accuracy"], s["accuracy"]
            wall[name][seed] = t_embed + t_label + t_teacher + t_pl + t_student
            d[name] = {"label_s": round(t_label, 1), "teacher_s": round(t_teacher, 1), "pseudo_label_s": round(t_pl, 1),
                       "student_s": round(t_student, 1), "teacher": r["accuracy"], "student": s["accuracy"],
                       "pseudo_label_accuracy": (pl.get("accuracy") or {}).get("accuracy")}
            say(f"  seed {seed}: {name}: teacher {r['accuracy']:.4f}, student {s['accuracy']:.4f}, "
                f"loop {wall[name][seed]:.0f} s")
            shutil.rmtree(folder)
        shutil.rmtree(base)
    out = {name: {"teacher": _stats(teacher[name], wall[name]), "student": _stats(student[name], wall[name])}
           for name, _, _ in arms}
    out["details"] = {"seeds": seeds, "budgets": budgets, "limit": limit, "budget_flags": budget or "CLI defaults",
                      "wall_s": "embed + label + teacher + pseudo-label + student", "per_seed": detail}
    return out
