"""GCS backend logic without a server: listing fan-out (completeness, budget), split points, the codec and
fingerprints, error mapping. The listing loop is fed by an in-memory objects.list (a `PageSource`) that
honours prefix, startOffset, endOffset, maxResults and pageToken like GCS does."""

from __future__ import annotations

import bisect
import json
import random
import re
import string
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from refscan.backends.gcs import GCSBackend
from refscan.backends.gcs.backend import MalformedResource, object_meta
from refscan.backends.gcs.client import (
    LIST_FIELDS,
    OBJECT_FIELDS,
    GCSClient,
    _Failure,
    _failure_from_body,
    _translate,
)
from refscan.backends.gcs.listing import Page, _Range, list_items, split_points
from refscan.backends.gcs.listing import list_range as gcs_list_range
from refscan.backends.gcs.listing import split_range as gcs_split_range
from refscan.backends.keyspace import KeyRange
from refscan.errors import AccessDenied, BackendError, NotFound
from refscan.fingerprint import Match, compare
from refscan.meta import ObjectMeta
from refscan.options import GCSOptions, Options, RetryPolicy
from refscan.uri import RefURI


class MemoryGCS:
    """An objects.list served from a sorted in-memory list of (name, size), with the listing's knobs."""

    def __init__(self, objects: Mapping[str, int], *, page_size: int = 1000, fanout: int = 16) -> None:
        self.objects = sorted(objects.items())
        self.names = [n for n, _ in self.objects]
        self.page_size = page_size
        self.fanout = fanout
        self.calls: list[dict[str, Any]] = []
        self.anonymous = False  # what GCSBackend asks of its client when mapping errors

    async def page(self, bucket: str, prefix: str, rng: _Range, max_results: int) -> Page:
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
    folder = RefURI.parse(uri)
    out: list[str] = []
    async for batch in list_items(r, folder.bucket, folder.key, limit, page_size=r.page_size, fanout=r.fanout):
        assert batch, "empty batches are not yielded"
        out.extend(item["name"] for item in batch)
    return out


def expected(objects: Mapping[str, int], prefix: str) -> list[str]:
    return sorted(n for n, s in objects.items() if n.startswith(prefix) and not (n.endswith("/") and s == 0))


def listed(r: MemoryGCS) -> int:
    """Distinct objects the server listed (refscan asks for at most max_objects + 1, i.e. `limit`)."""
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


# -- objects resources and the codec ----------------------------------------------------------------------------

FULL = {
    "name": "a b/c#1?.txt",
    "size": "12",
    "etag": "CJ/etag=",
    "generation": "1712345678901234",
    "metageneration": "3",
    "md5Hash": "md5==",
    "crc32c": "crc==",
}


def test_object_meta_fields() -> None:
    meta = object_meta(FULL)
    assert meta.key == "a b/c#1?.txt"
    assert meta.etag == "CJ/etag="
    assert meta.size == 12
    assert meta.version == "1712345678901234"
    assert meta.modified is None
    assert list(meta.hashes.items()) == [("md5", "md5=="), ("crc32c", "crc==")]
    assert dict(meta.attrs) == {"metageneration": 3}
    digest, extra = GCSBackend.encode(meta)
    assert digest == "CJ/etag="
    assert extra == {"versionID": 1712345678901234, "md5": "md5==", "crc32c": "crc==", "metageneration": 3}
    assert list(extra) == ["versionID", "md5", "crc32c", "metageneration"]


def test_composite_object_without_md5() -> None:
    meta = object_meta({"name": "c", "size": "5", "etag": "CKih", "generation": "2", "crc32c": "AAAAAA=="})
    assert GCSBackend.encode(meta) == ("CKih", {"versionID": 2, "crc32c": "AAAAAA=="})


def test_digest_falls_back_without_etag() -> None:
    assert GCSBackend.encode(object_meta({"name": "a", "md5Hash": "m=="})) == ("m==", {"md5": "m=="})
    assert GCSBackend.encode(object_meta({"name": "a", "crc32c": "c=="})) == ("c==", {"crc32c": "c=="})


def test_decode_inverts_encode() -> None:
    for item in (FULL, {"name": "c", "size": "5", "etag": "CKih", "generation": "2", "crc32c": "AAAAAA=="}):
        meta = object_meta(item)
        digest, extra = GCSBackend.encode(meta)
        assert GCSBackend.decode(meta.key, digest, meta.size, extra) == meta
    wandb_extra = {"etag": "CJ/etag=", "versionID": 1712345678901234}
    assert GCSBackend.encode(GCSBackend.decode("k", "CJ/etag=", 12, wandb_extra)) == ("CJ/etag=", wandb_extra)


