"""Verification: prove that what a manifest references is still exactly there (docs/behaviour.md,
Verification).

Each entry is decoded by its backend, looked up again at its recorded version (when the backend's versions pin
bytes) or as the current object, and the two typed fingerprints compared. `deep=True` also reads the bytes
and recomputes the strongest recorded hash. Entries are checked concurrently, bounded by the session.
"""

from __future__ import annotations

import heapq
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence, Sized
from contextlib import aclosing
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

import anyio

from .backends import Backend
from .backends.base import read_checked
from .errors import InvalidURI, NotFound, RefscanError
from .fingerprint import ContentHasher, DeepCheck, Fingerprint, Match, compare
from .manifest import ManifestEntry, ManifestSource, as_manifest
from .meta import ObjectMeta
from .options import Options
from .references import Recorded, is_unchecked, part_size, recorded
from .scan import Scanner
from .session import Session
from .sync import synchronous
from .uri import RefURI

if TYPE_CHECKING:
    from .distributed import Executor
    from .inventory import Index, Inventory

Status = Literal["ok", "changed", "missing", "unverifiable", "error", "added"]
STATUSES: tuple[Status, ...] = ("ok", "changed", "missing", "unverifiable", "error", "added")

#: Why a result has its status, for programs (`reason` says the same for people).
Cause = Literal[
    "fingerprint-matches",
    "fingerprint-differs",
    "no-shared-fingerprint",
    "no-validator",
    "unchecked",
    "stored-file",
    "gone",
    "pin-moved",
    "pin-gone-content-differs",
    "deep-matches",
    "deep-differs",
    "deep-impossible",
    "hash-not-of-bytes",
    "added",
    "error",
]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome for one entry: `cause` (stable, for programs) and `reason` (for people) say why;
    `expected` / `actual` are the fingerprints as dicts (None when unknown)."""

    path: str
    ref: str | None
    status: Status
    reason: str
    expected: dict[str, Any] | None = None
    actual: dict[str, Any] | None = None
    cause: Cause = "error"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ref": self.ref,
            "status": self.status,
            "cause": self.cause,
            "reason": self.reason,
            "expected": self.expected,
            "actual": self.actual,
        }


class ResultBlock(Sized, Protocol):
    """Results held in bulk (all `ok`), read in path order."""

    def __iter__(self) -> Iterator[VerifyResult]: ...

    def refs(self) -> Iterator[str]:
        """The refs of the entries the results are for."""
        ...


class VerifyResults(Sequence[VerifyResult]):
    """The results of a verification: those `checked` one by one and a `block` of entries shown unchanged in
    bulk (made into results only as they are read), merged in path order; then the `added` ones."""

    def __init__(
        self, checked: Sequence[VerifyResult], block: ResultBlock | None = None, added: Sequence[VerifyResult] = ()
    ) -> None:
        self.checked = checked
        self.block = block
        self.added = added
        self._all: tuple[VerifyResult, ...] | None = None

    def __len__(self) -> int:
        return len(self.checked) + len(self.block or ()) + len(self.added)

    def __iter__(self) -> Iterator[VerifyResult]:
        if self._all is not None:
            return iter(self._all)
        if not self.block:
            return chain(self.checked, self.added)
        return chain(heapq.merge(self.checked, self.block, key=attrgetter("path")), self.added)

    @overload
    def __getitem__(self, index: int) -> VerifyResult: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[VerifyResult, ...]: ...
    def __getitem__(self, index: int | slice) -> VerifyResult | tuple[VerifyResult, ...]:
        if self._all is None:
            self._all = tuple(self)
        return self._all[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"VerifyResults({len(self)} results)"

    def unsettled(self) -> Iterator[VerifyResult]:
        """The results not in the bulk block (it holds only `ok` ones): every result that can be other than ok."""
        return chain(self.checked, self.added)

    def tally(self) -> dict[str, int]:
        counted = Counter(r.status for r in self.unsettled())
        counted["ok"] += len(self.block or ())
        return {s: counted.get(s, 0) for s in STATUSES}


@dataclass(frozen=True)
class VerifyReport:
    """All results in path order (a sequence: `VerifyResults` when given other than that). `ok` is True when
    every result is ok or unverifiable. `inventory`, when one was used: its `location` and `created` time, how
    many entries it answered (`from_inventory`) and how many it could not vouch for and were looked up live
    (`live`)."""

    results: Sequence[VerifyResult]
    inventory: dict[str, Any] | None = None
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.results, VerifyResults):
            object.__setattr__(self, "results", VerifyResults(tuple(self.results)))
        object.__setattr__(self, "counts", self._results.tally())

    @property
    def _results(self) -> VerifyResults:
        assert isinstance(self.results, VerifyResults)
        return self.results

    def __repr__(self) -> str:  # short: asyncio formats a finished task's result on the way out of `run`
        return f"VerifyReport({len(self.results)} results, counts={self.counts})"

    @property
    def ok(self) -> bool:
        """True when every result is ok or unverifiable (nothing changed, missing, failed or added)."""
        return all(r.status in ("ok", "unverifiable") for r in self._results.unsettled())

    def strict_ok(self) -> bool:
        """True when every result is ok (unverifiable entries fail, as with the CLI's --strict)."""
        return all(r.status == "ok" for r in self._results.unsettled())

    def problems(self) -> Iterator[VerifyResult]:
        """The results that are not ok, in the order of `results`."""
        return (r for r in self._results.unsettled() if r.status != "ok")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "counts": self.counts}
        if self.inventory is not None:
            out["inventory"] = self.inventory
        out["results"] = [r.to_dict() for r in self.results]
        return out


