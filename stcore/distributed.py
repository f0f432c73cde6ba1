"""Training and embedding on several processes: torchrun (torch.distributed.run), with
DistributedDataParallel for training.

A run whose config asks for more than one process is started like any other run, as
`python -m stcore.worker PROJECT RUN`. That process is the supervisor: it launches the ranks
with PyTorch's elastic launcher (what torchrun runs) and, when one fails, writes that rank's
reason into the run. On several machines, each node runs the torchrun line of node_command.

Rank 0 is the worker of a one-process run: it alone reads and writes the project store, the
heartbeats and the checkpoints. It sends every other rank what it has read (the model with its
starting weights, the data, the config, the checkpoint to resume from), so the other ranks never
touch the store and need no view of the project folder but its runs/ folder for their reports.
The ranks agree on stopping at every metric row (one all-reduce), so a cancel stops them all at
the same step. An embedding's ranks take turns at the batches and write their rows into the
file rank 0 created (embed.encode_rows).

NCCL on CUDA, gloo on the CPU. SyncBatchNorm on CUDA only: it does not run on the CPU.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

# How long a rank waits for the others in one collective. Rank 0 alone builds a student's graph
# and re-labels the pool while the others wait, which on a large pool on CPUs takes minutes.
TIMEOUT = datetime.timedelta(hours=2)
RANK_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


def under_torchrun() -> bool:
    """Whether this process is a rank started by torchrun (or the elastic launcher)."""
    return all(v in os.environ for v in RANK_VARS)


def rank_device(device: str, local_rank: int) -> str:
    """The device of one rank: the run's device ('cpu', 'cuda', 'cuda:0,cuda:1') read for the
    local_rank-th process of its node."""
    names = [d.strip() for d in device.split(",") if d.strip()]
    if names in (["cpu"], []):
        return "cpu"
    if names == ["cuda"]:
        return f"cuda:{local_rank}"
    if local_rank >= len(names):
        from .errors import DeviceError
        raise DeviceError(f"process {local_rank} of this node has no device: the run names {device}")
    return names[local_rank]


@dataclass
class Group:
    """This process's place in a distributed run."""
    rank: int
    local_rank: int
    world: int
    device: str
    stop: threading.Event = field(default_factory=threading.Event)  # SIGTERM reached this rank

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """Each process takes the batch size divided by the number of processes."""
        return max(1, batch_size // self.world)

    def any_stop(self, wants: bool) -> bool:
        """True on every rank when any rank wants to stop (rank 0 for a cancel, any rank for SIGTERM)."""
        flag = torch.tensor([1.0 if wants or self.stop.is_set() else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def share(self, obj=None):
        """Rank 0's obj, on every rank (pickled; tensors are sent on the CPU)."""
        box = [obj if self.lead else None]
        dist.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]

    def gather(self, obj) -> list | None:
        """Every rank's obj, in rank order, on rank 0 (None elsewhere)."""
        out = [None] * self.world if self.lead else None
        dist.gather_object(obj, out, dst=0)
        return out

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """model (already on this rank's device) for training under DDP; SyncBatchNorm on CUDA.
        The module itself stays unwrapped inside, for the EMA and the checkpoints."""
        from torch.nn.parallel import DistributedDataParallel as DDP
        if self.device.startswith("cuda"):
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DDP(model, device_ids=[torch.device(self.device).index])
        return DDP(model)

    def _object_device(self) -> torch.device:
        return torch.device(self.device) if self.device.startswith("cuda") else torch.device("cpu")


def join(device: str) -> Group:
    """Join the run's process group (the torchrun variables say where); this rank's Group.
    SIGTERM (torchrun stopping its workers) asks for a stop at the next agreed step."""
    rank, local, world = (int(os.environ[v]) for v in RANK_VARS)
    mine = rank_device(device, local)
    if mine.startswith("cuda"):
        torch.cuda.set_device(mine)
    dist.init_process_group("nccl" if mine.startswith("cuda") else "gloo", timeout=TIMEOUT)
    group = Group(rank, local, world, mine)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: group.stop.set())
    return group


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of a model's parameters (not its BatchNorm statistics, which each rank updates from
    its own batch): equal on every rank of a healthy run."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ a rank's failure
def error_path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / f"rank-{rank}.error.json"


def write_error(run_dir: Path, rank: int, reason: str) -> None:
    """What made this rank fail, for the supervisor (rank 0 alone writes the store)."""
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        error_path(run_dir, rank).write_text(json.dumps({"rank": rank, "at": time.time(), "reason": reason}))
    except OSError:  # another node without the project folder: the reason is in that node's output
        pass


def first_error(run_dir: Path, since: float) -> dict | None:
    """The earliest rank failure written since a time: the cause, where later ones followed it."""
    found = []
    for p in Path(run_dir).glob("rank-*.error.json"):
        try:
            e = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if e.get("at", 0) >= since:
            found.append(e)
    return min(found, key=lambda e: e["at"]) if found else None


# ------------------------------------------------------------------ starting the ranks
def worker_args(project: Path, run_id: str, device: str) -> list[str]:
    return ["-m", "stcore.worker", str(project), run_id, "--device", device]


def launch(project: Path, run_id: str, nproc: int, device: str) -> tuple[int, str] | None:
    """Run nproc ranks on this machine (torchrun --standalone) and wait for them. None when all
    ended well, else (rank, reason) of the first one that failed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"{run_id}-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0)
    started = time.time()
    try:
        elastic_launch(config, sys.executable)(*worker_args(project, run_id, device))
    except ChildFailedError as e:
        return cause(e.failures, first_error(Path(project) / "runs" / run_id, started))
    return None


def cause(failures: dict, own: dict | None) -> tuple[int, str]:
    """(rank, reason) of the failure that made a run fail. failures: the launcher's, by global
    rank (each with an exitcode, negative for a signal); own: the earliest reason a rank wrote.
    A rank killed by a signal wrote nothing, and the others then failed on its closed connection
    (writing that): it is the cause. Else the earliest reason written."""
    killed = sorted(r for r, f in failures.items() if f.exitcode < 0 and -f.exitcode != signal.SIGTERM)
    if killed:
        return killed[0], f"killed by {failures[killed[0]].signal_name()} (its output is in the run's log.txt)"
    if own is not None:
        return own["rank"], own["reason"]
    rank = min(failures)
    return rank, f"exited with code {failures[rank].exitcode} (its output is in the run's log.txt)"


def node_command(project: Path, run_id: str, *, nnodes: int, nproc: int, node_rank: int, endpoint: str,
                 device: str) -> list[str]:
    """The torchrun line one node of a several-machine run executes."""
    return ["torchrun", "--nnodes", str(nnodes), "--node-rank", str(node_rank), "--nproc-per-node", str(nproc),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
            *worker_args(project, run_id, device)]
