"""The PostgreSQL adapter (psycopg 3): a project's store as a schema of its own in a shared database.

A team's server, and workers on other machines, reach one database; each project lives in the
schema `stcore_<project id>`. Writes to a project take its advisory lock for the transaction,
so they are serialised per project as SQLite serialises them per file.
"""
from __future__ import annotations

import os
import re
from typing import Sequence
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError
from .engine import Engine

URL_ENV = "STCORE_DATABASE_URL"


def is_url(text: str | None) -> bool:
    return bool(text) and str(text).startswith(("postgresql://", "postgres://"))


def without_password(url: str) -> str:
    """The URL as it may be written into a project folder: the password left out (it comes from
    $STCORE_DATABASE_URL, $PGPASSWORD or ~/.pgpass at connect time)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[1]}"))


def with_credentials(url: str) -> str:
    """url, with the password of $STCORE_DATABASE_URL when that names the same server and database."""
    env = os.environ.get(URL_ENV)
    if not env:
        return url
    a, b = urlsplit(url), urlsplit(env)
    same = (a.hostname, a.port, a.path, a.username) == (b.hostname, b.port, b.path, b.username or a.username)
    return env if same and b.password else url


class Row(tuple):
    """A result row read by position or by column name, as sqlite3.Row is."""
    __slots__ = ()
    names: dict[str, int] = {}

    def __getitem__(self, key):
        return tuple.__getitem__(self, self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor):
    names = {d.name: k for k, d in enumerate(cursor.description or [])}
    cls = type("Row", (Row,), {"__slots__": (), "names": names})
    return lambda values: cls(values)


class PostgresEngine(Engine):
    name = "postgresql"
    same = "IS NOT DISTINCT FROM"
    differs = "IS DISTINCT FROM"
    greatest = "GREATEST"

    def __init__(self, url: str, schema: str):
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - a dependency; a broken install says so
            raise StoreError("the project's store is on PostgreSQL and psycopg is not installed; "
                             "pip install 'psycopg[binary]'") from e
        super().__init__()
        if not re.fullmatch(r"[a-z0-9_]+", schema):
            raise StoreError(f"not a valid schema name for a project: {schema!r}")
        self.url, self.schema, self.psycopg = url, schema, psycopg
        self.Error = psycopg.Error

    def connect(self):
        try:
            conn = self.psycopg.connect(with_credentials(self.url), autocommit=True, row_factory=_row_factory)
        except self.psycopg.Error as e:
            raise StoreError(f"cannot reach the project's PostgreSQL database {self.describe()}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else e}; check the server, "
                             f"the URL and the password ($PGPASSWORD, ~/.pgpass or ${URL_ENV})") from e
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        conn.execute(f'SET search_path TO "{self.schema}"')
        return conn

    def begin(self, immediate: bool) -> None:
        self.execute("BEGIN")
        if immediate:  # one writer per project at a time, as on SQLite
            self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (self.schema,))

    def execute(self, sql: str, params: Sequence = ()):
        try:
            return self.db.execute(_placeholders(sql), tuple(params) or None, prepare=False)
        except self.Error as e:
            raise self.failed(e) from e

    def executemany(self, sql: str, rows) -> None:
        try:
            with self.db.cursor() as cur:
                cur.executemany(_placeholders(sql), list(rows))
        except self.Error as e:
            raise self.failed(e) from e

    def tuples(self, sql: str, params: Sequence = ()):
        from psycopg.rows import tuple_row
        with self.db.cursor(row_factory=tuple_row) as cur:
            yield from cur.execute(_placeholders(sql), tuple(params) or None)

    def ids(self, column: str, ids: Sequence[int]) -> tuple[str, list]:
        return f"{column} = ANY(?)", [[int(i) for i in ids]]

    def update_many(self, table, columns, key, rows, *, rebuild_indexes=False) -> None:
        # COPY into a temporary table, then one UPDATE ... FROM: a million rows in seconds, where
        # one UPDATE a row would take minutes over a network.
        cols = [*columns, key]
        self.execute(f"CREATE TEMP TABLE IF NOT EXISTS bulk_{table} AS SELECT {', '.join(cols)} FROM {table} "
                     f"WITH NO DATA")
        self.execute(f"TRUNCATE bulk_{table}")
        with self.db.cursor() as cur:
            with cur.copy(f"COPY bulk_{table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        sets = ", ".join(f"{c} = b.{c}" for c in columns)
        self.execute(f"UPDATE {table} SET {sets} FROM bulk_{table} b WHERE {table}.{key} = b.{key}")
        if rebuild_indexes:  # most of the table changed: the planner's statistics with it
            self.execute(f"ANALYZE {table}")

    def indexes(self, table: str) -> dict[str, str]:
        return dict(self.all("SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index x "
                             "JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                             "JOIN pg_namespace n ON n.oid = t.relnamespace "
                             "WHERE n.nspname = current_schema() AND t.relname = ? AND NOT x.indisprimary", (table,)))

    def insert_many(self, table, columns, rows) -> None:
        try:
            with self.db.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except self.Error as e:
            raise self.failed(e) from e

    def after_copy(self) -> None:
        # history.seq and class_edits.seq are identity columns: their next values follow the copied rows
        for table in ("history", "class_edits"):
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                         f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM {table}), false)")
        for table in ("items", "pool", "history"):  # the planner's statistics of what was copied
            self.execute(f"ANALYZE {table}")

    def describe(self) -> str:
        return f"{without_password(self.url)} (schema {self.schema})"

    def drop(self) -> None:
        """Remove the project's schema and everything in it (a failed copy, a test)."""
        self.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def _placeholders(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s` (a literal % doubled). The store's
    statements hold no `?` or `%` inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


