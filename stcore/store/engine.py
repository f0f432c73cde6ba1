"""The database under a project's store: one adapter per engine, and everything engine-specific.

Statements elsewhere in the store are written once, in the SQL both engines speak, with `?`
placeholders and a few dialect words (Engine.same and .differs for null-safe comparison,
.greatest, .hint for an index hint, .ids for a long id list). What differs is here: connecting, transactions and locking,
the schema's types, bulk writes, and the errors.

- SQLite: one file in the project folder (WAL); a writer takes the file's write lock (BEGIN
  IMMEDIATE), so writes are serialised and reads never wait.
- PostgreSQL (psycopg 3): a schema of its own per project in a database a team shares; a
  writer takes the project's advisory lock, so writes are serialised per project just as on
  SQLite, and each decision is still one transaction.
"""
from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import StoreError


class Engine(ABC):
    """Connections (one per thread: the dashboard shares one store between its sessions),
    transactions, and the dialect. Subclasses set `name`, `same`, `Error` and connect()."""
    name = ""
    same = "IS"            # null-safe equality
    differs = "IS NOT"     # null-safe inequality
    greatest = "MAX"       # the larger of two values
    Error: type = Exception

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list = []
        self._all_lock = threading.Lock()

    # -- connections and transactions -----------------------------------------
    @abstractmethod
    def connect(self):
        """Open a connection for this thread."""

    @property
    def db(self):
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
            with self._all_lock:
                self._all.append(conn)
        return conn

    def in_transaction(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    @contextmanager
    def tx(self, immediate: bool = True) -> Iterator[None]:
        """One transaction. A writer (immediate) takes the write lock up front, so it waits for
        another writer instead of failing half-way. Inside another tx() it joins the outer one,
        so several decisions can be made all or nothing."""
        if self.in_transaction():
            yield
            return
        self.begin(immediate)
        self._local.depth = 1
        try:
            yield
        except BaseException:
            self._local.depth = 0
            self.execute("ROLLBACK")
            raise
        self._local.depth = 0
        self.execute("COMMIT")

    @abstractmethod
    def begin(self, immediate: bool) -> None:
        """Start a transaction; immediate: take the write lock now."""

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # -- statements --------------------------------------------------------------
    def execute(self, sql: str, params: Sequence = ()):
        try:
            return self.db.execute(sql, tuple(params))
        except self.Error as e:
            raise self.failed(e) from e

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        try:
            self.db.executemany(sql, rows)
        except self.Error as e:
            raise self.failed(e) from e

    def failed(self, e: BaseException) -> StoreError:
        """The engine's own error as the store's: the database's error never leaves the store."""
        return StoreError(f"the project store failed ({str(e).strip() or type(e).__name__}); its last change was "
                          f"rolled back" + ("; free some space and retry" if "full" in str(e) else ""))

    def one(self, sql: str, params: Sequence = ()):
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence = ()) -> list:
        return self.execute(sql, params).fetchall()

    def tuples(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        """Rows as plain tuples, streamed: for reading a whole table fast (an export)."""
        for r in self.execute(sql, params):
            yield tuple(r)

    @abstractmethod
    def ids(self, column: str, ids: Sequence[int]) -> tuple[str, list]:
        """A condition `column is one of ids` and its parameters, for any number of ids."""

    def hint(self, table: str, index: str) -> str:
        """`table`, with the index the planner should read where the engine takes a hint."""
        return table

    # -- schema and bulk writes ----------------------------------------------------
    @abstractmethod
    def indexes(self, table: str) -> dict[str, str]:
        """The table's indexes made by the schema (not its primary key): name -> definition."""

    def script(self, sql: str) -> None:
        """Run several statements (no parameters) inside the current transaction."""
        for stmt in (s.strip() for s in sql.split(";")):
            if stmt:
                self.execute(stmt)

    def update_many(self, table: str, columns: Sequence[str], key: str, rows: list[Sequence], *,
                    rebuild_indexes: bool = False) -> None:
        """UPDATE table SET columns WHERE key = ..., for rows of (columns..., key); inside a transaction."""
        sets = ", ".join(f"{c} = ?" for c in columns)
        self.executemany(f"UPDATE {table} SET {sets} WHERE {key} = ?", rows)

    def insert_many(self, table: str, columns: Sequence[str], rows: list[Sequence]) -> None:
        """Insert rows of columns into table, inside a transaction (a copy between engines)."""
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)

    def after_copy(self) -> None:
        """Bring counters up to the rows a copy inserted with their own ids."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for messages."""


class SQLiteEngine(Engine):
    name = "sqlite"
    same = "IS"
    Error = sqlite3.Error

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        super().__init__()
        self.path, self.timeout = Path(path), timeout

    def connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves, so each method is one explicit transaction.
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        # WAL + NORMAL: a commit survives a crash of the process; only power loss may drop the latest ones.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def begin(self, immediate: bool) -> None:
        self.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def prepare(self) -> None:
        self.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file

    def tuples(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        cur = self.db.cursor()
        cur.row_factory = None  # plain tuples: a third faster over 60,000 rows than sqlite3.Row
        yield from cur.execute(sql, tuple(params))

    def ids(self, column: str, ids: Sequence[int]) -> tuple[str, list]:
        # A temporary table joined by its primary key: one statement for any number of ids
        # (an IN list of bound parameters stops at 32,766). Needs a transaction.
        self.execute("CREATE TEMP TABLE IF NOT EXISTS sel (id INTEGER PRIMARY KEY)")
        self.execute("DELETE FROM temp.sel")
        self.executemany("INSERT OR IGNORE INTO temp.sel VALUES (?)", ((int(i),) for i in ids))
        return f"{column} IN (SELECT id FROM temp.sel)", []

    def hint(self, table: str, index: str) -> str:
        # Without statistics SQLite may prefer another index to the one that reads a range in order.
        return f"{table} INDEXED BY {index}"

    def update_many(self, table, columns, key, rows, *, rebuild_indexes=False) -> None:
        # When most of a table changes, one sorted rebuild of its indexes is 5-10x faster than
        # updating them row by row.
        indexes = self.indexes(table) if rebuild_indexes else {}
        for name in indexes:
            self.execute(f'DROP INDEX "{name}"')
        super().update_many(table, columns, key, rows)
        for sql in indexes.values():
            self.execute(sql)

    def indexes(self, table: str) -> dict[str, str]:
        return dict(self.all("SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name=? "
                             "AND sql IS NOT NULL", (table,)))

    def describe(self) -> str:
        return str(self.path)


def connect_error(engine: Engine, e: BaseException) -> StoreError:
    return StoreError(f"cannot open the project's store at {engine.describe()} ({e})")
