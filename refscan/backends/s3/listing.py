"""Listing S3 folders: page parsing and the fan-out walk (`Walk`), over any `PageSource`.

Listing large folders (`Walk`) fans out by sub-folder so a big tree is not one chain of sequential pages:

1. Every folder starts with one plain (recursive, no delimiter) page. A folder that fits in one page
   costs exactly one request.
2. When a page is truncated, the walk looks at how many sub-folders that page touched. Many small
   sub-folders (more than `FANOUT_MAX_CHILDREN` in 1,000 keys) are cheapest listed by continuing the same
   chain, so it continues (and re-decides on the next page). Otherwise it fans out from the position after
   the page's last item:
   - the sub-folder holding that last item continues on its own, from just after that item;
   - a delimiter listing of the folder (from the same position) yields the remaining direct objects and
     sub-folders; each sub-folder is walked the same way, concurrently.
   Positions are always real items (StartAfter = last key; KeyMarker + VersionIdMarker = last version),
   never invented split keys: that is exact on S3 and on emulators alike.
3. Requests in flight are bounded by the backend's limiter, held only around each single request (inside
   the `PageSource`). A shared budget bounds the objects: the MaxKeys of all requests in flight plus the
   objects already kept never exceed `limit`, so at most `limit` live objects are ever requested and the walk
   stops as soon as `limit` are kept. On versioned buckets MaxKeys counts versions and delete markers while
   the budget counts live objects: each request asks for at most the remaining objects' worth of entries, so
   no more than `limit` live objects are listed, though noncurrent versions may add entries (and pages) on top.

Cost: a folder of N objects costs about N/1000 list requests plus, when it fans out, one extra request per
sub-folder holding more than ~100 objects on average; never a request per object. A flat folder (no
sub-folders) is inherently one chain of N/1000 sequential pages: S3 has no "end before" parameter, so
key-range splitting would need guessed split keys and wasted reads.

Results stream in rounds (`Walk.rounds`): each round requests one page for each of up to `ROUND_WIDTH`
pending steps concurrently, then yields what it found, so memory stays bounded (about ROUND_WIDTH pages)
however large the folder. No task group stays open across a `yield` (the caller may abandon the iterator).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from ...errors import BackendError, RefscanError
from ...meta import ObjectMeta
from .client import iso_time, multipart_parts, required_etag, size_of, version_id

PAGE = 1000  # S3's page cap; never rely on a server to cap MaxKeys for us (moto does not)
#: A truncated page touching more sub-folders than this (in <= 1,000 keys, i.e. < ~100 keys each on average)
#: is continued sequentially: a request per small sub-folder would cost more than it saves.
FANOUT_MAX_CHILDREN = 10
#: Pending page requests issued together in one listing round (bounds memory to ~ROUND_WIDTH pages).
ROUND_WIDTH = 32


# -- keys -----------------------------------------------------------------------------------------


def is_folder_marker(key: str, size: int | None) -> bool:
    """A key ending in `/` with no content: a console-created folder, not an object (docs/behaviour.md, URIs)."""
    return key.endswith("/") and not size


def child_of(prefix: str, key: str) -> str | None:
    """The immediate sub-folder of `prefix` that holds `key` (`prefix` + first component + `/`), or None
    when `key` is a direct object of `prefix`."""
    rest = key[len(prefix) :]
    slash = rest.find("/")
    if slash < 0:
        return None
    return prefix + rest[: slash + 1]


# -- pages ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a listing continues.

    `token`/`key_marker`+`version_marker` are the server's own continuation; `start_after` is a real key.
    A cursor from a plain page's last item (`Page.after_last`) may be used with a narrower Prefix.
    """

    token: str | None = None
    start_after: str | None = None
    key_marker: str | None = None
    version_marker: str | None = None


@dataclass
class Page:
    objects: list[ObjectMeta]  # live objects: latest versions, no delete markers, no folder markers
    prefixes: list[str]  # CommonPrefixes (delimiter listings only)
    keys: list[str]  # every key seen (objects, markers, noncurrent versions)
    last_key: str | None  # the key of the page's last item (plain listings)
    next: Cursor | None  # continuation of this same request, when truncated
    after_last: Cursor | None  # "after the last item", usable with another Prefix


