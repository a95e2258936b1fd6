"""gs:// references end to end against fake-gcs-server (tests/servers/gcs.py), plus small aiohttp apps that
answer like GCS but misbehave on purpose (composite objects without MD5, 403/401, 503, broken JSON).

Emulator differences that shape these tests (see TEST-SERVERS.md): it never paginates by itself (small pages
are forced with `GCSBackend.page_size`), its ETag equals md5Hash, and composite objects get an MD5.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import gcsfs.core
import pytest
from aiohttp import web

import refscan
from refscan import AccessDenied, BackendError, GCSOptions, NotFound, Options, Scanner, TooManyObjects
from refscan.backends.gcs import GCSBackend
from refscan.backends.gcs.client import GCSClient
from refscan.backends.gcs.listing import Page, _Range
from refscan.options import RetryPolicy
from refscan.uri import RefURI
from tests.servers.gcs import GCSServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("gcs_env")]


def extra_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The `extra` refscan must record for an objects resource (docs/behaviour.md, the gs row of the fields)."""
    out: dict[str, Any] = {"versionID": int(meta["generation"])}
    if "md5Hash" in meta:
        out["md5"] = meta["md5Hash"]
    if "crc32c" in meta:
        out["crc32c"] = meta["crc32c"]
    out["metageneration"] = int(meta["metageneration"])
    return out


def entries(uri: str, **kwargs: Any) -> dict[str, refscan.ManifestEntry]:
    return {e.path: e for e in refscan.scan(uri, **kwargs)}


