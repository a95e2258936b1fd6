"""Drop-in for `wandb.Artifact.add_reference`: scan with refscan, add W&B manifest entries (docs/wandb.md).

    from refscan.integrations.wandb import add_reference
    add_reference(artifact, "s3://bucket/prefix")        # instead of artifact.add_reference("s3://bucket/prefix")

Entries are `wandb.sdk.artifacts.artifact_manifest_entry.ArtifactManifestEntry` objects with the fields W&B's
own storage handlers write (path, ref, digest, size, extra.etag, extra.versionID; GCS generations as int), so
W&B's download code (`load_path`) accepts them. Where W&B 0.31 is wrong (sibling prefixes,
zero-byte S3 files, empty folders, truncation at max_objects, explicit S3 versions, GCS bucket roots), refscan's
behaviour wins; docs/wandb.md lists every deliberate difference.

Every call is all-or-nothing: the scan finishes and every new path is checked against the artifact before
the first entry is added. References refscan cannot read (schemes without a refscan backend, entries of other
artifacts) are passed to W&B's own `add_reference` unchanged. Azure blob URLs are refscan's (`az` backend):
their entries carry the fields W&B's Azure handler writes (ref `<account URL>/<container>/<blob>`, digest =
ETag, `extra.etag`, `extra.versionID`), plus `extra.contentMD5` when the blob has one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio

from ..backends import backend_class
from ..errors import InvalidURI, MissingDependency, PathConflict, RefscanError, UnsupportedScheme
from ..manifest import ManifestEntry
from ..naming import check_clashes, parent_folders
from ..options import Options
from ..scan import Scanner, ScanRequest
from ..sync import synchronous

try:
    import wandb
    from wandb.sdk.artifacts.artifact_manifest_entry import ArtifactManifestEntry
    from wandb.sdk.lib.paths import LogicalPath
except ImportError as exc:  # pragma: no cover - exercised by a test that hides wandb
    raise MissingDependency(
        f"refscan.integrations.wandb needs the 'wandb' package ({exc.name or exc}): pip install 'refscan[wandb]'"
    ) from exc

__all__ = [
    "aadd_reference",
    "aadd_references",
    "add_reference",
    "add_references",
    "to_wandb_entry",
]

# -- conversion ---------------------------------------------------------------------------------------------


def to_wandb_entry(entry: ManifestEntry) -> ArtifactManifestEntry:
    """The W&B manifest entry for a refscan entry (same path, ref, digest, size and extra)."""
    extra = {k: v for k, v in entry.extra.items() if v is not None}
    return ArtifactManifestEntry(
        path=LogicalPath(entry.path), digest=entry.digest, ref=entry.ref, size=entry.size, extra=extra
    )


# -- what refscan handles -----------------------------------------------------------------------------------


def _delegated(uri: str | ArtifactManifestEntry) -> bool:
    """True when W&B, not refscan, should read `uri`: another artifact's entry, a scheme refscan has no
    backend for (W&B tracks those by URI), or a URL its backend leaves to W&B (`Backend.delegated_to_wandb`)."""
    if not isinstance(uri, str):
        return True
    scheme = urlsplit(uri).scheme.lower()
    if len(scheme) <= 1:
        return False
    try:
        return backend_class(scheme).delegated_to_wandb(uri)
    except UnsupportedScheme:
        return True


def _check_is_uri(uri: str) -> None:
    """Like W&B, a reference must be a URI (`file://` for local files), not a bare path."""
    if len(urlsplit(uri).scheme) <= 1:  # no scheme, or a Windows drive letter
        raise InvalidURI(f"References must be URIs. To reference a local file, use file:// (got {uri!r})")


# -- artifact state and the all-or-nothing commit -----------------------------------------------------------


def _add_reference_probe(artifact: Any) -> None:
    """Stand-in for `Artifact.add_reference` so W&B's own guard names that method in its error."""


_add_reference_probe.__qualname__ = "Artifact.add_reference"


def _check_can_add(artifact: Any) -> None:
    """Raise W&B's own error when `artifact` may not take new entries (finalized / logged).

    Uses the guard of the installed W&B: `artifact._ensure_can_add()` (W&B < 0.20), else the
    `ensure_not_finalized` decorator that guards `Artifact.add_reference` (W&B 0.20+, including 0.31).
    """
    guard = getattr(artifact, "_ensure_can_add", None)
    if callable(guard):
        guard()
        return
    try:
        from wandb.sdk.artifacts._validators import ensure_not_finalized
    except ImportError:  # pragma: no cover - a W&B without either guard
        if getattr(artifact, "_final", False):
            raise RefscanError(f"artifact {getattr(artifact, 'name', '?')!r} is finalized: log a new version") from None
        return
    ensure_not_finalized(_add_reference_probe)(artifact)


@dataclass(frozen=True)
class _Path:
    path: str
    digest: str


