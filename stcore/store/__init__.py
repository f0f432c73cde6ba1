"""The project store: metadata only (items, pseudo-labels, review decisions with their history,
runs and metrics), never image bytes. SQLite in the project folder, or PostgreSQL for a team.

A Store is small interfaces by concern, over one engine (engine.py):
- store.classes: the classes, a stable id and a name each;
- store.items: the splits, the human labels, the pseudo-labels, what a run trains on;
- store.queue: the review queue, read in pages (the orders themselves are in stcore/orders.py);
- store.decisions: review decisions, their history and undo;
- store.runs: runs and metrics;
- store.users: accounts, signed-in sessions and failed sign-ins;
- store.leases: the pending items each reviewer holds for now;
- store.votes: with overlap, each reviewer's own decision on an item until enough agree;
- counts.py: the counts an overview shows, kept by the methods above as they write, so that
  reading them never counts the pool.
Every method that writes is one short transaction, so a worker writing once a second, a
dashboard reading and a reviewer bulk-accepting never block each other for long.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StoreError
from .classes import Classes
from .decisions import Decisions
from .engine import Engine, SQLiteEngine
from .items import STATUSES, Items
from .queue import PAGE_COLUMNS, Queue
from .runs import ACTIVE_STATES, RUN_STATES, Runs, world_size
from .schema import MIGRATIONS, SCHEMA_VERSION, schema
from .leases import Leases
from .users import Users
from .votes import Votes

__all__ = ["ACTIVE_STATES", "PAGE_COLUMNS", "RUN_STATES", "SCHEMA_VERSION", "STATUSES", "Store", "world_size"]


class Store:
    """A project's store on engine. Opening an older SQLite store migrates it once, in one transaction."""

    def __init__(self, engine: Engine | str | os.PathLike, *, create: bool = False, timeout: float = 30.0):
        """engine: an Engine, or the path of a SQLite file (timeout: how long a writer waits for another)."""
        self.engine = engine if isinstance(engine, Engine) else SQLiteEngine(engine, timeout=timeout)
        if isinstance(self.engine, SQLiteEngine) and not create and not self.engine.path.exists():
            raise StoreError(f"{self.engine.path} does not exist")
        self.classes, self.items, self.queue = Classes(self.engine), Items(self.engine), Queue(self.engine)
        self.decisions, self.runs, self.users = Decisions(self.engine), Runs(self.engine), Users(self.engine)
        self.leases, self.votes = Leases(self.engine), Votes(self.engine)
        try:
            if not create:
                self._check_version()  # before any write, so that a foreign file is left as it was
            if isinstance(self.engine, SQLiteEngine):
                self.engine.prepare()
            if create:
                self._create()
            self._migrate()
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path | None:
        """The SQLite file, where the store is one."""
        return getattr(self.engine, "path", None)

    @contextmanager
    def tx(self, immediate: bool = True) -> Iterator[None]:
        """One transaction; stores' methods called inside it join it (all or nothing)."""
        with self.engine.tx(immediate):
            yield

    def in_transaction(self) -> bool:
        """Whether this thread is inside tx() (a decision there is not committed yet)."""
        return self.engine.in_transaction()

    def close(self) -> None:
        self.engine.close()

    # -- schema --------------------------------------------------------------------------
    def _create(self) -> None:
        with self.tx():  # the schema appears whole or not at all
            self.engine.script(schema(self.engine.name))
            self.engine.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO NOTHING",
                                (str(SCHEMA_VERSION),))

    def _version(self) -> int:
        try:
            row = self.engine.one("SELECT value FROM meta WHERE key='schema_version'")
        except StoreError as e:  # no meta table, or not a database at all
            raise StoreError(f"{self.engine.describe()} is not a stcore project store ({e.__cause__ or e})") from e
        if row is None:
            raise StoreError(f"{self.engine.describe()} has no schema version; it was not made by stcore")
        return int(row[0])

    def _check_version(self) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.engine.describe()} has schema version {version}, newer than this stcore "
                             f"understands ({SCHEMA_VERSION}); upgrade stcore to open it")
        if version < SCHEMA_VERSION and any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
            raise StoreError(f"{self.engine.describe()} has schema version {version}, which this stcore (schema "
                             f"{SCHEMA_VERSION}) cannot migrate; open it with the stcore that made it and "
                             f"export the labels, or re-create the project")

    def _migrate(self) -> None:
        """Bring an older store up to SCHEMA_VERSION, all steps in one transaction. The version
        is read again under the write lock: two processes opening an old project at once
        migrate it once."""
        if self._version() >= SCHEMA_VERSION:
            return
        with self.tx():
            self._check_version()
            version = self._version()
            while version < SCHEMA_VERSION:
                try:
                    for step in MIGRATIONS[version]:
                        self.engine.execute(step) if isinstance(step, str) else step(self.engine)
                except StoreError as e:  # the transaction rolls back: the store is as it was
                    raise StoreError(f"migrating {self.engine.describe()} from schema version {version} failed "
                                     f"({e.__cause__ or e}); the project is unchanged") from e
                version += 1
            self.engine.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))

    # -- meta ------------------------------------------------------------------------------
    def set_meta(self, **values) -> None:
        with self.tx():
            self.engine.executemany("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                                    "excluded.value", [(k, json.dumps(v)) for k, v in values.items()])

    def meta(self) -> dict:
        return {r[0]: json.loads(r[1]) for r in self.engine.all("SELECT key, value FROM meta")}