class PageSpy:
    """Wraps `GCSClient.page` to count objects.list pages and the objects they returned."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, page_size: int | None = None, fanout: int | None = None):
        self.pages: list[tuple[str | None, str | None, int]] = []
        original = GCSClient.page
        spy = self

        async def wrapper(self: GCSClient, bucket: str, prefix: str, rng: _Range, max_results: int) -> Page:
            items, token = await original(self, bucket, prefix, rng, max_results)
            listed = [i for i in items if i["name"] != rng.skip and not (i["name"].endswith("/") and i["size"] == "0")]
            spy.pages.append((rng.start, rng.end, len(listed)))
            return items, token

        monkeypatch.setattr(GCSClient, "page", wrapper)
        if page_size is not None:
            monkeypatch.setattr(GCSBackend, "page_size", page_size)
        if fanout is not None:
            monkeypatch.setattr(GCSBackend, "list_fanout", fanout)

    @property
    def listed(self) -> int:
        return sum(n for _, _, n in self.pages)


# -- entry fields (docs/behaviour.md) --------------------------------------------------------------------------------


def test_single_object_fields(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    gcs_server.upload(b, "model.h5", b"weights")
    gcs_server.upload(b, "checkpoints/model.h5", b"nested weights")
    meta = gcs_server.get_meta(b, "model.h5")

    [e] = refscan.scan(f"gs://{b}/model.h5")
    assert e.path == "model.h5"
    assert e.ref == f"gs://{b}/model.h5"
    assert e.digest == meta["etag"]
    assert e.size == 7
    assert dict(e.extra) == extra_of(meta)
    assert set(e.extra) == {"versionID", "md5", "crc32c", "metageneration"}
    assert isinstance(e.extra["versionID"], int)

    [nested] = refscan.scan(f"gs://{b}/checkpoints/model.h5")
    assert (nested.path, nested.ref, nested.size) == ("model.h5", f"gs://{b}/checkpoints/model.h5", 14)

    [renamed] = refscan.scan(f"gs://{b}/model.h5", name="models/mymodel.h5")
    assert renamed.path == "models/mymodel.h5"
    assert renamed.digest == meta["etag"]

    doc = json.loads(json.dumps(refscan.Manifest([e]).to_dict()))
    assert doc["contents"]["model.h5"]["extra"]["versionID"] == int(meta["generation"])


def test_folder_relative_and_named(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    gcs_server.upload(b, "images/cat.png", b"cat")
    gcs_server.upload(b, "images/dog.png", b"dog!")
    cat = gcs_server.get_meta(b, "images/cat.png")

    for uri in (f"gs://{b}/images", f"gs://{b}/images/"):
        got = entries(uri)
        assert sorted(got) == ["cat.png", "dog.png"]
        assert got["cat.png"].ref == f"gs://{b}/images/cat.png"
        assert got["cat.png"].digest == cat["etag"]
        assert dict(got["cat.png"].extra) == extra_of(cat)
        assert got["dog.png"].size == 4

    assert sorted(entries(f"gs://{b}/images", name="images")) == ["images/cat.png", "images/dog.png"]


def test_bucket_root_full_names(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    for name in ("top.txt", "images/cat.png", "a/b/c/deep.bin"):
        gcs_server.upload(b, name, name.encode())
    for uri in (f"gs://{b}", f"gs://{b}/"):
        got = entries(uri)
        assert sorted(got) == ["a/b/c/deep.bin", "images/cat.png", "top.txt"]
        assert got["a/b/c/deep.bin"].ref == f"gs://{b}/a/b/c/deep.bin"
    assert sorted(entries(f"gs://{b}", name="root")) == ["root/a/b/c/deep.bin", "root/images/cat.png", "root/top.txt"]


def test_checksum_false_makes_no_request(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("checksum=False must not touch the network")

    monkeypatch.setattr(GCSBackend, "open", boom)
    for uri, path in [
        ("gs://no-such-bucket-x/dir/model.h5", "model.h5"),
        ("gs://no-such-bucket-x/dir/model.h5#1712", "model.h5"),
        ("gs://no-such-bucket-x/dir/model.h5?generation=1712", "model.h5"),
        ("gs://no-such-bucket-x/images/", "images"),
        ("gs://no-such-bucket-x", "no-such-bucket-x"),
    ]:
        [e] = refscan.scan(uri, checksum=False)
        assert (e.path, e.ref, e.digest, e.size, dict(e.extra)) == (path, uri, uri, None, {})
    [named] = refscan.scan("gs://no-such-bucket-x/dir/model.h5", checksum=False, name="m/x.h5")
    assert named.path == "m/x.h5"


# -- generations --------------------------------------------------------------------------------------------------


def test_pinned_generation_of_overwritten_object(gcs_server: GCSServer, gcs_versioned_bucket: str) -> None:
    b = gcs_versioned_bucket
    old = gcs_server.upload(b, "f.txt", b"one")
    new = gcs_server.upload(b, "f.txt", b"two!!")
    assert old["generation"] != new["generation"]

    for uri in (f"gs://{b}/f.txt#{old['generation']}", f"gs://{b}/f.txt?generation={old['generation']}"):
        [e] = refscan.scan(uri)
        assert (e.path, e.ref, e.size, e.digest) == ("f.txt", f"gs://{b}/f.txt", 3, old["etag"])
        assert e.extra["versionID"] == int(old["generation"])
        assert e.extra["md5"] == old["md5Hash"]

    [latest] = refscan.scan(f"gs://{b}/f.txt")
    assert (latest.size, latest.digest, latest.extra["versionID"]) == (5, new["etag"], int(new["generation"]))


def test_pinned_generation_survives_delete(gcs_server: GCSServer, gcs_versioned_bucket: str) -> None:
    b = gcs_versioned_bucket
    kept = gcs_server.upload(b, "gone.txt", b"still here")
    gcs_server.delete(b, "gone.txt")

    [e] = refscan.scan(f"gs://{b}/gone.txt#{kept['generation']}")
    assert (e.size, e.digest, e.extra["versionID"]) == (10, kept["etag"], int(kept["generation"]))
    with pytest.raises(NotFound):
        refscan.scan(f"gs://{b}/gone.txt")


def test_missing_generation_is_not_found(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    old = gcs_server.upload(b, "f.txt", b"one")
    gcs_server.upload(b, "f.txt", b"two")  # unversioned bucket: the old generation is gone
    gcs_server.upload(b, "dir/f.txt", b"x")
    with pytest.raises(NotFound, match="no such object"):
        refscan.scan(f"gs://{b}/f.txt#{old['generation']}")
    with pytest.raises(NotFound):
        refscan.scan(f"gs://{b}/f.txt?generation=1")
    with pytest.raises(NotFound):  # a pinned URI is never read as a folder
        refscan.scan(f"gs://{b}/dir#1")


@pytest.mark.anyio
async def test_read_streams_pinned_generation(gcs_server: GCSServer, gcs_versioned_bucket: str) -> None:
    b = gcs_versioned_bucket
    big = bytes(range(256)) * 9000  # > 2 chunks
    old = gcs_server.upload(b, "blob.bin", big)
    gcs_server.upload(b, "blob.bin", b"new")
    async with GCSBackend(Options(), anyio.CapacityLimiter(4)) as r:
        chunks = [c async for c in r.read(RefURI.parse(f"gs://{b}/blob.bin#{old['generation']}"))]
        assert b"".join(chunks) == big
        assert b"".join([c async for c in r.read(RefURI.parse(f"gs://{b}/blob.bin"))]) == b"new"
        with pytest.raises(NotFound):
            async for _ in r.read(RefURI.parse(f"gs://{b}/nope.bin")):
                pass


# -- folder semantics ---------------------------------------------------------------------------------------------


def test_placeholders_skipped_zero_byte_kept(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    gcs_server.upload(b, "data/", b"")
    gcs_server.upload(b, "data/sub/", b"")
    gcs_server.upload(b, "data/a.txt", b"a")
    gcs_server.upload(b, "data/sub/b.txt", b"b")
    gcs_server.upload(b, "data/empty.txt", b"")
    gcs_server.upload(b, "only-marker/", b"")

    got = entries(f"gs://{b}/data")
    assert sorted(got) == ["a.txt", "empty.txt", "sub/b.txt"]
    assert got["empty.txt"].size == 0
    assert sorted(entries(f"gs://{b}")) == ["data/a.txt", "data/empty.txt", "data/sub/b.txt"]
    with pytest.raises(NotFound):  # a folder holding only its marker is empty
        refscan.scan(f"gs://{b}/only-marker")


def test_sibling_prefixes_and_object_wins(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    gcs_server.upload(b, "data/x.txt", b"x")
    gcs_server.upload(b, "data2/y.txt", b"y")
    gcs_server.upload(b, "data-old.txt", b"z")
    assert sorted(entries(f"gs://{b}/data")) == ["x.txt"]
    assert sorted(entries(f"gs://{b}/data2")) == ["y.txt"]

    gcs_server.upload(b, "data", b"the object")  # both the object `data` and keys under `data/` exist
    [e] = refscan.scan(f"gs://{b}/data")
    assert (e.path, e.ref, e.size) == ("data", f"gs://{b}/data", 10)
    assert sorted(entries(f"gs://{b}/data/")) == ["x.txt"]  # the trailing slash asks for the folder


ODD = ["a b.txt", "ünïcødé €.txt", "hash#1.txt", "q?x=1&y=2.txt", "pct%20.txt", "plus+sign.txt", "semi;colon", "~tilde"]


def test_odd_names(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    metas = {name: gcs_server.upload(b, f"odd dir/{name}", name.encode()) for name in ODD}
    for name in ODD:
        [e] = refscan.scan(f"gs://{b}/odd dir/{name}")
        assert (e.path, e.ref, e.digest) == (name, f"gs://{b}/odd dir/{name}", metas[name]["etag"])
        assert e.size == len(name.encode())
    got = entries(f"gs://{b}/odd dir")
    assert sorted(got) == sorted(ODD)
    assert all(got[n].digest == metas[n]["etag"] for n in ODD)


def test_empty_folder_and_missing_things(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    with pytest.raises(NotFound):
        refscan.scan(f"gs://{b}")  # empty bucket
    gcs_server.upload(b, "other/x", b"x")
    with pytest.raises(NotFound, match="no objects under"):
        refscan.scan(f"gs://{b}/nothing")
    with pytest.raises(NotFound):
        refscan.scan(f"gs://{b}/nothing/")
    missing = "refscan-missing-bucket"
    for uri in (f"gs://{missing}/key", f"gs://{missing}", f"gs://{missing}/dir/"):
        with pytest.raises(NotFound, match=f"gs://{missing}: bucket does not exist"):
            refscan.scan(uri)


# -- listing: pagination, fan-out, limits --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_bucket(gcs_server: GCSServer) -> tuple[str, set[str]]:
    """60 objects over three sub-folders plus markers and a sibling prefix, seeded once for the module."""
    b = gcs_server.create_bucket()
    names = {f"big/{d}/{i:03d}.bin" for d in ("a", "b", "c") for i in range(20)}
    gcs_server.upload_many(b, {n: n.encode() for n in names})
    gcs_server.upload_many(b, {"big/": b"", "big/b/": b"", "big2/not-me.bin": b"x"})
    return b, {n[len("big/") :] for n in names}


@pytest.mark.parametrize("fanout", [1, 16])
def test_pagination_complete(monkeypatch: pytest.MonkeyPatch, big_bucket: tuple[str, set[str]], fanout: int) -> None:
    b, names = big_bucket
    spy = PageSpy(monkeypatch, page_size=2, fanout=fanout)
    got = entries(f"gs://{b}/big")
    assert set(got) == names
    assert len(spy.pages) > 1
    assert spy.listed == len(names)  # every object listed exactly once
    if fanout == 1:
        assert len(spy.pages) >= len(names) // 2
        assert {(s, e) for s, e, _ in spy.pages} == {(None, None)}  # one range, paged by pageToken
    else:
        assert len({(s, e) for s, e, _ in spy.pages}) > 1  # key ranges listed concurrently


def test_max_objects(monkeypatch: pytest.MonkeyPatch, big_bucket: tuple[str, set[str]]) -> None:
    b, names = big_bucket
    n = len(names)
    spy = PageSpy(monkeypatch, page_size=7)
    assert len(refscan.scan(f"gs://{b}/big", max_objects=n)) == n
    assert spy.listed <= n + 1

    for limit in (n - 1, 5, 1):
        spy.pages.clear()
        with pytest.raises(TooManyObjects, match=f"Exceeded {limit} objects") as info:
            refscan.scan(f"gs://{b}/big", max_objects=limit)
        assert "max_objects" in str(info.value)
        assert spy.listed <= limit + 1, spy.pages


@pytest.mark.anyio
async def test_scanner_reuses_one_backend(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    for i in range(5):
        gcs_server.upload(b, f"many/{i}.txt", b"x" * i)
    async with Scanner() as s:
        results = await s.scan_many([f"gs://{b}/many/{i}.txt" for i in range(5)] + [f"gs://{b}/many"])
        assert [r[0].size for r in results[:5]] == [0, 1, 2, 3, 4]
        assert len(results[5]) == 5
        assert len(s.session._open) == 1


# -- gcsfs integration ------------------------------------------------------------------------------------------


def test_hns_setting_never_stalls(gcs_server: GCSServer, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """gcsfs 2026.10 enables gRPC storage-control lookups unless GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false; they
    wait ~60 s per bucket against an emulator. refscan uses the plain JSON-API filesystem whatever it says."""
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "true")
    gcs_server.upload(gcs_bucket, "d/x.txt", b"x")
    started = time.perf_counter()
    assert [e.path for e in refscan.scan(f"gs://{gcs_bucket}/d")] == ["x.txt"]
    assert [e.path for e in refscan.scan(f"gs://{gcs_bucket}/d/x.txt")] == ["x.txt"]
    assert time.perf_counter() - started < 10


@pytest.mark.anyio
async def test_uses_plain_json_filesystem_and_closes_session() -> None:
    r = GCSBackend(Options(), anyio.CapacityLimiter(2))
    async with r:
        assert type(r.client._fs) is gcsfs.core.GCSFileSystem
        session = r.client._session
        assert session is not None
    assert session.closed


def test_compose_on_emulator(gcs_server: GCSServer, gcs_bucket: str) -> None:
    b = gcs_bucket
    gcs_server.upload(b, "part1", b"hello ")
    gcs_server.upload(b, "part2", b"world")
    composed = gcs_server.request(
        "POST",
        f"/storage/v1/b/{b}/o/composed/compose",
        body={"sourceObjects": [{"name": "part1"}, {"name": "part2"}], "destination": {"contentType": "text/plain"}},
    )
    [e] = refscan.scan(f"gs://{b}/composed")
    assert e.size == 11
    assert e.extra["crc32c"] == composed["crc32c"]
    assert e.digest == composed["etag"]
    # fake-gcs-server gives composite objects an MD5 (real GCS does not): the no-MD5 case is covered below


# -- misbehaving servers ----------------------------------------------------------------------------------------


def fake_gcs(handler: Callable[[web.Request], Any]) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


#: retry waits of ~10 ms (the default policy otherwise: 6 attempts)
FAST = RetryPolicy(backoff=0.01)


def app_options(url: str, *, retry: RetryPolicy | None = None, **kwargs: Any) -> Options:
    return Options(retry=retry or RetryPolicy(), gcs=GCSOptions(endpoint_url=url, token="anon", **kwargs))


COMPOSITE = {
    "kind": "storage#object",
    "name": "data/composite.bin",
    "bucket": "bk",
    "size": "11",
    "crc32c": "yZRlqg==",
    "etag": "CNCz6u7X4YIDEAE=",  # real GCS: an opaque token, not the MD5
    "generation": "1712345678901234",
    "metageneration": "1",
    "componentCount": 2,
}


def test_composite_without_md5(serve_app: Callable[[web.Application], str]) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        if request.raw_path.split("?")[0] == "/storage/v1/b/bk/o/data%2Fcomposite.bin":  # "/" sent as %2F
            return web.json_response(COMPOSITE)
        if request.path == "/storage/v1/b/bk/o":
            return web.json_response({"kind": "storage#objects", "items": [COMPOSITE]})
        return web.json_response({"error": {"code": 404, "message": "No such object: bk/x"}}, status=404)

    url = serve_app(fake_gcs(handler))
    want = {"versionID": 1712345678901234, "crc32c": "yZRlqg==", "metageneration": 1}
    [single] = refscan.scan("gs://bk/data/composite.bin", options=app_options(url))
    assert (single.digest, single.size, dict(single.extra)) == ("CNCz6u7X4YIDEAE=", 11, want)
    [listed] = refscan.scan("gs://bk/data/", options=app_options(url))
    assert (listed.path, listed.digest, dict(listed.extra)) == ("composite.bin", "CNCz6u7X4YIDEAE=", want)
    assert any("fields=" in s for s in seen)
    assert all("prettyPrint=false" in s for s in seen)  # every request here is a JSON-API one


@pytest.mark.parametrize(
    ("status", "message", "needle"),
    [
        (403, "anonymous caller does not have storage.objects.get access", "lack storage.objects"),
        (401, "Anonymous caller", "not authenticated"),
        (400, "Bucket is a requester pays bucket but no user project provided.", "requester_pays=True"),
    ],
)
def test_access_denied(serve_app: Callable[[web.Application], str], status: int, message: str, needle: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": status, "message": message}}, status=status)

    url = serve_app(fake_gcs(handler))
    for uri in ("gs://bk/secret.bin", "gs://bk/dir/"):
        with pytest.raises(AccessDenied, match=needle) as info:
            refscan.scan(uri, options=app_options(url))
        assert isinstance(info.value, PermissionError)


def test_requester_pays_sends_user_project(serve_app: Callable[[web.Application], str]) -> None:
    seen: list[Mapping[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({**COMPOSITE, "name": "x.bin"})

    url = serve_app(fake_gcs(handler))
    refscan.scan("gs://bk/x.bin", options=app_options(url, requester_pays=True, project="billing-proj"))
    assert seen[-1]["userProject"] == "billing-proj"


def test_retries_then_gives_up(serve_app: Callable[[web.Application], str]) -> None:
    calls = {"flaky": 0, "down": 0}

    async def handler(request: web.Request) -> web.Response:
        key = "flaky" if "flaky" in request.raw_path else "down"
        calls[key] += 1
        if key == "flaky" and calls[key] > 2:
            return web.json_response({**COMPOSITE, "name": "flaky.bin"})
        if key == "flaky":
            return web.json_response({"error": {"code": 429, "message": "slow down"}}, status=429)
        return web.Response(status=503, text="unavailable")

    url = serve_app(fake_gcs(handler))
    [e] = refscan.scan("gs://bk/flaky.bin", options=app_options(url, retry=FAST))
    assert e.size == 11
    assert calls["flaky"] == 3
    with pytest.raises(BackendError, match="HTTP 503"):
        refscan.scan("gs://bk/down.bin", options=app_options(url, retry=FAST, max_attempts=3))
    assert calls["down"] == 3


def test_unreachable_and_garbage(serve_app: Callable[[web.Application], str]) -> None:
    from tests.servers.util import free_port

    with pytest.raises(BackendError, match="cannot connect"):
        refscan.scan("gs://bk/x", options=app_options(f"http://127.0.0.1:{free_port()}", retry=FAST, max_attempts=2))

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>", content_type="text/html")

    url = serve_app(fake_gcs(handler))
    with pytest.raises(BackendError, match="not JSON"):
        refscan.scan("gs://bk/x", options=app_options(url, retry=FAST))


def test_secret_token_never_in_errors(
    serve_app: Callable[[web.Application], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETCH_RAW_TOKEN_EXPIRY", "false")  # gcsfs would ask Google's tokeninfo about a raw token
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"error": {"code": 403, "message": "denied"}}, status=403)

    url = serve_app(fake_gcs(handler))
    secret = "ya29.super-secret-access-token"
    with pytest.raises(AccessDenied) as info:
        refscan.scan("gs://bk/x", options=Options(gcs=GCSOptions(endpoint_url=url, token=secret)))
    assert seen
    assert seen[0] == f"Bearer {secret}"
    assert secret not in str(info.value)
    assert secret not in repr(Options(gcs=GCSOptions(token=secret)))


@pytest.mark.anyio
async def test_read_resumes_at_the_same_generation(serve_app: Callable[[web.Application], str]) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    requests: list[tuple[str | None, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        requests.append((request.headers.get("Range"), request.query.get("generation")))
        if len(requests) == 1:  # first answer: announce everything, send a third, drop the connection
            resp = web.StreamResponse(headers={"x-goog-generation": "42"})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 3])
            assert request.transport is not None
            request.transport.close()
            return resp
        start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
        return web.Response(
            status=206,
            body=body[start:],
            headers={"x-goog-generation": "42", "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"},
        )

    url = serve_app(fake_gcs(handler))
    async with GCSBackend(app_options(url, retry=FAST), anyio.CapacityLimiter(2)) as r:
        data = b"".join([c async for c in r.read(RefURI.parse("gs://bk/big.bin"))])
    assert data == body
    assert requests[0] == (None, None)
    assert requests[1][1] == "42"  # the resume is pinned to the generation first served
    assert requests[1][0] is not None
    assert requests[1][0].startswith("bytes=")


def test_listing_that_does_not_advance(serve_app: Callable[[web.Application], str]) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/storage/v1/b/bk/o":  # always the same page and token
            return web.json_response({"items": [{**COMPOSITE, "name": "d/x"}], "nextPageToken": "same"})
        return web.json_response({"error": {"code": 404, "message": "No such object: bk/d"}}, status=404)

    url = serve_app(fake_gcs(handler))
    with pytest.raises(BackendError, match="same page token"):
        refscan.scan("gs://bk/d", options=app_options(url))


def test_malformed_listing(serve_app: Callable[[web.Application], str]) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/storage/v1/b/bk/o":
            return web.json_response({"items": [{"name": "d/x", "size": "12"}]})  # no etag/md5/crc32c
        return web.json_response({"error": {"code": 404, "message": "No such object: bk/d"}}, status=404)

    url = serve_app(fake_gcs(handler))
    with pytest.raises(BackendError, match="no etag"):
        refscan.scan("gs://bk/d", options=app_options(url))
