"""`python -m benchmarks.label_issues [--seeds 0 1 2] [--limit N] [--out DIR]`

Likely label errors, measured (issue 16): a Fashion-MNIST project with 10 labels per class gets
200 reviewed pool items with their true classes, 20 of them planted with a wrong one, so about
300 human labels. `stcore label-issues` ranks them; the measure is how many of the 20 planted
errors are in its top 60 (random order finds about 4).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from stcore import api

from .common import machine, now_iso


def plant(project, n_reviewed: int, n_wrong: int, seed: int) -> set[int]:
    """Review n_reviewed random pool items with their true class, n_wrong of them with another
    class; returns the planted ids."""
    rng = random.Random(seed)
    ids, _ = project.store.items.pool_order()
    chosen = rng.sample(ids, n_reviewed)
    truth = project.store.items.hidden_labels(chosen)
    k = len(project.classes)
    wrong = set(chosen[:n_wrong])
    for item in chosen:
        label = truth[item] if item not in wrong else rng.choice([c for c in range(k) if c != truth[item]])
        api.review(project, [item], "correct", label, reviewer="planted")
    return wrong


def one_seed(folder: Path, seed: int, limit: int | None, top: int = 60) -> dict:
    path = folder / f"seed{seed}"
    api.create_project(path, dataset="fashion-mnist", labels_per_class=10, seed=seed, limit=limit, download=False)
    p = api.open_project(path)
    api.start_embedding(p, "pixels", detach=False)
    wrong = plant(p, 200, 20, seed)
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
    ap.add_argument("--limit", type=int, help="keep only the first N training images")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    a = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="stcore-label-issues-"))
    try:
        rows = [one_seed(folder, s, a.limit) for s in a.seeds]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    res = {"date": now_iso(), "machine": machine(), "seeds": rows,
           "mean_planted_in_top_60": sum(r["planted_in_top_60"] for r in rows) / len(rows)}
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
