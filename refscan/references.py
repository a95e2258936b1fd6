"""A manifest entry's reference, read by its backend: what to look up, and what it should prove to be."""

from __future__ import annotations

from dataclasses import dataclass

from .backends import Backend
from .errors import InvalidURI
from .fingerprint import MULTIPART_ETAG, Fingerprint
from .manifest import ManifestEntry
from .options import Options
from .uri import RefURI


@dataclass(frozen=True)
class Recorded:
    """`uri`: the entry's ref, pinned to its recorded version where the backend's versions pin bytes;
    `backend`: its backend class; `fingerprint`: the evidence the entry records."""

    uri: RefURI
    backend: type[Backend]
    fingerprint: Fingerprint


def recorded(entry: ManifestEntry, options: Options | None = None) -> Recorded:
    """The entry's ref decoded by its backend (configured by `options`, default the environment); raises
    `InvalidURI` when it has none or cannot be parsed."""
    if entry.ref is None:
        raise InvalidURI(f"{entry.path}: entry has no external reference")
    uri = RefURI.parse(entry.ref, options)
    backend = uri.backend
    meta = backend.decode(uri.key, entry.digest, entry.size, entry.extra)
    return Recorded(backend.pin(uri, meta.version), backend, backend.fingerprint(meta))


def is_unchecked(entry: ManifestEntry) -> bool:
    """True for an entry recorded with checksum=False (ref = digest, nothing else)."""
    return entry.ref == entry.digest and entry.size is None and not entry.extra


async def part_size(backend: Backend, rec: Recorded) -> int | None:
    """The part size needed to recompute a recorded multipart ETag from the bytes (one lookup); None when
    the entry records none."""
    return await backend.part_size(rec.uri) if MULTIPART_ETAG in rec.fingerprint.kinds() else None
