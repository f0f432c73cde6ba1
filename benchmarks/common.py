"""Small helpers shared by the benchmarks: timing statistics, alternation, machine info."""
from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import time
from typing import Callable


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (q in [0, 1]) of a non-empty list."""
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summary(values: list[float], digits: int = 4) -> dict:
    """median, min, max, p50, p95 and n of a list of measurements."""
    r = lambda x: round(x, digits)
    return {"median": r(statistics.median(values)), "min": r(min(values)), "max": r(max(values)),
            "p50": r(quantile(values, 0.5)), "p95": r(quantile(values, 0.95)), "n": len(values)}


def alternate(sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each side once per repeat, in turn, so that slow drifts of a shared machine hit
    every side alike; the order rotates each repeat (a b c, b c a, c a b, ...) so that no side
    always runs first or last. Each side returns its own measurement (e.g. images/s)."""
    names = list(sides)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(sides[name]())
    return out


def paired_ratio(num: list[float], den: list[float]) -> dict:
    """The ratio num/den per repeat (both measured back to back), summarized; noise that hits
    both sides of a pair cancels out."""
    return summary([a / b for a, b in zip(num, den)], digits=3)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict:
    import torch
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": device, "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")
