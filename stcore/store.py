"""The project store: one SQLite file (WAL) holding items, pseudo-labels, review
decisions with their history, runs and metrics. Never image bytes.

Every public method is one short transaction, so a worker writing once a second,
a dashboard reading and a reviewer bulk-accepting never block each other for long.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import DeviceBusy, NotFound, StoreError, UsageError

SCHEMA_VERSION = 4
# from-version -> the SQL statements that bring a store to the next version. Add one entry
# with each schema change (and bump SCHEMA_VERSION); Store() applies them on open.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2: the balanced-margin order reads each class's lowest margins off an index
    1: ("CREATE INDEX IF NOT EXISTS pool_status_pred_margin ON pool (status, pred, margin, confidence)",),
    # 3: a resumed run keeps the running time of its earlier attempts
    2: ("ALTER TABLE runs ADD COLUMN earlier_seconds REAL NOT NULL DEFAULT 0",),
    # 4: named lists of items (a selection on the map) that the Review page shows
    3: ("CREATE TABLE IF NOT EXISTS selection (name TEXT NOT NULL, pos INTEGER NOT NULL, id INTEGER NOT NULL, "
        "PRIMARY KEY (name, pos))",),
}
STATUSES = ("pending", "accepted", "corrected", "rejected")
ORDERS = {
    "confidence": "confidence ASC, id",
    "confidence-desc": "confidence DESC, id",
    "margin": "margin ASC, id",
    "entropy": "entropy DESC, id",
    "random": "rand, id",
    "id": "id",
    # Class-balanced margin: the least-margin item of each predicted class, then the second of
    # each, and so on. Every page spans the classes, so corrections are not all spent on one
    # confusable pair. This SQL (a window function over every filtered row) defines the order;
    # Store.page computes the same order from each class's first rows (_balanced_page).
    "balanced-margin": "ROW_NUMBER() OVER (PARTITION BY pred ORDER BY margin, id), margin, id",
    # The same, but a class comes up in proportion to its expected number of errors (the sum
    # of 1 - confidence over its items), so easy classes give up turns to confusable ones.
    "weighted-margin": "ROW_NUMBER() OVER (PARTITION BY pred ORDER BY margin, id) * 1.0 / "
                       "(SUM(COALESCE(1 - confidence, 1)) OVER (PARTITION BY pred) + 1e-9), margin, id",
}
PAGE_COLUMNS = "id, pred, confidence, margin, entropy, status, label, reviewer, decided_at, teacher_run"
# Other names for an order, as in the active-learning literature.
ORDER_ALIASES = {"least-confidence": "confidence"}
DEFAULT_ORDER = "balanced-margin"  # what the review page and `review --simulate` use unless told
RUN_STATES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("queued", "running")


def world_size(config: dict) -> int:
    """The processes a run's config asks for: per machine times machines (1 but under torchrun)."""
    return int(config.get("nproc") or 1) * int(config.get("nnodes") or 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Every image: the labeled set, the unlabeled pool and the test set.
CREATE TABLE IF NOT EXISTS items (
    id INTEGER NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('labeled', 'pool', 'test')),
    row INTEGER NOT NULL,          -- index into images/<train|test>.pt
    source TEXT NOT NULL,
    label INTEGER,                 -- the human label (labeled and test items)
    hidden_label INTEGER,          -- true label of pool items, never used for training
    PRIMARY KEY (split, id)
);
-- One row per pool item: its latest pseudo-label and its current review decision.
-- Kept in one table so that review pages filter, sort and count on indexes alone.
CREATE TABLE IF NOT EXISTS pool (
    id INTEGER PRIMARY KEY,
    pred INTEGER,
    confidence REAL,
    margin REAL,
    entropy REAL,
    probs BLOB,                    -- float16 probability vector
    teacher_run TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    label INTEGER,                 -- the decided label (accepted: pred at the time; corrected: the new class)
    reviewer TEXT,
    decided_at REAL,
    rand INTEGER NOT NULL          -- fixed random key, for the 'random' order
);
CREATE INDEX IF NOT EXISTS pool_status_pred_conf ON pool (status, pred, confidence);
CREATE INDEX IF NOT EXISTS pool_pred_conf ON pool (pred, confidence);
CREATE INDEX IF NOT EXISTS pool_conf ON pool (confidence);
CREATE INDEX IF NOT EXISTS pool_status_conf ON pool (status, confidence);
CREATE INDEX IF NOT EXISTS pool_margin ON pool (margin);
CREATE INDEX IF NOT EXISTS pool_status_pred_margin ON pool (status, pred, margin, confidence);
CREATE INDEX IF NOT EXISTS pool_entropy ON pool (entropy);
CREATE INDEX IF NOT EXISTS pool_rand ON pool (rand);
-- The audit trail: one row per change of a decision; a batch is one user action.
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    old_status TEXT NOT NULL, old_label INTEGER,
    new_status TEXT NOT NULL, new_label INTEGER,
    reviewer TEXT, at REAL NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS history_batch ON history (batch);
