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

import bisect
import functools
import itertools
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from ...concurrency import gather
from ...events import logger
from .client import _Failure

#: split ranges grow by this factor: parts hold ~1, 4, 16, ... sample-widths of names (see `split_points`)
GROWTH = 4

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


def is_marker(item: Mapping[str, Any]) -> bool:
    """A folder placeholder: a name ending in `/` with no content (docs/behaviour.md: markers are skipped,
    zero-byte files are kept)."""
    return str(item.get("name", "")).endswith("/") and str(item.get("size") or "0") == "0"


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
                if item.get("name") == rng.skip or is_marker(item):
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


def split_points(prefix: str, sample: Sequence[str], end: str | None, parts: int) -> list[str]:
    """Up to `parts - 1` increasing boundaries strictly between `sample[-1]` (the last name listed) and `end`
    (exclusive; None = the end of the prefix), estimated from `sample`, the range's last page of names.

    Boundaries only shape the work: any increasing boundaries inside (sample[-1], end) partition the remaining
    names exactly, so a poor guess costs a few requests, never correctness. Three kinds of guesses are mixed:
    - density: names read as numbers in a radix made of the characters seen (digit 0 = end of name), so
      counting names (`img_000123.jpg`) and hash-like names map to a roughly linear scale; the parts are
      predicted to hold about 1, 4, 16, ... samples' worth of names (`GROWTH`);
    - scale: the smallest names past each character of the directory part of the last name, deepest first
      (`class000/0099.png` → `class001`, `class01`, `class1`, ...), which reach the next directory, month or
      magnitude when the sample saw a single directory;
    - even: with a known end, the span left split evenly on the numeric scale.
    """
    if parts < 2 or len(sample) < 2:
        return []
    after = sample[-1]
    cut = len(prefix)
    end_suffix = end[cut:] if end is not None and end.startswith(prefix) else None
    alphabet = sorted(set("".join(s[cut:] for s in sample)) | set(end_suffix or ""))
    radix = len(alphabet) + 1
    width = max(len(sample[0]), len(after), len(end or "")) - cut + 2

    def encode(text: str) -> int:
        value = 0
        for j in range(width):
            digit = bisect.bisect_right(alphabet, text[j]) if j < len(text) else 0
            value = value * radix + digit
        return value

    def decode(value: int) -> str:
        digits = []
        for _ in range(width):
            value, digit = divmod(value, radix)
            digits.append(digit)
        chars = []
        for digit in reversed(digits):
            if digit == 0:
                break
            chars.append(alphabet[digit - 1])
        return prefix + "".join(chars)

    low, first = encode(after[cut:]), encode(sample[0][cut:])
    high = encode(end_suffix) if end_suffix is not None else radix**width
    wanted = parts - 1
    step = max(1, low - first)
    density = [decode(low + step * GROWTH**t) for t in range(wanted) if low + step * GROWTH**t < high]
    # "scale": the smallest name past each character of the directory names in `after`, deepest first
    # (`class000/0099.png` → `class001`, `class01`, `class1`, ...): the next directory, month or magnitude
    last_slash = after.rfind("/")
    scale: list[str] = []
    for j in range(last_slash - 1, cut - 1, -1):
        code = ord(after[j]) + 1
        if after[j] != "/" and code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            scale.append(after[:j] + chr(code))
    even = [decode(low + (high - low) * t // parts) for t in range(1, parts)] if end_suffix is not None else []
    sources = [even, scale, density] if even else [scale, density]
    chosen: set[str] = set()
    for i in range(max(map(len, sources))):
        for source in sources:
            if i < len(source) and len(chosen) < wanted:
                point = source[i]
                if point > after and (end is None or point < end):
                    chosen.add(point)
    return sorted(chosen)


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