def test_wandb_entry_verifies_while_its_generation_exists() -> None:
    """W&B records digest = ETag and extra = {etag, versionID}: no md5/crc32c to share with a fresh lookup,
    so the generation decides, then the ETag."""
    recorded = GCSBackend.decode("c#1?.txt", "CJ/etag=", 12, {"etag": "CJ/etag=", "versionID": 1712345678901234})
    assert (recorded.etag, recorded.version, dict(recorded.hashes)) == ("CJ/etag=", "1712345678901234", {})
    expected = GCSBackend.fingerprint(recorded)
    assert expected.provable

    fresh = object_meta(FULL)
    assert compare(expected, GCSBackend.fingerprint(fresh)) is Match.SAME
    # a metadata update: new metageneration and ETag, same generation
    touched = ObjectMeta(**{**_meta_fields(fresh), "etag": "CJ/other=", "attrs": {"metageneration": 4}})
    assert compare(expected, GCSBackend.fingerprint(touched)) is Match.SAME
    # overwritten: another generation and ETag
    rewritten = ObjectMeta(**{**_meta_fields(fresh), "etag": "CK/new=", "version": "1712345678909999"})
    assert compare(expected, GCSBackend.fingerprint(rewritten)) is Match.DIFFERENT
    resized = ObjectMeta(**{**_meta_fields(fresh), "size": 13})
    assert compare(expected, GCSBackend.fingerprint(resized)) is Match.DIFFERENT


def test_content_hashes_decide_before_generation_and_etag() -> None:
    digest, extra = GCSBackend.encode(object_meta(FULL))
    expected = GCSBackend.fingerprint(GCSBackend.decode("k", digest, 12, extra))
    assert [kind for kind, _ in expected.hashes] == ["md5", "crc32c", "version", "etag"]
    same_bytes_new_metadata = object_meta({**FULL, "etag": "CJ/x=", "metageneration": "9"})
    assert compare(expected, GCSBackend.fingerprint(same_bytes_new_metadata)) is Match.SAME
    other_bytes_same_generation = object_meta({**FULL, "md5Hash": "other=="})
    assert compare(expected, GCSBackend.fingerprint(other_bytes_same_generation)) is Match.DIFFERENT


def _meta_fields(meta: ObjectMeta) -> dict[str, Any]:
    return {f: getattr(meta, f) for f in ObjectMeta.__dataclass_fields__}


def test_decode_tolerates_odd_extra() -> None:
    meta = GCSBackend.decode("k", "d", None, {"versionID": "42", "metageneration": 2, "md5": "", "custom": [1]})
    assert (meta.etag, meta.version, dict(meta.hashes), dict(meta.attrs)) == (
        "d",
        "42",
        {},
        {"custom": [1], "metageneration": 2},
    )
    assert GCSBackend.decode("k", "d", 1, {"versionID": "G1"}).version is None
    assert GCSBackend.decode("k", "d", 1, {"versionID": True}).version is None


def test_uris() -> None:
    for text in ("gs://b/dir/f.txt#17", "gs://b/dir/f.txt?generation=17", "GS://b/dir/f.txt#17"):
        uri = RefURI.parse(text)
        assert (uri.bucket, uri.key, uri.version) == ("b", "dir/f.txt", "17")
        assert str(uri) == "gs://b/dir/f.txt#17"
        assert uri.object_ref() == "gs://b/dir/f.txt"
    assert GCSBackend.pin(RefURI.parse("gs://b/k"), "5") == RefURI.parse("gs://b/k#5")
    assert GCSBackend.file_name(RefURI.parse("gs://b/dir/f.txt#17")) == "f.txt"
    assert GCSBackend.file_name(RefURI.parse("gs://b")) == "b"


def test_direct_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    odd = RefURI.parse("gs://b/a b/c#1?.txt#123")
    assert GCSBackend.direct_url(odd, Options()) == "https://storage.googleapis.com/b/a%20b/c%231%3F.txt?generation=123"
    assert GCSBackend.direct_url(RefURI.parse("gs://b/x/y"), Options()) == "https://storage.googleapis.com/b/x/y"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")
    assert GCSBackend.direct_url(RefURI.parse("gs://b/x#2"), Options()) == "http://localhost:4443/b/x?generation=2"


# -- errors -------------------------------------------------------------------------------------------------------


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
    with pytest.raises(MalformedResource):
        object_meta(item)


# -- the backend's listing and the one request path ---------------------------------------------------------------


