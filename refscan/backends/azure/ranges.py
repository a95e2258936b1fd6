"""Walking an Azure folder: one chain of List Blobs pages, or key ranges listed at once.

A range (`KeyRange`) holds the names in [start, end): `start` is sent as List Blobs `startFrom` (inclusive;
service version 2026-02-06 and later, sent on every page of the range as the SDK does), `end` is applied to
the names returned (List Blobs has no upper bound), `resume` is the service's own `marker` inside the range.
The whole folder is `KeyRange()`: no `startFrom` at all, so a folder that is never split is listed exactly as
before the parameter existed.

A range is only split (`split_range`, boundaries guessed from its last page by `keyspace.split_points`) when
the service is seen to honour `startFrom`: `honours_start_from` asks for one page starting at a name it has
just listed and checks that this name comes first (a service that ignores the parameter answers from the
folder's first name; one that rejects it answers 400). Until then, and wherever the probe fails, the folder is
one chain of markers, exact whatever the service does with names. Pages are checked as they come: names must
not go down within a range nor fall before its start (`RangeListing.disorder`); an unsplit chain goes on in
the service's order, a split one cannot be trusted and ends in `BackendError`.

`list_blobs` is the scan: rounds of one page per active range, fetched concurrently, within the object
budget (no more than `limit` listing items are ever asked for), split while there is room for `fanout` ranges
and the budget has full pages for them (short pages multiply requests).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import replace

from ...concurrency import gather
from ...errors import BackendError
from ...events import logger
from ...meta import ObjectMeta
from ..keyspace import KeyRange, RangeListing, split_points
from .listing import MAX_PAGE, PageSource

#: asks once, per account, whether the service honours `startFrom` (given a name just listed)
Probe = Callable[[str], Awaitable[bool]]


def _order_broken(previous: str | None, names: Sequence[str]) -> str | None:
    """How `names` (one page, as listed, after the name `previous` or a range's start) break the name order
    ranges rely on, or None."""
    for name in names:
        if previous is not None and name < previous:
            return f"{name!r} was listed after {previous!r}"
        previous = name
    return None


async def list_range(
    source: PageSource, prefix: str, rng: KeyRange, limit: int, pages: int, *, page_size: int = MAX_PAGE
) -> RangeListing:
    """One step through `rng`: up to `pages` pages of at most `page_size` items in one chain, at most `limit`
    objects (at most `limit` items asked for). The listing's `rest` keeps `start` and the service's marker;
    `sample` is the last page's names inside the range; `disorder` says how the service broke the name order,
    if it did."""
    objects: list[ObjectMeta] = []
    sample: list[str] = []
    marker, disorder, last = rng.resume, None, rng.start
    for _ in range(pages):
        want = min(page_size, MAX_PAGE, limit - len(objects))
        if want <= 0:
            break
        page = await source.page(prefix, marker, want, rng.start)
        if page.next is not None and page.next == marker:
            raise BackendError(f"List Blobs under {prefix!r} returned the same marker twice")
        disorder = disorder or _order_broken(last, page.names)
        last = page.names[-1] if page.names else last
        inside = [n for n in page.names if rng.end is None or n < rng.end]
        objects.extend(o for o in page.objects if rng.end is None or o.key < rng.end)
        sample = inside or sample
        marker = page.next
        if marker is None or len(inside) < len(page.names):  # the last page, or past the range's end
            return RangeListing(objects, None, sample, disorder=disorder)
    if marker is None:  # no budget for a page: the range is left as it was
        return RangeListing(objects, rng)
    return RangeListing(objects, replace(rng, resume=marker), sample, disorder=disorder)


def split_range(prefix: str, rng: KeyRange, sample: Sequence[str], parts: int) -> list[KeyRange]:
    """`rng` in up to `parts` pieces: the first goes on from the service's marker up to the first bound, the
    others start at their bound (`startFrom`)."""
    bounds = split_points(prefix, [n for n in sample if n.startswith(prefix)], rng.end, parts)
    if not bounds:
        return [rng]
    ends = [*bounds[1:], rng.end]
    return [replace(rng, end=bounds[0]), *(KeyRange(start=lo, end=hi) for lo, hi in zip(bounds, ends, strict=True))]


async def honours_start_from(source: PageSource, prefix: str, name: str) -> bool:
    """Whether a page asked from `name` (a name just listed, not the folder's first) starts with it. A service
    that rejects the parameter (HTTP 400) does not honour it either."""
    try:
        page = await source.page(prefix, None, 1, name)
    except BackendError as exc:
        logger().debug("azure.start_from.rejected", error=str(exc))
        return False
    return page.names[:1] == [name]


async def list_blobs(
    source: PageSource, prefix: str, limit: int, *, page_size: int, fanout: int, probe: Probe | None
) -> AsyncGenerator[list[ObjectMeta], None]:
    """The objects under `prefix`, one batch per round, at most `limit` in all (see the module docstring).
    `probe` None: one chain. Raises what `source.page` raises, and `BackendError` when the service breaks the
    name order after the folder was split, or hands out the same marker twice."""
    log = logger().bind(prefix=prefix)
    started = time.perf_counter()
    ranges: list[KeyRange] = [KeyRange()]
    samples: dict[int, list[str]] = {}
    remaining, pages, rounds, found = limit, 0, 0, 0
    split = whole = False
    page_size = max(1, min(page_size, MAX_PAGE))
    while ranges and remaining > 0:
        rounds += 1
        share = max(1, remaining // len(ranges))
        plan, waiting = ranges[:remaining], ranges[remaining:]  # ranges left without budget wait
        steps = await gather(
            [
                functools.partial(list_range, source, prefix, rng, min(page_size, share), 1, page_size=page_size)
                for rng in plan
            ]
        )
        pages += len(plan)
        batch: list[ObjectMeta] = []
        active: list[KeyRange] = []
        samples = {}
        for step in steps:
            if step.disorder is not None:
                if split:
                    raise BackendError(
                        f"List Blobs under {prefix!r} broke the name order of a folder listed as key ranges "
                        f"({step.disorder}); list it as one chain with AzureOptions(parallel_listing=False)"
                    )
                whole = True  # one chain so far: the service's own order, still exact
            batch.extend(step.objects[: remaining - len(batch)])
            if step.rest is not None:
                samples[len(active)] = step.sample
                active.append(step.rest)
        remaining -= len(batch)
        found += len(batch)
        if batch:
            yield batch
        ranges = active + waiting
        room = min(fanout, remaining // page_size)  # no more ranges than the budget has full pages for
        if probe is None or whole or len(ranges) >= room:
            continue
        if not split:
            chain = samples.get(0, [])
            if len(chain) < 2:
                continue
            if not await probe(chain[-1]):
                probe = None  # not honoured: the folder stays one chain
                continue
        pieces = _fan_out(prefix, ranges, samples, room)
        split = split or len(pieces) > len(ranges)
        ranges = pieces
    log.debug(
        "azure.list",
        objects=found,
        pages=pages,
        rounds=rounds,
        ranges=split,
        truncated=remaining <= 0,
        elapsed=round(time.perf_counter() - started, 4),
    )


def _fan_out(prefix: str, ranges: list[KeyRange], samples: dict[int, list[str]], room: int) -> list[KeyRange]:
    """Split ranges with a sample of at least two names into new ranges while there is room for `room`."""
    free = room - len(ranges)
    busy = [i for i in range(len(ranges)) if len(samples.get(i, ())) >= 2]
    if free <= 0 or not busy:
        return ranges
    per = max(1, free // len(busy))
    out: list[KeyRange] = []
    for i, rng in enumerate(ranges):
        if free <= 0 or i not in busy:
            out.append(rng)
            continue
        pieces = split_range(prefix, rng, samples[i], min(per, free) + 1)
        free -= len(pieces) - 1
        out.extend(pieces)
    return out