class PageSource(Protocol):
    """Fetches one listing page: ListObjectVersions when `versioned`, else ListObjectsV2."""

    async def page(
        self,
        bucket: str,
        prefix: str,
        *,
        cursor: Cursor | None,
        delimiter: str | None,
        max_keys: int,
        versioned: bool,
    ) -> Page: ...


def listed_meta(entry: Mapping[str, Any]) -> ObjectMeta:
    """The object a ListObjectsV2 `Contents` or ListObjectVersions `Versions` entry describes.

    Listings name the additional checksum algorithms (`checksumAlgorithm`, `checksumType`) but not their
    values, so a listed object has no `hashes` and no `encryption` (HeadObject alone reports those)."""
    key: str = entry["Key"]
    etag = required_etag(key, entry.get("ETag"), "the listing")
    attrs: dict[str, Any] = {}
    algorithms = entry.get("ChecksumAlgorithm")
    if algorithms:
        attrs["checksumAlgorithm"] = [str(a) for a in algorithms]
        if entry.get("ChecksumType"):
            attrs["checksumType"] = str(entry["ChecksumType"])
    return ObjectMeta(
        key=key,
        size=size_of(entry.get("Size")),
        etag=etag,
        version=version_id(entry.get("VersionId")),
        modified=iso_time(entry.get("LastModified")),
        parts=multipart_parts(etag),
        attrs=attrs,
    )


def _truncated(resp: Mapping[str, Any], marker: Any) -> bool:
    """Whether a listing page continues; a truncated page without a continuation marker is an error (ending
    there would silently shorten the listing)."""
    if not resp.get("IsTruncated"):
        return False
    if not marker:
        raise BackendError("the store said the listing continues but gave no continuation marker")
    return True


def parse_v2_page(resp: Mapping[str, Any]) -> Page:
    """A ListObjectsV2 response as a `Page`."""
    contents = resp.get("Contents") or []
    objects = [listed_meta(c) for c in contents if not is_folder_marker(c["Key"], c.get("Size"))]
    keys = [c["Key"] for c in contents]
    prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes") or []]
    token = resp.get("NextContinuationToken")
    truncated = _truncated(resp, token)
    last = keys[-1] if keys else None
    return Page(
        objects=objects,
        prefixes=prefixes,
        keys=keys,
        last_key=last,
        next=Cursor(token=token) if truncated else None,
        after_last=Cursor(start_after=last) if last is not None else None,
    )


def parse_versions_page(resp: Mapping[str, Any]) -> Page:
    """A ListObjectVersions response as a `Page` of the live objects."""
    versions = resp.get("Versions") or []
    markers = resp.get("DeleteMarkers") or []
    # The latest entry of each key comes first in S3's order; a key whose latest entry is a delete marker
    # has no IsLatest version, so it is gone and skipped. Noncurrent versions are skipped too.
    objects = [listed_meta(v) for v in versions if v.get("IsLatest") and not is_folder_marker(v["Key"], v.get("Size"))]
    keys = [v["Key"] for v in versions] + [m["Key"] for m in markers]
    prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes") or []]
    key_marker = resp.get("NextKeyMarker")
    version_marker = resp.get("NextVersionIdMarker")
    truncated = _truncated(resp, key_marker)
    cursor = Cursor(key_marker=key_marker, version_marker=version_marker) if truncated else None
    # The continuation markers name the page's last item exactly (key + version), so they also serve as
    # "after the last item" for a narrower prefix. Without a version marker (a page ending on a common
    # prefix) there is no exact item to resume from.
    exact = cursor if cursor is not None and version_marker else None
    return Page(
        objects=objects,
        prefixes=prefixes,
        keys=keys,
        last_key=key_marker if exact is not None else None,
        next=cursor,
        after_last=exact,
    )


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

    async def reserve(self) -> int:
        """MaxKeys for the next request, or 0 when `limit` objects are already kept.

        A short page (less than PAGE) is only issued when nothing else is in flight: requests in flight may
        give their reservation back, and tiny pages would multiply requests.
        """
        while True:
            if self.full:
                return 0
            remaining = self.limit - self.found - self.reserved
            if remaining >= PAGE or (remaining > 0 and self.in_flight == 0):
                size = min(PAGE, remaining)
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


