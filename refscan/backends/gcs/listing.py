"""Listing a GCS folder fast: objects.list pages of several key ranges at once, within an object budget.

The loop (`list_items`) works in rounds: each round asks one page of every active key range concurrently and
yields what came back. The first round is a single page, so a small folder costs one request. When a range
has more pages and there is room for more ranges (`fanout`), it is split at boundaries estimated from its
last page (`split_points`). The object budget (`limit`) is divided among the pages of a round before they are
requested (`_allocate`), so no more than `limit` objects are ever asked for, and ranges are only split as far
as the budget has full pages for, since short pages multiply requests.

Requests go through a `PageSource`: anything that can fetch one objects.list page of a range. Nothing here
knows about credentials, URLs or error mapping.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from ...concurrency import gather
from ...events import logger
from ..base import is_folder_marker
from ..keyspace import KeyRange, split_points
from .client import _Failure

#: One objects.list page: the object resources (JSON objects) and the next page token (None on the last page).
Page: TypeAlias = tuple[list[Mapping[str, Any]], str | None]


@dataclass
class _Range:
    """A contiguous slice of a listing: names in [start, end) under the prefix, listed page by page.

    `skip` is a name already yielded that equals `start` (a split re-lists from the last name seen, because
    startOffset is inclusive): it is dropped when it comes back. `names` holds the last page's names, the
    sample the next split is computed from.
    """

    start: str | None = None
    end: str | None = None
    skip: str | None = None
    token: str | None = None
    names: list[str] = field(default_factory=list)
    done: bool = False


class PageSource(Protocol):
    """What the listing loop needs from a client: one objects.list page of `rng` under `prefix`.

    The page is asked with `prefix`, `startOffset=rng.start`, `endOffset=rng.end`, `pageToken=rng.token` and
    `maxResults=max_results`; failures raise `_Failure`.
    """

    async def page(self, bucket: str, prefix: str, rng: _Range, max_results: int) -> Page: ...


async def list_items(
    source: PageSource, bucket: str, prefix: str, limit: int, *, page_size: int, fanout: int
) -> AsyncGenerator[list[Mapping[str, Any]], None]:
    """The object resources under `prefix` (folder markers left out), in one batch per round, at most `limit`
    in all. `page_size` is the largest page asked for, `fanout` the most key ranges listed at once.

    Raises what `source.page` raises, and `_Failure` when the server hands out the same page token twice."""
    log = logger().bind(bucket=bucket, prefix=prefix)
    started = time.perf_counter()
    ranges = [_Range()]
    remaining = limit
    pages = rounds = found = 0
    fanout = max(1, fanout)

    async def fetch(rng: _Range, max_results: int) -> Page:
        t0 = time.perf_counter()
        page = await source.page(bucket, prefix, rng, max_results)
        log.debug(
            "gcs.list.page",
            start=rng.start,
            end=rng.end,
            objects=len(page[0]),
            more=page[1] is not None,
            elapsed=round(time.perf_counter() - t0, 4),
        )
        return page

    while ranges and remaining > 0:
        rounds += 1
        plan = _allocate(ranges, remaining, page_size)
        results = await gather([functools.partial(fetch, rng, n) for rng, n in plan])
        pages += len(plan)

        batch: list[Mapping[str, Any]] = []
        for (rng, _), (items, token) in zip(plan, results, strict=True):
            names = [str(item.get("name", "")) for item in items]
            for item in items:
                if item.get("name") == rng.skip or is_folder_marker(str(item.get("name", "")), item.get("size")):
                    continue
                if len(batch) < remaining:
                    batch.append(item)
            if token is not None and token == rng.token:
                raise _Failure(None, "objects.list returned the same page token twice")
            rng.skip = None
            rng.token = token
            rng.done = token is None
            if names:
                rng.names = names
        remaining -= len(batch)
        found += len(batch)
        if batch:
            yield batch
        ranges = [r for r in ranges if not r.done]
        if remaining > 0:  # no more ranges than the budget has full pages for: short pages multiply requests
            ranges = _fan_out(ranges, prefix, min(fanout, max(1, remaining // page_size)))
    log.debug(
        "gcs.list",
        objects=found,
        pages=pages,
        rounds=rounds,
        truncated=remaining <= 0,
        elapsed=round(time.perf_counter() - started, 4),
    )


async def list_range(
    source: PageSource, bucket: str, prefix: str, rng: KeyRange, limit: int, pages: int, *, page_size: int
) -> tuple[list[Mapping[str, Any]], KeyRange | None, list[str]]:
    """One step through `rng` ([start, end) with `skip` dropped, `resume` = a page token): up to `pages`
    pages, at most `limit` objects (folder markers left out). Returns the objects, the rest of the range
    (None: done) and the last page's names. Raises what `source.page` raises."""
    cursor = _Range(start=rng.start, end=rng.end, skip=rng.skip, token=rng.resume)
    found: list[Mapping[str, Any]] = []
    names: list[str] = []
    for _ in range(pages):
        want = min(page_size, limit - len(found))
        if want <= 0:
            break
        relists = cursor.skip is not None and cursor.token is None  # startOffset is inclusive
        items, token = await source.page(bucket, prefix, cursor, want + relists)
        if token is not None and token == cursor.token:
            raise _Failure(None, "objects.list returned the same page token twice")
        names = [str(item.get("name", "")) for item in items]
        kept = [
            item
            for item in items
            if item.get("name") != cursor.skip and not is_folder_marker(str(item.get("name", "")), item.get("size"))
        ]
        if len(kept) > limit - len(found):  # the re-listed name was gone: one more than asked for
            found.extend(kept[: limit - len(found)])
            cut = str(found[-1]["name"])
            return found, KeyRange(start=cut, end=rng.end, skip=cut), names
        found.extend(kept)
        if token is None:
            return found, None, names
        last = names[-1] if names else cursor.start
        cursor = _Range(start=last, end=rng.end, skip=last, token=token)
    if cursor.token is None and not found:
        return found, rng, names  # no budget for a page: the range is left as it was
    return found, KeyRange(start=cursor.start, end=rng.end, skip=cursor.skip, resume=cursor.token), names