class OddPages(MemoryGCS):
    """A server that repeats its page token, or lists an object without any fingerprint."""

    def __init__(self, *, item: Mapping[str, Any], token: str | None) -> None:
        super().__init__({})
        self.item, self.token = item, token

    async def page(self, bucket: str, prefix: str, rng: _Range, max_results: int) -> Page:
        return [self.item], self.token


def backend_on(client: MemoryGCS) -> GCSBackend:
    backend = GCSBackend(Options(), anyio.CapacityLimiter(4))
    backend._client = client  # type: ignore[assignment]
    return backend


@pytest.mark.anyio
async def test_backend_list_yieldsobject_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GCSBackend, "page_size", 2)
    backend = backend_on(MemoryGCS({"d/": 0, "d/a": 1, "d/b/": 0, "d/b/c": 3, "d/zero": 0, "e": 1}, page_size=2))
    got = [meta async for batch in backend.list(RefURI.parse("gs://b/d/"), 100) for meta in batch]
    assert [m.key for m in got] == ["d/a", "d/b/c", "d/zero"]
    assert got[1] == ObjectMeta(key="d/b/c", size=3, etag="e-d/b/c", version="7")


@pytest.mark.anyio
async def test_backend_list_errors() -> None:
    repeating = backend_on(OddPages(item={"name": "d/x", "etag": "e"}, token="same"))
    with pytest.raises(BackendError, match=re.escape("gs://b/d/: objects.list returned the same page token twice")):
        async for _ in repeating.list(RefURI.parse("gs://b/d/"), 100):
            pass
    bare = backend_on(OddPages(item={"name": "d/x", "size": "12"}, token=None))
    with pytest.raises(BackendError, match="no etag, md5Hash or crc32c for 'd/x'"):
        async for _ in bare.list(RefURI.parse("gs://b/d/"), 100):
            pass


class FakeResponse:
    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.status, self.body, self.headers = status, body, dict(headers)

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        pass


Step = tuple[int, bytes, Mapping[str, str]] | Exception
OK: Step = (200, json.dumps({"name": "k", "etag": "e"}).encode(), {})