@dataclass(frozen=True)
class Step:
    """One pending page request of a walk: a plain (recursive) page of `prefix`, or, when `delimited`, a page
    of its direct objects and sub-folders (`skip`: the sub-folder already continued by its own step)."""

    prefix: str
    cursor: Cursor | None = None
    delimited: bool = False
    skip: str | None = None


class Walk:
    """One folder listing: concurrent, budgeted, complete, streamed in rounds (see the module docstring)."""

    def __init__(self, source: PageSource, bucket: str, *, versioned: bool, limit: int) -> None:
        self.source = source
        self.bucket = bucket
        self.versioned = versioned
        self.budget = Budget(limit)
        self.requests = 0
        self.fanouts = 0
        self.error: RefscanError | None = None
        self.pending: deque[Step] = deque()

    async def rounds(self, prefix: str) -> AsyncIterator[list[ObjectMeta]]:
        """The live objects under `prefix`, one batch per round. A round requests one page for each of up to
        ROUND_WIDTH pending steps concurrently; its task group is closed before the batch is yielded."""
        if self.budget.limit <= 0:
            return
        self.pending.append(Step(prefix))
        while self.pending and not self.budget.full:
            steps = [self.pending.popleft() for _ in range(min(ROUND_WIDTH, len(self.pending)))]
            found: list[ObjectMeta] = []
            async with anyio.create_task_group() as tg:
                for step in steps:
                    tg.start_soon(self._guarded, step, found, tg.cancel_scope)
            if self.error is not None:
                raise self.error
            yield found

    async def _guarded(self, step: Step, found: list[ObjectMeta], scope: anyio.CancelScope) -> None:
        """Run `step`; the first refscan error ends the round and is raised by `rounds` as itself. A full
        budget ends the round too (without an error): nothing more is wanted."""
        try:
            if not await self._step(step, found):
                scope.cancel()
        except RefscanError as exc:
            if self.error is None:
                self.error = exc
            scope.cancel()

    async def _fetch(self, step: Step) -> Page | None:
        size = await self.budget.reserve()
        if size == 0:
            return None
        kept = 0
        try:
            page = await self.source.page(
                self.bucket,
                step.prefix,
                cursor=step.cursor,
                delimiter="/" if step.delimited else None,
                max_keys=size,
                versioned=self.versioned,
            )
            self.requests += 1
            kept = len(page.objects)
        finally:
            self.budget.settle(size, kept)
        return page

    async def _step(self, step: Step, found: list[ObjectMeta]) -> bool:
        """Request one page for `step`, keep its objects and queue what follows. False once the budget is full."""
        page = await self._fetch(step)
        if page is None:
            return False
        found.extend(page.objects)
        if step.delimited:
            self.pending.extend(Step(sub) for sub in page.prefixes if sub != step.skip)
            if page.next is not None:
                self.pending.append(Step(step.prefix, page.next, delimited=True, skip=step.skip))
        elif page.next is not None:
            self._continue(step.prefix, page)
        return not self.budget.full

    def _continue(self, prefix: str, page: Page) -> None:
        """After a truncated plain page: continue the chain, or fan out when it pays."""
        children = {c for c in (child_of(prefix, k) for k in page.keys) if c is not None}
        if len(children) > FANOUT_MAX_CHILDREN or page.last_key is None or page.after_last is None:
            self.pending.append(Step(prefix, page.next))  # many small sub-folders: one chain is cheapest
            return
        self.fanouts += 1
        current = child_of(prefix, page.last_key)
        if current is not None:
            self.pending.append(Step(current, page.after_last))
        self.pending.append(Step(prefix, page.after_last, delimited=True, skip=current))
