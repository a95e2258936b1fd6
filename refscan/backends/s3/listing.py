"""Listing S3 folders: page parsing and the key-range walk (`Walk`), over any `PageSource`.

A folder is listed as concurrent key ranges, not as one chain of sequential pages:

1. The walk starts with one plain (recursive) page of the whole folder; a folder that fits in one page costs
   exactly one request.
2. When a page is truncated and the object budget has room for more pages, the rest of its range is split:
   boundaries are guessed from the page's keys (`refscan.backends.keyspace.split_points`) and each part
   `(b_i, b_i+1]` is listed on its own (`StartAfter` / `KeyMarker` = b_i), concurrently; keys past a part's
   end are dropped, and the part ends there. A part that proves large splits again the same way. Guessed
   boundaries only shape the work: the parts partition the keys exactly, whatever the guess.
3. Every page is checked against S3's rules: keys ascending (byte order) within a page and after the
   position asked for, and under the folder. A server that breaks them (SeaweedFS orders keys by directory)
   makes the walk fall back, once, to what is still exact: the server's own continuation tokens in one chain,
   from the start, dropping the keys already yielded (they are remembered up to `SEEN_LIMIT`; past that the
   walk raises rather than guess). The fallback is logged once per walk.
   ListObjectVersions positions (`KeyMarker` alone) are trusted only once a probe shows the server starts
   them where S3 does (`Walk.check_markers`): moto drops the first version after such a marker, a loss no page
   shows, so there a versioned folder stays one chain.
4. Requests in flight are bounded by the backend's limiter, held only around each single request (inside the
   `PageSource`). A shared budget bounds the objects: the MaxKeys of all requests in flight plus the objects
   already kept never exceed `limit`, and the walk stops as soon as `limit` are kept. (Pages may read keys
   past a part's end, or noncurrent versions on versioned buckets, which are dropped and not counted.)

Results stream in rounds (`Walk.rounds`): each round requests one page for each of up to `ROUND_WIDTH`
pending parts concurrently, then yields what it found, so memory stays bounded (about ROUND_WIDTH pages)
however large the folder. No task group stays open across a `yield` (the caller may abandon the iterator).
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio

from ...errors import BackendError, RefscanError
from ...events import logger
from ...meta import EMPTY, ObjectMeta
from ..base import is_folder_marker
from ..keyspace import name_ahead, names_before, split_points
from .client import iso_time, multipart_parts, required_etag, version_id

PAGE = 1000  # S3's page cap; never rely on a server to cap MaxKeys for us (moto does not)
#: Pending page requests issued together in one listing round (bounds memory to ~ROUND_WIDTH pages).
ROUND_WIDTH = 32
#: A truncated page's range is split into at most this many parts at once (each may split again).
MAX_PARTS = 8
#: The smallest MaxKeys asked for near a part's end.
PAGE_FLOOR = 16
#: With no known end and a budget of at most this many pages, a split spreads its parts evenly over the budget.
SPAN_PAGES = 64
#: With no known end and a larger budget, the first part split off holds about this many pages' worth of keys
#: (the next ones 4x, 16x, ...).
FIRST_PART = 2
#: A part that has listed this many full pages is split again.
SPLIT_AFTER = 4
#: Why a versioned walk stays one chain on a server failing `Walk.check_markers`.
MARKERS_INEXACT = "the server does not start version listings at a KeyMarker as S3 does"
#: Keys remembered for a fallback to one chain (about 100 bytes each); past it a disorder raises.
SEEN_LIMIT = 250_000


# -- keys and pages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a listing starts: the server's own continuation (`token`, or `key_marker` + `version_marker`
    from a truncated page), or a position (`start_after` / `key_marker` alone: every key after it)."""

    token: str | None = None
    start_after: str | None = None
    key_marker: str | None = None
    version_marker: str | None = None


@dataclass
class Page:
    objects: list[ObjectMeta]  # live objects: latest versions, no delete markers, no folder markers
    keys: list[str]  # every key of the page (objects, markers, noncurrent versions), sorted
    next: Cursor | None  # the server's continuation, when truncated
    ordered: bool = True  # the server sent them in S3's byte order
    strict: bool = True  # each key once (False: versions repeat their key)


class PageSource(Protocol):
    """Fetches one listing page: ListObjectVersions when `versioned`, else ListObjectsV2."""

    async def page(
        self, bucket: str, prefix: str, *, cursor: Cursor | None, max_keys: int, versioned: bool, end: str | None
    ) -> Page:
        """Objects past `end` (keys compared as strings) are left out of `Page.objects`; `Page.keys` keeps them."""


