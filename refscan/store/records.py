"""What the store returns: logged versions, their files, and lineage rows (frozen values), and how a
version is read from its rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..manifest import Manifest, ManifestEntry

LATEST = "latest"  # the alias of the newest version, computed, never stored


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


def load_version(conn: sqlite3.Connection, version_id: int) -> ArtifactVersion:
    """The version with row id `version_id` (which must exist), read in the caller's transaction."""
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
    manifest = Manifest(ManifestEntry(path=p, digest=d, ref=r, size=s, extra=json.loads(x)) for p, d, r, s, x in rows)
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
