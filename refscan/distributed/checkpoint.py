"""`Checkpoint`: a job's planned and finished units and their entries, in SQLite, so a killed job resumes.

Every finished unit is recorded in one transaction together with the entries it found, the units it planned
and its request's state, so after a kill (SIGKILL included) the file holds a consistent cut: finished units
with all their entries, and every unit still to do (those in flight at the kill among them). The file names
the work it belongs to by a fingerprint of the requests and the non-secret options; other work, or a file
that is not a checkpoint, is a `CheckpointError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..backends.keyspace import KeyRange
from ..errors import CheckpointError, RefscanError
from ..manifest import ManifestEntry
from ..options import Options
from ..scan import ScanRequest
from ..uri import redact
from .units import Unit

FORMAT = "refscan-checkpoint-1"
FILE = "checkpoint.sqlite"
#: option fields left out of the fingerprint: secrets never reach the file, not even hashed
_SECRET = re.compile(r"key|secret|token|password|credential|sas|connection|header", re.IGNORECASE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (id INTEGER PRIMARY KEY, unit TEXT NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (unit INTEGER NOT NULL, request INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (request INTEGER PRIMARY KEY, state TEXT NOT NULL);
"""


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _public(value: Any) -> Any:
    """`value` (options) as plain JSON data: only the fields set to something else than their default (so a
    newer refscan with more options still knows its checkpoints), never secret-named ones."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        public = {
            f.name: _public(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not _SECRET.search(f.name) and getattr(value, f.name) != _default(f)
        }
        return {k: v for k, v in public.items() if v != {}}  # nested options that differ by secrets only
    if isinstance(value, (list, tuple)):
        return [_public(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _public(v) for k, v in value.items() if not _SECRET.search(str(k))}
    return value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)


def work_fingerprint(kind: str, requests: Sequence[ScanRequest], options: Options) -> str:
    work = {"kind": kind, "requests": [dataclasses.asdict(r) for r in requests], "options": _public(options)}
    return hashlib.sha256(json.dumps(work, sort_keys=True, default=repr).encode()).hexdigest()


def _unit_json(unit: Unit) -> str:
    return json.dumps(
        {"kind": unit.kind, "request": unit.request, "pages": unit.pages, "rng": dataclasses.asdict(unit.rng)}
        if unit.rng is not None
        else {"kind": unit.kind, "request": unit.request, "pages": unit.pages}
    )


def _unit(text: str) -> Unit:
    data = json.loads(text)
    rng = KeyRange(**data["rng"]) if data.get("rng") is not None else None
    return Unit(str(data["kind"]), int(data["request"]), rng, pages=int(data["pages"]))


class Checkpoint:
    """The checkpoint in folder `root` for the work `fingerprint` (created when absent)."""

    def __init__(self, root: str | Path, fingerprint: str, described: Sequence[str]) -> None:
        self.root = Path(root)
        self.path = self.root / FILE
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: every commit survives the process being killed; a power loss may roll back the last
            # few, whose units are then simply done again
            self.db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction():
                for statement in _SCHEMA.strip().split(";\n"):
                    self.db.execute(statement)
                if self.db.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0:
                    self._put_meta(fingerprint, described)
            meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except (sqlite3.Error, OSError) as exc:
            raise CheckpointError(f"{self.path}: not a usable refscan checkpoint ({exc})") from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{self.path}: not a refscan checkpoint")
        if meta.get("work") != fingerprint:
            was = ", ".join(json.loads(meta.get("described", "[]")))
            raise CheckpointError(
                f"{self.path} belongs to other work ({was or 'unknown'}); use another checkpoint folder, or "
                "remove it to start over"
            )
        self.finished = meta.get("finished") == "1"

    def _put_meta(self, fingerprint: str, described: Sequence[str]) -> None:
        rows = [("format", FORMAT), ("work", fingerprint), ("described", json.dumps([redact(d) for d in described]))]
        self.db.executemany("INSERT INTO meta VALUES (?, ?)", rows)

    def _transaction(self) -> sqlite3.Connection:
        """`with self._transaction():` one write transaction, committed on exit, rolled back on errors."""
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _damaged(self) -> Iterator[None]:
        """Whatever a damaged file makes reading it raise, as one `CheckpointError` naming the file."""
        try:
            yield
        except CheckpointError:
            raise
        except (sqlite3.Error, ValueError, KeyError, TypeError, AttributeError, RefscanError) as exc:
            raise CheckpointError(f"{self.path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None

    # -- reading -------------------------------------------------------------------------------------------------

    def pending(self) -> list[tuple[int, Unit]]:
        """The units still to do, in the order they were planned."""
        with self._damaged():
            rows = self.db.execute("SELECT id, unit FROM units WHERE state = 'pending' ORDER BY id").fetchall()
            return [(int(uid), _unit(text)) for uid, text in rows]

    def empty(self) -> bool:
        """Nothing planned yet (a new checkpoint)."""
        with self._damaged():
            return bool(self.db.execute("SELECT COUNT(*) FROM units").fetchone()[0] == 0)

    def states(self) -> dict[int, dict[str, Any]]:
        """Each request's saved state (a JSON object), by request number."""
        with self._damaged():
            states = {int(r): json.loads(s) for r, s in self.db.execute("SELECT request, state FROM requests")}
            if not all(isinstance(v, dict) for v in states.values()):
                raise ValueError("a request state is not a JSON object")
            return states

    def entries(self) -> Iterator[tuple[int, list[ManifestEntry]]]:
        """(request, entries) of every finished unit, in the order they were recorded."""
        with self._damaged():
            for request, data in self.db.execute("SELECT request, data FROM entries ORDER BY rowid"):
                yield int(request), [ManifestEntry.from_dict(e.pop("path"), e) for e in json.loads(data)]

    # -- writing -------------------------------------------------------------------------------------------------

    def plan(self, units: Sequence[Unit]) -> list[int]:
        """Record `units` to do; their ids."""
        with self._transaction():
            return self._add(units)

    def _add(self, units: Sequence[Unit]) -> list[int]:
        ids = []
        for unit in units:
            cursor = self.db.execute("INSERT INTO units (unit, state) VALUES (?, 'pending')", (_unit_json(unit),))
            ids.append(int(cursor.lastrowid or 0))
        return ids

    def record(
        self,
        done: int,
        request: int,
        entries: Sequence[ManifestEntry],
        planned: Sequence[Unit],
        state: dict[str, Any],
        dropped: Sequence[int] = (),
    ) -> list[int]:
        """Unit `done` finished with `entries`, planning `planned` (their ids are returned), `dropped` units
        are no longer wanted, and its request's state is `state`: all in one transaction."""
        with self._transaction():
            self.db.execute("UPDATE units SET state = 'done' WHERE id = ?", (done,))
            self.db.executemany("UPDATE units SET state = 'dropped' WHERE id = ?", [(u,) for u in dropped])
            if entries:
                data = json.dumps([{"path": e.path, **e.to_dict()} for e in entries], ensure_ascii=False)
                self.db.execute("INSERT INTO entries VALUES (?, ?, ?)", (done, request, data))
            ids = self._add(planned)
            self.db.execute("INSERT OR REPLACE INTO requests VALUES (?, ?)", (request, json.dumps(state)))
        return ids

    def finish(self) -> None:
        """Every unit is done: a rerun only reads the entries back."""
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('finished', '1')")
        self.finished = True