def listed_meta(entry: Mapping[str, Any]) -> ObjectMeta:
    """The object a ListObjectsV2 `Contents` or ListObjectVersions `Versions` entry describes.

    Listings name the additional checksum algorithms (`checksumAlgorithm`, `checksumType`) but not their
    values, so a listed object has no `hashes` and no `encryption` (HeadObject alone reports those). Runs once
    per listed object: keep it lean."""
    key: str = entry["Key"]
    etag = required_etag(key, entry.get("ETag"), "the listing")
    algorithms = entry.get("ChecksumAlgorithm")
    attrs: Mapping[str, Any] = EMPTY
    if algorithms:
        attrs = {"checksumAlgorithm": [str(a) for a in algorithms]}
        if entry.get("ChecksumType"):
            attrs["checksumType"] = str(entry["ChecksumType"])
    size = entry.get("Size")
    return ObjectMeta(
        key,
        int(size) if size is not None else None,
        etag,
        version_id(entry.get("VersionId")),
        iso_time(entry.get("LastModified")),
        EMPTY,
        None,
        multipart_parts(etag),
        attrs,
    )


def _truncated(resp: Mapping[str, Any], marker: Any) -> bool:
    """Whether a listing page continues; a truncated page without a continuation marker is an error (ending
    there would silently shorten the listing)."""
    if not resp.get("IsTruncated"):
        return False
    if not marker:
        raise BackendError("the store said the listing continues but gave no continuation marker")
    return True


def parse_v2_page(resp: Mapping[str, Any], end: str | None = None) -> Page:
    """A ListObjectsV2 response as a `Page`; objects past `end` are left out (their keys are kept)."""
    contents = resp.get("Contents") or []
    objects = [
        listed_meta(c)
        for c in contents
        if (end is None or c["Key"] <= end) and not is_folder_marker(c["Key"], c.get("Size"))
    ]
    keys = [c["Key"] for c in contents]
    token = resp.get("NextContinuationToken")
    truncated = _truncated(resp, token)
    ordered = all(a < b for a, b in itertools.pairwise(keys))
    return Page(objects, keys if ordered else sorted(keys), Cursor(token=token) if truncated else None, ordered)


def parse_versions_page(resp: Mapping[str, Any], end: str | None = None) -> Page:
    """A ListObjectVersions response as a `Page` of the live objects; objects past `end` are left out."""
    versions = resp.get("Versions") or []
    markers = resp.get("DeleteMarkers") or []
    # The latest entry of each key comes first in S3's order; a key whose latest entry is a delete marker
    # has no IsLatest version, so it is gone and skipped. Noncurrent versions are skipped too.
    objects = [
        listed_meta(v)
        for v in versions
        if v.get("IsLatest") and (end is None or v["Key"] <= end) and not is_folder_marker(v["Key"], v.get("Size"))
    ]
    version_keys, marker_keys = [v["Key"] for v in versions], [m["Key"] for m in markers]
    ordered = all(a <= b for a, b in itertools.pairwise(version_keys)) and all(
        a <= b for a, b in itertools.pairwise(marker_keys)
    )
    key_marker = resp.get("NextKeyMarker")
    truncated = _truncated(resp, key_marker)
    cursor = Cursor(key_marker=key_marker, version_marker=resp.get("NextVersionIdMarker")) if truncated else None
    return Page(objects, sorted(version_keys + marker_keys), cursor, ordered, strict=False)  # the lists interleave


# -- the walk -------------------------------------------------------------------------------------


class Budget:
    """Shared object budget across concurrent page requests (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.found = 0
        self.reserved = 0
        self.in_flight = 0
        self._changed = anyio.Event()

    @property
    def full(self) -> bool:
        return self.found >= self.limit

    async def reserve(self, want: int = PAGE) -> int:
        """MaxKeys for the next request (at most `want`), or 0 when `limit` objects are already kept.

        A page shorter than asked is only issued when nothing else is in flight: requests in flight may give
        their reservation back, and tiny pages would multiply requests.
        """
        want = min(want, PAGE)
        while True:
            if self.full:
                return 0
            remaining = self.limit - self.found - self.reserved
            if remaining >= want or (remaining > 0 and self.in_flight == 0):
                size = min(want, remaining)
                self.reserved += size
                self.in_flight += 1
                return size
            await self._changed.wait()

    def settle(self, size: int, kept: int) -> None:
        self.reserved -= size
        self.in_flight -= 1
        self.found += kept
        changed, self._changed = self._changed, anyio.Event()
        changed.set()


class Disorder(Exception):
    """A page that breaks S3's listing rules (see `broken_rule`)."""


@dataclass(frozen=True)
class Part:
    """One key range of the folder being listed: keys after `after` (None: from the start) up to and including
    `end` (None: to the end), continuing from `cursor`; `pages` already listed in it."""

    cursor: Cursor | None = None
    after: str | None = None
    end: str | None = None
    pages: int = 0
    want: int | None = None  # MaxKeys when the keys left before `end` are fewer than a page (estimated)


