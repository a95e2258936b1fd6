"""HTTP(S) references end to end: nginx serving a fixture tree, and small aiohttp apps that misbehave on purpose
(no HEAD, no ETag, weak ETag, redirects, 503/429, gzip, chunked, trailing slash, secrets, many URLs), plus a
recording forward proxy for HTTP_PROXY / NO_PROXY and temporary netrc files."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web

import refscan
from refscan import AccessDenied, BackendError, HTTPOptions, InvalidURI, NotFound, Options, Scanner
from refscan.backends.http import HTTPBackend, routing
from refscan.backends.http.client import basic_authorization
from refscan.uri import RefURI
from tests.servers.apps import serve_app
from tests.servers.nginx import NginxServer
from tests.servers.util import free_port

pytestmark = pytest.mark.integration


FAST = Options(http=HTTPOptions(max_attempts=3, backoff=0.01, max_backoff=2.0, timeout=5.0))


# -- nginx serving a fixture tree ---------------------------------------------------------------------------------

MTIME = 1_700_000_000  # fixed mtimes make nginx's ETag ("<mtime hex>-<size hex>") predictable


@pytest.fixture(scope="module")
def tree(nginx_server: NginxServer) -> NginxServer:
    files = {
        "http-tree/data/hello.txt": b"hello world",
        "http-tree/data/my file.csv": b"a,b\n1,2\n",
        "http-tree/data/empty.txt": b"",
        "http-tree/data/sub/inner.txt": b"inner",
    }
    files.update({f"http-tree/many/{i:03}.bin": b"x" * i for i in range(100)})
    for rel, data in files.items():
        nginx_server.write(rel, data)
        os.utime(nginx_server.root / rel, (MTIME, MTIME))
    return nginx_server


def nginx_etag(size: int) -> str:
    return f"{MTIME:x}-{size:x}"


def test_nginx_file(tree: NginxServer) -> None:
    url = tree.url("http-tree/data/hello.txt")
    e = one(url)
    assert (e.path, e.ref, e.size, e.digest) == ("hello.txt", url, 11, nginx_etag(11))
    assert e.extra == {"etag": f'"{nginx_etag(11)}"', "lastModified": email.utils.formatdate(MTIME, usegmt=True)}


@pytest.mark.anyio
async def test_nginx_async_api_and_empty_file(tree: NginxServer) -> None:
    entries = await refscan.ascan(tree.url("http-tree/data/empty.txt"))
    assert [(e.path, e.size, e.digest) for e in entries] == [("empty.txt", 0, nginx_etag(0))]
    streamed = [e async for e in refscan.iter_scan(tree.url("http-tree/data/hello.txt"), name="greeting.txt")]
    assert [(e.path, e.size) for e in streamed] == [("greeting.txt", 11)]


def test_nginx_404_is_not_found(tree: NginxServer) -> None:
    with pytest.raises(NotFound, match="404") as info:
        refscan.scan(tree.url("http-tree/data/missing.txt"))
    assert isinstance(info.value, FileNotFoundError)


def test_nginx_directory_url_is_a_clear_error(tree: NginxServer) -> None:
    # nginx: /sub -> 301 /sub/ -> 403 (no index). HEAD 403 triggers the Range GET, which fails the same way.
    with pytest.raises(AccessDenied, match=r"HTTP 403.*redirected to .*/sub/\).*names a directory"):
        refscan.scan(tree.url("http-tree/data/sub"))
    with pytest.raises(AccessDenied, match="403"):
        refscan.scan(tree.url("http-tree/data/sub") + "/", name="sub")


@pytest.mark.anyio
async def test_nginx_range_probe_matches_head(tree: NginxServer) -> None:
    r = HTTPBackend(Options(), anyio.CapacityLimiter(4))
    async with r:
        for rel in ("http-tree/data/hello.txt", "http-tree/data/empty.txt"):
            uri = RefURI.parse(tree.url(rel))
            assert await r._stat_by_range(uri) == await r.stat(uri)
        data = b"".join([c async for c in r.read(RefURI.parse(tree.url("http-tree/data/my file.csv")))])
        assert data == b"a,b\n1,2\n"


def test_nginx_path_naming_and_redaction(tree: NginxServer) -> None:
    url = tree.url("http-tree/data/my file.csv") + "?sig=abc123&X-Amz-Signature=def456&v=2"
    assert "my%20file.csv" in url
    e = one(url)
    assert e.path == "my file.csv"
    assert e.ref is not None
    assert "abc123" not in e.ref
    assert "def456" not in e.ref
    assert e.ref == tree.url("http-tree/data/my file.csv") + "?sig=REDACTED&X-Amz-Signature=REDACTED&v=2"
    with_creds = tree.url("http-tree/data/hello.txt").replace("http://", "http://user:pa55@")
    e = one(with_creds)
    assert e.ref == tree.url("http-tree/data/hello.txt")
    assert "pa55" not in repr(e)


@pytest.mark.anyio
async def test_nginx_scan_many(tree: NginxServer) -> None:
    urls = [tree.url(f"http-tree/many/{i:03}.bin") for i in range(100)]
    async with Scanner() as scanner:
        results = await scanner.scan_many(urls)
    assert [(r[0].path, r[0].size, r[0].digest) for r in results] == [
        (f"{i:03}.bin", i, nginx_etag(i)) for i in range(100)
    ]


# -- aiohttp apps that misbehave on purpose ----------------------------------------------------------------


@dataclass
class Stats:
    """What the app saw: requests per path, methods, connections, bytes of body written, request headers."""

    hits: dict[str, int] = field(default_factory=dict)
    methods: list[tuple[str, str]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)
    body_bytes: int = 0
    accept_encoding: list[str] = field(default_factory=list)
    authorization: list[str] = field(default_factory=list)
    finished_streams: int = 0


BIG = 256 * 1024 * 1024  # announced size of the "large" body; never sent in full
PAYLOAD = b"hello, refscan\n" * 100
GZ = gzip.compress(PAYLOAD, mtime=0)


def build_app(stats: Stats) -> web.Application:
    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        stats.hits[request.path] = stats.hits.get(request.path, 0) + 1
        stats.methods.append((request.method, request.path))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            stats.peers.add((peer[0], peer[1]))
        stats.accept_encoding.append(request.headers.get("Accept-Encoding", ""))
        stats.authorization.append(request.headers.get("Authorization", ""))
        return await handler(request)

    async def big_body(request: web.Request, honour_range: bool) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=405, headers={"Allow": "GET"})
        headers = {"ETag": '"big-etag"', "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}
        if honour_range and request.headers.get("Range") == "bytes=0-0":
            headers["Content-Range"] = f"bytes 0-0/{BIG}"
            stats.body_bytes += 1
            return web.Response(status=206, body=b"x", headers=headers)
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_length = BIG
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(BIG // len(chunk)):
                await resp.write(chunk)
                stats.body_bytes += len(chunk)
        except (ConnectionError, RuntimeError):
            return resp
        stats.finished_streams += 1
        return resp

    async def nohead(request: web.Request) -> web.StreamResponse:
        return await big_body(request, honour_range=True)

    async def norange(request: web.Request) -> web.StreamResponse:
        return await big_body(request, honour_range=False)

    async def presigned_get_only(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=403)
        return web.Response(status=206, body=b"a", headers={"ETag": '"p1"', "Content-Range": "bytes 0-0/42"})

    async def empty_nohead(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=501)
        return web.Response(status=416, headers={"Content-Range": "bytes */0", "ETag": '"empty"'})

    async def noetag(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PAYLOAD, headers={"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})

    async def weak(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PAYLOAD, headers={"ETag": 'W/"x"'})

    async def checksums(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=PAYLOAD,
            headers={
                "ETag": '"c1"',
                "Content-MD5": "md5b64==",
                "x-goog-hash": "crc32c=AAAAAA==",
                "x-amz-checksum-crc32c": "BBBBBB==",
                "Repr-Digest": "sha-256=:abc=:",
            },
        )

    async def hop1(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/redir/hop2")

    async def hop2(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/files/final.bin?X-Amz-Signature=target-secret")

    async def final(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PAYLOAD, headers={"ETag": '"final-etag"'})

    async def flaky(request: web.Request) -> web.StreamResponse:
        if stats.hits[request.path] <= 2:
            return web.Response(status=503, text="busy")
        return web.Response(body=PAYLOAD, headers={"ETag": '"flaky"'})

    async def throttled(request: web.Request) -> web.StreamResponse:
        if stats.hits[request.path] == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(body=PAYLOAD, headers={"ETag": '"throttled"'})

    async def down(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    async def stored_gzip(request: web.Request) -> web.StreamResponse:
        # An object stored gzip-encoded (like S3/GCS uploads with Content-Encoding: gzip): sent as stored.
        return web.Response(body=GZ, headers={"ETag": '"gz-stored"', "Content-Encoding": "gzip"})

    async def negotiated_gzip(request: web.Request) -> web.StreamResponse:
        # A server that compresses on the fly only when the client accepts gzip.
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=GZ, headers={"ETag": 'W/"neg"', "Content-Encoding": "gzip"})
        return web.Response(body=PAYLOAD, headers={"ETag": '"neg"'})

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"ETag": '"chunked"'})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.method != "HEAD":
            for _ in range(3):
                await resp.write(PAYLOAD)
        await resp.write_eof()
        return resp

    async def folder_page(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>index</html>", content_type="text/html", headers={"ETag": '"idx"'})

    async def forbidden(request: web.Request) -> web.StreamResponse:
        return web.Response(status=403, text="AccessDenied")

    async def gone(request: web.Request) -> web.StreamResponse:
        return web.Response(status=410)

    async def needs_auth(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer letmein":
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        return web.Response(body=PAYLOAD, headers={"ETag": '"authed"'})

    async def basic(request: web.Request) -> web.StreamResponse:
        if not request.headers.get("Authorization", "").startswith("Basic "):
            return web.Response(status=401, headers={"WWW-Authenticate": "Basic"})
        return web.Response(body=PAYLOAD, headers={"ETag": '"basic"'})

    async def to_localhost(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://localhost:{request.url.port}/basic.txt")  # another origin, same server

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return web.Response(body=b"s", headers={"ETag": f'"{request.match_info["n"]}"'})

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(body=b"late")

    app = web.Application(middlewares=[record])
    routes: list[tuple[str, Handler]] = [
        ("/nohead/big.bin", nohead),
        ("/norange/big.bin", norange),
        ("/presigned/model.bin", presigned_get_only),
        ("/empty/nohead.txt", empty_nohead),
        ("/noetag.txt", noetag),
        ("/weak.txt", weak),
        ("/checksums.txt", checksums),
        ("/redir/start.bin", hop1),
        ("/redir/hop2", hop2),
        ("/files/final.bin", final),
        ("/flaky.txt", flaky),
        ("/throttled.txt", throttled),
        ("/down.txt", down),
        ("/stored.csv", stored_gzip),
        ("/negotiated.csv", negotiated_gzip),
        ("/chunked.txt", chunked),
        ("/folder/", folder_page),
        ("/secret/forbidden.bin", forbidden),
        ("/gone.txt", gone),
        ("/auth.txt", needs_auth),
        ("/basic.txt", basic),
        ("/to-localhost", to_localhost),
        ("/slow/{n}.bin", slow),
        ("/hang.bin", hang),
    ]
    for path, handler in routes:
        app.router.add_get(path, handler)  # also answers HEAD (the body is dropped)
    return app


@pytest.fixture(scope="module")
def app_server() -> Iterator[tuple[str, Stats]]:
    stats = Stats()
    with serve_app(build_app(stats)) as base:
        yield base, stats


@pytest.fixture
def app(app_server: tuple[str, Stats]) -> tuple[str, Stats]:
    """The shared app with its statistics reset for this test."""
    base, stats = app_server
    stats.hits.clear()
    stats.methods.clear()
    stats.peers.clear()
    stats.accept_encoding.clear()
    stats.authorization.clear()
    stats.body_bytes = 0
    stats.finished_streams = 0
    return base, stats


def one(uri: str, **kwargs: Any) -> refscan.ManifestEntry:
    entries = refscan.scan(uri, **kwargs)
    assert len(entries) == 1
    return entries[0]


# -- HEAD refused: Range GET fallback --------------------------------------------------------------------------


def test_no_head_falls_back_to_range_get_without_downloading(app: tuple[str, Stats]) -> None:
    base, stats = app
    e = one(f"{base}/nohead/big.bin")
    assert (e.path, e.size, e.digest, e.ref) == ("big.bin", BIG, "big-etag", f"{base}/nohead/big.bin")
    assert e.extra == {"etag": '"big-etag"', "lastModified": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert stats.methods == [("HEAD", "/nohead/big.bin"), ("GET", "/nohead/big.bin")]
    assert stats.body_bytes == 1


def test_range_ignored_reads_no_body(app: tuple[str, Stats]) -> None:
    base, stats = app
    started = time.perf_counter()
    e = one(f"{base}/norange/big.bin")
    assert (e.size, e.digest) == (BIG, "big-etag")
    assert time.perf_counter() - started < 5
    time.sleep(0.3)  # let the server notice the closed connection
    assert stats.finished_streams == 0
    assert stats.body_bytes < BIG // 8, "the client must close the connection instead of reading the body"


def test_head_403_presigned_for_get_falls_back(app: tuple[str, Stats]) -> None:
    base, stats = app
    e = one(f"{base}/presigned/model.bin?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA%2Fx")
    assert (e.path, e.size, e.digest) == ("model.bin", 42, "p1")
    assert e.ref == f"{base}/presigned/model.bin?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED"
    assert [m for m, _ in stats.methods] == ["HEAD", "GET"]


def test_empty_file_without_head_is_size_zero(app: tuple[str, Stats]) -> None:
    base, _ = app
    e = one(f"{base}/empty/nohead.txt")
    assert (e.size, e.digest) == (0, "empty")


# -- fingerprints -------------------------------------------------------------------------------------------------


def test_no_etag_digest_is_the_redacted_url(app: tuple[str, Stats]) -> None:
    base, _ = app
    url = f"{base}/noetag.txt?sig=abc&v=1"
    e = one(url)
    assert e.digest == e.ref == f"{base}/noetag.txt?sig=REDACTED&v=1"
    assert e.size == len(PAYLOAD)
    assert "etag" not in e.extra  # the mark: this digest proves nothing
    assert e.extra == {"lastModified": "Wed, 21 Oct 2015 07:28:00 GMT"}


def test_weak_etag_kept(app: tuple[str, Stats]) -> None:
    base, _ = app
    e = one(f"{base}/weak.txt")
    assert e.digest == 'W/"x"'
    assert e.extra["etag"] == 'W/"x"'


def test_checksum_headers_recorded(app: tuple[str, Stats]) -> None:
    base, _ = app
    e = one(f"{base}/checksums.txt")
    assert e.extra == {
        "etag": '"c1"',
        "contentMD5": "md5b64==",
        "xGoogHash": "crc32c=AAAAAA==",
        "amzChecksumCRC32C": "BBBBBB==",
        "reprDigest": "sha-256=:abc=:",
    }


def test_redirect_chain_keeps_the_given_url(app: tuple[str, Stats]) -> None:
    base, stats = app
    e = one(f"{base}/redir/start.bin")
    assert (e.path, e.ref, e.digest, e.size) == ("start.bin", f"{base}/redir/start.bin", "final-etag", len(PAYLOAD))
    assert [p for _, p in stats.methods] == ["/redir/start.bin", "/redir/hop2", "/files/final.bin"]


# -- retries ------------------------------------------------------------------------------------------------------


def test_503_then_success(app: tuple[str, Stats]) -> None:
    base, stats = app
    e = one(f"{base}/flaky.txt", options=FAST)
    assert e.digest == "flaky"
    assert stats.hits["/flaky.txt"] == 3


def test_429_retry_after_is_honoured(app: tuple[str, Stats]) -> None:
    base, stats = app
    started = time.perf_counter()
    e = one(f"{base}/throttled.txt", options=FAST)
    elapsed = time.perf_counter() - started
    assert e.digest == "throttled"
    assert stats.hits["/throttled.txt"] == 2
    assert 0.95 <= elapsed < 3, elapsed  # backoff alone would have waited ~10 ms


def test_always_503_gives_backend_error_after_max_attempts(app: tuple[str, Stats]) -> None:
    base, stats = app
    started = time.perf_counter()
    with pytest.raises(BackendError, match=r"after 3 attempts: HTTP 503"):
        refscan.scan(f"{base}/down.txt", options=FAST)
    assert stats.hits["/down.txt"] == 3
    assert time.perf_counter() - started < 2


def test_timeout_is_retried_then_backend_error(app: tuple[str, Stats]) -> None:
    base, stats = app
    opts = Options(http=HTTPOptions(max_attempts=2, backoff=0.01, timeout=0.3))
    with pytest.raises(BackendError, match="timed out"):
        refscan.scan(f"{base}/hang.bin", options=opts)
    assert stats.hits["/hang.bin"] == 2


def test_connection_refused_is_backend_error() -> None:
    port = free_port()
    with pytest.raises(BackendError, match="cannot connect"):
        refscan.scan(f"http://127.0.0.1:{port}/x.bin", options=FAST)


# -- content coding and framing -----------------------------------------------------------------------------------


def test_stored_gzip_reports_encoded_size(app: tuple[str, Stats]) -> None:
    """Decision: size is the byte count as served (here the stored gzip bytes the ETag describes), not the
    decoded size; the entry says so in extra["contentEncoding"], and read() yields those same bytes."""
    base, stats = app
    e = one(f"{base}/stored.csv")
    assert (e.size, e.digest) == (len(GZ), "gz-stored")
    assert e.extra["contentEncoding"] == "gzip"
    assert stats.accept_encoding == ["identity"]


@pytest.mark.anyio
async def test_read_yields_bytes_as_served(app: tuple[str, Stats]) -> None:
    base, _ = app
    async with HTTPBackend(Options(), anyio.CapacityLimiter(4)) as r:
        data = b"".join([c async for c in r.read(RefURI.parse(f"{base}/stored.csv"))])
        assert data == GZ
        assert gzip.decompress(data) == PAYLOAD
        data = b"".join([c async for c in r.read(RefURI.parse(f"{base}/chunked.txt"))])
        assert data == PAYLOAD * 3
        with pytest.raises(NotFound):
            async for _ in r.read(RefURI.parse(f"{base}/gone.txt")):
                pass


def test_negotiating_server_is_asked_for_identity(app: tuple[str, Stats]) -> None:
    base, _ = app
    e = one(f"{base}/negotiated.csv")
    assert (e.size, e.digest) == (len(PAYLOAD), "neg")
    assert "contentEncoding" not in e.extra


def test_chunked_without_content_length_has_no_size(app: tuple[str, Stats]) -> None:
    base, _ = app
    e = one(f"{base}/chunked.txt")
    assert (e.size, e.digest) == (None, "chunked")
    assert "size" not in e.to_dict()


def test_url_ending_in_slash_needs_name(app: tuple[str, Stats]) -> None:
    base, _ = app
    with pytest.raises(InvalidURI, match="name="):
        refscan.scan(f"{base}/folder/")
    e = one(f"{base}/folder/", name="site/index.html")
    assert (e.path, e.ref, e.digest) == ("site/index.html", f"{base}/folder/", "idx")


# -- errors and secrets -------------------------------------------------------------------------------------------


def test_410_is_not_found(app: tuple[str, Stats]) -> None:
    base, _ = app
    with pytest.raises(NotFound, match="410"):
        refscan.scan(f"{base}/gone.txt")


def test_authorization_header_from_options(app: tuple[str, Stats]) -> None:
    base, stats = app
    with pytest.raises(AccessDenied, match="401"):
        refscan.scan(f"{base}/auth.txt")
    opts = Options(http=HTTPOptions(headers={"Authorization": "Bearer letmein"}))
    assert one(f"{base}/auth.txt", options=opts).digest == "authed"
    assert stats.authorization[-1] == "Bearer letmein"


SECRETS = ("hunter2", "s3cr3tsig", "AKIAEXAMPLE", "sessiontok", "topsecret-token", "target-secret")


@pytest.mark.parametrize(
    ("path", "error"),
    [("/secret/forbidden.bin", AccessDenied), ("/gone.txt", NotFound), ("/down.txt", BackendError)],
)
def test_secrets_never_in_errors_or_logs(
    app: tuple[str, Stats], caplog: pytest.LogCaptureFixture, path: str, error: type[Exception]
) -> None:
    base, stats = app
    url = (
        base.replace("http://", "http://alice:hunter2@")
        + path
        + "?X-Amz-Credential=AKIAEXAMPLE%2F20240101&X-Amz-Signature=s3cr3tsig&X-Amz-Security-Token=sessiontok"
    )
    opts = Options(http=HTTPOptions(headers={"Authorization": "Bearer topsecret-token"}, max_attempts=2, backoff=0.01))
    with caplog.at_level(logging.DEBUG, logger="refscan"), pytest.raises(error) as info:
        refscan.scan(url, options=opts)
    text = str(info.value) + repr(info.value)
    assert "X-Amz-Signature=REDACTED" in text
    assert caplog.text, "debug events were emitted"
    for secret in SECRETS:
        assert secret not in text
        assert secret not in caplog.text
    shown = "".join(traceback.format_exception(info.value))  # what a user sees, chained exceptions included
    assert "X-Amz-Signature=REDACTED" in shown
    for secret in SECRETS:
        assert secret not in shown
    assert stats.hits[path] >= 1


def test_redirect_target_secrets_not_in_errors(app: tuple[str, Stats], caplog: pytest.LogCaptureFixture) -> None:
    base, _ = app
    with caplog.at_level(logging.DEBUG, logger="refscan"):
        one(f"{base}/redir/start.bin")
    assert "target-secret" not in caplog.text


# -- many URLs ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_scan_many_is_concurrent_and_reuses_connections(app: tuple[str, Stats]) -> None:
    base, stats = app
    n, delay, per_host = 200, 0.05, 16
    urls = [f"{base}/slow/{i}.bin" for i in range(n)]
    opts = Options(http=HTTPOptions(per_host_limit=per_host))
    started = time.perf_counter()
    async with Scanner(opts) as scanner:
        results = await scanner.scan_many(urls)
    elapsed = time.perf_counter() - started
    assert [r[0].digest for r in results] == [str(i) for i in range(n)]
    assert elapsed < n * delay / 4, elapsed  # sequential would take n * delay = 10 s
    assert sum(stats.hits.values()) == n
    assert len(stats.peers) <= per_host, "keep-alive: at most per_host_limit connections for the whole run"


# -- proxies and netrc from the environment -------------------------------------------------------------------

PROXY_PW, NETRC_PW = "proxy-pw-secret", "netrc-pw-secret"


@dataclass
class Proxied:
    """One request a forward proxy received: the absolute-form target and the credentials it carried."""

    method: str
    target: str
    proxy_authorization: str | None
    authorization: str | None


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[Proxied]]]:
    """A forward proxy on 127.0.0.1 that answers every request itself (ETag "via-proxy"; 404 for paths with
    "missing"), so a host that does not exist is reachable only through it."""
    seen: list[Proxied] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        h = request.headers
        seen.append(Proxied(request.method, request.raw_path, h.get("Proxy-Authorization"), h.get("Authorization")))
        if "missing" in request.raw_path:
            return web.Response(status=404)
        return web.Response(body=b"via", headers={"ETag": '"via-proxy"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    with serve_app(app) as base:
        yield base, seen


def count_lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """Record every (scheme, host) the backend looks up in the environment."""
    calls: list[tuple[str, str | None]] = []
    real = routing.resolve

    def counting(url: Any) -> routing.Route:
        calls.append((url.scheme, url.host))
        return real(url)

    monkeypatch.setattr(routing, "resolve", counting)
    return calls


def scan_all(urls: list[str], options: Options | None = None) -> list[list[refscan.ManifestEntry]]:
    async def main() -> list[list[refscan.ManifestEntry]]:
        async with Scanner(options) as scanner:
            return await scanner.scan_many(urls)

    return anyio.run(main)


def write_netrc(path: Any, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_http_proxy_from_env_is_used_and_looked_up_once(
    bare_env: pytest.MonkeyPatch, proxy: tuple[str, list[Proxied]]
) -> None:
    base, seen = proxy
    bare_env.setenv("HTTP_PROXY", base.replace("http://", f"http://pu:{PROXY_PW}@"))
    lookups = count_lookups(bare_env)
    urls = [f"http://origin.invalid/d/{i}.bin?v=1" for i in range(20)]
    results = scan_all(urls)
    assert [r[0].digest for r in results] == ["via-proxy"] * 20
    assert sorted(p.target for p in seen) == sorted(urls)  # absolute-form targets: a forward proxy request
    assert {p.proxy_authorization for p in seen} == {basic_authorization("pu", PROXY_PW)}
    assert lookups == [("http", "origin.invalid")]  # once per host, not once per request


def test_no_proxy_hosts_are_reached_directly(
    bare_env: pytest.MonkeyPatch, proxy: tuple[str, list[Proxied]], app: tuple[str, Stats]
) -> None:
    proxy_base, seen = proxy
    base, stats = app
    bare_env.setenv("http_proxy", proxy_base)
    bare_env.setenv("NO_PROXY", "example.invalid,127.0.0.1")
    results = scan_all([f"{base}/checksums.txt", "http://origin.invalid/a.bin"])
    assert [r[0].digest for r in results] == ["c1", "via-proxy"]
    assert stats.hits["/checksums.txt"] == 1
    assert [p.target for p in seen] == ["http://origin.invalid/a.bin"]


def test_no_proxy_host_is_never_sent_to_the_proxy(
    bare_env: pytest.MonkeyPatch, proxy: tuple[str, list[Proxied]]
) -> None:
    proxy_base, seen = proxy
    bare_env.setenv("HTTP_PROXY", proxy_base)
    bare_env.setenv("no_proxy", "origin.invalid")
    with pytest.raises(BackendError, match=r"cannot connect to origin\.invalid"):
        refscan.scan("http://origin.invalid/a.bin", options=FAST)  # direct, and the host does not exist
    assert seen == []


def test_trust_env_false_ignores_proxy_and_netrc(
    bare_env: pytest.MonkeyPatch, tmp_path: Any, proxy: tuple[str, list[Proxied]], app: tuple[str, Stats]
) -> None:
    proxy_base, seen = proxy
    base, stats = app
    bare_env.setenv("HTTP_PROXY", proxy_base)
    bare_env.setenv("NETRC", write_netrc(tmp_path / "netrc", f"machine 127.0.0.1 login alice password {NETRC_PW}\n"))
    opts = Options(http=HTTPOptions(trust_env=False))
    assert one(f"{base}/checksums.txt", options=opts).digest == "c1"
    with pytest.raises(AccessDenied, match="401"):
        refscan.scan(f"{base}/basic.txt", options=opts)
    assert seen == []
    assert stats.authorization == ["", ""]


def test_netrc_credentials_are_sent_as_basic_auth(
    bare_env: pytest.MonkeyPatch, tmp_path: Any, app: tuple[str, Stats]
) -> None:
    base, stats = app
    write_netrc(tmp_path / ".netrc", f"machine 127.0.0.1 login alice password {NETRC_PW}\n")  # ~/.netrc
    assert one(f"{base}/basic.txt").digest == "basic"
    bare_env.setenv("NETRC", write_netrc(tmp_path / "other", f"default login dora password {NETRC_PW}\n"))
    assert one(f"{base}/basic.txt").digest == "basic"
    authed = base.replace("http://", "http://bob:url-pw@")
    assert one(f"{authed}/basic.txt").digest == "basic"  # credentials in the URL win over netrc
    assert stats.authorization == [
        basic_authorization("alice", NETRC_PW),
        basic_authorization("dora", NETRC_PW),
        basic_authorization("bob", "url-pw"),
    ]


def test_netrc_beside_an_authorization_header_is_refused(
    bare_env: pytest.MonkeyPatch, tmp_path: Any, app: tuple[str, Stats], caplog: pytest.LogCaptureFixture
) -> None:
    base, stats = app
    bare_env.setenv("NETRC", write_netrc(tmp_path / "netrc", f"machine 127.0.0.1 login alice password {NETRC_PW}\n"))
    opts = Options(http=HTTPOptions(headers={"Authorization": "Bearer topsecret-token"}, max_attempts=1))
    with caplog.at_level(logging.DEBUG, logger="refscan"), pytest.raises(BackendError, match="netrc") as info:
        refscan.scan(f"{base}/auth.txt", options=opts)
    shown = "".join(traceback.format_exception(info.value)) + caplog.text
    for secret in (NETRC_PW, "topsecret-token", basic_authorization("alice", NETRC_PW)):
        assert secret not in shown
    assert stats.hits == {}, "refused before anything was sent"


def test_netrc_follows_a_redirect_to_another_origin(
    bare_env: pytest.MonkeyPatch, tmp_path: Any, app: tuple[str, Stats]
) -> None:
    base, stats = app
    netrc = f"machine 127.0.0.1 login alice password {NETRC_PW}\nmachine localhost login carol password c-pw\n"
    bare_env.setenv("NETRC", write_netrc(tmp_path / "netrc", netrc))
    lookups = count_lookups(bare_env)
    e = one(f"{base}/to-localhost")
    assert (e.digest, e.ref) == ("basic", f"{base}/to-localhost")
    assert stats.authorization == [basic_authorization("alice", NETRC_PW), basic_authorization("carol", "c-pw")]
    assert lookups == [("http", "127.0.0.1"), ("http", "localhost")]


def test_proxy_and_netrc_secrets_never_logged(
    bare_env: pytest.MonkeyPatch,
    tmp_path: Any,
    proxy: tuple[str, list[Proxied]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_base, seen = proxy
    bare_env.setenv("HTTP_PROXY", proxy_base.replace("http://", f"http://pu:{PROXY_PW}@"))
    bare_env.setenv("NETRC", write_netrc(tmp_path / "netrc", f"machine origin.invalid login nu password {NETRC_PW}\n"))
    with caplog.at_level(logging.DEBUG):  # every logger: refscan's events and aiohttp's own
        assert one("http://origin.invalid/ok.bin").digest == "via-proxy"
        with pytest.raises(NotFound) as info:
            refscan.scan("http://origin.invalid/missing.bin")
    assert seen[0].authorization == basic_authorization("nu", NETRC_PW)
    shown = "".join(traceback.format_exception(info.value)) + caplog.text
    assert "http.request" in caplog.text
    assert "event='http.route'" in caplog.text  # the route is logged once, its proxy without credentials
    for secret in (PROXY_PW, NETRC_PW, basic_authorization("pu", PROXY_PW), basic_authorization("nu", NETRC_PW)):
        assert secret not in shown