async def read_and_check(backend: Backend, rec: Recorded, size_vouched: bool) -> DeepCheck:
    """Stream the recorded object's bytes through a `ContentHasher` and check them against its fingerprint
    (`size_vouched`: see `read_checked`)."""
    parts = await part_size(backend, rec)

    async def check(chunks: AsyncIterator[bytes]) -> DeepCheck:
        hasher = ContentHasher(rec.fingerprint, part_size=parts)
        async for chunk in chunks:
            hasher.update(chunk)
        return hasher.check()

    return await read_checked(backend, rec.uri, check, size_vouched=size_vouched)


def _result(
    entry: ManifestEntry,
    status: Status,
    cause: Cause,
    reason: str,
    expected: Fingerprint | None = None,
    actual: Fingerprint | None = None,
) -> VerifyResult:
    return VerifyResult(
        entry.path,
        entry.ref,
        status,
        reason,
        expected.as_dict() if expected else None,
        actual.as_dict() if actual else None,
        cause,
    )


#: Entries of one folder from which verify lists the folder instead of sending a lookup per entry.
LIST_MIN_ENTRIES = 16
FolderKey = tuple[str, str, str]  # (scheme, bucket, folder key)


def listing_plan(entries: Iterable[ManifestEntry], options: Options | None = None) -> dict[FolderKey, int]:
    """Folders worth listing instead of a lookup per entry: (scheme, bucket, folder key) → entries under it.

    Only backends whose listings carry fingerprints count. Entries are grouped by their ref's parent folder;
    a folder inside another listed one is covered by that listing (listings are recursive), so only the
    outermost folders are kept. Pure, no I/O.
    """
    parents: Counter[FolderKey] = Counter()
    for entry in entries:
        if entry.ref is None or is_unchecked(entry):
            continue
        try:
            uri = RefURI.parse(entry.ref, options)
        except InvalidURI:
            continue
        if uri.backend.listing_fingerprints:
            parents[(uri.scheme, uri.bucket, uri.key.rpartition("/")[0] + "/" if "/" in uri.key else "")] += 1
    plan: dict[FolderKey, int] = {}
    for (scheme, bucket, folder), count in sorted(parents.items(), key=lambda item: len(item[0][2])):
        outer = next((k for k in plan if k[:2] == (scheme, bucket) and folder.startswith(k[2])), None)
        if outer is not None:
            plan[outer] += count
        else:
            plan[(scheme, bucket, folder)] = count
    return {key: count for key, count in plan.items() if count >= LIST_MIN_ENTRIES}