CREATE INDEX IF NOT EXISTS history_item ON history (item_id);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,            -- teacher | student | pseudo-label
    state TEXT NOT NULL,
    device TEXT NOT NULL,
    pid INTEGER,
    config TEXT NOT NULL,          -- JSON of the run's config
    step INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    heartbeat REAL,
    ended REAL,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result TEXT,                   -- JSON: final evaluation
    earlier_seconds REAL NOT NULL DEFAULT 0  -- running time of the attempts before a resume
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,            -- train | eval | phase (what the run does between steps)
    step INTEGER NOT NULL,
    at REAL NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, step)
);
CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, reason TEXT NOT NULL);
-- Named, ordered lists of labeled or pool item ids (the map's selection), for the Review page.
CREATE TABLE IF NOT EXISTS selection (name TEXT NOT NULL, pos INTEGER NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (name, pos));
"""


def _now() -> float:
    return time.time()


class Store:
    """Thin, typed access to project.db. Safe to use from several processes, and from several
    threads (each thread gets its own connection, so one thread's transaction never takes in
    another's statements: the dashboard shares one Store between all its sessions)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False, timeout: float = 30.0):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{self.path} does not exist")
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        try:
            if not create:
                self._check_version()  # before any write, so that a foreign file is left as it was
            self.db.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            if create:
                self._create()
            self._migrate()
        except sqlite3.DatabaseError as e:
            self.close()
            raise StoreError(f"{self.path} is not a stcore project store ({e})") from e
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN ourselves, so each method is one explicit transaction.
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            # WAL + NORMAL: a commit survives a crash of the process; only power loss may drop the latest ones.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; BEGIN IMMEDIATE takes the write lock up front so that
        a writer waits (busy_timeout) instead of failing half-way with 'locked'.
        Inside another tx() it joins the outer transaction, so several decisions can be
        made all or nothing: `with store.tx(): store.decide(...); store.decide(...)`."""
        if self.db.in_transaction:
            yield self.db  # an exception propagates to the outer tx(), which rolls back
            return
        self.db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def _create(self) -> None:
        # One script with its own BEGIN/COMMIT: the schema appears whole or not at all.
        self.db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA}; INSERT OR IGNORE INTO meta VALUES "
                              f"('schema_version', '{SCHEMA_VERSION}'); COMMIT;")

    def _version(self) -> int:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not a stcore project store ({e})") from e
        if row is None:
            raise StoreError(f"{self.path} has no schema version; it was not made by stcore")
        return int(row[0])

    def _check_version(self) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, newer than this stcore "
                             f"understands ({SCHEMA_VERSION}); upgrade stcore to open it")
        if version < SCHEMA_VERSION and any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
            raise StoreError(f"{self.path} has schema version {version}, which this stcore (schema "
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
                    for stmt in MIGRATIONS[version]:
                        self.db.execute(stmt)
                except sqlite3.DatabaseError as e:  # the transaction rolls back: the store is as it was
                    raise StoreError(f"migrating {self.path} from schema version {version} failed ({e}); "
                                     f"the project is unchanged") from e
                version += 1
            self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # -- meta ---------------------------------------------------------------
    def set_meta(self, **values) -> None:
        with self.tx():
            for k, v in values.items():
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))

    def meta(self) -> dict:
        rows = self.db.execute("SELECT key, value FROM meta").fetchall()
        return {r["key"]: json.loads(r["value"]) for r in rows}

    # -- items --------------------------------------------------------------
    def add_items(self, split: str, ids: Sequence[int], rows: Sequence[int], sources: Sequence[str],
                  labels: Sequence[int | None], hidden: Sequence[int | None] | None = None,
                  *, seed: int = 0) -> None:
        """Insert items of one split; pool items also get their review row."""
        import random
        hidden = hidden if hidden is not None else [None] * len(ids)
        with self.tx():
            self.db.executemany(
                "INSERT INTO items (id, split, row, source, label, hidden_label) VALUES (?,?,?,?,?,?)",
                zip(ids, [split] * len(ids), rows, sources, labels, hidden))
            if split == "pool":
                rng = random.Random(seed)
                self.db.executemany("INSERT INTO pool (id, rand) VALUES (?, ?)",
                                    ((i, rng.getrandbits(62)) for i in ids))

    def items(self, split: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM items WHERE split=? ORDER BY row", (split,)).fetchall()

    def item_rows(self, split: str, ids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk in _chunks(list(ids), 900):
            q = f"SELECT id, row FROM items WHERE split=? AND id IN ({','.join('?' * len(chunk))})"
            out.update({r[0]: r[1] for r in self.db.execute(q, (split, *chunk))})
        return out

    def train_items(self, *, ids: Sequence[int] | None = None, rows: Sequence[int] | None = None) -> list[tuple]:
        """(item id, image row, split, label, status, confidence) of labeled and pool items, by
        id or by image row: label is the human label, else the decided one, else the
        pseudo-label; status is 'labeled' for the labeled set."""
        column, keys = ("i.id", ids) if ids is not None else ("i.row", rows)
        out: list[tuple] = []
        for chunk in _chunks([int(k) for k in keys or []], 900):
            out += [tuple(r) for r in self.db.execute(
                "SELECT i.id, i.row, i.split, COALESCE(i.label, p.label, p.pred), "
                "CASE WHEN i.split='labeled' THEN 'labeled' ELSE p.status END, p.confidence "
                "FROM items i LEFT JOIN pool p ON i.split='pool' AND p.id=i.id "
                f"WHERE i.split IN ('labeled','pool') AND {column} IN ({','.join('?' * len(chunk))})", chunk)]
        return out

    def set_skipped(self, skipped: Iterable[tuple[str, str]]) -> None:
        with self.tx():
            self.db.executemany("INSERT OR REPLACE INTO skipped VALUES (?, ?)", skipped)

    def skipped(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT path, reason FROM skipped ORDER BY path")]

    # -- pseudo-labels ------------------------------------------------------
    def write_predictions(self, rows: Iterable[tuple], *, reindex: bool = False) -> None:
        """rows: (pred, confidence, margin, entropy, probs_bytes, teacher_run, id).
        reindex: drop the pool's indexes and rebuild them after the update, in the same
        transaction. When most of the pool changes (a whole pseudo-labeling pass) one sorted
        rebuild is 5-10x faster than updating six indexes row by row."""
        with self.tx():
            indexes = self.db.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND "
                                      "tbl_name='pool' AND sql IS NOT NULL").fetchall() if reindex else []
            for name, _ in indexes:
                self.db.execute(f'DROP INDEX "{name}"')
            self.db.executemany(
                "UPDATE pool SET pred=?, confidence=?, margin=?, entropy=?, probs=?, teacher_run=? "
                "WHERE id=?", rows)
            for _, sql in indexes:
                self.db.execute(sql)

    def pool_order(self) -> tuple[list[int], list[int]]:
        """(ids, image rows) of the pool, in image-row order: what a pseudo-labeling pass reads."""
        rows = self.db.execute("SELECT id, row FROM items WHERE split='pool' ORDER BY row").fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    # -- what a run trains and is evaluated on --------------------------------
    def labeled_set(self) -> list[tuple[int, int]]:
        """(image row, label) of the initial labeled set, in row order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT row, label FROM items WHERE split='labeled' ORDER BY row")]

    def reviewed_set(self) -> list[tuple[int, int, str]]:
        """(image row, decided label, status) of accepted and corrected pool items, in row order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT i.row, p.label, p.status FROM pool p JOIN items i ON i.split='pool' AND i.id=p.id "
            "WHERE p.status IN ('accepted','corrected') ORDER BY i.row")]

    def human_labels(self) -> list[tuple[int, int, int, str]]:
        """(item id, image row, label, source) of every human label, in row order: the labeled set
        (source 'labeled') and accepted and corrected pool items (source: the status)."""
        return [tuple(r) for r in self.db.execute(
            "SELECT id, row, label, 'labeled' FROM items WHERE split='labeled' "
            "UNION ALL SELECT i.id, i.row, p.label, p.status FROM pool p JOIN items i ON i.split='pool' "
            "AND i.id=p.id WHERE p.status IN ('accepted','corrected') ORDER BY 2")]

    def human_labels_digest(self) -> str:
        """A fingerprint of the human labels (which items, which classes): it changes with any of them."""
        import hashlib
        return hashlib.sha256(repr([(i, c) for i, _, c, _ in self.human_labels()]).encode()).hexdigest()[:16]

    def unreviewed_set(self, *, pseudo_labeled_only: bool) -> list[tuple[int, bytes | None]]:
        """(image row, float16 probabilities or None) of pending pool items, in row order."""
        q = ("SELECT i.row, p.probs FROM pool p JOIN items i ON i.split='pool' AND i.id=p.id "
             "WHERE p.status='pending'" + (" AND p.pred IS NOT NULL" if pseudo_labeled_only else ""))
        return [tuple(r) for r in self.db.execute(q + " ORDER BY i.row")]

    def test_set(self) -> tuple[list[int], list[int]]:
        """(ids, labels) of the test items, in image-row order."""
        rows = self.db.execute("SELECT id, label FROM items WHERE split='test' ORDER BY row").fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def hidden_labels(self, ids: Sequence[int]) -> dict[int, int | None]:
        """The hidden true labels of pool items (None where unknown)."""
        out: dict[int, int | None] = {}
        for chunk in _chunks([int(i) for i in ids], 900):
            q = f"SELECT id, hidden_label FROM items WHERE split='pool' AND id IN ({','.join('?' * len(chunk))})"
            out.update({r[0]: r[1] for r in self.db.execute(q, chunk)})
        return out

    def split_counts(self) -> dict[str, int]:
        """Items per split (labeled, pool, test) and how many pool items are pseudo-labeled."""
        counts = {"labeled": 0, "pool": 0, "test": 0}
        counts.update(dict(self.db.execute("SELECT split, COUNT(*) FROM items GROUP BY split").fetchall()))
        counts["pseudo_labeled"] = self.db.execute("SELECT COUNT(*) FROM pool WHERE pred IS NOT NULL").fetchone()[0]
        return counts

    def pseudo_label_agreement(self, threshold: float = 0.9) -> tuple[int, int, int, int]:
        """Against hidden labels: (pseudo-labeled items with a hidden label, of them right,
        of them at least threshold confident, of those right)."""
        r = self.db.execute(
            "SELECT COUNT(*), SUM(p.pred = i.hidden_label), SUM(p.confidence >= ?), "
            "SUM(p.confidence >= ? AND p.pred = i.hidden_label) FROM pool p JOIN items i "
            "ON i.split='pool' AND i.id=p.id WHERE p.pred IS NOT NULL AND i.hidden_label IS NOT NULL",
            (threshold, threshold)).fetchone()
        return r[0], r[1] or 0, r[2] or 0, r[3] or 0

    def single_decisions(self) -> list[tuple[float, bool]]:
        """(the teacher's confidence, whether it was right) of pool items whose current decision,
        accepted or corrected, a person made on that item alone (a history batch of one item):
        bulk accepts would count the teacher as right by construction."""
        return [(r[0], r[1] == "accepted") for r in self.db.execute(
            "SELECT p.confidence, p.status FROM pool p JOIN history h ON h.item_id = p.id "
            "WHERE p.status IN ('accepted','corrected') AND p.confidence IS NOT NULL AND h.undone = 0 "
            "AND h.seq = (SELECT MAX(seq) FROM history WHERE item_id = p.id AND undone = 0) "
            "AND (SELECT COUNT(*) FROM history b WHERE b.batch = h.batch) = 1")]

    def hidden_agreement_by_item(self) -> list[tuple[float, bool]]:
        """(confidence, pseudo-label == hidden label) of every pseudo-labeled item with a hidden label."""
        return [(r[0], bool(r[1])) for r in self.db.execute(
            "SELECT p.confidence, p.pred = i.hidden_label FROM pool p JOIN items i ON i.split='pool' "
            "AND i.id=p.id WHERE p.pred IS NOT NULL AND i.hidden_label IS NOT NULL")]

    def export_rows(self) -> Iterator[tuple]:
        """For export, one tuple per item: (split, id, source, predicted class, decided label,
        status, the teacher's confidence, teacher run); the labeled set has status 'labeled'."""
        cur = self.db.cursor()
        cur.row_factory = None  # plain tuples: a third faster over 60,000 rows than sqlite3.Row
        for r in cur.execute("SELECT id, source, label FROM items WHERE split='labeled' ORDER BY id"):
            yield ("labeled", r[0], r[1], r[2], r[2], "labeled", None, None)
        # in the items index's (split, id) order: no sort
        for r in cur.execute("SELECT p.id, i.source, p.pred, p.label, p.status, p.confidence, p.teacher_run "
                             "FROM items i JOIN pool p ON p.id=i.id WHERE i.split='pool' ORDER BY i.id"):
            yield ("pool", *r)

    # -- review -------------------------------------------------------------
    @staticmethod
    def _where(classes=None, statuses=None, conf_min=None, conf_max=None, ids=None):
        clauses, params = [], []
        if classes:
            clauses.append(f"pred IN ({','.join('?' * len(classes))})")
            params += [int(c) for c in classes]
        if statuses:
            bad = set(statuses) - set(STATUSES)
            if bad:
                raise UsageError(f"unknown status {sorted(bad)}; use one of {', '.join(STATUSES)}")
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            params += list(statuses)
        if conf_min is not None and conf_min > 0:
            clauses.append("confidence >= ?")
            params.append(float(conf_min))
        if conf_max is not None and conf_max < 1:
            clauses.append("confidence <= ?")
            params.append(float(conf_max))
        if ids is not None:
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            params += [int(i) for i in ids]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def page(self, *, classes=None, statuses=None, conf_min=None, conf_max=None, ids=None,
             order: str = "confidence", offset: int = 0, limit: int = 50) -> list[dict]:
        """Pool rows (PAGE_COLUMNS) matching the filters, in an order of ORDERS, paged."""
        order = ORDER_ALIASES.get(order, order)
        if order not in ORDERS:
            raise UsageError(f"unknown order {order!r}; use one of {', '.join([*ORDERS, *ORDER_ALIASES])}")
        where, params = self._where(classes, statuses, conf_min, conf_max, ids)
        if order in ("balanced-margin", "weighted-margin"):
            return self._balanced_page(where, params, int(offset), int(limit), order == "weighted-margin",
                                       by_status=bool(statuses))
        q = f"SELECT {PAGE_COLUMNS} FROM pool{where} ORDER BY {ORDERS[order]} LIMIT ? OFFSET ?"
        return [dict(r) for r in self.db.execute(q, (*params, int(limit), int(offset)))]

    def _balanced_page(self, where: str, params: list, offset: int, limit: int, weighted: bool, *,
                       by_status: bool) -> list[dict]:
        """The balanced orders of ORDERS without sorting the whole filtered pool (seconds at a
        million items). Within its predicted class an item ranks by margin; an item on this page
        ranks within the first offset + limit of its class, so each class's first offset + limit
        rows (an index range) are merged by (rank in class, or rank / class weight; margin; id)."""
        if limit <= 0:
            return []
        n, cond = offset + limit, (where + " AND ") if where else " WHERE "
        if weighted:  # a class's weight: its expected number of errors, the sum of 1 - confidence
            weights = dict(self.db.execute(
                f"SELECT pred, SUM(COALESCE(1 - confidence, 1)) FROM pool{where} GROUP BY pred", params).fetchall())
            classes = list(weights)
        else:  # the classes present, found by seeking the index, one step each
            classes = [None] if self.db.execute(f"SELECT 1 FROM pool{cond}pred IS NULL LIMIT 1",
                                                params).fetchone() else []
            last = None
            while (last := self.db.execute(f"SELECT MIN(pred) FROM pool{cond}pred > ?",
                                           (*params, -2 ** 63 if last is None else last)).fetchone()[0]) is not None:
                classes.append(last)
        # Without statistics SQLite prefers a confidence range (then sorts the class by margin)
        # to reading the class in margin order off this index and stopping after n rows.
        table = "pool INDEXED BY pool_status_pred_margin" if by_status else "pool"
        keys = []
        for c in classes:
            q = (f"SELECT margin, id FROM {table}{cond}{'pred IS NULL' if c is None else 'pred = ?'} "
                 f"ORDER BY margin, id LIMIT ?")
            rows = self.db.execute(q, (*params, *(() if c is None else (c,)), n)).fetchall()
            # SQLite sorts NULL first: a NULL margin comes before any number.
            keys += [((rank + 1) * 1.0 / (weights[c] + 1e-9) if weighted else rank, m is not None, m or 0.0, i)
                     for rank, (m, i) in enumerate(rows)]
        keys.sort()
        ids = [k[3] for k in keys[offset:n]]
        rows = {r["id"]: dict(r) for part in _chunks(ids, 900) for r in self.db.execute(
            f"SELECT {PAGE_COLUMNS} FROM pool WHERE id IN ({','.join('?' * len(part))})", part)}
        return [rows[i] for i in ids]

    def count(self, *, classes=None, statuses=None, conf_min=None, conf_max=None) -> int:
        where, params = self._where(classes, statuses, conf_min, conf_max)
        return self.db.execute(f"SELECT COUNT(*) FROM pool{where}", params).fetchone()[0]

    def status_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for r in self.db.execute("SELECT status, COUNT(*) FROM pool GROUP BY status"):
            counts[r[0]] = r[1]
        return counts

    def class_counts(self) -> dict[str, dict[int, int]]:
        """Per class index: labeled items, pseudo-labeled pool items (by pred), and accepted and
        corrected items (by their decided label)."""
        out = {"labeled": {}, "pseudo": {}, "accepted": {}, "corrected": {}}
        out["labeled"] = dict(self.db.execute(
            "SELECT label, COUNT(*) FROM items WHERE split='labeled' GROUP BY label").fetchall())
        out["pseudo"] = dict(self.db.execute(
            "SELECT pred, COUNT(*) FROM pool WHERE pred IS NOT NULL GROUP BY pred").fetchall())
        for status, label, n in self.db.execute("SELECT status, label, COUNT(*) FROM pool WHERE status IN "
                                                "('accepted','corrected') GROUP BY status, label"):
            out[status][label] = n
        return out

    def next_batch(self) -> int:
        """The batch number the next decision gets; pass it to several decisions made in one
        tx() to make them one action for undo."""
        row = self.db.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM history").fetchone()
        return row[0]

    def decide(self, ids: Sequence[int], status: str, label: int | None = None, *,
               reviewer: str | None = None, batch: int | None = None) -> int:
        """Set the decision of items in one transaction. status 'accepted' takes each
        item's current prediction as its label; 'corrected' needs label; 'pending' resets.
        Returns the number of items changed. Unknown ids raise NotFound and change nothing."""
        if status not in STATUSES:
            raise UsageError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        if status == "corrected" and label is None:
            raise UsageError("a correction needs a class")
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        with self.tx():
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS sel (id INTEGER PRIMARY KEY)")
            self.db.execute("DELETE FROM temp.sel")
            self.db.executemany("INSERT OR IGNORE INTO temp.sel VALUES (?)", ((i,) for i in ids))
            missing = self.db.execute("SELECT id FROM temp.sel WHERE id NOT IN (SELECT id FROM pool) "
                                      "LIMIT 5").fetchall()
            if missing:
                raise NotFound(f"unknown pool item id(s): {', '.join(str(r[0]) for r in missing)}")
            if status == "accepted":
                bad = self.db.execute("SELECT id FROM pool WHERE id IN (SELECT id FROM temp.sel) "
                                      "AND pred IS NULL LIMIT 5").fetchall()
                if bad:
                    raise UsageError(f"item(s) {', '.join(str(r[0]) for r in bad)} have no pseudo-label "
                                     f"to accept; run pseudo-label first, or correct them with a class")
            return self._apply(status, label, reviewer, "id IN (SELECT id FROM temp.sel)", [], batch)

    def _apply(self, status: str, label: int | None, reviewer: str | None, where: str, params,
               batch: int | None = None) -> int:
        """Inside a transaction: log and apply a decision to the pool rows matching where."""
        new_label = {"accepted": "pred", "corrected": "?", "rejected": "NULL", "pending": "NULL"}[status]
        label_params = [label] if status == "corrected" else []
        batch, at = batch or self.next_batch(), _now()
        # Skip rows whose decision would not change, so undo and history stay meaningful.
        change = f"({where}) AND NOT (status = ? AND label IS {new_label})"
        cparams = [*params, status, *label_params]
        self.db.execute(
            f"INSERT INTO history (batch, item_id, old_status, old_label, new_status, new_label, reviewer, at) "
            f"SELECT ?, id, status, label, ?, {new_label}, ?, ? FROM pool WHERE {change}",
            [batch, status, *label_params, reviewer, at, *cparams])
        cur = self.db.execute(
            f"UPDATE pool SET status=?, label={new_label}, reviewer=?, decided_at=? WHERE {change}",
            [status, *label_params, reviewer, at, *cparams])
        return cur.rowcount

    def accept_above(self, threshold: float, *, classes=None, conf_max=None, reviewer=None) -> int:
        """Accept every pending, pseudo-labeled item with confidence >= threshold, in one transaction."""
        where, params = self._where(classes, ["pending"], None, conf_max)
        where = where[len(" WHERE "):] + " AND pred IS NOT NULL AND confidence >= ?"
        with self.tx():
            return self._apply("accepted", None, reviewer, where, [*params, float(threshold)])

    def relabel(self, ids: Sequence[int], label: int, *, reviewer: str | None = None,
                batch: int | None = None) -> int:
        """Give items of the initial labeled set another class, in one transaction, logged in the
        history (status 'labeled') so that undo reverts it. Returns the items changed."""
        ids = [int(i) for i in ids]
        with self.tx():
            known = {r[0]: r[1] for part in _chunks(ids, 900) for r in self.db.execute(
                f"SELECT id, label FROM items WHERE split='labeled' AND id IN ({','.join('?' * len(part))})", part)}
            missing = [i for i in ids if i not in known]
            if missing:
                raise NotFound(f"unknown labeled item id(s): {', '.join(map(str, missing[:5]))}")
            change = [i for i in dict.fromkeys(ids) if known[i] != label]
            batch, at = batch or self.next_batch(), _now()
            self.db.executemany(
                "INSERT INTO history (batch, item_id, old_status, old_label, new_status, new_label, reviewer, at) "
                "VALUES (?, ?, 'labeled', ?, 'labeled', ?, ?, ?)",
                [(batch, i, known[i], label, reviewer, at) for i in change])
            self.db.executemany("UPDATE items SET label=? WHERE split='labeled' AND id=?",
                                [(label, i) for i in change])
            return len(change)

    def undo(self) -> int:
        """Revert the most recent batch of decisions that is not yet undone."""
        with self.tx():
            row = self.db.execute("SELECT MAX(batch) FROM history WHERE undone=0").fetchone()
            if row[0] is None:
                return 0
            batch = row[0]
            cur = self.db.execute(
                "UPDATE pool SET status=h.old_status, label=h.old_label, decided_at=h.at "
                "FROM (SELECT item_id, old_status, old_label, at FROM history WHERE batch=? "
                "AND new_status != 'labeled') AS h WHERE pool.id = h.item_id", (batch,))
            relabeled = self.db.execute(
                "UPDATE items SET label=h.old_label FROM (SELECT item_id, old_label FROM history WHERE batch=? "
                "AND new_status = 'labeled') AS h WHERE items.split='labeled' AND items.id = h.item_id", (batch,))
            self.db.execute("UPDATE history SET undone=1 WHERE batch=?", (batch,))
            return cur.rowcount + relabeled.rowcount

    # -- selections and item lists -------------------------------------------
    def set_selection(self, name: str, ids: Sequence[int]) -> int:
        """Replace the named list of item ids (kept in order, each once); returns its length."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        with self.tx():
            self.db.execute("DELETE FROM selection WHERE name=?", (name,))
            self.db.executemany("INSERT INTO selection (name, pos, id) VALUES (?, ?, ?)",
                                ((name, k, i) for k, i in enumerate(ids)))
        return len(ids)

    def selection(self, name: str) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM selection WHERE name=? ORDER BY pos", (name,))]

    def rows_by_id(self, ids: Sequence[int]) -> list[dict]:
        """Review rows (PAGE_COLUMNS and 'split') of labeled and pool items, in the order of ids;
        a labeled item has status 'labeled', its label and no prediction. Unknown ids are left out."""
        ids = [int(i) for i in ids]
        found: dict[int, dict] = {}
        for part in _chunks(ids, 900):
            marks = ",".join("?" * len(part))
            found.update({r["id"]: {**dict(r), "split": "pool"} for r in self.db.execute(
                f"SELECT {PAGE_COLUMNS} FROM pool WHERE id IN ({marks})", part)})
            found.update({r[0]: {"id": r[0], "pred": None, "confidence": None, "margin": None, "entropy": None,
                                 "status": "labeled", "label": r[1], "reviewer": None, "decided_at": None,
                                 "teacher_run": None, "split": "labeled"} for r in self.db.execute(
                f"SELECT id, label FROM items WHERE split='labeled' AND id IN ({marks})", part)})
        return [found[i] for i in ids if i in found]

    def map_items(self) -> list[tuple]:
        """(id, image row, split, predicted class, confidence, status, human or decided label,
        hidden label) of every labeled and pool item, in image-row order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT i.id, i.row, i.split, p.pred, p.confidence, "
            "CASE WHEN i.split='labeled' THEN 'labeled' ELSE p.status END, COALESCE(i.label, p.label), "
            "i.hidden_label FROM items i LEFT JOIN pool p ON i.split='pool' AND p.id=i.id "
            "WHERE i.split IN ('labeled','pool') ORDER BY i.row")]

    def history(self, item_id: int | None = None, limit: int = 100) -> list[dict]:
        if item_id is None:
            q, p = "SELECT * FROM history ORDER BY seq DESC LIMIT ?", (limit,)
        else:
            q, p = "SELECT * FROM history WHERE item_id=? ORDER BY seq DESC LIMIT ?", (item_id, limit)
        return [dict(r) for r in self.db.execute(q, p)]

    def last_batch(self) -> dict | None:
        row = self.db.execute("SELECT batch, CASE MIN(new_status) WHEN 'labeled' THEN 'relabeled' "
                              "ELSE MIN(new_status) END AS new_status, COUNT(*) AS n, MAX(at) AS at FROM history "
                              "WHERE undone=0 GROUP BY batch ORDER BY batch DESC LIMIT 1").fetchone()
        return dict(row) if row else None

    # -- runs ---------------------------------------------------------------
    def _check_device_free(self, device: str, exclude: str | None = None) -> None:
        """Inside a transaction: DeviceBusy, naming the job, if another active run holds device,
        or one of its GPUs (a run on several holds them as 'cuda:0,cuda:1')."""
        mine = set(device.split(","))
        other = next((r for r in self.db.execute(
            "SELECT id, state, step, total, device FROM runs WHERE state IN ('queued','running') AND id IS NOT ? "
            "ORDER BY seq", (exclude,)) if mine & set(r["device"].split(","))), None)
        if other:
            raise DeviceBusy(f"device {other['device']} is busy with run {other['id']} ({other['state']}, "
                             f"step {other['step']}/{other['total']}); wait for it, cancel it "
                             f"(stcore cancel PROJECT {other['id']}) or choose another device")

    def create_run(self, role: str, device: str, config: dict, total: int, *,
                   busy_check: bool = True) -> str:
        """Insert a queued run. With busy_check, refuse (DeviceBusy naming the job) when
        another active run holds the same device; the check and insert are one transaction."""
        with self.tx():
            if busy_check:
                self._check_device_free(device)
            seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs").fetchone()[0]
            run_id = f"{role}-{seq}"
            self.db.execute("INSERT INTO runs (id, seq, role, state, device, config, total, created) "
                            "VALUES (?,?,?,?,?,?,?,?)",
                            (run_id, seq, role, "queued", device, json.dumps(config), total, _now()))
        return run_id

    def requeue(self, run_id: str, device: str) -> None:
        """Put a stopped run back in the queue (for resume), if its device is free; one transaction.
        The running time of the attempt that ended is added to earlier_seconds."""
        with self.tx():
            self._check_device_free(device, exclude=run_id)
            self.db.execute("UPDATE runs SET state='queued', cancel_requested=0, error=NULL, pid=NULL, "
                            "earlier_seconds = earlier_seconds + MAX(0, COALESCE(ended, heartbeat, started) "
                            "- COALESCE(started, ended, heartbeat, 0)), ended=NULL WHERE id=?", (run_id,))

    def running_run_of(self, pid: int) -> str | None:
        """The newest running run whose worker is process pid, if any."""
        row = self.db.execute("SELECT id FROM runs WHERE state='running' AND pid=? ORDER BY seq DESC",
                              (pid,)).fetchone()
        return row[0] if row else None

    def update_run(self, run_id: str, **fields) -> None:
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
        with self.tx():
            return self.db.execute(f"UPDATE runs SET {cols} WHERE {where}",
                                   (*fields.values(), *params)).rowcount == 1

    def run(self, run_id: str) -> dict:
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            known = [r[0] for r in self.db.execute("SELECT id FROM runs ORDER BY seq")]
            raise NotFound(f"no run {run_id!r}; runs here: {', '.join(known) or 'none yet'}")
        return _run_dict(row)

    def runs(self, role: str | None = None) -> list[dict]:
        if role:
            rows = self.db.execute("SELECT * FROM runs WHERE role=? ORDER BY seq", (role,))
        else:
            rows = self.db.execute("SELECT * FROM runs ORDER BY seq")
        return [_run_dict(r) for r in rows]

    def heartbeat(self, run_id: str, step: int, metrics: Sequence[tuple[str, int, dict]]) -> bool:
        """Write step, heartbeat and buffered metric rows in one transaction.
        Returns True when a cancel has been requested for the run."""
        with self.tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, kind, step, at, values_json) VALUES (?,?,?,?,?)",
                ((run_id, kind, s, _now(), json.dumps(v)) for kind, s, v in metrics))
            self.db.execute("UPDATE runs SET step=?, heartbeat=? WHERE id=?", (step, _now(), run_id))
            row = self.db.execute("SELECT cancel_requested FROM runs WHERE id=?", (run_id,)).fetchone()
        return bool(row and row[0])

    def truncate_metrics(self, run_id: str, after_step: int) -> None:
        with self.tx():
            self.db.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, after_step))

    def metrics(self, run_id: str, kind: str | None = None, after_step: int = -1) -> list[dict]:
        q = "SELECT kind, step, at, values_json FROM metrics WHERE run_id=? AND step>?"
        p: list = [run_id, after_step]
        if kind:
            q += " AND kind=?"
            p.append(kind)
        rows = self.db.execute(q + " ORDER BY kind, step", p)
        return [{"kind": r[0], "step": r[1], "at": r[2], **json.loads(r[3])} for r in rows]


def _run_dict(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d["config"]) if d["config"] else {}
    d["result"] = json.loads(d["result"]) if d["result"] else None
    return d


def _chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
