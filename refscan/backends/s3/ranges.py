"""S3 folders as `KeyRange`s, for scale-out and checkpoints (`S3Backend.list_range` / `split_range`).

A range holds the keys in (start, end] in S3's byte order: `start` is sent as StartAfter (ListObjectsV2) or
KeyMarker (ListObjectVersions), `end` is applied to the keys returned; `resume` is the server's own
continuation (a token, or KeyMarker + VersionIdMarker) as JSON. The rest of a range carries both its last key
(to split by) and the server's continuation (to go on exactly), and its pages are checked against S3's rules
as the walk's are (`listing.broken_rule`); what breaks them is reported, not guessed around.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from ...meta import ObjectMeta
from ..keyspace import KeyRange, RangeListing, split_points
from . import listing
from .listing import Cursor, Page, PageSource, broken_rule, probe_markers


def _cursor(rng: KeyRange, versioned: bool) -> Cursor | None:
    if rng.resume is not None:
        saved = json.loads(rng.resume)
        return Cursor(token=saved.get("token"), key_marker=saved.get("key"), version_marker=saved.get("version"))
    if rng.start is None:
        return None
    return Cursor(key_marker=rng.start) if versioned else Cursor(start_after=rng.start)


def _resume(cursor: Cursor) -> str:
    saved = {"token": cursor.token, "key": cursor.key_marker, "version": cursor.version_marker}
    return json.dumps({k: v for k, v in saved.items() if v is not None})


async def list_range(
    source: PageSource,
    bucket: str,
    prefix: str,
    rng: KeyRange,
    limit: int,
    pages: int,
    *,
    versioned: bool,
    markers_exact: bool | None,
) -> tuple[RangeListing, bool | None]:
    """One step through `rng`: up to `pages` pages in one chain, at most `limit` objects. Returns the listing
    and whether KeyMarker positions are exact (probed on a versioned folder's first page when unknown)."""
    cursor = _cursor(rng, versioned)
    after = rng.start
    objects: list[ObjectMeta] = []
    page: Page | None = None
    disorder = None
    for _ in range(pages):
        want = min(listing.PAGE, limit - len(objects))
        if want <= 0:
            break
        page = await source.page(bucket, prefix, cursor=cursor, max_keys=want, versioned=versioned, end=rng.end)
        disorder = disorder or broken_rule(prefix, after, page) or None
        objects.extend(page.objects)
        last = page.keys[-1] if page.keys else None
        if page.next is None or (rng.end is not None and last is not None and last > rng.end):
            return RangeListing(objects, None, page.keys, disorder=disorder), markers_exact
        cursor, after = page.next, last
    if page is None or cursor is None:  # no budget for a page: the range is left as it was
        return RangeListing(objects, rng), markers_exact
    if versioned and markers_exact is None:
        markers_exact = await probe_markers(source, bucket, prefix, page)
    rest = KeyRange(start=after, end=rng.end, resume=_resume(cursor))
    splittable = disorder is None and (not versioned or bool(markers_exact))
    return RangeListing(objects, rest, page.keys, splittable, disorder), markers_exact


def split_range(prefix: str, rng: KeyRange, sample: Sequence[str], parts: int) -> list[KeyRange]:
    """`rng` in up to `parts` pieces: the first goes on from the server's continuation up to the first bound,
    the others start at their bound (StartAfter / KeyMarker)."""
    bounds = split_points(prefix, [k for k in sample if k.startswith(prefix)], rng.end, parts)
    if not bounds:
        return [rng]
    ends = [*bounds[1:], rng.end]
    return [replace(rng, end=bounds[0]), *(KeyRange(start=lo, end=hi) for lo, hi in zip(bounds, ends, strict=True))]
