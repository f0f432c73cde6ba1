"""List and validate training devices: cpu, cuda, cuda:N, mps, auto."""
from __future__ import annotations

import torch

from .errors import DeviceError


def available() -> list[dict]:
    """Every device that is really there: name, a label for people, and free memory in bytes where known."""
    out = [{"name": "cpu", "label": f"cpu ({torch.get_num_threads()} threads)", "free": None, "total": None}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            name = torch.cuda.get_device_name(i)
            out.append({"name": f"cuda:{i}", "label": f"cuda:{i} {name} ({free / 2**30:.1f} of "
                        f"{total / 2**30:.1f} GiB free)", "free": free, "total": total})
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.append({"name": "mps", "label": "mps (Apple GPU)", "free": None, "total": None})
    return out


def resolve(name: str) -> str:
    """Canonical device name ('cpu', 'cuda:0', 'mps') or DeviceError."""
    names = [d["name"] for d in available()]
    name = (name or "auto").strip().lower()
    if name == "auto":
        return next((n for n in names if n.startswith("cuda")), "mps" if "mps" in names else "cpu")
    if name == "cuda":
        name = "cuda:0"
    if name in names:
        return name
    raise DeviceError(f"device {name!r} is not available here; available: {', '.join(names)}")


def resolve_many(name: str, nproc: int | None = None) -> tuple[str, int]:
    """The device string and process count of a run on one machine: 'cpu' for any number of CPU
    processes; one GPU per process, as 'cuda:0,cuda:1' (name may list them, or be cuda or auto
    with nproc). DeviceError when there are not enough GPUs, or for MPS with several processes."""
    names = [n.strip() for n in (name or "auto").split(",") if n.strip()] or ["auto"]
    if len(names) > 1:
        picked = [resolve(n) for n in names]
        if any(not p.startswith("cuda") for p in picked) or len(set(picked)) < len(picked):
            raise DeviceError(f"several devices must be different GPUs (cuda:0,cuda:1), not {name!r}")
        if nproc not in (None, len(picked)):
            raise DeviceError(f"{len(picked)} GPUs ({name}) take one process each, not --nproc {nproc}")
        return ",".join(picked), len(picked)
    n = nproc or 1
    one = resolve(names[0])
    if n == 1 or one == "cpu":
        return one, n
    if one == "mps":
        raise DeviceError("the Apple GPU (mps) runs one process; use --nproc 1, or the CPU")
    gpus = [d["name"] for d in available() if d["name"].startswith("cuda")]
    start = gpus.index(one) if names[0] not in ("cuda", "auto") else 0
    if start + n > len(gpus):
        raise DeviceError(f"--nproc {n} needs {n} GPUs from {one}, and this machine has {len(gpus)} "
                          f"({', '.join(gpus)}); lower --nproc or use the CPU")
    return ",".join(gpus[start:start + n]), n
