"""The whole loop on a large pool, step by step: `python -m benchmarks.run --only loop`.

The pool is Fashion-MNIST's 60,000 training images, then copies of them shifted by -2..2
pixels, to a million images (each copy keeps its image's label, hidden from the run); the test
set is Fashion-MNIST's own 10,000 images, never in the pool. 10 labels per class.

Each step is the command a user types (`stcore embed`, `stcore train`, ...), run in a process
of its own, so that its wall time and its peak memory (the RSS of that process and of any it
waited for) are that step's alone. The last step times the review page's queries on the real
store, and, where Chromium is installed, a click on the Review page to its updated card.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def pool_arrays(n: int, seed: int = 0):
    """Fashion-MNIST with its training images repeated, shifted, to n pool images."""
    from stcore.sources import load
    a = load("fashion-mnist", download=False)
    g = torch.Generator().manual_seed(seed)
    xs, ys, have = [], [], 0
    while have < n:
        dy, dx = torch.randint(-2, 3, (2,), generator=g).tolist() if xs else (0, 0)
        take = min(n - have, len(a.train_x))
        xs.append(torch.roll(a.train_x[:take], shifts=(dy, dx), dims=(2, 3)))
        ys.append(a.train_y[:take])
        have += take
    a.train_x, a.train_y = torch.cat(xs), torch.cat(ys)
    a.train_sources = [f"fashion-mnist/train/{i % 60_000}+shift{i // 60_000}" for i in range(n)]
    return a


def init(path: str, n: int) -> None:
    """The init step: decode (generate) the images once and write the project."""
    from stcore.data import choose_labeled, write_project
    a = pool_arrays(n)
    lab = choose_labeled(a.train_y, per_class=10, seed=0, num_classes=len(a.classes))
    write_project(Path(path), a, lab, print, dataset="fashion-mnist", seed=0, labels_per_class=10, data_root=None)


def measured(cmd: list[str]) -> dict:
    """Run cmd in a fresh wrapper process: its wall time and the peak RSS of it and its children."""
    wrapper = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
               "rc = subprocess.run(sys.argv[1:], stdout=sys.stderr).returncode; "
               "print(json.dumps({'rc': rc, 's': time.perf_counter() - t, "
               "'peak_rss_gb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20}))")
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=ROOT, capture_output=True, text=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({out['rc']}): {r.stderr.strip().splitlines()[-3:]}")
    return {"s": round(out["s"], 1), "peak_rss_gb": round(out["peak_rss_gb"], 2), "tail": r.stderr[-400:]}


def bench_loop(workdir: Path, *, n: int, student: list[str], teacher: list[str], clicks: int, repeats: int,
               say=print) -> dict:
    from stcore import api
    from stcore.project import Project

    from .review import bench_queries
    path = workdir / f"loop-{n}"
    stcore = [sys.executable, "-m", "stcore"]
    steps = {
        "init": [sys.executable, "-m", "benchmarks.loop", "--init", str(path), str(n)],
        "embed": [*stcore, "embed", str(path), "--backbone", "pixels", "--device", "cpu"],
        "teacher": [*stcore, "train", str(path), "--role", "teacher", "--device", "cpu", *teacher],
        "pseudo_label": [*stcore, "pseudo-label", str(path), "--device", "cpu"],
        "student": [*stcore, "train", str(path), "--role", "student", "--device", "cpu", *student],
    }
    out: dict = {"n": n, "steps": {}}
    for name, cmd in steps.items():
        say(f"  loop {name} ({n:,} pool images) …")
        r = measured(cmd)
        out["steps"][name] = {"s": r["s"], "peak_rss_gb": r["peak_rss_gb"]}
        say(f"  loop {name}: {r['s']:.0f} s, peak {r['peak_rss_gb']:.2f} GB")
    p = Project(path)
    for role in ("teacher", "student"):
        done = [r for r in api.runs(p) if r["role"] == role and r["state"] == "finished"]
        out[f"{role}_accuracy"] = api.accuracy_of(p, done[-1])[0] if done else None
    agreement = api.pseudo_label_accuracy(p)
    out["pseudo_label_accuracy"] = agreement and agreement.get("accuracy")
    out["disk_gb"] = round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2 ** 30, 2)
    p.store.close()
    t0 = time.perf_counter()
    q = bench_queries(path, repeats=repeats, bulk=1_000, bulk_repeats=1)
    out["review_queries"] = {k: q["queries"][k] for k in ("page_default", "page_filtered", "overview_counts")}
    out["review_queries_s"] = round(time.perf_counter() - t0, 1)
    if clicks:
        from .dashboard import bench_dashboard
        d = bench_dashboard(path, clicks=clicks, say=say)
        out["dashboard"] = {k: v for k, v in d.items() if k.endswith(("_s", "_mb", "skipped", "error"))}
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--init"]:
        init(sys.argv[2], int(sys.argv[3]))
    else:
        print("usage: python -m benchmarks.loop --init PATH N", file=sys.stderr)
        sys.exit(2)
