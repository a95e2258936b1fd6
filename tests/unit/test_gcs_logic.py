"""GCS resolver logic without a server: listing fan-out (completeness, budget), split points, entry fields,
error mapping. `_list_page` is replaced by an in-memory objects.list that honours prefix, startOffset,
endOffset, maxResults and pageToken like GCS does."""

from __future__ import annotations

import bisect
import random
import string
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refscan.errors import AccessDenied, BackendError, NotFound
from refscan.options import Options
from refscan.resolvers.gcs import (
    GCSResolver,
    _Failure,
    _failure_from_body,
    _object_info,
    _Range,
    _translate,
    split_points,
)
from refscan.uri import RefURI


class MemoryGCS(GCSResolver):
    """A GCSResolver whose objects.list is served from a sorted in-memory list of (name, size)."""

    def __init__(self, objects: Mapping[str, int], *, page_size: int = 1000, fanout: int = 16) -> None:
        super().__init__(Options(), anyio.CapacityLimiter(64))
        self.objects = sorted(objects.items())
        self.names = [n for n, _ in self.objects]
        self.page_size = page_size
        self.list_fanout = fanout
        self.calls: list[dict[str, Any]] = []

    async def _list_page(
        self, bucket: str, prefix: str, rng: _Range, max_results: int
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        assert 1 <= max_results <= self.page_size + 1
        call: dict[str, Any] = {"start": rng.start, "end": rng.end, "token": rng.token, "max": max_results}
        self.calls.append(call)
        lo = rng.token if rng.token is not None else max(prefix, rng.start or "")
        i = bisect.bisect_left(self.names, lo)
        items: list[Mapping[str, Any]] = []
        while i < len(self.names) and len(items) < max_results:
            name = self.names[i]
            if not name.startswith(prefix):
                if name > prefix:
                    break
                i += 1
                continue
            if rng.end is not None and name >= rng.end:
                break
            size = self.objects[i][1]
            items.append({"name": name, "size": str(size), "etag": f"e-{name}", "generation": "7"})
            i += 1
        more = i < len(self.names) and self.names[i].startswith(prefix) and (rng.end is None or self.names[i] < rng.end)
        # objects the server listed: markers are not objects, and a split range re-lists its first name
        call["listed"] = sum(1 for i in items if not (i["name"].endswith("/") and i["size"] == "0"))
        call["listed"] -= sum(1 for i in items if i["name"] == rng.skip)
        await anyio.lowlevel.checkpoint()
        return items, (self.names[i] if more else None)


async def collect(r: MemoryGCS, uri: str, limit: int) -> list[str]:
    out: list[str] = []
    async for batch in r.list(RefURI.parse(uri), limit):
        assert batch, "empty batches are not yielded"
        out.extend(i.key for i in batch)
    return out


def expected(objects: Mapping[str, int], prefix: str) -> list[str]:
    return sorted(n for n, s in objects.items() if n.startswith(prefix) and not (n.endswith("/") and s == 0))


def listed(r: MemoryGCS) -> int:
    """Distinct objects the server listed (SPEC §5: at most max_objects + 1, i.e. `limit`)."""
    return sum(c["listed"] for c in r.calls)


LAYOUTS: dict[str, dict[str, int]] = {
    "sequential": {f"data/img_{i:06d}.jpg": 1 for i in range(5000)},
    "hex": {f"data/{random.Random(i).getrandbits(64):016x}": 1 for i in range(5000)},
    "nested": {f"data/class{c:03d}/{i:04d}.png": 1 for c in range(50) for i in range(100)},
    "skewed": {**{f"data/a/{i:05d}": 1 for i in range(4000)}, **{f"data/z{i}": 1 for i in range(30)}},
}


@pytest.mark.anyio
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_list_complete_and_fans_out(layout: str) -> None:
    objects = {**LAYOUTS[layout], "data/": 0, "data2/x": 1, "dat": 1, "data/sub/": 0}
    r = MemoryGCS(objects, page_size=100)
    names = await collect(r, "gs://b/data/", 100_000)
    assert sorted(names) == expected(objects, "data/")
    assert len(names) == len(set(names))
    sequential_pages = len(names) // 100 + 1
    # fan-out: far fewer rounds than sequential pages; wasted requests stay bounded
    assert len(r.calls) < sequential_pages * 2 + 16 * 3
    assert len({(c["start"], c["end"]) for c in r.calls}) > 1


@pytest.mark.anyio
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_folder_the_size_of_the_limit_keeps_full_pages(layout: str) -> None:
    """The default case (a folder about as large as max_objects): the budget must not shrink pages to crumbs."""
    objects = LAYOUTS[layout]
    r = MemoryGCS(objects, page_size=100)
    names = await collect(r, "gs://b/data/", len(objects) + 1)
    assert sorted(names) == expected(objects, "data/")
    sequential_pages = len(objects) // 100 + 1
    assert len(r.calls) <= sequential_pages * 2, len(r.calls)


@pytest.mark.anyio
async def test_small_folder_is_one_request() -> None:
    r = MemoryGCS({f"d/{i}": 1 for i in range(999)})
    assert len(await collect(r, "gs://b/d/", 10_001)) == 999
    assert len(r.calls) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [1, 2, 99, 100, 101, 999, 1000, 1001, 4999, 5000, 5001])
async def test_budget_never_exceeded(limit: int) -> None:
    objects = {f"d/{i:05d}": 1 for i in range(5000)} | {f"d/m{i}/": 0 for i in range(10)}
    r = MemoryGCS(objects, page_size=100)
    names = await collect(r, "gs://b/d/", limit)
    assert len(names) == min(limit, 5000)
    assert len(set(names)) == len(names)
    assert listed(r) <= limit


