"""The scan engine: URI → backend → ObjectMeta → ManifestEntry (docs/behaviour.md, URIs, Entries, Limits).

Policy lives here (single object vs folder, naming, `checksum=False`, `max_objects`); everything a scheme
means lives in its backend. A `Scanner` reuses one `Session` (one client per backend) across many URIs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .backends import Backend
from .concurrency import gather_map
from .errors import NotFound, TooManyObjects
from .events import logger
from .manifest import EntryBatch, EntryList, ManifestEntry
from .meta import ObjectMeta
from .naming import folder_entry_path, object_path
from .options import Options
from .session import Session
from .sync import synchronous
from .uri import RefURI, redact

if TYPE_CHECKING:
    from .distributed import Executor
    from .inventory import Inventory

DEFAULT_MAX_OBJECTS = 10_000


@dataclass(frozen=True)
class ScanRequest:
    """One reference to scan, with the arguments of `Scanner.scan`."""

    uri: str
    name: str | None = None
    checksum: bool = True
    max_objects: int | None = None
    inventory: str | None = None


def _entry(backend: type[Backend], uri: RefURI, path: str, meta: ObjectMeta) -> ManifestEntry:
    digest, extra = backend.encode(meta)
    return ManifestEntry(path=path, digest=digest, ref=backend.entry_ref(uri, meta), size=meta.size, extra=extra)


async def _entry_lists(
    listing: AsyncGenerator[list[ObjectMeta], None], entry: Callable[[ObjectMeta], ManifestEntry]
) -> AsyncGenerator[EntryBatch, None]:
    """A backend's listing batches as entry batches (`entry`: the rule for one object)."""
    async with aclosing(listing) as batches:
        async for batch in batches:
            yield EntryList([entry(meta) for meta in batch])


def folder_entry(backend: type[Backend], folder: RefURI, meta: ObjectMeta, name: str | None) -> ManifestEntry:
    """The entry of object `meta` found under `folder`, named as a folder scan with `name` names it."""
    return _entry(backend, folder, folder_entry_path(folder, meta.key, name), meta)


def object_limit(max_objects: int | None) -> int:
    """The folder limit `max_objects` means (None: the default); negative raises `ValueError`."""
    limit = DEFAULT_MAX_OBJECTS if max_objects is None else max_objects
    if limit < 0:
        raise ValueError(f"max_objects must be >= 0, got {limit}")
    return limit


def too_many(limit: int, folder: RefURI) -> TooManyObjects:
    return TooManyObjects(
        f"Exceeded {limit} objects under {folder}: nothing was added. "
        f"Raise the limit with max_objects= (CLI: --max-objects) or reference a narrower prefix."
    )


def empty_folder(ref: RefURI) -> NotFound:
    return NotFound(f"{ref}: no such object, and no objects under {ref.folder()}")


