"""`python -m benchmarks.label_issues [--seeds 0 1 2] [--where random|app] [--mistake random|teacher] [--limit N] [--out FILE]`

Likely label errors, measured (issues 16 and 25): a Fashion-MNIST project with 10 labels per
class gets 200 reviewed pool items with their true classes, 20 of them planted with a wrong one,
so about 300 human labels. `stcore label-issues` ranks them; the measure is how many of the 20
planted errors are in its top 60 (random order finds about 4).

--where random reviews 200 random pool items (issue 16). --where app trains the teacher and
pseudo-labels the pool with the CLI's defaults first, then reviews the first 200 of the Review
page's default order: the hard items a reviewer actually sees, where a correct label also
disagrees with its neighbours more often (issue 25). The wrong class of a planted mistake is a
random other class (--mistake random), or, where the teacher's guess is wrong, that guess
accepted by a reviewer who trusted it (--mistake teacher; elsewhere a random other class).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from stcore import api

from .accuracy import stcore
from .common import machine, now_iso


def plant(project, n_reviewed: int, n_wrong: int, seed: int, *, where: str = "random",
          mistake: str = "random") -> set[int]:
    """Review n_reviewed pool items (random ones, or the first of the default order) with their
    true class, n_wrong of them (at random among those) with a wrong one, accepting where the
    label equals the pseudo-label and correcting elsewhere, as a reviewer would; returns the
    planted ids."""
    rng = random.Random(seed)
    if where == "app":
        rows = api.review_page(project, statuses=["pending"], limit=n_reviewed)
        chosen, pred = [r["id"] for r in rows], {r["id"]: r["pred"] for r in rows}
    else:
        ids, _ = project.store.items.pool_order()
        chosen, pred = rng.sample(ids, n_reviewed), {}
    truth = project.store.items.hidden_labels(chosen)
    k = len(project.classes)
    wrong = set(rng.sample(chosen, n_wrong))
    for item in chosen:
        label = truth[item]
        if item in wrong:
            guess = pred.get(item)
            label = guess if mistake == "teacher" and guess is not None and guess != label else \
                rng.choice([c for c in range(k) if c != label])
        api.review(project, [item], "accept" if label == pred.get(item) else "correct", label, reviewer="planted")
    return wrong


def one_seed(folder: Path, seed: int, limit: int | None, top: int = 60, *, where: str = "random",
             mistake: str = "random") -> dict:
    path = folder / f"seed{seed}"
    api.create_project(path, dataset="fashion-mnist", labels_per_class=10, seed=seed, limit=limit, download=False)
    p = api.open_project(path)
    api.start_embedding(p, "pixels", detach=False)
    if where == "app":
        stcore("train", path, "--role", "teacher")
        stcore("pseudo-label", path)
    wrong = plant(p, 200, 20, seed, where=where, mistake=mistake)
    t0 = time.perf_counter()
    run = api.start_label_issues(p, detach=False)
    seconds = time.perf_counter() - t0
    ranked = [i["id"] for i in api.run(p, run)["result"]["issues"]]
    found = len(wrong & set(ranked[:top]))
    return {"seed": seed, "human_labels": api.run(p, run)["result"]["checked"], "flagged": len(ranked),
            f"planted_in_top_{top}": found, "planted_flagged": len(wrong & set(ranked)), "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--where", choices=["random", "app"], default="random",
                    help="review random pool items, or the first of the default order after a teacher")
    ap.add_argument("--mistake", choices=["random", "teacher"], default="random",
                    help="a planted label is a random other class, or the teacher's wrong guess accepted")
    ap.add_argument("--limit", type=int, help="keep only the first N training images")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    a = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="stcore-label-issues-"))
    try:
        rows = [one_seed(folder, s, a.limit, where=a.where, mistake=a.mistake) for s in a.seeds]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    found = [r["planted_in_top_60"] for r in rows]
    res = {"date": now_iso(), "machine": machine(), "where": a.where, "mistake": a.mistake, "seeds": rows,
           "mean_planted_in_top_60": statistics.mean(found), "min_planted_in_top_60": min(found),
           "std_planted_in_top_60": round(statistics.pstdev(found), 2)}
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
