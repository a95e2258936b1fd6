"""`Database`: the store's SQLite file, its schema, and transactions that survive other writers.

The file is in WAL mode; tables `artifacts` (name → type), `versions`, `entries`, `aliases`, and `groups` /
`group_entries` for pending parallel-writer versions. Every change is one `BEGIN IMMEDIATE` transaction,
retried while another process holds the write lock, so any number of threads and processes may share it
without losing writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import RefscanError, StoreError

T = TypeVar("T")

SCHEMA_VERSION = 1
_MAX_BACKOFF = 1.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS artifacts (
        name TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS versions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL REFERENCES artifacts (name),
        version INTEGER NOT NULL,
        digest TEXT NOT NULL,
        created_at TEXT NOT NULL,
        producer TEXT NOT NULL,
        description TEXT,
        metadata TEXT NOT NULL,
        UNIQUE (name, version),
        UNIQUE (name, digest))""",
    """CREATE TABLE IF NOT EXISTS entries (
        version_id INTEGER NOT NULL REFERENCES versions (id),
        path TEXT NOT NULL,
        digest TEXT NOT NULL,
        ref TEXT,
        size INTEGER,
        extra TEXT NOT NULL,
        PRIMARY KEY (version_id, path)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS aliases (
        name TEXT NOT NULL REFERENCES artifacts (name),
        alias TEXT NOT NULL,
        version_id INTEGER NOT NULL REFERENCES versions (id),
        PRIMARY KEY (name, alias))""",
    "CREATE INDEX IF NOT EXISTS aliases_by_version ON aliases (version_id)",
    """CREATE TABLE IF NOT EXISTS groups (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        grp TEXT NOT NULL,
        type TEXT NOT NULL,
        created_at TEXT NOT NULL,
        description TEXT,
        metadata TEXT NOT NULL,
        sealed_version_id INTEGER REFERENCES versions (id),
        UNIQUE (name, grp))""",
    """CREATE TABLE IF NOT EXISTS group_entries (
        group_id INTEGER NOT NULL REFERENCES groups (id),
        path TEXT NOT NULL,
        digest TEXT NOT NULL,
        ref TEXT,
        size INTEGER,
        extra TEXT NOT NULL,
        PRIMARY KEY (group_id, path)) WITHOUT ROWID""",
)


_TABLES = frozenset({"artifacts", "versions", "entries", "aliases", "groups", "group_entries"})


def _is_busy(exc: sqlite3.Error) -> bool:
    message = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message)


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """The one-line error for a database failure that retrying cannot cure, naming the file."""
    name = "_".join(str(getattr(exc, "sqlite_errorname", "")).split("_")[:2])  # SQLITE_IOERR_WRITE: SQLITE_IOERR
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return StoreError(f"{path} is not a usable refscan store ({exc}): restore it from a backup or move it away")
    if name in ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY"):
        return StoreError(f"{path}: cannot write the store ({exc}); nothing of this change was recorded")
    return StoreError(f"{path}: the store failed ({type(exc).__name__}: {exc})")


class Database:
    """The SQLite file at `path`, opened on first use (creating the schema) and again in a forked child.

    `timeout` (seconds) is how long a call waits for another writer's lock before retrying, and again how
    long it keeps retrying before `StoreError` is raised (as for every other SQLite failure). Safe to share
    between threads: one connection per process, used under a lock.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def open(self) -> None:
        """Connect now (creating the schema), rather than on the first `run`."""
        with self._lock:
            try:
                self._connection()
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from None

    def close(self) -> None:
        """Close this process's connection (the next `run` reopens it)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """`fn(conn)` in one transaction (`BEGIN IMMEDIATE` when `write`), committed, or rolled back when it
        raises. The whole transaction is retried while the database is busy, so `fn` must have no effects
        outside it."""
        with self._lock:
            try:
                return self._transact(self._connection(), fn, write=write)
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from None

    def _connection(self) -> sqlite3.Connection:
        """This process's connection (call with the lock held); opens it and creates the schema first."""
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                self._retrying(lambda: self._refuse_foreign(conn))  # before WAL mode rewrites the header
                self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL"))
                conn.execute("PRAGMA foreign_keys = ON")
                self._transact(conn, self._create_schema, write=True)
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """Raise `StoreError`, changing nothing, when the file is another program's SQLite database."""
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if found == 0 and tables - _TABLES:
            raise StoreError(f"{self.path} is an SQLite file of another program, not a refscan store; move it away")

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > SCHEMA_VERSION:
            raise RefscanError(f"{self.path} was written by a newer refscan (schema {found}); upgrade refscan")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    def _transact(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        def once() -> T:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retrying(once)

    def _retrying(self, call: Callable[[], T]) -> T:
        """`call()`, retried with backoff while SQLite reports the database locked/busy (after its own
        `timeout`-long busy wait), for up to another `timeout` seconds."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                return call()
            except sqlite3.Error as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)
