"""`Store`: the embedded versioned artifact registry, one SQLite file plus content-addressed objects (SPEC §9).

Layout under the root (`Store(root)`, else `$REFSCAN_HOME`, else `./.refscan`):
- `refscan.db`: SQLite in WAL mode; tables `artifacts` (name → type), `versions`, `entries`, `aliases`,
  and `groups` / `group_entries` for pending parallel-writer versions;
- `objects/<2 hex>/<md5 hex>`: the bytes of local files added with add_file/add_dir/new_file, written
  atomically on `log`/`upsert`, so a logged version never depends on its source files.

Every change is one `BEGIN IMMEDIATE` transaction, retried while another process holds the write lock, so
any number of threads and processes may share a root without losing writes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from .artifact import Artifact, validate_name
from .errors import InvalidName, InvalidURI, NotFound, PathConflict, RefscanError
from .manifest import Manifest, ManifestEntry, manifest_digest
from .naming import parent_folders
from .options import Options
from .uri import RefURI

T = TypeVar("T")

SCHEMA_VERSION = 1
LATEST = "latest"
_VERSION_RE = re.compile(r"v(\d+)")
_COPY_CHUNK = 1 << 20
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


class TypeConflict(RefscanError, ValueError):
    """An artifact name logged with a type other than the one it was first logged with."""


class SealedGroup(RefscanError, ValueError):
    """An upsert into a parallel-writer group that `finish` has already sealed."""


class SourceChanged(RefscanError, ValueError):
    """A local file added to an artifact changed or vanished before the artifact was logged; re-add it."""


@dataclass(frozen=True)
class ArtifactVersion:
    """One logged version. `aliases` includes `latest` on the newest version; `producer` is the free-form
    lineage record given to `log`/`finish` (e.g. `{"run": ..., "inputs": ["data:v0"]}`)."""

    name: str
    type: str
    version: int
    digest: str
    aliases: tuple[str, ...]
    manifest: Manifest = field(repr=False)
    producer: dict[str, Any]
    created_at: str
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """`name:vN`."""
        return f"{self.name}:v{self.version}"


@dataclass(frozen=True)
class FileRow:
    """One file of a version: `ref` is None for stored local files; `direct_url` is where its bytes are."""

    path: str
    ref: str | None
    size: int | None
    digest: str
    direct_url: str


@dataclass(frozen=True)
class LineageRow:
    """One edge of the lineage graph: version `ref` of `name` was produced by `producer`."""

    name: str
    type: str
    ref: str
    producer: dict[str, Any]
    created_at: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


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


class Store:
    """The local registry. `options` gives the S3/GCS endpoints used for `direct_url` (default: the
    environment, SPEC §2); `timeout` is how long (seconds) a call waits for another writer's lock before
    retrying, and again how long it keeps retrying before the `sqlite3.OperationalError` propagates.

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
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._connection()

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
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- writing ----------------------------------------------------------------------------------

    def log(self, artifact: Artifact, aliases: Iterable[str] = (), producer: dict[str, Any] | None = None) -> str:
        """Record `artifact` as the next version `name:vN` (from v0) and return that ref.

        The same manifest digest as an existing version returns that version (no new one; its producer is
        kept). The aliases move to the returned version. Raises `TypeConflict` when `name` was logged with
        another type, `SourceChanged` when a local file changed since it was added.
        """
        user_aliases = _user_aliases(aliases)
        entries = list(artifact._entries.values())
        digest = manifest_digest(entries)
        producer_json = json.dumps(producer or {}, sort_keys=True)
        metadata_json = json.dumps(artifact.metadata, sort_keys=True)
        self._store_objects(artifact)

        def tx(conn: sqlite3.Connection) -> str:
            self._claim_type(conn, artifact.name, artifact.type)
            row = conn.execute(
                "SELECT id, version FROM versions WHERE name = ? AND digest = ?", (artifact.name, digest)
            ).fetchone()
            if row is None:
                row = self._insert_version(
                    conn, artifact.name, digest, producer_json, artifact.description, metadata_json
                )
                conn.executemany(
                    "INSERT INTO entries (version_id, path, digest, ref, size, extra) VALUES (?, ?, ?, ?, ?, ?)",
                    ((row[0], *_entry_row(e)) for e in entries),
                )
            self._set_aliases(conn, artifact.name, row[0], user_aliases)
            return f"{artifact.name}:v{row[1]}"

        return self._run(tx, write=True)

    def upsert(self, artifact: Artifact, group: str) -> None:
        """Add `artifact`'s entries to the pending version of (`artifact.name`, `group`), creating it on
        first use. Safe from many processes at once. An entry equal to one already pending is a no-op; a
        different digest at a pending path, or a file/folder clash, raises `PathConflict` (nothing of this
        call is added). Raises `SealedGroup` after `finish`, `TypeConflict` on a type mismatch."""
        if not isinstance(group, str) or not group:
            raise InvalidName(f"invalid group {group!r}: use a non-empty string")
        entries = list(artifact._entries.values())
        self._store_objects(artifact)

        def tx(conn: sqlite3.Connection) -> None:
            self._check_type(conn, artifact.name, artifact.type)
            row = conn.execute(
                "SELECT id, type, sealed_version_id, description, metadata FROM groups WHERE name = ? AND grp = ?",
                (artifact.name, group),
            ).fetchone()
            if row is None:
                cursor = conn.execute(
                    "INSERT INTO groups (name, grp, type, created_at, description, metadata) VALUES (?, ?, ?, ?, ?, ?)",
                    (artifact.name, group, artifact.type, _now(), artifact.description, json.dumps(artifact.metadata)),
                )
                group_id = cursor.lastrowid
                assert group_id is not None
            else:
                group_id, group_type, sealed, description, metadata = row
                if sealed is not None:
                    raise SealedGroup(f"group {group!r} of {artifact.name!r} was finished; upsert into a new group")
                if group_type != artifact.type:
                    raise TypeConflict(
                        f"group {group!r} of {artifact.name!r} has type {group_type!r}, not {artifact.type!r}"
                    )
                conn.execute(
                    "UPDATE groups SET description = ?, metadata = ? WHERE id = ?",
                    (
                        artifact.description or description,
                        json.dumps({**json.loads(metadata), **artifact.metadata}),
                        group_id,
                    ),
                )
            for entry in entries:
                self._add_pending(conn, group_id, entry)

        self._run(tx, write=True)

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
                        "INSERT INTO entries (version_id, path, digest, ref, size, extra) "
                        "SELECT ?, path, digest, ref, size, extra FROM group_entries WHERE group_id = ?",
                        (version_id, group_id),
                    )
                else:
                    version_id = existing[0]
                conn.execute("UPDATE groups SET sealed_version_id = ? WHERE id = ?", (version_id, group_id))
                conn.execute("DELETE FROM group_entries WHERE group_id = ?", (group_id,))
            self._set_aliases(conn, name, version_id, user_aliases)
            (version,) = conn.execute("SELECT version FROM versions WHERE id = ?", (version_id,)).fetchone()
            return f"{name}:v{version}"

        return self._run(tx, write=True)

    # -- reading ----------------------------------------------------------------------------------

    def get(self, spec: str) -> ArtifactVersion:
        """The version `name:vN`, `name:latest`, `name:<alias>` (or `name`, meaning latest).
        Raises `NotFound` when there is no such version, `InvalidName` for a malformed name."""
        name, _, which = spec.rpartition(":")
        if not name:
            name, which = which, LATEST
        validate_name(name)
        return self._run(lambda conn: self._load(conn, self._resolve(conn, name, which)))

    def versions(self, name: str) -> list[ArtifactVersion]:
        """Every version of `name`, oldest first. Raises `NotFound` when `name` has none."""
        validate_name(name)

        def tx(conn: sqlite3.Connection) -> list[ArtifactVersion]:
            ids = conn.execute("SELECT id FROM versions WHERE name = ? ORDER BY version", (name,)).fetchall()
            if not ids:
                raise NotFound(f"no artifact named {name!r} in {self.root}")
            return [self._load(conn, version_id) for (version_id,) in ids]

        return self._run(tx)

    def files(self, spec: str) -> list[FileRow]:
        """The files of version `spec` (as in `get`) in path order, each with a direct URL: S3 virtual-host
        URL (path style under a configured endpoint) with `?versionId=`, GCS public URL with
        `?generation=`, the URL itself for http(s), the ref for file://, a file:// URL of the stored copy
        for local files."""
        return [FileRow(e.path, e.ref, e.size, e.digest, self._direct_url(e)) for e in self.get(spec).manifest]

    def lineage(self, name: str | None = None) -> list[LineageRow]:
        """Version → producer rows of `name` (of every artifact when None), by name then version.
        Raises `NotFound` when `name` has no versions."""
        query = (
            "SELECT v.name, a.type, v.version, v.producer, v.created_at "
            "FROM versions v JOIN artifacts a ON a.name = v.name "
            "WHERE ? IS NULL OR v.name = ? ORDER BY v.name, v.version"
        )
        rows = self._run(lambda conn: conn.execute(query, (name, name)).fetchall())
        if name is not None and not rows:
            raise NotFound(f"no artifact named {name!r} in {self.root}")
        return [LineageRow(n, t, f"{n}:v{v}", json.loads(p), c) for n, t, v, p, c in rows]

    def object_path(self, digest: str) -> Path:
        """Where the stored copy of a local file with base64-MD5 `digest` lives."""
        hex_digest = base64.b64decode(digest, validate=True).hex()
        return self.root / "objects" / hex_digest[:2] / hex_digest

    # -- internals --------------------------------------------------------------------------------

    def _direct_url(self, entry: ManifestEntry) -> str:
        if entry.ref is None:
            return self.object_path(entry.digest).as_uri()
        try:
            uri = RefURI.parse(entry.ref)
        except InvalidURI:
            return entry.ref
        if uri.scheme not in ("s3", "gs"):
            return entry.ref
        key = quote(uri.key, safe="/")
        version = uri.version or entry.extra.get("versionID")
        if uri.scheme == "s3":
            endpoint = self.options.s3.resolved_endpoint_url()
            url = (
                f"{endpoint.rstrip('/')}/{uri.bucket}/{key}"
                if endpoint
                else f"https://{uri.bucket}.s3.amazonaws.com/{key}"
            )
            param = "versionId"
        else:
            endpoint = self.options.gcs.resolved_endpoint_url() or "https://storage.googleapis.com"
            url = f"{endpoint.rstrip('/')}/{uri.bucket}/{key}"
            param = "generation"
        return f"{url}?{urlencode({param: version})}" if version is not None else url

    def _store_objects(self, artifact: Artifact) -> None:
        """Copy the artifact's local files into `objects/` (atomically; skipped when already stored),
        checking each copy against the digest recorded when the file was added."""
        for path, source in artifact._local_files.items():
            digest = artifact._entries[path].digest
            target = self.object_path(digest)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                h = hashlib.md5()
                with os.fdopen(fd, "wb") as dst:
                    try:
                        with open(source, "rb") as src:
                            while chunk := src.read(_COPY_CHUNK):
                                h.update(chunk)
                                dst.write(chunk)
                    except OSError as exc:
                        raise SourceChanged(f"{source} (artifact path {path!r}) cannot be read: {exc}") from None
                    dst.flush()
                    os.fsync(dst.fileno())
                if base64.b64encode(h.digest()).decode("ascii") != digest:
                    raise SourceChanged(f"{source} (artifact path {path!r}) changed since it was added; add it again")
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

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
    def _add_pending(conn: sqlite3.Connection, group_id: int, entry: ManifestEntry) -> None:
        prior = conn.execute(
            "SELECT digest FROM group_entries WHERE group_id = ? AND path = ?", (group_id, entry.path)
        ).fetchone()
        if prior is not None:
            if prior[0] != entry.digest:
                raise PathConflict(
                    f"path {entry.path!r} is already pending with digest {prior[0]!r} (new digest {entry.digest!r})"
                )
            return
        for folder in parent_folders(entry.path):
            if conn.execute(
                "SELECT 1 FROM group_entries WHERE group_id = ? AND path = ?", (group_id, folder)
            ).fetchone():
                raise PathConflict(f"path {folder!r} would be both a file and a folder (holding {entry.path!r})")
        # paths inside the folder `entry.path`: between "<path>/" and "<path>0" ('0' follows '/')
        if conn.execute(
            "SELECT 1 FROM group_entries WHERE group_id = ? AND path > ? AND path < ? LIMIT 1",
            (group_id, entry.path + "/", entry.path + "0"),
        ).fetchone():
            raise PathConflict(f"path {entry.path!r} would be both a file and a folder")
        conn.execute(
            "INSERT INTO group_entries (group_id, path, digest, ref, size, extra) VALUES (?, ?, ?, ?, ?, ?)",
            (group_id, *_entry_row(entry)),
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

    @staticmethod
    def _load(conn: sqlite3.Connection, version_id: int) -> ArtifactVersion:
        name, type_, version, digest, created_at, producer, description, metadata, newest = conn.execute(
            "SELECT v.name, a.type, v.version, v.digest, v.created_at, v.producer, v.description, v.metadata, "
            "(SELECT MAX(version) FROM versions WHERE name = v.name) "
            "FROM versions v JOIN artifacts a ON a.name = v.name WHERE v.id = ?",
            (version_id,),
        ).fetchone()
        aliases = [
            a for (a,) in conn.execute("SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (version_id,))
        ]
        if version == newest:
            aliases.insert(0, LATEST)
        rows = conn.execute(
            "SELECT path, digest, ref, size, extra FROM entries WHERE version_id = ? ORDER BY path", (version_id,)
        )
        manifest = Manifest(
            ManifestEntry(path=p, digest=d, ref=r, size=s, extra=json.loads(x)) for p, d, r, s, x in rows
        )
        return ArtifactVersion(
            name=name,
            type=type_,
            version=version,
            digest=digest,
            aliases=tuple(aliases),
            manifest=manifest,
            producer=json.loads(producer),
            created_at=created_at,
            description=description,
            metadata=json.loads(metadata),
        )

    # -- transactions -----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This process's connection (call with the lock held); opens it and creates the schema first."""
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.db_path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA foreign_keys = ON")
            self._transact(conn, self._create_schema, write=True)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > SCHEMA_VERSION:
            raise RefscanError(f"{self.db_path} was written by a newer refscan (schema {found}); upgrade refscan")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        with self._lock:
            return self._transact(self._connection(), fn, write=write)

    def _transact(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """`fn(conn)` in one transaction (`BEGIN IMMEDIATE` for writes), committed, or rolled back on error."""

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
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)
