"""The light commands, as a user runs them: `stcore status`, `runs`, `review`, `cancel` and
`export --labels` on a project, each a fresh process. Wall time (median and worst of a few
runs) and peak memory (the child's maximum RSS), against issue 14's target: at most 0.6 s and
200 MB on a 60,000-item project. None of them may import torch."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from stcore import api


def _wall(args: list[str]) -> float:
    """Wall seconds of one `python -m stcore ...` process."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "stcore", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"stcore {' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    return wall


def _peak_of(args: list[str]) -> float:
    """Peak RSS (MB) of one run of the command. It runs as the only child of a small process
    that reports its children's peak (getrusage keeps the largest child so far, so the
    command's own peak needs a parent of its own)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True, check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")  # Linux: kilobytes
    r = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "stcore", *args],
                       capture_output=True, text=True, check=True)
    return float(r.stdout.strip())


def bench_light(project: api.Project, workdir: Path, *, repeats: int = 5, say=print) -> dict:
    p = str(project.path)
    item = api.review_page(project, statuses=["pending"], limit=1)[0]["id"]
    finished = next(r["id"] for r in reversed(api.runs(project)) if r["state"] == "finished")
    commands = {
        "status": ["status", p, "--json"],
        "runs": ["runs", p, "--json"],
        "review": ["review", p, "--accept", str(item), "--json"],
        "undo": ["review", p, "--undo", "--json"],
        "cancel": ["cancel", p, finished, "--json"],  # a run that ended: said, nothing to stop
        "export_csv": ["export", p, "--labels", str(workdir / "labels.csv"), "--json"],
        "export_json": ["export", p, "--labels", str(workdir / "labels.json"), "--json"],
    }
    out: dict = {"items": api.counts(project)["pool"] + api.counts(project)["labeled"], "commands": {}}
    for name, args in commands.items():
        walls = [_wall(args) for _ in range(repeats)]
        peak = _peak_of(args)
        out["commands"][name] = {"median_s": round(statistics.median(walls), 3), "max_s": round(max(walls), 3),
                                 "peak_rss_mb": round(peak, 1)}
        say(f"  {name}: median {statistics.median(walls):.3f} s, worst {max(walls):.3f} s, peak {peak:.0f} MB")
    out["worst_median_s"] = max(c["median_s"] for c in out["commands"].values())
    out["worst_peak_rss_mb"] = max(c["peak_rss_mb"] for c in out["commands"].values())
    return out

