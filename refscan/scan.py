"""The scan engine: URI → resolver → ObjectInfo → ManifestEntry (SPEC §3–§5).

Policy lives here (single object vs folder, naming, `checksum=False`, `max_objects`); backends live in
resolvers. A `Scanner` reuses one resolver (and so one client) per scheme across many URIs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from types import TracebackType

import anyio

from .errors import NotFound, TooManyObjects
from .events import logger
from .manifest import ManifestEntry
from .naming import folder_entry_path, object_path
from .options import Options
from .resolvers import ObjectInfo, Resolver, resolver_class
from .sync import run_sync
from .uri import RefURI, redact

DEFAULT_MAX_OBJECTS = 10_000


@dataclass(frozen=True)
class ScanRequest:
    """One reference to scan, with the arguments of `Scanner.scan`."""

    uri: str
    name: str | None = None
    checksum: bool = True
    max_objects: int | None = None


def _entry(uri: RefURI, path: str, info: ObjectInfo) -> ManifestEntry:
    ref = uri.object_ref() if uri.is_http else uri.child(info.key).object_ref()
    return ManifestEntry(path=path, digest=info.digest, ref=ref, size=info.size, extra=dict(info.extra))


def _unchecked_entry(uri: RefURI, text: str, name: str | None) -> ManifestEntry:
    """`checksum=False`: no network; ref = digest = the URI as given (secrets redacted)."""
    path = object_path(uri, name)
    ref = redact(text)
    return ManifestEntry(path=path, digest=ref, ref=ref)


class Scanner:
    """Scans references with shared clients. Use `async with Scanner(options) as s:`.

    Requests in flight are bounded by `options.concurrency` across everything this scanner does.
    """

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self.limiter = anyio.CapacityLimiter(self.options.concurrency)
        self._stack: AsyncExitStack | None = None
        self._resolvers: dict[type[Resolver], Resolver] = {}
        self._lock = anyio.Lock()

    async def __aenter__(self) -> Scanner:
        self._stack = AsyncExitStack()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        self._resolvers.clear()
        if stack is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()

    async def resolver(self, scheme: str) -> Resolver:
        """The open resolver for `scheme`, created on first use and closed with the scanner."""
        if self._stack is None:
            raise RuntimeError("use the Scanner inside 'async with Scanner(...) as scanner:'")
        cls = resolver_class(scheme)
        async with self._lock:
            resolver = self._resolvers.get(cls)
            if resolver is None:
                resolver = await self._stack.enter_async_context(cls(self.options, self.limiter))
                self._resolvers[cls] = resolver
        return resolver

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
        # a URL is never expanded: its name must be known before any request (a trailing '/' needs name=)
        http_path = object_path(ref, name) if ref.is_http else None
        resolver = await self.resolver(ref.scheme)
        log = logger().bind(uri=str(ref))
        started = time.perf_counter()
        if ref.is_http or not ref.is_folder:
            try:
                info = await resolver.stat(ref)
            except NotFound:
                if ref.is_http or ref.version is not None:
                    raise
            else:
                log.debug("scan.object", elapsed=round(time.perf_counter() - started, 4))
                yield _entry(ref, http_path or object_path(ref, name), info)
                return
        folder = ref.folder()
        count = 0
        async with aclosing(resolver.list(folder, limit + 1)) as batches:  # closed here, even when abandoned
            async for batch in batches:
                count += len(batch)
                if count > limit:
                    raise TooManyObjects(
                        f"Exceeded {limit} objects under {folder}: nothing was added. "
                        f"Raise the limit with max_objects= (CLI: --max-objects) or reference a narrower prefix."
                    )
                for info in batch:
                    yield _entry(folder, folder_entry_path(folder, info.key, name), info)
        if count == 0:
            raise NotFound(f"{ref}: no such object, and no objects under {folder}")
        log.debug("scan.folder", objects=count, elapsed=round(time.perf_counter() - started, 4))

    async def scan(
        self, uri: str, *, name: str | None = None, checksum: bool = True, max_objects: int | None = None
    ) -> list[ManifestEntry]:
        """All entries for `uri`, sorted by path; raises instead of returning a partial list."""
        entries = [e async for e in self.iter_scan(uri, name=name, checksum=checksum, max_objects=max_objects)]
        entries.sort(key=lambda e: e.path)
        return entries

    async def scan_many(self, requests: Iterable[ScanRequest | str]) -> list[list[ManifestEntry]]:
        """Scan many references concurrently; results in request order. The first failure cancels the rest
        and is raised."""
        reqs: Sequence[ScanRequest] = [r if isinstance(r, ScanRequest) else ScanRequest(r) for r in requests]
        results: list[list[ManifestEntry]] = [[] for _ in reqs]

        failures: list[Exception] = []

        async def one(i: int, r: ScanRequest) -> None:
            try:
                results[i] = await self.scan(r.uri, name=r.name, checksum=r.checksum, max_objects=r.max_objects)
            except Exception as exc:  # the first failure wins; the others are cancelled
                failures.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for i, r in enumerate(reqs):
                tg.start_soon(one, i, r)
        if failures:
            raise failures[0]
        return results


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


def scan(
    uri: str,
    *,
    name: str | None = None,
    checksum: bool = True,
    max_objects: int | None = None,
    options: Options | None = None,
) -> list[ManifestEntry]:
    """Synchronous `ascan`; safe to call while an event loop runs in this thread."""
    return run_sync(lambda: ascan(uri, name=name, checksum=checksum, max_objects=max_objects, options=options))
