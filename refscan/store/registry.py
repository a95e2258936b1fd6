"""`Store`: the embedded versioned artifact registry, one SQLite file plus content-addressed objects.

Layout under the root (`Store(root)`, else `$REFSCAN_HOME`, else `./.refscan`): `refscan.db` (see `db`)
and `objects/<2 hex>/<md5 hex>`, the bytes of local files added with add_file/add_dir/new_file, copied on
`log`/`upsert` (see `objects`). The store reads an artifact only through `Artifact.draft()`. The
contract: docs/behaviour.md, "Artifacts and the store".
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..artifact import Artifact, validate_name
from ..errors import InvalidName, InvalidURI, NotFound, SealedGroup, TypeConflict
from ..manifest import ManifestEntry, manifest_digest
from ..naming import check_clashes
from ..options import Options
from ..references import recorded
from .db import Database
from .objects import object_path, store_copies
from .records import LATEST, ArtifactVersion, FileRow, LineageRow, load_version

_VERSION_RE = re.compile(r"v(\d+)")
_COLUMNS = "path, digest, ref, size, extra"  # of `entries` and `group_entries`, as `_entry_row` gives them


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _entry_row(entry: ManifestEntry) -> tuple[str, str, str | None, int | None, str]:
    return entry.path, entry.digest, entry.ref, entry.size, json.dumps(dict(entry.extra), sort_keys=True)


def _user_aliases(aliases: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated user aliases; `latest` is dropped (it is always computed)."""
    if isinstance(aliases, str):
        aliases = (aliases,)
    out: set[str] = set()
    for alias in aliases:
        validate_name(alias, "alias")
        if _VERSION_RE.fullmatch(alias):
            raise InvalidName(f"alias {alias!r} looks like a version number; pick another name")
        if alias != LATEST:
            out.add(alias)
    return tuple(sorted(out))


def _direct_url(entry: ManifestEntry, options: Options) -> str:
    """Where the bytes of the reference entry `entry` (its `ref` is set) can be fetched directly, as its
    backend says (pinned to the recorded version); the ref itself when it cannot be parsed."""
    assert entry.ref is not None
    try:
        rec = recorded(entry, options)
    except InvalidURI:
        return entry.ref
    return rec.backend.direct_url(rec.uri, options)


class _PendingPaths:
    """The paths of one pending group, as `naming.check_clashes` sees them (rows of `group_entries`)."""

    def __init__(self, conn: sqlite3.Connection, group_id: int) -> None:
        self.conn = conn
        self.group_id = group_id

    def digest_at(self, path: str) -> str | None:
        row = self.conn.execute(
            "SELECT digest FROM group_entries WHERE group_id = ? AND path = ?", (self.group_id, path)
        ).fetchone()
        return None if row is None else str(row[0])

    def is_folder(self, path: str) -> bool:
        # paths inside the folder `path`: between "<path>/" and "<path>0" ('0' follows '/')
        return (
            self.conn.execute(
                "SELECT 1 FROM group_entries WHERE group_id = ? AND path > ? AND path < ? LIMIT 1",
                (self.group_id, path + "/", path + "0"),
            ).fetchone()
            is not None
        )


T = TypeVar("T")
#: An entry as the store keeps it: path, digest, ref, size, extra (JSON text).
EntryRow = tuple[str, str, str | None, int | None, str]
#: Entry rows read from the database at a time by `Store.read_entries`.
ROWS_AT_ONCE = 16384


def _spec(spec: str) -> tuple[str, str]:
    """`name:which` (`which`: `vN`, `latest` or an alias; `name` alone means latest) as (name, which); raises
    `InvalidName` for a malformed name."""
    name, _, which = spec.rpartition(":")
    if not name:
        name, which = which, LATEST
    validate_name(name)
    return name, which