def broken_rule(prefix: str, after: str | None, page: Page) -> str:
    """How `page` breaks S3's listing rules ("" when it does not): its keys must come in byte order, lie under
    `prefix` and come after the position `after` asked for (or at it, for more versions of that key)."""
    keys = page.keys
    if not keys:
        return ""
    if not (keys[0].startswith(prefix) and keys[-1].startswith(prefix)):
        return f"a key outside {prefix!r} was listed"
    if after is not None and (keys[0] < after or (page.strict and keys[0] == after)):
        return f"{keys[0]!r} was listed after {after!r}"
    return "" if page.ordered else "keys were listed out of byte order"


async def probe_markers(source: PageSource, bucket: str, prefix: str, page: Page) -> bool | None:
    """Whether the server starts a ListObjectVersions at a KeyMarker alone as S3 does: at the first key after
    it. One request (MaxKeys=1) from a name strictly between two keys of `page`, expecting the second key's
    latest version (moto lists the version after it instead); None when `page` has no such two keys."""
    keys = page.keys
    for meta in page.objects:
        i = bisect.bisect_left(keys, meta.key)
        if i == 0 or meta.version is None or not keys[i - 1] + " " < meta.key:
            continue
        marker = keys[i - 1] + " "  # after the previous key, before this one
        probe = await source.page(
            bucket, prefix, cursor=Cursor(key_marker=marker), max_keys=1, versioned=True, end=None
        )
        first = probe.objects[0] if probe.objects else None
        return probe.keys[:1] == [meta.key] and first is not None and first.version == meta.version
    return None


