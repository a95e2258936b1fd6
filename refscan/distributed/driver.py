"""The driver of a planned job: units handed to an executor, their outcomes merged, budgeted, checkpointed.

A scan job starts with one LOOKUP unit per request. A folder of a backend with key ranges is then listed as
RANGE units: the first asks one page of the whole folder (a small folder costs one request); every outcome
that leaves a `rest` has it split (`Backend.split_range`) while the executor has free slots, so a range that
proves larger than planned is split again; units after the first ask up to `UNIT_PAGES` pages. Each request
keeps an object budget like a local scan's: the `limit` of the units in flight plus the objects found never
exceed `max_objects + 1`, and finding more than `max_objects` raises `TooManyObjects`.

A store that breaks the key order positions rely on (`RangeListing.disorder`) after a folder was split makes
the driver list that folder again as one unsplit chain, skipping the entries already produced (remembered up
to `SEEN_LIMIT`; past that it raises, as a local scan does).

Entries reach `sink(request, entries)` as units finish, in no particular order; callers sort.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from ..backends import backend_class
from ..backends.keyspace import KeyRange
from ..errors import BackendError
from ..events import logger
from ..manifest import ManifestEntry
from ..options import Options
from ..scan import ScanRequest, empty_folder, object_limit, too_many
from ..uri import RefURI, redact
from ..verify import VerifyResult
from .checkpoint import Checkpoint, work_fingerprint
from .executors import Executor
from .units import LOOKUP, RANGE, SHARD, Outcome, Unit

#: pages a RANGE unit asks for after a folder's first page (bounds each outcome to ~10,000 entries)
UNIT_PAGES = 10
PAGE = 1000
#: a rest is split into at most this many ranges at once
MAX_PARTS = 8
#: entries remembered per split folder, for a restart as one chain not to repeat them
SEEN_LIMIT = 250_000
#: manifest entries per verify SHARD
SHARD_SIZE = 2000

Sink = Callable[[int, list[ManifestEntry]], None]


@dataclass
class _Request:
    """The driver's view of one request's folder."""

    limit: int
    found: int = 0
    reserved: int = 0
    folder: bool = False  # a folder listed by ranges here (not an object, not a whole scan)
    split: bool = False  # its ranges were split: positions are trusted
    whole: bool = False  # listed as one unsplit chain from now on
    epoch: int = 0  # bumped by a restart: outcomes of older units are dropped
    seen: set[str] | None = field(default_factory=set)  # refs produced while split
    skip: set[str] = field(default_factory=set)  # after a restart: refs produced before it

    def state(self) -> dict[str, Any]:
        return {"folder": self.folder, "split": self.split, "whole": self.whole, "epoch": self.epoch}


class ScanJob:
    """Scan `requests` on `executor`, entries to `sink`; `checkpoint`: a folder to resume from and record
    into. `on_units(done, planned)` reports progress."""

    def __init__(
        self,
        requests: Sequence[ScanRequest],
        options: Options,
        executor: Executor,
        sink: Sink,
        *,
        checkpoint: str | None = None,
        on_units: Callable[[int, int], None] | None = None,
    ) -> None:
        self.requests = list(requests)
        self.options = options
        self.executor = executor
        self.sink = sink
        self.on_units = on_units
        self.state = [_Request(object_limit(r.max_objects)) for r in self.requests]
        self.pending: deque[tuple[int, Unit, int]] = deque()  # (id, unit, epoch)
        self.done = self.planned = 0
        self._next_id = 0
        self.checkpoint: Checkpoint | None = None
        if checkpoint is not None:
            fingerprint = work_fingerprint("scan", self.requests, options)
            self.checkpoint = Checkpoint(checkpoint, fingerprint, [r.uri for r in self.requests])

    async def run(self) -> None:
        try:
            if self._resume():
                await self.executor.start(self.options, self.requests)
                try:
                    await self._loop()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.executor.stop()
            for request, st in zip(self.requests, self.state, strict=True):
                if st.folder and st.found == 0:
                    raise empty_folder(RefURI.parse(request.uri, self.options))
            if self.checkpoint is not None and not self.checkpoint.finished:
                self.checkpoint.finish()
        finally:
            if self.checkpoint is not None:
                self.checkpoint.close()

    def _resume(self) -> bool:
        """Plan the LOOKUPs, or load the checkpoint: its entries replayed to the sink, its units still to do
        queued. False when nothing is left to do."""
        lookups = [Unit(LOOKUP, i) for i in range(len(self.requests))]
        cp = self.checkpoint
        if cp is None:
            self._queue_planned(list(zip([self._id() for _ in lookups], lookups, strict=True)))
            return True
        for request, saved in cp.states().items():
            st = self.state[request]
            st.folder, st.split, st.whole = (bool(saved[k]) for k in ("folder", "split", "whole"))
            st.epoch = int(saved["epoch"])
        for request, entries in cp.entries():
            st = self.state[request]
            st.found += len(entries)
            self._remember(st, entries)
            self.sink(request, entries)
        todo = cp.pending()
        if not todo and cp.empty():
            todo = list(zip(cp.plan(lookups), lookups, strict=True))
        self._queue_planned(todo)
        return bool(todo)

    def _queue_planned(self, todo: Sequence[tuple[int, Unit]]) -> None:
        for uid, unit in todo:
            self._queue(unit.request, [unit], [uid])

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _queue(self, request: int, units: Sequence[Unit], ids: Sequence[int]) -> None:
        st = self.state[request]
        for uid, unit in zip(ids, units, strict=True):
            self.pending.append((uid, unit, st.epoch))
        self.planned += len(units)

    # -- the loop ------------------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Keep up to `executor.slots` units in flight until none is left; the first error (a unit's, or
        `TooManyObjects`) cancels the rest and is raised as itself."""
        send, receive = anyio.create_memory_object_stream[tuple[int, Unit, int, Outcome | Exception]](math.inf)
        in_flight = 0
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            while error is None:
                waiting: list[tuple[int, Unit, int]] = []
                while self.pending and in_flight < self.executor.slots:
                    uid, unit, epoch = self.pending.popleft()
                    if epoch != self.state[unit.request].epoch:
                        continue  # planned before a restart
                    budgeted = self._budget(unit, in_flight)
                    if budgeted is None:
                        waiting.append((uid, unit, epoch))
                        continue
                    tg.start_soon(self._do, uid, budgeted, epoch, send)
                    in_flight += 1
                self.pending.extendleft(reversed(waiting))
                if in_flight == 0:
                    break
                uid, unit, epoch, outcome = await receive.receive()
                in_flight -= 1
                try:
                    if isinstance(outcome, Exception):
                        raise outcome
                    self._handle(uid, unit, epoch, outcome)
                except Exception as exc:
                    error = exc
                    tg.cancel_scope.cancel()
                self.done += 1
                if self.on_units is not None:
                    self.on_units(self.done, self.planned)
        if error is not None:
            raise error

    async def _do(
        self, uid: int, unit: Unit, epoch: int, send: anyio.abc.ObjectSendStream[tuple[int, Unit, int, Any]]
    ) -> None:
        try:
            outcome: Outcome | Exception = await self.executor.run(unit)
        except Exception as exc:  # handed to the loop, which raises it as itself
            outcome = exc
        await send.send((uid, unit, epoch, outcome))

    def _budget(self, unit: Unit, in_flight: int) -> Unit | None:
        """`unit` with its object limit reserved, or None to wait for units in flight to give some back."""
        if unit.kind != RANGE:
            return unit
        st = self.state[unit.request]
        remaining = st.limit + 1 - st.found - st.reserved
        want = unit.pages * PAGE
        if remaining <= 0 or (remaining < want and in_flight > 0 and st.reserved > 0):
            return None
        size = min(want, remaining)
        st.reserved += size
        return replace(unit, limit=size)

    # -- outcomes ------------------------------------------------------------------------------------------------

    def _handle(self, uid: int, unit: Unit, epoch: int, outcome: Outcome) -> None:
        request = unit.request
        st = self.state[request]
        if unit.kind == RANGE:
            st.reserved -= unit.limit
        if epoch != st.epoch:
            self._record(uid, request, [], [])
            return
        if unit.kind == LOOKUP:
            st.folder = outcome.folder
            first = [Unit(RANGE, request, KeyRange(), pages=1)] if outcome.folder else []
            self._emit(uid, request, outcome.entries, first)
            return
        if outcome.disorder is not None and st.split:
            self._restart(uid, request, outcome.disorder)
            return
        if outcome.disorder is not None:
            st.whole = True  # one chain so far: the store's own order, still exact
        entries = [e for e in outcome.entries if e.ref not in st.skip] if st.skip else outcome.entries
        st.found += len(entries)
        if st.found > st.limit:
            raise too_many(st.limit, RefURI.parse(self.requests[request].uri, self.options).folder())
        planned: list[Unit] = []
        if outcome.rest is not None:
            planned = [Unit(RANGE, request, r, pages=UNIT_PAGES) for r in self._split(request, outcome)]
        self._remember(st, entries)
        self._emit(uid, request, entries, planned)

    def _split(self, request: int, outcome: Outcome) -> list[KeyRange]:
        assert outcome.rest is not None
        st = self.state[request]
        free = self.executor.slots - len(self.pending) - 1
        room = (st.limit + 1 - st.found - st.reserved) // PAGE
        parts = min(MAX_PARTS, free + 1, room)
        if st.whole or not outcome.splittable or parts < 2:
            return [outcome.rest]
        ref = RefURI.parse(self.requests[request].uri, self.options)
        pieces = backend_class(ref.scheme).split_range(ref.folder(), outcome.rest, outcome.sample, parts)
        st.split = st.split or len(pieces) > 1
        return pieces

    def _remember(self, st: _Request, entries: Sequence[ManifestEntry]) -> None:
        if st.seen is not None:
            st.seen.update(e.ref or "" for e in entries)
            if len(st.seen) > SEEN_LIMIT:
                st.seen = None

    def _restart(self, uid: int, request: int, disorder: str) -> None:
        """List the request's folder again as one unsplit chain, skipping what was produced."""
        st = self.state[request]
        uri = self.requests[request].uri
        if st.seen is None:
            raise BackendError(
                f"{uri}: the store does not list keys in S3's order ({disorder}) and more than {SEEN_LIMIT} "
                "objects were already listed in parallel; list it sequentially with S3Options(parallel_listing=False)"
            )
        logger().warning("scan.sequential", uri=redact(uri), reason=disorder)
        dropped = [u for u, unit, _ in self.pending if unit.request == request]
        st.skip, st.split, st.whole, st.epoch = set(st.seen), False, True, st.epoch + 1
        self._emit(uid, request, [], [Unit(RANGE, request, KeyRange(), pages=UNIT_PAGES)], dropped)

    def _emit(
        self, uid: int, request: int, entries: list[ManifestEntry], planned: list[Unit], dropped: Sequence[int] = ()
    ) -> None:
        ids = self._record(uid, request, entries, planned, dropped)
        self._queue(request, planned, ids)
        if entries:
            self.sink(request, entries)

    def _record(
        self, uid: int, request: int, entries: list[ManifestEntry], planned: list[Unit], dropped: Sequence[int] = ()
    ) -> list[int]:
        if self.checkpoint is None:
            return [self._id() for _ in planned]
        return self.checkpoint.record(uid, request, entries, planned, self.state[request].state(), dropped)


async def verify_shards(
    entries: Sequence[ManifestEntry],
    options: Options,
    executor: Executor,
    *,
    deep: bool = False,
    on_results: Callable[[list[VerifyResult]], None] | None = None,
) -> list[VerifyResult]:
    """Verify `entries` in SHARDs of `SHARD_SIZE` on `executor`; results in the entries' order."""
    shards = [tuple(entries[i : i + SHARD_SIZE]) for i in range(0, len(entries), SHARD_SIZE)]
    results: list[list[VerifyResult]] = [[] for _ in shards]
    limiter = anyio.Semaphore(max(1, executor.slots))
    await executor.start(options, [])
    try:

        async def one(i: int) -> None:
            async with limiter:
                outcome = await executor.run(Unit(SHARD, entries=shards[i], deep=deep))
            results[i] = outcome.results
            if on_results is not None:
                on_results(outcome.results)

        async with anyio.create_task_group() as tg:
            for i in range(len(shards)):
                tg.start_soon(one, i)
    finally:
        with anyio.CancelScope(shield=True):
            await executor.stop()
    return [r for shard in results for r in shard]