class Store:
    """The local registry. `options` gives the S3/GCS endpoints used for `direct_url` (default: the
    environment); `timeout` is how long (seconds) a call waits for another writer's lock before retrying,
    and again how long it keeps retrying before `StoreError` is raised.

    Safe to share between threads (one connection, guarded by a lock) and between processes (each opens
    its own connection; a Store inherited through `fork` reconnects in the child).
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, options: Options | None = None, timeout: float = 30.0
    ) -> None:
        if root is None:
            root = os.environ.get("REFSCAN_HOME") or ".refscan"
        self.root = Path(root).absolute()
        self.options = options or Options()
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = Database(self.db_path, timeout)
        self._db.open()

    @classmethod
    def existing(cls, root: str | os.PathLike[str] | None = None, *, options: Options | None = None) -> Store:
        """The store at `root` (default as above) if it has been created; `NotFound` otherwise (creates nothing)."""
        where = Path(root if root is not None else os.environ.get("REFSCAN_HOME") or ".refscan")
        if not (where / "refscan.db").is_file():
            raise NotFound(f"no refscan store at {where.absolute()} (set REFSCAN_HOME, or log an artifact first)")
        return cls(where, options=options)

    @property
    def db_path(self) -> Path:
        return self.root / "refscan.db"

    @property
    def timeout(self) -> float:
        return self._db.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._db.timeout = value

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection (the next call reopens it)."""
        self._db.close()

    # -- writing ----------------------------------------------------------------------------------

    def log(self, artifact: Artifact, aliases: Iterable[str] = (), producer: dict[str, Any] | None = None) -> str:
        """Record `artifact` as the next version `name:vN` (from v0) and return that ref.

        The same manifest digest as an existing version returns that version (no new one; its producer is
        kept). The aliases move to the returned version. Raises `TypeConflict` when `name` was logged with
        another type, `SourceChanged` when a local file changed since it was added.
        """
        draft = artifact.draft()
        user_aliases = _user_aliases(aliases)
        digest = draft.digest
        producer_json = json.dumps(producer or {}, sort_keys=True)
        metadata_json = json.dumps(dict(draft.metadata), sort_keys=True)
        store_copies(self.root / "objects", draft.local_files)

        def tx(conn: sqlite3.Connection) -> str:
            self._claim_type(conn, draft.name, draft.type)
            row = conn.execute(
                "SELECT id, version FROM versions WHERE name = ? AND digest = ?", (draft.name, digest)
            ).fetchone()
            if row is None:
                row = self._insert_version(conn, draft.name, digest, producer_json, draft.description, metadata_json)
                conn.executemany(
                    f"INSERT INTO entries (version_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    ((row[0], *_entry_row(e)) for e in draft.entries),
                )
            self._set_aliases(conn, draft.name, row[0], user_aliases)
            return f"{draft.name}:v{row[1]}"

        return self._db.run(tx, write=True)

    def upsert(self, artifact: Artifact, group: str) -> None:
        """Add `artifact`'s entries to the pending version of (`artifact.name`, `group`), creating it on
        first use. Safe from many processes at once. An entry equal to one already pending is a no-op; a
        different digest at a pending path, or a file/folder clash, raises `PathConflict` (nothing of this
        call is added). Raises `SealedGroup` after `finish`, `TypeConflict` on a type mismatch."""
        if not isinstance(group, str) or not group:
            raise InvalidName(f"invalid group {group!r}: use a non-empty string")
        draft = artifact.draft()
        metadata = dict(draft.metadata)
        store_copies(self.root / "objects", draft.local_files)

        def tx(conn: sqlite3.Connection) -> None:
            self._check_type(conn, draft.name, draft.type)
            row = conn.execute(
                "SELECT id, type, sealed_version_id, description, metadata FROM groups WHERE name = ? AND grp = ?",
                (draft.name, group),
            ).fetchone()
            if row is None:
                cursor = conn.execute(
                    "INSERT INTO groups (name, grp, type, created_at, description, metadata) VALUES (?, ?, ?, ?, ?, ?)",
                    (draft.name, group, draft.type, _now(), draft.description, json.dumps(metadata)),
                )
                group_id = cursor.lastrowid
                assert group_id is not None
            else:
                group_id, group_type, sealed, description, prior_metadata = row
                if sealed is not None:
                    raise SealedGroup(f"group {group!r} of {draft.name!r} was finished; upsert into a new group")
                if group_type != draft.type:
                    raise TypeConflict(f"group {group!r} of {draft.name!r} has type {group_type!r}, not {draft.type!r}")
                conn.execute(
                    "UPDATE groups SET description = ?, metadata = ? WHERE id = ?",
                    (
                        draft.description or description,
                        json.dumps({**json.loads(prior_metadata), **metadata}),
                        group_id,
                    ),
                )
            pending = _PendingPaths(conn, group_id)
            for entry in draft.entries:  # one at a time: each sees the rows inserted before it
                if check_clashes([entry], pending, where="pending"):
                    conn.execute(
                        f"INSERT INTO group_entries (group_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                        (group_id, *_entry_row(entry)),
                    )

        self._db.run(tx, write=True)

    def finish(self, name: str, group: str, aliases: Iterable[str] = (), producer: dict[str, Any] | None = None) -> str:
        """Seal the pending version of (`name`, `group`) as a new version and return its ref (the existing
        version when one has the same digest). Finishing a sealed group again returns the same ref (and
        moves `aliases` to it). Raises `NotFound` when nothing was upserted into the group."""
        user_aliases = _user_aliases(aliases)
        producer_json = json.dumps(producer or {}, sort_keys=True)

        def tx(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT id, type, sealed_version_id, description, metadata FROM groups WHERE name = ? AND grp = ?",
                (name, group),
            ).fetchone()
            if row is None:
                raise NotFound(f"no pending version of {name!r} in group {group!r}: upsert into it first")
            group_id, group_type, version_id, description, metadata = row
            if version_id is None:
                self._claim_type(conn, name, group_type)
                pending = conn.execute("SELECT path, digest FROM group_entries WHERE group_id = ?", (group_id,))
                digest = manifest_digest(ManifestEntry(path=p, digest=d) for p, d in pending)
                existing = conn.execute(
                    "SELECT id FROM versions WHERE name = ? AND digest = ?", (name, digest)
                ).fetchone()
                if existing is None:
                    version_id = self._insert_version(conn, name, digest, producer_json, description, metadata)[0]
                    conn.execute(
                        f"INSERT INTO entries (version_id, {_COLUMNS}) "
                        f"SELECT ?, {_COLUMNS} FROM group_entries WHERE group_id = ?",
                        (version_id, group_id),
                    )
                else:
                    version_id = existing[0]
                conn.execute("UPDATE groups SET sealed_version_id = ? WHERE id = ?", (version_id, group_id))
                conn.execute("DELETE FROM group_entries WHERE group_id = ?", (group_id,))
            self._set_aliases(conn, name, version_id, user_aliases)
            (version,) = conn.execute("SELECT version FROM versions WHERE id = ?", (version_id,)).fetchone()
            return f"{name}:v{version}"

        return self._db.run(tx, write=True)

    # -- reading ----------------------------------------------------------------------------------

    def get(self, spec: str) -> ArtifactVersion:
        """The version `name:vN`, `name:latest`, `name:<alias>` (or `name`, meaning latest).
        Raises `NotFound` when there is no such version, `InvalidName` for a malformed name."""
        name, which = _spec(spec)
        return self._db.run(lambda conn: load_version(conn, self._resolve(conn, name, which)))

    def read_entries(self, spec: str, consume: Callable[[Iterator[list[EntryRow]]], T]) -> T:
        """`consume(chunks)` of the entries of version `spec` (as in `get`) as rows `(path, digest, ref, size,
        extra JSON)` in path order, a few thousand at a time, inside one read transaction: a version of
        millions of entries read without an object each. Raises like `get`."""
        name, which = _spec(spec)

        def tx(conn: sqlite3.Connection) -> T:
            rows = conn.execute(
                "SELECT path, digest, ref, size, extra FROM entries WHERE version_id = ? ORDER BY path",
                (self._resolve(conn, name, which),),
            )
            return consume(iter(lambda: rows.fetchmany(ROWS_AT_ONCE), []))

        return self._db.run(tx)

    def versions(self, name: str) -> list[ArtifactVersion]:
        """Every version of `name`, oldest first. Raises `NotFound` when `name` has none."""
        validate_name(name)

        def tx(conn: sqlite3.Connection) -> list[ArtifactVersion]:
            ids = conn.execute("SELECT id FROM versions WHERE name = ? ORDER BY version", (name,)).fetchall()
            if not ids:
                raise NotFound(f"no artifact named {name!r} in {self.root}")
            return [load_version(conn, version_id) for (version_id,) in ids]

        return self._db.run(tx)

    def files(self, spec: str) -> list[FileRow]:
        """The files of version `spec` (as in `get`) in path order, each with a direct URL: S3 virtual-host
        URL (path style under a configured endpoint) with `?versionId=`, GCS URL with `?generation=`, the
        ref itself for http(s) and file://, a file:// URL of the stored copy for local files."""
        rows = []
        for e in self.get(spec).manifest:
            url = self.object_path(e.digest).as_uri() if e.ref is None else _direct_url(e, self.options)
            rows.append(FileRow(e.path, e.ref, e.size, e.digest, url))
        return rows

    def lineage(self, name: str | None = None) -> list[LineageRow]:
        """Version → producer rows of `name` (of every artifact when None), by name then version.
        Raises `NotFound` when `name` has no versions."""
        query = (
            "SELECT v.name, a.type, v.version, v.producer, v.created_at "
            "FROM versions v JOIN artifacts a ON a.name = v.name "
            "WHERE ? IS NULL OR v.name = ? ORDER BY v.name, v.version"
        )
        rows = self._db.run(lambda conn: conn.execute(query, (name, name)).fetchall())
        if name is not None and not rows:
            raise NotFound(f"no artifact named {name!r} in {self.root}")
        return [LineageRow(n, t, f"{n}:v{v}", json.loads(p), c) for n, t, v, p, c in rows]

    def object_path(self, digest: str) -> Path:
        """Where the stored copy of a local file with base64-MD5 `digest` lives."""
        return object_path(self.root / "objects", digest)

    # -- internals: one transaction's steps -------------------------------------------------------

    @staticmethod
    def _check_type(conn: sqlite3.Connection, name: str, type_: str) -> bool:
        """True when `name` exists with `type_`, False when it does not exist; raises `TypeConflict`."""
        row = conn.execute("SELECT type FROM artifacts WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] != type_:
            raise TypeConflict(f"artifact {name!r} has type {row[0]!r}; it cannot be logged as {type_!r}")
        return row is not None

    def _claim_type(self, conn: sqlite3.Connection, name: str, type_: str) -> None:
        if not self._check_type(conn, name, type_):
            conn.execute("INSERT INTO artifacts (name, type, created_at) VALUES (?, ?, ?)", (name, type_, _now()))

    @staticmethod
    def _insert_version(
        conn: sqlite3.Connection, name: str, digest: str, producer: str, description: str | None, metadata: str
    ) -> tuple[int, int]:
        """Insert the next version of `name`; returns (row id, version number)."""
        (version,) = conn.execute(
            "SELECT COALESCE(MAX(version), -1) + 1 FROM versions WHERE name = ?", (name,)
        ).fetchone()
        cursor = conn.execute(
            "INSERT INTO versions (name, version, digest, created_at, producer, description, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, version, digest, _now(), producer, description, metadata),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid, version

    @staticmethod
    def _set_aliases(conn: sqlite3.Connection, name: str, version_id: int, aliases: tuple[str, ...]) -> None:
        conn.executemany(
            "INSERT INTO aliases (name, alias, version_id) VALUES (?, ?, ?) "
            "ON CONFLICT (name, alias) DO UPDATE SET version_id = excluded.version_id",
            ((name, alias, version_id) for alias in aliases),
        )

    @staticmethod
    def _resolve(conn: sqlite3.Connection, name: str, which: str) -> int:
        """The row id of version `which` (`vN`, `latest` or an alias) of `name`; raises `NotFound`."""
        number = _VERSION_RE.fullmatch(which)
        if number is not None:
            row = conn.execute(
                "SELECT id FROM versions WHERE name = ? AND version = ?", (name, int(number.group(1)))
            ).fetchone()
        elif which == LATEST:
            row = conn.execute(
                "SELECT id FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
        else:
            row = conn.execute("SELECT version_id FROM aliases WHERE name = ? AND alias = ?", (name, which)).fetchone()
        if row is None:
            raise NotFound(f"no artifact version {name}:{which}")
        version_id: int = row[0]
        return version_id