def split_range(prefix: str, rng: KeyRange, sample: Sequence[str], parts: int) -> list[KeyRange]:
    """`rng` in up to `parts` pieces: the first restarts at its last name (startOffset is inclusive: that name
    is skipped when it returns), the others are [bound, next bound)."""
    points = split_points(prefix, list(sample), rng.end, parts)
    if not points or rng.start is None:
        return [rng]
    ends = [*points[1:], rng.end]
    first = KeyRange(start=rng.start, end=points[0], skip=rng.skip)
    return [first, *(KeyRange(start=lo, end=hi) for lo, hi in zip(points, ends, strict=True))]


def _allocate(ranges: Sequence[_Range], remaining: int, page_size: int) -> list[tuple[_Range, int]]:
    """maxResults per range for one round, so the new objects asked for add up to at most `remaining`.

    A range that re-lists its `skip` name gets one extra slot for it. Ranges left without budget wait.
    """
    plan: list[tuple[_Range, int]] = []
    share = max(1, remaining // max(1, len(ranges)))
    left = remaining
    for rng in ranges:
        if left <= 0:
            break
        take = min(page_size, share, left)
        left -= take
        plan.append((rng, take + (1 if rng.skip is not None else 0)))
    return plan


def _fan_out(ranges: list[_Range], prefix: str, fanout: int) -> list[_Range]:
    """Split ranges that have more pages into new ranges while there is room for `fanout` ranges."""
    free = fanout - len(ranges)
    if free <= 0:
        return ranges
    busy = {id(r) for r in ranges if r.token is not None and len(r.names) >= 2}
    if not busy:
        return ranges
    out: list[_Range] = []
    per = max(1, free // len(busy))
    for rng in ranges:
        if free <= 0 or id(rng) not in busy:
            out.append(rng)
            continue
        points = split_points(prefix, rng.names, rng.end, min(per, free) + 1)
        if not points:
            out.append(rng)
            continue
        free -= len(points)
        after = rng.names[-1]
        bounds = [after, *points, rng.end]
        # startOffset is inclusive: the first part restarts at the last name seen and drops it when it returns.
        out.append(_Range(start=after, end=points[0], skip=after, names=rng.names))
        for lo, hi in itertools.pairwise(bounds[1:]):
            out.append(_Range(start=lo, end=hi))
    return out
