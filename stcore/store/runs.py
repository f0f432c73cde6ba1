"""Runs and their metrics: what a worker writes once a second and every page reads."""
from __future__ import annotations

import json
import time
from typing import Sequence

from ..errors import DeviceBusy, NotFound
from .engine import Engine

RUN_STATES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("queued", "running")


def world_size(config: dict) -> int:
    """The processes a run's config asks for: per machine times machines (1 but under torchrun)."""
    return int(config.get("nproc") or 1) * int(config.get("nnodes") or 1)


class Runs:
    def __init__(self, engine: Engine):
        self.e = engine

    def _check_device_free(self, device: str, exclude: str | None = None) -> None:
        """Inside a transaction: DeviceBusy, naming the job, if another active run holds device,
        or one of its GPUs (a run on several holds them as 'cuda:0,cuda:1')."""
        mine = set(device.split(","))
        other = next((r for r in self.e.all(
            "SELECT id, state, step, total, device FROM runs WHERE state IN ('queued','running') "
            f"AND id {self.e.differs} ? ORDER BY seq", (exclude,))
            if mine & set(r["device"].split(","))), None)
        if other:
            raise DeviceBusy(f"device {other['device']} is busy with run {other['id']} ({other['state']}, "
                             f"step {other['step']}/{other['total']}); wait for it, cancel it "
                             f"(stcore cancel PROJECT {other['id']}) or choose another device")

    def create(self, role: str, device: str, config: dict, total: int, *, busy_check: bool = True) -> str:
        """Insert a queued run, recording the ids of the project's classes (what it trains on).
        With busy_check, refuse (DeviceBusy naming the job) when another active run holds the
        same device; the check and insert are one transaction."""
        with self.e.tx():
            if busy_check:
                self._check_device_free(device)
            seq = self.e.one("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs")[0]
            run_id = f"{role}-{seq}"
            class_ids = [r[0] for r in self.e.all("SELECT id FROM classes ORDER BY id")]
            self.e.execute("INSERT INTO runs (id, seq, role, state, device, config, total, created, class_ids) "
                           "VALUES (?,?,?,?,?,?,?,?,?)", (run_id, seq, role, "queued", device, json.dumps(config),
                                                          total, time.time(), json.dumps(class_ids)))
        return run_id

    def requeue(self, run_id: str, device: str) -> None:
        """Put a stopped run back in the queue (for resume), if its device is free; one transaction.
        The running time of the attempt that ended is added to earlier_seconds."""
        with self.e.tx():
            self._check_device_free(device, exclude=run_id)
            self.e.execute("UPDATE runs SET state='queued', cancel_requested=0, error=NULL, pid=NULL, "
                           f"earlier_seconds = earlier_seconds + {self.e.greatest}(0, COALESCE(ended, heartbeat, "
                           "started) - COALESCE(started, ended, heartbeat, 0)), ended=NULL WHERE id=?", (run_id,))

    def running_of(self, pid: int) -> str | None:
        """The newest running run whose worker is process pid, if any."""
        row = self.e.one("SELECT id FROM runs WHERE state='running' AND pid=? ORDER BY seq DESC", (pid,))
        return row[0] if row else None

    def latest(self, role: str, states: Sequence[str] | None = None) -> dict | None:
        """The newest run of role (in one of states, when given), or None."""
        where, params = "role=?", [role]
        if states:
            where += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        row = self.e.one(f"SELECT * FROM runs WHERE {where} ORDER BY seq DESC LIMIT 1", params)
        return _run_dict(row) if row is not None else None

    def update(self, run_id: str, **fields) -> None:
        if fields:
            self.transition(run_id, None, **fields)

    def transition(self, run_id: str, from_states: Sequence[str] | None, *, owner: int | None = None,
                   **fields) -> bool:
        """Update a run, only if its state is one of from_states (None: whatever its state) and,
        with owner, only while that process is the run's worker; True if it was updated."""
        for k in ("config", "result"):
            if k in fields and not isinstance(fields[k], (str, type(None))):
                fields[k] = json.dumps(fields[k])
        cols = ", ".join(f"{k}=?" for k in fields)
        where, params = "id=?", [run_id]
        if from_states is not None:
            where += f" AND state IN ({','.join('?' * len(from_states))})"
            params += list(from_states)
        if owner is not None:
            where += " AND pid=?"
            params.append(owner)
        with self.e.tx():
            return self.e.execute(f"UPDATE runs SET {cols} WHERE {where}", (*fields.values(), *params)).rowcount == 1

    def get(self, run_id: str) -> dict:
        row = self.e.one("SELECT * FROM runs WHERE id=?", (run_id,))
        if row is None:
            known = [r[0] for r in self.e.all("SELECT id FROM runs ORDER BY seq")]
            raise NotFound(f"no run {run_id!r}; runs here: {', '.join(known) or 'none yet'}")
        return _run_dict(row)

    def list(self, role: str | None = None) -> list[dict]:
        if role:
            return [_run_dict(r) for r in self.e.all("SELECT * FROM runs WHERE role=? ORDER BY seq", (role,))]
        return [_run_dict(r) for r in self.e.all("SELECT * FROM runs ORDER BY seq")]

    def heartbeat(self, run_id: str, step: int, metrics: Sequence[tuple[str, int, dict]]) -> bool:
        """Write step, heartbeat and buffered metric rows in one transaction.
        Returns True when a cancel has been requested for the run."""
        now = time.time()
        with self.e.tx():
            self.e.executemany(
                "INSERT INTO metrics (run_id, kind, step, at, values_json) VALUES (?,?,?,?,?) "
                "ON CONFLICT (run_id, kind, step) DO UPDATE SET at = excluded.at, values_json = excluded.values_json",
                [(run_id, kind, s, now, json.dumps(v)) for kind, s, v in metrics])
            self.e.execute("UPDATE runs SET step=?, heartbeat=? WHERE id=?", (step, now, run_id))
            row = self.e.one("SELECT cancel_requested FROM runs WHERE id=?", (run_id,))
        return bool(row and row[0])

    def truncate_metrics(self, run_id: str, after_step: int) -> None:
        with self.e.tx():
            self.e.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, after_step))

    def metrics(self, run_id: str, kind: str | None = None, after_step: int = -1) -> list[dict]:
        q, p = "SELECT kind, step, at, values_json FROM metrics WHERE run_id=? AND step>?", [run_id, after_step]
        if kind:
            q += " AND kind=?"
            p.append(kind)
        return [{"kind": r[0], "step": r[1], "at": r[2], **json.loads(r[3])}
                for r in self.e.all(q + " ORDER BY kind, step", p)]


def _run_dict(row) -> dict:
    d = {k: row[k] for k in row.keys()}
    d["config"] = json.loads(d["config"]) if d["config"] else {}
    d["result"] = json.loads(d["result"]) if d["result"] else None
    d["class_ids"] = json.loads(d["class_ids"]) if d.get("class_ids") else None
    return d