def unchecked_entry(uri: RefURI, text: str, name: str | None) -> ManifestEntry:
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
        self._inventories: dict[str, Inventory] = {}

    async def __aenter__(self) -> Scanner:
        if self._own:
            await self.session.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for inventory in self._inventories.values():
            inventory.close()
        self._inventories.clear()
        if self._own:
            await self.session.__aexit__(exc_type, exc, tb)

    async def inventory(self, location: str) -> Inventory:
        """The inventory whose manifest is at `location` (URI or local path), opened once per scanner."""
        opened = self._inventories.get(location)
        if opened is None:
            from .inventory import Inventory  # pyarrow and the inventory readers only when asked for

            opened = self._inventories[location] = await Inventory.open(location, self.session)
        return opened

    def inventories_used(self) -> list[dict[str, Any]]:
        """The inventories this scanner read (location, creation time, bucket), in the order first opened."""
        return [inventory.describe() for inventory in self._inventories.values()]

    async def source(self, ref: RefURI, inventory: str | None) -> Backend | Inventory:
        """Where the objects of `ref` are looked up: its open backend, or the inventory at `inventory`."""
        return await self.session.backend(ref.scheme) if inventory is None else await self.inventory(inventory)

    @staticmethod
    async def lookup(ref: RefURI, name: str | None, source: Backend | Inventory) -> ManifestEntry | None:
        """The entry of the single object `ref` names, or None when it names a folder to list: a URI that
        is not folder-shaped is the object when it exists (the object wins over a folder of that name), a
        pinned version or a backend without folders must exist (`NotFound`)."""
        kind = ref.backend
        # without folders a URI is one object: its name must be known before any request
        path = None if kind.folders else object_path(ref, name)
        if ref.is_folder:
            return None
        try:
            meta = await source.stat(ref)
        except NotFound:
            if not kind.folders or ref.version is not None:
                raise
            return None
        return _entry(kind, ref, path or object_path(ref, name), meta)

    async def iter_scan(
        self,
        uri: str,
        *,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
        inventory: str | None = None,
    ) -> AsyncIterator[ManifestEntry]:
        """Entries for `uri` as they are found. May yield entries before raising `TooManyObjects`. With
        `inventory` (the location of an inventory manifest) objects are read from that inventory instead of
        being looked up or listed."""
        scanned = self.iter_scan_batches(
            uri, name=name, checksum=checksum, max_objects=max_objects, inventory=inventory
        )
        async with aclosing(scanned) as batches:
            async for batch in batches:
                for entry in batch.entries():
                    yield entry

    async def iter_scan_batches(
        self,
        uri: str,
        *,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
        inventory: str | None = None,
    ) -> AsyncGenerator[EntryBatch, None]:
        """`iter_scan` in batches as they are found (a listing round, a batch of inventory rows): for callers
        that stream millions of entries (`EntryBatch.jsonl`). May yield batches before raising
        `TooManyObjects`."""
        ref = RefURI.parse(uri, self.options)
        limit = object_limit(max_objects)
        if not checksum:
            yield EntryList([unchecked_entry(ref, uri, name)])
            return
        kind = ref.backend
        source = await self.source(ref, inventory)
        log = logger().bind(uri=str(ref))
        started = time.perf_counter()
        found = await self.lookup(ref, name, source)
        if found is not None:
            log.debug("scan.object", elapsed=round(time.perf_counter() - started, 4))
            yield EntryList([found])
            return
        folder = ref.folder()

        def entry(meta: ObjectMeta) -> ManifestEntry:
            return folder_entry(kind, folder, meta, name)

        listing = (
            source.list_entries(folder, limit + 1, name, entry)
            if not isinstance(source, Backend)
            else _entry_lists(source.list(folder, limit + 1), entry)
        )
        count = 0
        async with aclosing(listing) as batches:  # closed here, even when abandoned
            async for batch in batches:
                count += len(batch)
                if count > limit:
                    raise too_many(limit, folder)
                yield batch
        if count == 0:
            raise empty_folder(ref)
        log.debug("scan.folder", objects=count, elapsed=round(time.perf_counter() - started, 4))

    async def scan(
        self,
        uri: str,
        *,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
        inventory: str | None = None,
        on_entry: Callable[[ManifestEntry], object] | None = None,
    ) -> list[ManifestEntry]:
        """All entries for `uri`, sorted by path; raises instead of returning a partial list. `on_entry` is
        called with each entry as it is found (progress)."""
        entries = []
        scanned = self.iter_scan(uri, name=name, checksum=checksum, max_objects=max_objects, inventory=inventory)
        async for entry in scanned:
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
                r.uri,
                name=r.name,
                checksum=r.checksum,
                max_objects=r.max_objects,
                inventory=r.inventory,
                on_entry=on_entry,
            )

        return await gather_map(one, reqs)


async def iter_scan(
    uri: str,
    *,
    name: str | None = None,
    checksum: bool = True,
    max_objects: int | None = None,
    options: Options | None = None,
    inventory: str | None = None,
) -> AsyncIterator[ManifestEntry]:
    """Stream the entries for `uri` (see `Scanner.iter_scan`) with a scanner of its own."""
    async with Scanner(options) as scanner:
        scanned = scanner.iter_scan(uri, name=name, checksum=checksum, max_objects=max_objects, inventory=inventory)
        async for entry in scanned:
            yield entry


async def ascan(
    uri: str,
    *,
    name: str | None = None,
    checksum: bool = True,
    max_objects: int | None = None,
    options: Options | None = None,
    inventory: str | None = None,
    executor: Executor | None = None,
    checkpoint: str | None = None,
) -> list[ManifestEntry]:
    """The entries for `uri`, sorted by path (see `Scanner.scan`); from the inventory whose manifest is at
    `inventory` instead of listing, when given. With an `executor` (`refscan.distributed.RayExecutor`, ...)
    or a `checkpoint` folder the work is planned as units, run there and, with a checkpoint, resumable."""
    if executor is not None or checkpoint is not None:
        from .distributed import scan_all

        request = ScanRequest(uri, name, checksum, max_objects, inventory)
        [entries] = await scan_all([request], options=options, executor=executor, checkpoint=checkpoint)
        return entries
    async with Scanner(options) as scanner:
        return await scanner.scan(uri, name=name, checksum=checksum, max_objects=max_objects, inventory=inventory)


scan = synchronous(ascan)
