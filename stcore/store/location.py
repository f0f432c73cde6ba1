"""Where a project's store lives, and moving it between engines.

PROJECT/project.db   the store as a SQLite file (the default), or
PROJECT/store.json   {"engine": "postgresql", "url": ..., "schema": ...}: the store is on a
                     PostgreSQL server (the URL without its password), the images and
                     embeddings stay in the folder.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable

from ..errors import ProjectError, StoreError, UsageError
from . import Store
from .engine import Engine, SQLiteEngine
from .postgres import URL_ENV, PostgresEngine, is_url, without_password
from .schema import TABLES

DB = "project.db"
POINTER = "store.json"


def is_project(folder: str | os.PathLike) -> bool:
    folder = Path(folder).expanduser()
    return (folder / DB).is_file() or (folder / POINTER).is_file()


def engine_of(folder: Path) -> Engine:
    """The engine a project folder's store is on."""
    pointer = folder / POINTER
    if pointer.is_file():
        try:
            where = json.loads(pointer.read_text())
            return PostgresEngine(where["url"], where["schema"])
        except (ValueError, KeyError, TypeError) as e:
            raise ProjectError(f"{pointer} is not a store location ({e}); it should hold "
                               f'{{"engine": "postgresql", "url": ..., "schema": ...}}') from e
    return SQLiteEngine(folder / DB)


def database_choice(database: str | None) -> str | None:
    """The server a new project's store goes to: --database, else $STCORE_DATABASE_URL, else
    None (a SQLite file in the project folder). 'sqlite' chooses the file whatever the environment."""
    chosen = database or os.environ.get(URL_ENV) or None
    if chosen in (None, "sqlite"):
        return None
    if not is_url(chosen):
        raise UsageError(f"--database must be sqlite or a postgresql://USER@HOST[:PORT]/DBNAME URL, not {chosen!r}")
    return chosen


def new_store(folder: Path, database: str | None, project_id: str) -> tuple[Store, Callable, Callable]:
    """A new, empty store for a project being made in folder, the function that makes it the
    project's once it is complete (until then the folder is not a project: a crash leaves none),
    and the one that removes it after a failure."""
    url = database_choice(database)
    if url is None:
        tmp = folder / (DB + ".tmp")
        store = Store(tmp, create=True)

        def done() -> None:
            store.close()
            os.replace(tmp, folder / DB)
            for suffix in ("-wal", "-shm"):
                (folder / (DB + ".tmp" + suffix)).unlink(missing_ok=True)

        def abort() -> None:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                (folder / (DB + ".tmp" + suffix)).unlink(missing_ok=True)
        return store, done, abort
    schema = "stcore_" + re.sub(r"[^a-z0-9_]", "_", project_id.lower())[:40]
    engine = PostgresEngine(url, schema)
    if engine.one("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?", (schema,))[0]:
        raise ProjectError(f"the database already holds a project in schema {schema}")
    store = Store(engine, create=True)

    def done() -> None:
        store.close()
        _write_pointer(folder, url, schema)

    def abort() -> None:
        engine.drop()
        store.close()
    return store, done, abort


def _write_pointer(folder: Path, url: str, schema: str) -> None:
    tmp = folder / (POINTER + ".tmp")
    tmp.write_text(json.dumps({"engine": "postgresql", "url": without_password(url), "schema": schema}, indent=1))
    os.replace(tmp, folder / POINTER)


def copy_store(src: Store, dst: Store) -> dict[str, int]:
    """Every row of every table of src into the empty dst, in one transaction on dst. Returns
    the rows copied per table."""
    copied = {}
    with dst.tx():
        dst.engine.execute("DELETE FROM meta")  # the new store's own schema_version row: src's comes over
        for table in TABLES:
            columns = _columns(src.engine, table)
            rows = list(src.engine.tuples(f"SELECT {', '.join(columns)} FROM {table}"))
            dst.engine.insert_many(table, columns, rows)
            copied[table] = len(rows)
        dst.engine.after_copy()
    return copied


def _columns(engine: Engine, table: str) -> list[str]:
    cur = engine.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d[0] for d in cur.description]


def migrate(folder: Path, to: str) -> dict:
    """Copy the project's store to another engine ('sqlite', or a postgresql:// URL) and make it
    the project's. The old store is kept as it was: project.db is renamed project.db.before-<time>;
    a PostgreSQL schema is left in its database. Returns what was copied and where."""
    src = Store(engine_of(folder))
    meta = src.meta()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        if to == "sqlite":
            if isinstance(src.engine, SQLiteEngine):
                raise UsageError(f"{folder} is already on SQLite")
            dst, done, abort = new_store(folder, "sqlite", meta["project_id"])
        elif is_url(to):
            if isinstance(src.engine, PostgresEngine):
                raise UsageError(f"{folder} is already on PostgreSQL ({src.engine.describe()}); migrate it to "
                                 f"sqlite first to move it to another server")
            dst, done, abort = new_store(folder, to, meta["project_id"])
        else:
            raise UsageError(f"--to must be sqlite or a postgresql:// URL, not {to!r}")
        try:
            copied = copy_store(src, dst)
        except BaseException:
            abort()
            raise
        where_from = src.engine.describe()
    finally:
        src.close()
    if isinstance(src.engine, SQLiteEngine):  # to PostgreSQL: the file is kept aside, then the pointer written
        _checkpoint(folder / DB)
        kept = folder / f"{DB}.before-{stamp}"
        os.replace(folder / DB, kept)
        done()
    else:  # to SQLite: the file is put in place, then the pointer kept aside
        done()
        kept = folder / f"{POINTER}.before-{stamp}"
        os.replace(folder / POINTER, kept)
        kept = f"{where_from}, and {kept}"
    return {"from": where_from, "to": to if to == "sqlite" else without_password(to), "rows": copied,
            "kept": str(kept)}


def _checkpoint(path: Path) -> None:
    """Fold a SQLite file's write-ahead log into it, so the file alone holds everything."""
    import sqlite3
    try:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot fold the write-ahead log of {path} ({e})") from e
