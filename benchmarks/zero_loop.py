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

import os
import shutil
import tarfile
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
    given = 0
    with p.store.tx():
        for c in range(len(p.classes)):
            members = [i for i in ids if truth[i] == c]  # a small --limit may hold few of a class
            chosen = rng.choice(members, min(per_class, len(members)), replace=False).tolist()
            if chosen:
                given += p.store.decisions.decide(chosen, "corrected", c, reviewer="simulated", source="simulated")
    p.store.close()
    return {"reviewed": given, "order": "per-class"}


def cifar10_folders(workdir: Path) -> Path | None:
    """CIFAR-10 as JPEG folders (train/<class>/, test/<class>/): $STCORE_CIFAR10_DIR, else the
    development archive ../shared/data/cifar10-jpg.tar.gz unpacked into workdir; None if neither."""
    if os.environ.get("STCORE_CIFAR10_DIR"):
        return Path(os.environ["STCORE_CIFAR10_DIR"])
    archive = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
    if not archive.exists():
        return None
    out = workdir / "cifar10-jpg"
    if not (out / "train").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(out, filter="data")
    return out


def bench_zero_loop(workdir: Path, *, seeds: list[int], budgets: list[int], per_class_at: int,
                    limit: int | None, budget: list[str], dataset: str = "fashion-mnist", data_root: Path | None = None,
                    embed: list[str] = (), model: list[str] = (), say=print) -> dict:
    """budgets: label counts N; per_class_at: the N at which 10 per class (N / classes) is tried too.
    budget: extra train flags (empty = the CLI defaults); model: train flags of both roles (a head on
    the embedding: --model head); embed: `stcore embed` flags (default: the CLI's choice).
    The embedding does not depend on the seed (pixels, a pretrained backbone): it is computed once,
    and each seed's project is a copy given that seed."""
    lim = ["--limit", limit] if limit else []
    root = ["--data-root", data_root] if data_root else []
    arms = [(f"{how}_{n}", how, n) for n in budgets for how in ("typical", "random")] + \
        [(f"per_class_{per_class_at}", "per_class", per_class_at)]
    teacher: dict[str, dict[int, float]] = {a[0]: {} for a in arms}
    student: dict[str, dict[int, float]] = {a[0]: {} for a in arms}
    wall: dict[str, dict[int, float]] = {a[0]: {} for a in arms}
    detail: dict[str, dict] = {}
    first = workdir / f"zero-{dataset}"
    t0 = time.perf_counter()
    stcore("init", first, "--dataset", dataset, "--labeled", 0, "--seed", seeds[0], *root, *lim)
    t_init = time.perf_counter() - t0
    t_embed, e = stcore("embed", first, *embed)
    say(f"  {dataset}: init {t_init:.0f} s, embed ({e.get('backbone')}) {t_embed:.0f} s")
    for seed in seeds:
        base = workdir / f"zero-seed{seed}"
        shutil.copytree(first, base)
        p = api.open_project(base)
        p.store.set_meta(seed=seed)  # what `init --seed` would have written; the images are the same
        p.store.close()
        d = detail[str(seed)] = {"init_s": round(t_init, 1), "embed_s": round(t_embed, 1)}
        for name, how, n in arms:
            folder = workdir / f"zero-seed{seed}-{name}"
            shutil.copytree(base, folder)
            t0 = time.perf_counter()
            if how == "per_class":
                label_per_class(folder, n // 10, seed)
            else:
                stcore("review", folder, "--simulate", n, *(["--order", "random"] if how == "random" else []))
            t_label = time.perf_counter() - t0
            t_teacher, r = stcore("train", folder, "--role", "teacher", "--seed", seed, *model, *budget)
            t_pl, pl = stcore("pseudo-label", folder)
            t_student, s = stcore("train", folder, "--role", "student", "--seed", seed, *model, *budget)
            teacher[name][seed], student[name][seed] = r["accuracy"], s["accuracy"]
            wall[name][seed] = t_embed + t_label + t_teacher + t_pl + t_student
            d[name] = {"label_s": round(t_label, 1), "teacher_s": round(t_teacher, 1), "pseudo_label_s": round(t_pl, 1),
                       "student_s": round(t_student, 1), "teacher": r["accuracy"], "student": s["accuracy"],
                       "pseudo_label_accuracy": (pl.get("accuracy") or {}).get("accuracy")}
            say(f"  seed {seed}: {name}: teacher {r['accuracy']:.4f}, student {s['accuracy']:.4f}, "
                f"loop {wall[name][seed]:.0f} s")
            shutil.rmtree(folder)
        shutil.rmtree(base)
    shutil.rmtree(first)
    out = {name: {"teacher": _stats(teacher[name], wall[name]), "student": _stats(student[name], wall[name])}
           for name, _, _ in arms}
    out["details"] = {"dataset": dataset, "embedding": e.get("backbone"), "model_flags": list(model) or "CLI defaults",
                      "seeds": seeds, "budgets": budgets, "limit": limit, "budget_flags": budget or "CLI defaults",
                      "wall_s": "embed + label + teacher + pseudo-label + student", "per_seed": detail}
    return out
