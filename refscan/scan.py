"""The scan engine: URI → backend → ObjectMeta → ManifestEntry (docs/behaviour.md, URIs, Entries, Limits).

Policy lives here (single object vs folder, naming, `checksum=False`, `max_objects`); everything a scheme
means lives in its backend. A `Scanner` reuses one `Session` (one client per backend) across many URIs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType

from .backends import Backend
from .concurrency import gather_map
from .errors import NotFound, TooManyObjects
from .events import logger
from .manifest import ManifestEntry
from .meta import ObjectMeta
from .naming import folder_entry_path, object_path
from .options import Options
from .session import Session
from .sync import synchronous
from .uri import RefURI, redact

DEFAULT_MAX_OBJECTS = 10_000


@dataclass(frozen=True)
class ScanRequest:
    """One reference to scan, with the arguments of `Scanner.scan`."""

    uri: str
    name: str | None = None
    checksum: bool = True
    max_objects: int | None = None


def _entry(backend: type[Backend], uri: RefURI, path: str, meta: ObjectMeta) -> ManifestEntry:
    digest, extra = backend.encode(meta)
    return ManifestEntry(path=path, digest=digest, ref=backend.entry_ref(uri, meta), size=meta.size, extra=extra)


def _unchecked_entry(uri: RefURI, text: str, name: str | None) -> ManifestEntry:
    """`checksum=False`: no network; ref = digest = the URI as given (secrets redacted)."""
    path = object_path(uri, name)
    ref = redact(text)
    return ManifestEntry(path=path, digest=ref, ref=ref)


class Scanner:
    """Scans references with shared clients. Use `async with Scanner(options) as s:`, or pass the `session`
    of a larger operation (then the caller opens and closes it)."""

    def __init__(self, options: Options | None = None, *, session: Session | None = None) -> None:
        self._own = session is None
        self.session = session or Session(options)
        self.options = self.session.options

    async def __aenter__(self) -> Scanner:
        if self._own:
            await self.session.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._own:
            await self.session.__aexit__(exc_type, exc, tb)

    async def iter_scan(
        self, uri: str, *, name: str | None = None, checksum: bool = True, max_objects: int | None = None
    ) -> AsyncIterator[ManifestEntry]:
        """Entries for `uri` as they are found. May yield entries before raising `TooManyObjects`."""
        ref = RefURI.parse(uri)
        limit = DEFAULT_MAX_OBJECTS if max_objects is None else max_objects
        if limit < 0:
            raise ValueError(f"max_objects must be >= 0, got {limit}")
        if not checksum:
            yield _unchecked_entry(ref, uri, name)
            return
        kind = ref.backend
        # without folders a URI is one object: its name must be known before any request
        path = None if kind.folders else object_path(ref, name)
        backend = await self.session.backend(ref.scheme)
        log = logger().bind(uri=str(ref))
        started = time.perf_counter()
        if not ref.is_folder:
            try:
                meta = await backend.stat(ref)
            except NotFound:
                if not kind.folders or ref.version is not None:
                    raise
            else:
                log.debug("scan.object", elapsed=round(time.perf_counter() - started, 4))
                yield _entry(kind, ref, path or object_path(ref, name), meta)
                return
        folder = ref.folder()
        count = 0
        async with aclosing(backend.list(folder, limit + 1)) as batches:  # closed here, even when abandoned
            async for batch in batches:
                count += len(batch)
                if count > limit:
                    raise TooManyObjects(
                        f"Exceeded {limit} objects under {folder}: nothing was added. "
                        f"Raise the limit with max_objects= (CLI: --max-objects) or reference a narrower prefix."
                    )
                for meta in batch:
                    yield _entry(kind, folder, folder_entry_path(folder, meta.key, name), meta)
        if count == 0:
            raise NotFound(f"{ref}: no such object, and no objects under {folder}")
        log.debug("scan.folder", objects=count, elapsed=round(time.perf_counter() - started, 4))

    async def scan(
        self,
        uri: str,
        *,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
        on_entry: Callable[[ManifestEntry], object] | None = None,
    ) -> list[ManifestEntry]:
        """All entries for `uri`, sorted by path; raises instead of returning a partial list. `on_entry` is
        called with each entry as it is found (progress)."""
        entries = []
        async for entry in self.iter_scan(uri, name=name, checksum=checksum, max_objects=max_objects):
            entries.append(entry)
            if on_entry is not None:
                on_entry(entry)
        entries.sort(key=lambda e: e.path)
        return entries

    async def scan_many(
        self, requests: Iterable[ScanRequest | str], *, on_entry: Callable[[ManifestEntry], object] | None = None
    ) -> list[list[ManifestEntry]]:
        """Scan many references concurrently; each result sorted by path, in request order. The first failure
        cancels the rest and is raised. `on_entry` is called with each entry as it is found (progress)."""
        reqs: Sequence[ScanRequest] = [r if isinstance(r, ScanRequest) else ScanRequest(r) for r in requests]

        async def one(r: ScanRequest) -> list[ManifestEntry]:
            return await self.scan(
                r.uri, name=r.name, checksum=r.checksum, max_objects=r.max_objects, on_entry=on_entry
            )

        return await gather_map(one, reqs)


async def iter_scan(
    uri: str,
    *,
    name: str | None = None,
    checksum: bool = True,
    max_objects: int | None = None,
    options: Options | None = None,
) -> AsyncIterator[ManifestEntry]:
    """Stream the entries for `uri` (see `Scanner.iter_scan`) with a scanner of its own."""
    async with Scanner(options) as scanner:
        async for entry in scanner.iter_scan(uri, name=name, checksum=checksum, max_objects=max_objects):
            yield entry


async def ascan(
    uri: str,
    *,
    name: str | None = None,
    checksum: bool = True,
    max_objects: int | None = None,
    options: Options | None = None,
) -> list[ManifestEntry]:
    """The entries for `uri`, sorted by path (see `Scanner.scan`)."""
    async with Scanner(options) as scanner:
        return await scanner.scan(uri, name=name, checksum=checksum, max_objects=max_objects)


scan = synchronous(ascan)