class _Verifier:
    """Checks entries one by one; objects already seen in a folder listing (`prefetch`) or answered by the
    inventory (`vouched`, by entry path) need no request."""

    def __init__(self, session: Session, deep: bool, inventory: Inventory | None = None) -> None:
        self.session = session
        self.deep = deep
        self.listed: dict[FolderKey, ObjectMeta] = {}
        self.inventory = inventory
        self.index: Index | None = None
        self.vouched: set[str] = set()
        self.live = 0  # entries the inventory could not vouch for, checked by requests

    async def consult(self, inventory: Inventory, entries: list[ManifestEntry]) -> list[ManifestEntry]:
        """Look every entry the inventory can vouch for up in it (one pass over its rows); returns the others.

        It vouches for objects of its bucket not modified after it was taken (by the entry's recorded
        lastModified): for the current object of a key, and for a pinned version when it lists that version
        or lists every version (then a version it lacks is gone)."""
        candidates: list[tuple[ManifestEntry, RefURI]] = []
        for entry in entries:
            rec = self._recorded(entry)
            if isinstance(rec, VerifyResult) or not inventory.holds(rec.uri):
                continue
            modified = entry.extra.get("lastModified")
            if not (isinstance(modified, str) and modified > inventory.created):  # else: newer than the inventory
                candidates.append((entry, rec.uri))
        self.index = index = await inventory.index(uri for _, uri in candidates)
        all_versions = await inventory.lists_all_versions() if candidates else False
        for entry, uri in candidates:
            if uri.version is None or all_versions or (uri.key, uri.version) in index.versions:
                self.vouched.add(entry.path)
        return [e for e in entries if e.path not in self.vouched]

    async def prefetch(self, entries: list[ManifestEntry]) -> None:
        """List the folders many entries live in, concurrently. A listing that fails only means lookups later."""

        async def one(scheme: str, bucket: str, folder: str, count: int) -> None:
            try:
                backend = await self.session.backend(scheme)
                # room for objects added since the scan; past that, the entries not seen get their own lookup
                async with aclosing(backend.list(RefURI(scheme, bucket, folder), 2 * count + 1000)) as batches:
                    async for batch in batches:
                        for meta in batch:
                            self.listed[(scheme, bucket, meta.key)] = meta
            except RefscanError:
                return

        async with anyio.create_task_group() as tg:
            for (scheme, bucket, folder), count in listing_plan(entries, self.session.options).items():
                tg.start_soon(one, scheme, bucket, folder, count)

    async def _current(self, backend: Backend, uri: RefURI, vouched: bool) -> ObjectMeta:
        """The object at `uri` (pinned version if any): from the inventory when it vouches for the entry, from
        a prefetched listing when that holds exactly the version, else one lookup."""
        if vouched and self.index is not None:
            found = self.index.get(uri)
            if found is None:
                raise NotFound(f"{uri}: not in the inventory (or only as a delete marker)")
            return found
        meta = self.listed.get((uri.scheme, uri.bucket, uri.key))
        if meta is not None and (uri.version is None or meta.version == uri.version):
            return meta
        return await backend.stat(uri)

    def _recorded(self, entry: ManifestEntry) -> Recorded | VerifyResult:
        """What the entry records, to look up; or its result when nothing can be looked up."""
        if entry.ref is None:
            return _result(entry, "unverifiable", "stored-file", "a stored file, not a reference")
        if is_unchecked(entry):
            return _result(entry, "unverifiable", "unchecked", "recorded with checksum=False: nothing to compare")
        try:
            rec = recorded(entry, self.session.options)
        except InvalidURI as exc:
            return _result(entry, "error", "error", str(exc))
        if not rec.fingerprint.provable:
            why = "no validator recorded (the server sent no ETag or hash)"
            return _result(entry, "unverifiable", "no-validator", why, rec.fingerprint)
        return rec

    async def check(self, entry: ManifestEntry) -> VerifyResult:
        rec = self._recorded(entry)
        if isinstance(rec, VerifyResult):
            return rec
        try:
            return await self._check(entry, rec)
        except RefscanError as exc:
            return _result(entry, "error", "error", str(exc), rec.fingerprint)

    async def _check(self, entry: ManifestEntry, rec: Recorded) -> VerifyResult:
        backend = await self.session.backend(rec.uri.scheme)
        expected, uri = rec.fingerprint, rec.uri
        vouched = entry.path in self.vouched
        if self.inventory is not None and not vouched:
            self.live += 1
        try:
            meta = await self._current(backend, uri, vouched)
        except NotFound:
            if uri.version is None:
                return _result(entry, "missing", "gone", "the object no longer exists", expected)
            return await self._pin_gone(entry, rec, backend, vouched)
        actual = rec.backend.fingerprint(meta)
        match = compare(expected, actual)
        if match is Match.DIFFERENT:
            return _result(entry, "changed", "fingerprint-differs", "the content fingerprint differs", expected, actual)
        if match is Match.UNKNOWN:
            why = "no fingerprint both sides share"
            return _result(entry, "unverifiable", "no-shared-fingerprint", why, expected, actual)
        if not self.deep:
            return _result(entry, "ok", "fingerprint-matches", "fingerprint matches", expected, actual)
        deep = await read_and_check(backend, rec, size_vouched=actual.size is not None and actual.size == expected.size)
        if deep.match is Match.UNKNOWN:
            why = f"fingerprint matches; deep check impossible: {deep.detail}"
            return _result(entry, "ok", "deep-impossible", why, expected, actual)
        if deep.match is Match.SAME:
            return _result(entry, "ok", "deep-matches", f"deep check: {deep.detail}", expected, actual)
        if deep.kind is not None and deep.kind != "size" and deep.kind not in actual.kinds():
            # the store no longer offers that kind for this object: the recorded value is not a hash of its bytes
            encrypted = f" of an object encrypted with {meta.encryption}" if meta.encryption else ""
            why = f"the recorded {deep.kind}{encrypted} is not a hash of its bytes ({deep.detail})"
            return _result(entry, "unverifiable", "hash-not-of-bytes", why, expected, actual)
        return _result(entry, "changed", "deep-differs", f"deep check: {deep.detail}", expected, actual)

    async def _pin_gone(self, entry: ManifestEntry, rec: Recorded, backend: Backend, vouched: bool) -> VerifyResult:
        uri, expected = rec.uri, rec.fingerprint
        try:
            current = await self._current(backend, uri.child(uri.key), vouched)
        except NotFound:
            return _result(entry, "missing", "gone", f"version {uri.version} and the object are gone", expected)
        actual = rec.backend.fingerprint(current)
        if compare(expected, actual) is Match.SAME:
            why = f"pinned version {uri.version} is gone; the current object has identical content (the pin moved)"
            return _result(entry, "ok", "pin-moved", why, expected, actual)
        why = f"pinned version {uri.version} is gone and the object now holds different content"
        return _result(entry, "changed", "pin-gone-content-differs", why, expected, actual)


