"""What the CLI shows in a terminal: one JSON object or a line of text, a live progress line for
a run, and a run followed in the foreground until it ends."""
from __future__ import annotations

import json
import os
import sys
import threading
import time

from . import api


def show(obj, as_json: bool, text: str | None = None) -> None:
    if as_json or text is None:
        print(json.dumps(obj, indent=1, default=str))
    else:
        print(text)


# ------------------------------------------------------------------ progress in a terminal
def _bar(frac: float, width: int = 28) -> str:
    n = int(round(frac * width))
    return "[" + "#" * n + "." * (width - n) + "]"


def _fmt_s(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_line(run: dict, metrics: list[dict]) -> str:
    total = max(1, run["total"] or 1)
    frac = min(1.0, run["step"] / total)
    parts = [f"{run['id']} {run['state']:<9} {_bar(frac)} {run['step']}/{run['total']} {frac:4.0%}"]
    train = [m for m in metrics if m["kind"] == "train"]
    evals = [m for m in metrics if m["kind"] == "eval" and m.get("n") != 0]  # n 0: no test set (older runs)
    if train:
        parts.append(f"loss {train[-1]['loss']:.3f}")
    if evals:
        parts.append(f"acc {evals[-1]['accuracy']:.3f}")
    if (eta := api.eta_seconds(run, metrics)) is not None:
        parts.append(f"ETA {_fmt_s(eta)}")
    if run["state"] == "running" and (phase := api.current_phase(metrics)):
        done, of = phase.get("done") or 0, phase.get("total") or 0
        parts.append(phase["phase"] + (f" {done:,}/{of:,}" if of else "") + "...")
    return "  ".join(parts)


def _recent(project, run: dict) -> list[dict]:
    return api.metrics(project, run["id"], after_step=max(0, run["step"] - 200))


def watch(project, run_id: str, *, interval: float = 0.5, stream=sys.stdout) -> dict:
    tty, last = stream.isatty(), ""
    while True:
        run = next((r for r in api.runs(project) if r["id"] == run_id), None) or api.run(project, run_id)
        line = progress_line(run, _recent(project, run))
        if line != last:
            stream.write(("\r\033[K" + line) if tty else line + "\n")
            stream.flush()
            last = line
        if run["state"] not in api.ACTIVE_STATES:
            if tty:
                stream.write("\n")
            if run["error"]:
                stream.write(f"{run['state']}: {run['error']}\n")
            return run
        time.sleep(interval)


def foreground(project, start) -> dict:
    """Run start() (which executes a job in this process) while a thread draws its progress."""
    done = threading.Event()

    def draw():
        p = api.open_project(project.path)  # its own connection, in its own thread
        tty, last_step = sys.stderr.isatty(), None
        while not done.wait(0.5):
            run_id = api.running_in(p, os.getpid())
            if run_id:
                run = api.run(p, run_id)
                if not tty and run["step"] == last_step:
                    continue  # a log file gets one line per step reported, not one per tick
                last_step = run["step"]
                sys.stderr.write(("\r\033[K" if tty else "") + progress_line(run, _recent(p, run)) + ("" if tty else "\n"))
                sys.stderr.flush()
    t = threading.Thread(target=draw, daemon=True)
    t.start()
    try:
        run_id = start()
    finally:
        done.set()
        t.join()
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    return api.run(project, run_id)


def report_run(run: dict, as_json: bool) -> int:
    res = run["result"] or {}
    acc = res.get("accuracy")
    show({"run": run["id"], "state": run["state"], "error": run["error"], "accuracy": acc,
            "seconds": round(api.duration(run) or 0.0, 1)}, as_json,
           f"{run['id']} {run['state']}" + (f": test accuracy {acc:.4f}" if isinstance(acc, float) else "")
           + (f"\nerror: {run['error']}" if run["error"] else ""))
    return 0 if run["state"] in ("finished", "cancelled") else 1
