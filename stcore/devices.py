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