async def averify(
    source: ManifestSource,
    *,
    deep: bool = False,
    options: Options | None = None,
    rescan: Iterable[str] = (),
    on_result: Callable[[VerifyResult], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    inventory: str | None = None,
    executor: Executor | None = None,
) -> VerifyReport:
    """Verify every entry of `source` (a Manifest, a store version, entries, or a manifest JSON path); one
    result per entry, checked concurrently by a bounded pool of workers.

    `inventory`: the location of an inventory manifest (URI or local path) taken after the entries were
    recorded; entries it can vouch for are checked against its rows with no request per object, the others
    are looked up live, and the report says how many were (`VerifyReport.inventory`). Without `deep`,
    entries that record what a scan of the inventory records are answered in bulk, a manifest file
    being read in chunks: memory stays at a few hundred bytes per entry.

    `rescan`: folder URIs to list again; each object found there whose ref is not in the manifest gives a
    result with status `added` (path as a plain scan of that folder names it), like `dvc status`.
    `on_result` is called with each result as it is known; `on_progress` with how many results just became
    known (for progress bars: it makes no result object).

    `executor` (`refscan.distributed.RayExecutor`, ...): the entries are verified in shards there (not with
    `inventory` or `rescan`).
    """

    def known(results: Iterable[VerifyResult], count: int) -> None:
        if on_result is not None:
            for result in results:
                on_result(result)
        if on_progress is not None and count:
            on_progress(count)

    if executor is not None:
        if inventory is not None or tuple(rescan):
            raise ValueError("verify with an executor takes neither inventory nor rescan")
        from .distributed import verify_all

        done = await verify_all(
            list(as_manifest(source)),
            deep=deep,
            options=options,
            executor=executor,
            on_results=lambda batch: known(batch, len(batch)),
        )
        return VerifyReport(tuple(done))
    added: list[VerifyResult] = []
    block: ResultBlock | None = None
    async with Session(options) as session, Scanner(session=session) as scanner:
        opened = await scanner.inventory(inventory) if inventory is not None else None
        if opened is not None and not deep:
            from .inventory.verifying import settle

            block, entries = await settle(opened, source)
            known(block, len(block))
        else:
            entries = list(as_manifest(source))
        verifier = _Verifier(session, deep, opened)
        await verifier.prefetch(await verifier.consult(opened, entries) if opened is not None else entries)
        results: list[VerifyResult | None] = [None] * len(entries)
        todo = iter(range(len(entries)))

        async def worker() -> None:
            for i in todo:
                results[i] = outcome = await verifier.check(entries[i])
                known((outcome,), 1)

        async with anyio.create_task_group() as tg:
            for _ in range(min(len(entries), 2 * session.options.concurrency)):
                tg.start_soon(worker)
        if rescan:
            refs = {e.ref for e in entries} | set(block.refs() if block is not None else ())
            for folder in rescan:
                async for found in scanner.iter_scan(folder, max_objects=sys.maxsize):
                    if found.ref not in refs:
                        actual = recorded(found, session.options).fingerprint
                        why = f"new under {folder} since the manifest was made"
                        added.append(_result(found, "added", "added", why, None, actual))
    checked = [r for r in results if r is not None]
    used = None
    if opened is not None:
        answered = len(verifier.vouched) + len(block or ())
        used = {**opened.describe(), "from_inventory": answered, "live": verifier.live}
    return VerifyReport(VerifyResults(checked, block, added), used)


verify = synchronous(averify)