@pytest.mark.anyio
async def test_bucket_root_and_empty_folder() -> None:
    objects = {"a": 1, "b/c": 2, "b/": 0, "zero": 0}
    r = MemoryGCS(objects, page_size=1)
    assert sorted(await collect(r, "gs://b", 100)) == ["a", "b/c", "zero"]
    assert await collect(MemoryGCS(objects), "gs://b/nothing/", 100) == []


ALPHABET = string.ascii_letters + string.digits + "/_-. #?%é€😀"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.sets(st.text(alphabet=ALPHABET, min_size=1, max_size=12), min_size=0, max_size=300),
    page=st.integers(min_value=1, max_value=40),
    fanout=st.integers(min_value=1, max_value=8),
    limit=st.integers(min_value=1, max_value=400),
)
def test_list_property(names: set[str], page: int, fanout: int, limit: int) -> None:
    objects = {f"p/{n}": (0 if n.endswith("/") and len(n) % 2 else 1) for n in names}
    r = MemoryGCS(objects, page_size=page, fanout=fanout)
    got = anyio.run(collect, r, "gs://b/p/", limit)
    want = expected(objects, "p/")
    assert len(got) == len(set(got)) == min(limit, len(want))
    assert set(got) <= set(want)
    if limit >= len(want):
        assert sorted(got) == want
    assert listed(r) <= limit


@given(
    sample=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=10), min_size=2, max_size=50, unique=True),
    end=st.one_of(st.none(), st.text(alphabet=ALPHABET, min_size=1, max_size=10)),
    parts=st.integers(min_value=2, max_value=20),
)
def test_split_points_are_inside_and_increasing(sample: Sequence[str], end: str | None, parts: int) -> None:
    sample = sorted("x/" + s for s in sample)
    end_key = None if end is None else "x/" + end
    points = split_points("x/", sample, end_key, parts)
    assert len(points) <= parts - 1
    assert points == sorted(set(points))
    for p in points:
        assert p > sample[-1]
        assert end_key is None or p < end_key


def test_split_points_follow_counting_names() -> None:
    sample = [f"img/{i:06d}.jpg" for i in range(1000, 2000)]
    points = split_points("img/", sample, None, 4)
    assert len(points) == 3
    # each part is predicted to hold roughly one page of the names that follow
    assert all("img/002000.jpg" <= p < "img/010000.jpg" for p in points), points


def test_object_info_fields() -> None:
    info = _object_info(
        {
            "name": "a b/c#1?.txt",
            "size": "12",
            "etag": "CJ/etag=",
            "generation": "1712345678901234",
            "metageneration": "3",
            "md5Hash": "md5==",
            "crc32c": "crc==",
        }
    )
    assert info.key == "a b/c#1?.txt"
    assert info.digest == "CJ/etag="
    assert info.size == 12
    assert info.version == "1712345678901234"
    assert dict(info.extra) == {"versionID": 1712345678901234, "md5": "md5==", "crc32c": "crc==", "metageneration": 3}


def test_composite_object_without_md5() -> None:
    info = _object_info({"name": "c", "size": "5", "etag": "CKih", "generation": "2", "crc32c": "AAAAAA=="})
    assert dict(info.extra) == {"versionID": 2, "crc32c": "AAAAAA=="}
    assert info.digest == "CKih"


def test_error_mapping() -> None:
    def tr(status: int | None, body: bytes, op: str = "get") -> Exception:
        failure = _failure_from_body(status, body) if status is not None else _Failure(None, "cannot connect")
        return _translate(failure, target="gs://b/k", bucket="b", op=op)

    missing_bucket = b'{"error": {"code": 404, "message": "The specified bucket does not exist."}}'
    missing_object = b'{"error": {"code": 404, "message": "No such object: b/k"}}'
    assert isinstance(tr(404, missing_object), NotFound)
    assert "no such object" in str(tr(404, missing_object))
    assert "bucket does not exist" in str(tr(404, missing_bucket))
    assert "bucket does not exist" in str(tr(404, b"", op="list"))
    denied = tr(403, b'{"error": {"code": 403, "message": "x@y does not have storage.objects.list access"}}', "list")
    assert isinstance(denied, AccessDenied)
    assert "storage.objects.list" in str(denied)
    assert isinstance(tr(401, b"{}"), AccessDenied)
    rp_body = b'{"error": {"code": 400, "message": "Bucket is a requester pays bucket but no user project provided."}}'
    rp = tr(400, rp_body)
    assert isinstance(rp, AccessDenied)
    assert "requester_pays=True" in str(rp)
    assert isinstance(tr(503, b"oops"), BackendError)
    assert isinstance(tr(None, b""), BackendError)
    assert isinstance(tr(400, b"not json"), BackendError)


@pytest.mark.parametrize(
    "item",
    [
        {},
        {"name": 5, "etag": "x"},
        {"name": "a", "etag": "x", "generation": "not-a-number"},
        {"name": "a", "etag": "x", "size": "big"},
        {"name": "a"},  # no fingerprint at all
        ["not", "a", "dict"],
    ],
)
def test_malformed_object_resource(item: Any) -> None:
    with pytest.raises(_Failure):
        _object_info(item)


def test_digest_falls_back_without_etag() -> None:
    assert _object_info({"name": "a", "md5Hash": "m=="}).digest == "m=="
    assert _object_info({"name": "a", "crc32c": "c=="}).digest == "c=="
