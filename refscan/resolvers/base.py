"""The resolver contract: what the scan, verify and download engines need from a storage backend.

A resolver knows its backend and nothing about artifacts, naming or manifests. It owns its client for the
lifetime of an `async with` block, holds `limiter` only around single requests (never while waiting on other
requests of its own), and turns backend exceptions into the refscan error tree.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar

import anyio

from ..options import Options
from ..uri import RefURI


@dataclass(frozen=True)
class ObjectInfo:
    """One object as its backend reports it.

    - `key`: the object key (s3/gs), the absolute path (file) or the URL as given with
      credentials redacted (http).
    - `digest`: the fingerprint that becomes the manifest digest (SPEC §4 table, per scheme).
    - `size`: bytes, None when the backend does not say.
    - `version`: S3 version id / GCS generation as a string; None when unversioned ("null" on S3 is None).
    - `extra`: the manifest `extra` fields for this scheme (etag, versionID, md5, crc32c, lastModified, ...).
    """

    key: str
    digest: str
    size: int | None
    version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Resolver(abc.ABC):
    """Backend for one or more URI schemes. Use as `async with Resolver(options, limiter) as r:`."""

    schemes: ClassVar[tuple[str, ...]]

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        self.options = options
        self.limiter = limiter

    async def __aenter__(self) -> Resolver:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the backend client (called once)."""

    async def close(self) -> None:
        """Release the backend client (called once, also after errors)."""

    @abc.abstractmethod
    async def stat(self, uri: RefURI) -> ObjectInfo:
        """The single object `uri` names, at `uri.version` when pinned.

        Raises `NotFound` when there is no such object (or version), `AccessDenied`, `BackendError`.
        Never expands folders: `s3://b/data` is looked up as the object `data` only.
        """

    @abc.abstractmethod
    def list(self, folder: RefURI, limit: int) -> AsyncGenerator[list[ObjectInfo], None]:
        """The objects under `folder` (bucket root, or a key ending in `/`), in batches.

        Folder semantics are by path component (`data/` never matches `data2/x`). Folder markers
        (keys ending in `/` with size 0) are skipped; zero-byte files are kept. Objects listed carry
        their fingerprints (no request per object where the listing has them). At most `limit` objects
        are requested from the backend in total; the iterator ends after yielding `limit` objects.
        An empty or absent folder yields nothing; a missing bucket raises `NotFound`.
        """

    async def part_size(self, uri: RefURI) -> int | None:
        """The part size of a multipart upload (to recompute its ETag from the bytes); None when the backend
        has no such notion or the object is a single part."""
        return None

    @abc.abstractmethod
    def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        """The bytes of the object `uri` (at `uri.version` when pinned), streamed in chunks."""