class _Existing:
    """The paths of a W&B manifest as the clash rule reads them (`refscan.naming.TakenPaths`)."""

    def __init__(self, entries: dict[str, Any]) -> None:
        self.entries = entries
        self.folders = {folder for path in entries for folder in parent_folders(path)}

    def digest_at(self, path: str) -> str | None:
        entry = self.entries.get(path)
        return str(entry.digest) if entry is not None else None

    def is_folder(self, path: str) -> bool:
        return path in self.folders


def _commit(artifact: Any, batches: Sequence[Sequence[ManifestEntry]]) -> list[list[ArtifactManifestEntry]]:
    """Add every entry of every batch to `artifact`'s manifest, or none.

    Like W&B, an entry whose digest equals the one already at its path replaces it; a different digest raises
    `PathConflict` (a `ValueError`, with W&B's message). Unlike W&B, a path that would be both a file and a
    folder (`obj` beside `obj/inner.txt`) is refused too: no download could hold both.
    """
    _check_can_add(artifact)
    manifest = artifact.manifest
    existing: dict[str, Any] = manifest.entries
    out = [[to_wandb_entry(e) for e in batch] for batch in batches]
    staged: dict[str, ArtifactManifestEntry] = {}
    for entry in (e for batch in out for e in batch):
        path = str(entry.path)
        prior = staged.get(path) or existing.get(path)
        if prior is not None and prior.digest != entry.digest:
            holder = "the artifact already has" if path in existing else "another reference in this call has"
            raise PathConflict(
                f"Cannot add the same path twice: {path!r} ({holder} digest {prior.digest!r} there, "
                f"the new one is {entry.digest!r}); pass a different name="
            )
        staged[path] = entry
    fresh = [_Path(path, entry.digest) for path, entry in staged.items() if path not in existing]
    check_clashes(fresh, _Existing(existing), where="in the artifact")
    before = dict(existing)
    try:
        for entry in staged.values():
            manifest.add_entry(entry)
    except BaseException:  # W&B's own validation refused an entry: leave the manifest as it was
        existing.clear()
        existing.update(before)
        raise
    return out


# -- public API ---------------------------------------------------------------------------------------------


async def aadd_reference(
    artifact: wandb.Artifact,
    uri: str | ArtifactManifestEntry,
    name: str | os.PathLike[str] | None = None,
    checksum: bool = True,
    max_objects: int | None = None,
    options: Options | None = None,
) -> list[ArtifactManifestEntry]:
    """Drop-in for `artifact.add_reference(uri, name, checksum, max_objects)`, scanned by refscan.

    Returns the W&B entries added, in path order. Raises refscan errors (`NotFound`, `TooManyObjects`,
    `AccessDenied`, `PathConflict`, ...) or W&B's own error for a finalized artifact; on any error the
    artifact is unchanged. `max_objects=None` means refscan's default, 10,000 (W&B's is 10,000,000).
    `options` configures refscan (endpoints, credentials, concurrency); without it the environment W&B reads
    applies (AWS_S3_ENDPOINT_URL, AWS_REGION, STORAGE_EMULATOR_HOST, ...).
    """
    if _delegated(uri):  # W&B's own, blocking add_reference: run it off the event loop
        added = await anyio.to_thread.run_sync(
            lambda: artifact.add_reference(uri, name=name, checksum=checksum, max_objects=max_objects)
        )
        return list(added)
    assert isinstance(uri, str)  # _delegated took every non-string
    _check_is_uri(uri)
    _check_can_add(artifact)  # fail before any request
    async with Scanner(options) as scanner:
        entries = await scanner.scan(
            uri, name=os.fspath(name) if name is not None else None, checksum=checksum, max_objects=max_objects
        )
    return _commit(artifact, [entries])[0]


add_reference = synchronous(aadd_reference)


def _requests(uris_or_requests: Iterable[str | ScanRequest]) -> list[ScanRequest]:
    requests = [r if isinstance(r, ScanRequest) else ScanRequest(r) for r in uris_or_requests]
    for r in requests:
        if _delegated(r.uri):
            raise InvalidURI(
                f"{r.uri!r} is read by W&B itself, not refscan: add it with add_reference() or artifact.add_reference()"
            )
        _check_is_uri(r.uri)
    return requests


async def aadd_references(
    artifact: wandb.Artifact,
    uris_or_requests: Iterable[str | ScanRequest],
    options: Options | None = None,
) -> list[list[ArtifactManifestEntry]]:
    """Add many references (URIs, or `refscan.ScanRequest`s carrying name/checksum/max_objects) at once.

    One `Scanner` (shared clients, bounded concurrency) scans them all concurrently; if any scan fails or any
    two entries conflict, nothing is added. Returns the W&B entries of each reference, in request order.
    """
    requests = _requests(uris_or_requests)
    _check_can_add(artifact)
    async with Scanner(options) as scanner:
        results = await scanner.scan_many(requests)
    return _commit(artifact, results)


add_references = synchronous(aadd_references)
