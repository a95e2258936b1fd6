"""Units of planned work and the worker that does them (on this machine or in a Ray actor).

A unit is small and plain (it travels to other processes and into checkpoints): a `lookup` of one scan
request's URI, a `range` of a folder's listing (`KeyRange`), or a `shard` of a manifest to verify. A worker
does units with one `Session` of its own, so clients are made once per worker, not once per unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from ..backends.keyspace import KeyRange
from ..manifest import ManifestEntry
from ..options import Options
from ..scan import Scanner, ScanRequest, folder_entry, unchecked_entry
from ..session import Session
from ..uri import RefURI
from ..verify import VerifyResult, averify

LOOKUP, RANGE, SHARD = "lookup", "range", "shard"


@dataclass(frozen=True)
class Unit:
    """One piece of work: `kind` LOOKUP (request `request`'s URI: its object, or "a folder to list"), RANGE
    (the key range `rng` of that request's folder: at most `pages` pages and `limit` objects), or SHARD
    (`entries` of a manifest to verify, `deep` or not)."""

    kind: str
    request: int = 0
    rng: KeyRange | None = None
    limit: int = 0
    pages: int = 1
    entries: tuple[ManifestEntry, ...] = ()
    deep: bool = False


@dataclass
class Outcome:
    """What a unit found: `entries` (LOOKUP, RANGE), `folder` (LOOKUP: the URI is a folder of a ranged backend,
    to list as ranges), the `rest` of a range with its `sample` and whether it may be split, a key-order
    `disorder` the store showed, and `results` (SHARD, in the shard's order)."""

    entries: list[ManifestEntry] = field(default_factory=list)
    folder: bool = False
    rest: KeyRange | None = None
    sample: list[str] = field(default_factory=list)
    splittable: bool = True
    disorder: str | None = None
    results: list[VerifyResult] = field(default_factory=list)


class Worker:
    """Does units of one job (`requests`, `options`). Use as `async with Worker(...) as worker:`."""

    def __init__(self, options: Options, requests: Sequence[ScanRequest]) -> None:
        self.options = options
        self.requests = list(requests)
        self.session = Session(options)
        self.scanner = Scanner(session=self.session)

    async def __aenter__(self) -> Worker:
        await self.session.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.scanner.__aexit__(exc_type, exc, tb)
        await self.session.__aexit__(exc_type, exc, tb)

    async def run(self, unit: Unit) -> Outcome:
        if unit.kind == SHARD:
            report = await averify(list(unit.entries), deep=unit.deep, options=self.options)
            return Outcome(results=list(report.results))
        request = self.requests[unit.request]
        ref = RefURI.parse(request.uri, self.options)
        if unit.kind == LOOKUP:
            return await self._lookup(request, ref)
        assert unit.rng is not None
        folder = ref.folder()
        backend = await self.session.backend(ref.scheme)
        listing = await backend.list_range(folder, unit.rng, unit.limit, unit.pages)
        entries = [folder_entry(ref.backend, folder, meta, request.name) for meta in listing.objects]
        return Outcome(entries, False, listing.rest, listing.sample, listing.splittable, listing.disorder)

    async def _lookup(self, request: ScanRequest, ref: RefURI) -> Outcome:
        """The request's object, or `folder=True` for a folder to plan as ranges; a request that cannot be
        listed by ranges (no checksum, an inventory, a backend without ranges) is scanned whole here."""
        if not request.checksum:
            return Outcome([unchecked_entry(ref, request.uri, request.name)])
        if request.inventory is not None or not ref.backend.ranged:
            scanned = self.scanner.iter_scan(
                request.uri, name=request.name, max_objects=request.max_objects, inventory=request.inventory
            )
            return Outcome([entry async for entry in scanned])
        entry = await Scanner.lookup(ref, request.name, await self.session.backend(ref.scheme))
        return Outcome([entry]) if entry is not None else Outcome(folder=True)