class Walk:
    """One folder listing: concurrent key ranges, budgeted, checked, streamed in rounds (module docstring)."""

    def __init__(
        self,
        source: PageSource,
        bucket: str,
        *,
        versioned: bool,
        limit: int,
        split: bool = True,
        markers_exact: bool | None = None,
    ) -> None:
        self.source = source
        self.bucket = bucket
        self.versioned = versioned
        self.budget = Budget(limit)
        self.split = split
        self.requests = 0
        self.splits = 0
        self.fallback: str | None = None  # why the walk fell back to one chain, once it has
        self.error: RefscanError | None = None
        self.disorder: Disorder | None = None
        self.pending: deque[Part] = deque()
        self.live = 0  # parts queued or in flight, not yet finished
        self.seen: set[str] | None = set() if split else None  # keys yielded, for a fallback not to repeat them
        self.skip: set[str] = set()  # after a fallback: keys yielded before it
        #: Whether the server starts a versioned listing at a KeyMarker alone as S3 does (None: not probed yet).
        self.markers_exact = markers_exact

    async def rounds(self, prefix: str) -> AsyncIterator[list[ObjectMeta]]:
        """The live objects under `prefix`, one batch per round. A round requests one page for each of up to
        ROUND_WIDTH pending parts concurrently; its task group is closed before the batch is yielded."""
        if self.budget.limit <= 0:
            return
        self.pending.append(Part())
        self.live = 1
        while self.pending and not self.budget.full:
            parts = [self.pending.popleft() for _ in range(min(ROUND_WIDTH, len(self.pending)))]
            found: list[ObjectMeta] = []
            async with anyio.create_task_group() as tg:
                for part in parts:
                    tg.start_soon(self._guarded, prefix, part, found, tg.cancel_scope)
            if self.error is not None:
                raise self.error
            if self.disorder is not None:
                self._fall_back(prefix, self.disorder)
                continue  # this round's pages are dropped: the chain lists them again
            self._remember(found)
            yield found

    def _remember(self, found: list[ObjectMeta]) -> None:
        if self.seen is not None:
            self.seen.update(m.key for m in found)
            if len(self.seen) > SEEN_LIMIT:
                self.seen = None

    def _fall_back(self, prefix: str, disorder: Disorder) -> None:
        """Restart as one chain of the server's own continuation tokens, skipping the keys already yielded."""
        if self.seen is None:
            raise BackendError(
                f"s3://{self.bucket}/{prefix}: the server does not list keys in S3's order ({disorder}) and more "
                f"than {SEEN_LIMIT} objects were already listed in parallel; list it sequentially with "
                "S3Options(parallel_listing=False)"
            )
        self._stop_splitting(prefix, str(disorder))
        self.skip, self.disorder = self.seen, None
        self.budget = Budget(self.budget.limit)
        self.budget.found = len(self.skip)
        self.pending = deque([Part()])
        self.live = 1

    async def _guarded(self, prefix: str, part: Part, found: list[ObjectMeta], scope: anyio.CancelScope) -> None:
        """List one page of `part`; the first refscan error (or disorder) ends the round. A full budget ends
        the round too (without an error): nothing more is wanted."""
        try:
            if not await self._step(prefix, part, found):
                scope.cancel()
        except RefscanError as exc:
            if self.error is None:
                self.error = exc
            scope.cancel()
        except Disorder as exc:
            self.disorder = exc
            scope.cancel()

    async def _step(self, prefix: str, part: Part, found: list[ObjectMeta]) -> bool:
        """One page of `part`: keep its objects up to the part's end and queue what follows. False once the
        budget is full."""
        size = await self.budget.reserve(part.want or PAGE)
        if size == 0:
            return False
        kept: list[ObjectMeta] = []
        try:
            page = await self.source.page(
                self.bucket,
                prefix,
                cursor=part.cursor,
                max_keys=size,
                versioned=self.versioned,
                end=part.end,
            )
            self.requests += 1
            broken = broken_rule(prefix, part.after, page) if self.split else ""
            if broken:
                if self.splits:
                    raise Disorder(broken)  # positions were trusted: only a restart is exact now
                self._stop_splitting(prefix, broken)  # one chain so far: the server's own order, still exact
            kept = page.objects  # the source leaves out objects past `part.end`
            if self.skip:
                kept = [m for m in kept if m.key not in self.skip]
        finally:
            self.budget.settle(size, len(kept))
        found.extend(kept)
        last = page.keys[-1] if page.keys else None
        if self.versioned and self.split and page.next is not None and not await self.check_markers(prefix, page):
            self.split, self.fallback = False, MARKERS_INEXACT  # one chain of the server's own markers
        if page.next is not None and not (part.end is not None and last is not None and last > part.end):
            self._continue(prefix, Part(page.next, last, part.end, part.pages + 1), page)
        else:
            self.live -= 1
        return not self.budget.full

    async def check_markers(self, prefix: str, page: Page) -> bool:
        """Whether KeyMarker positions are exact on this server (`probe_markers`), probed at most once."""
        if self.markers_exact is None:
            self.markers_exact = await probe_markers(self.source, self.bucket, prefix, page)
            if self.markers_exact is None:
                return False  # nothing to probe between yet: one chain, probe again on the next walk
            self.requests += 1
            if not self.markers_exact:
                self._stop_splitting(prefix, MARKERS_INEXACT)
        return self.markers_exact

    @staticmethod
    def _sized(prefix: str, part: Part, sample: list[str]) -> Part:
        """`part`, asking for only about the keys left before its end when the sample says they are fewer than a
        page: the page that reaches past a part's end reads keys another part lists."""
        if part.end is None:
            return part
        left = names_before(prefix, sample, part.end)
        if left >= PAGE:
            return part
        return replace(part, want=max(PAGE_FLOOR, int(left * 1.25) + 8))

    def _stop_splitting(self, prefix: str, reason: str) -> None:
        self.split = False
        self.fallback = reason
        logger().warning("s3.list.sequential", bucket=self.bucket, prefix=prefix, reason=reason)

    def _continue(self, prefix: str, rest: Part, page: Page) -> None:
        """After a truncated page: continue the chain, or split the rest of its range when it proves large
        (the first page of an open-ended part, or a part past `SPLIT_AFTER` pages), the budget has room for
        more pages and the next round has free places."""
        large = (rest.pages == 1 and rest.end is None) or rest.pages >= SPLIT_AFTER
        free = ROUND_WIDTH - self.live
        room = (self.budget.limit - self.budget.found - self.budget.reserved) // PAGE
        parts = min(MAX_PARTS, free + 1, room) if large else 0
        sample = [k for k in page.keys if k.startswith(prefix)]
        end = rest.end
        if end is None and self.split and parts >= 2 and room <= SPAN_PAGES:
            # no known end, but the budget ends the listing within `room` pages: spread the parts evenly up to
            # where those pages would reach, leaving the rest open
            end = name_ahead(prefix, sample, 2 * room)  # guessing long costs empty parts, short costs rounds
        if not (self.split and parts >= 2):
            bounds = []
        elif end is None:  # a large budget: parts of ~2, 8, 32, ... pages
            bounds = split_points(prefix, sample, None, parts, lead=FIRST_PART)
        else:
            bounds = split_points(prefix, sample, end, parts - (end != rest.end), even_only=True)
            if end != rest.end:
                bounds.append(end)
        if not bounds:
            self.pending.append(self._sized(prefix, rest, sample))
            return
        self.splits += 1
        self.live += len(bounds)
        ends = [*bounds, rest.end]
        self.pending.append(self._sized(prefix, Part(rest.cursor, rest.after, ends[0], 1), sample))
        for start, end in zip(bounds, ends[1:], strict=True):
            cursor = Cursor(key_marker=start) if self.versioned else Cursor(start_after=start)
            self.pending.append(Part(cursor, start, end))