class Scripted(GCSClient):
    """A client whose responses come from `script`; it records token refreshes, sends and waits."""

    def __init__(self, script: Sequence[Step], *, max_attempts: int = 3, signed_in: bool = True) -> None:
        super().__init__(GCSOptions(), RetryPolicy(max_attempts=max_attempts, backoff=0.01), anyio.CapacityLimiter(1))
        self.script = list(script)
        self.refreshes: list[bool] = []
        self.sent = 0
        self._fs = SimpleNamespace(credentials=SimpleNamespace(credentials=object() if signed_in else None))

    async def _headers(self, *, force_refresh: bool = False) -> dict[str, str]:
        assert self.limiter.borrowed_tokens == 0  # never refresh a token while holding the limiter
        self.refreshes.append(force_refresh)
        return {}

    async def _open_response(self, url: URL, headers: Mapping[str, str], *, media: bool, **_: Any) -> Any:
        assert self.limiter.borrowed_tokens == 1
        self.sent += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return FakeResponse(*step)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int]]:
    """The retry waits (seconds, limiter tokens held while waiting), without waiting."""
    recorded: list[tuple[float, int]] = []
    limiters: list[anyio.CapacityLimiter] = []

    async def sleep(delay: float) -> None:
        recorded.append((delay, sum(limiter.borrowed_tokens for limiter in limiters)))
        await anyio.lowlevel.checkpoint()

    original = Scripted.__init__

    def init(self: Scripted, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        limiters.append(self.limiter)

    monkeypatch.setattr(Scripted, "__init__", init)
    monkeypatch.setattr(anyio, "sleep", sleep)
    return recorded


ERR_503: Step = (503, b"unavailable", {"Retry-After": "2"})
ERR_401: Step = (401, b'{"error": {"code": 401, "message": "Invalid Credentials"}}', {})


@pytest.mark.anyio
async def test_expired_token_is_refreshed_once_and_sent_again_at_once(waits: list[tuple[float, int]]) -> None:
    client = Scripted([ERR_401, OK])
    assert await client._get(URL("http://gcs/o")) == {"name": "k", "etag": "e"}
    assert (client.refreshes, client.sent, waits) == ([False, True], 2, [])

    client = Scripted([ERR_401, ERR_401])
    with pytest.raises(_Failure) as info:
        await client._get(URL("http://gcs/o"))
    assert (info.value.status, client.sent, waits) == (401, 2, [])

    anonymous = Scripted([ERR_401], signed_in=False)  # nothing to refresh
    with pytest.raises(_Failure):
        await anonymous._get(URL("http://gcs/o"))
    assert anonymous.sent == 1


@pytest.mark.anyio
async def test_retry_after_is_honoured_outside_the_limiter(waits: list[tuple[float, int]]) -> None:
    client = Scripted([ERR_503, (429, b"{}", {}), OK])
    assert await client._get(URL("http://gcs/o")) == {"name": "k", "etag": "e"}
    assert client.sent == 3
    assert waits[0] == (2.0, 0)
    assert 0.0 < waits[1][0] <= 0.02
    assert waits[1][1] == 0


@pytest.mark.anyio
async def test_gives_up_after_max_attempts(waits: list[tuple[float, int]]) -> None:
    client = Scripted([ERR_503] * 3)
    with pytest.raises(_Failure) as info:
        await client._get(URL("http://gcs/o"))
    assert (info.value.status, info.value.message) == (503, "unavailable; gave up after 3 attempts")
    assert "HTTP 503" in str(_translate(info.value, target="gs://b/k", bucket="b", op="get"))

    broken = Scripted([(200, b'{"items": [', {})] * 2, max_attempts=2)
    with pytest.raises(_Failure) as info:
        await broken._get(URL("http://gcs/o"))
    assert info.value.status is None
    assert info.value.message == "the server answered HTTP 200 with a body that is not JSON; gave up after 2 attempts"

    dropped = Scripted([aiohttp.ServerDisconnectedError(), TimeoutError(), OK])
    assert await dropped._get(URL("http://gcs/o")) == {"name": "k", "etag": "e"}
    assert len(waits) == 2 + 1 + 2


@pytest.mark.anyio
async def test_client_errors_are_not_retried(waits: list[tuple[float, int]]) -> None:
    client = Scripted([(404, b'{"error": {"code": 404, "message": "No such object: b/k"}}', {})])
    with pytest.raises(_Failure) as info:
        await client._get(URL("http://gcs/o"))
    assert (info.value.status, info.value.message, client.sent, waits) == (404, "No such object: b/k", 1, [])


class Recording(Scripted):
    """A scripted client that also records the URLs it sends."""

    def __init__(self, script: Sequence[Step]) -> None:
        super().__init__(script)
        self.urls: list[URL] = []

    async def _open_response(self, url: URL, headers: Mapping[str, str], *, media: bool, **_: Any) -> Any:
        self.urls.append(url)
        return await super()._open_response(url, headers, media=media)


@pytest.mark.anyio
async def test_json_requests_ask_for_compact_trimmed_json() -> None:
    client = Recording([OK, (200, b'{"items": []}', {}), (200, b"bytes", {})])
    await client.object("bk", "a/b c", "7")
    await client.page("bk", "a/", _Range(start="a/x"), 1000)
    await client.media("bk", "a/b c", None, 0)
    get, listing, media = (u.query for u in client.urls)
    assert (get["prettyPrint"], get["fields"], get["generation"]) == ("false", OBJECT_FIELDS, "7")
    assert (listing["prettyPrint"], listing["fields"], listing["maxResults"]) == ("false", LIST_FIELDS, "1000")
    assert "prettyPrint" not in media
    assert media["alt"] == "media"


# -- key ranges for scale-out (listing.list_range / split_range), driven as the distributed driver drives them --


@pytest.mark.anyio
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("parts", [1, 3, 8])
async def test_key_ranges_partition_the_folder(layout: str, parts: int) -> None:
    objects = {**LAYOUTS[layout], "data/": 0, "data2/x": 1, "dat": 1, "data/sub/": 0}
    r = MemoryGCS(objects, page_size=100)
    todo, found, splits = [KeyRange()], [], 0
    while todo:
        rng = todo.pop(0)
        items, rest, names = await gcs_list_range(r, "b", "data/", rng, 10_000, 3, page_size=100)
        found += [str(i["name"]) for i in items]
        if rest is not None:
            pieces = gcs_split_range("data/", rest, names, parts)
            splits += len(pieces) > 1
            todo += pieces
    assert sorted(found) == expected(objects, "data/")
    assert len(found) == len(set(found))
    assert (splits > 0) is (parts > 1)


@pytest.mark.anyio
async def test_a_key_range_step_stops_at_its_limit_and_resumes_exactly() -> None:
    objects = {f"data/{i:04d}": 1 for i in range(250)}
    r = MemoryGCS(objects, page_size=100)
    items, rest, _ = await gcs_list_range(r, "b", "data/", KeyRange(), 130, 5, page_size=100)
    assert len(items) == 130
    assert rest is not None
    more, end, _ = await gcs_list_range(r, "b", "data/", rest, 1000, 5, page_size=100)
    assert end is None
    assert [i["name"] for i in items + more] == sorted(objects)
