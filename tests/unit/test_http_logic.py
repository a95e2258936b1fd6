"""Pure logic of the HTTP backend: header parsing, digests, retry policy, URL handling, proxy and netrc
routing, redirects (no network: requests go to a fake session)."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL as YURL

from refscan import BackendError, HTTPOptions, InvalidURI, NotFound, Options
from refscan.backends.http import HTTPBackend, routing
from refscan.backends.http.client import (
    MAX_REDIRECTS,
    basic_authorization,
    describe_exception,
    redirect_target,
    request_url,
)
from refscan.backends.http.headers import (
    is_retryable_status,
    object_meta,
    parse_content_length,
    parse_content_range_total,
    parse_retry_after,
)
from refscan.meta import ObjectMeta
from refscan.options import RetryPolicy
from refscan.retry import backoff_delay
from refscan.uri import RefURI

URL = RefURI.parse("https://h/x?sig=s3cr3t")


def digest_from_etag(etag: str | None) -> str:
    return HTTPBackend.encode(object_meta(URL, {"ETag": etag} if etag is not None else {}, 1))[0]


def extra_from_headers(headers: CIMultiDictProxy[str]) -> dict[str, object]:
    return HTTPBackend.encode(object_meta(URL, headers, 1))[1]


@pytest.mark.parametrize(
    ("etag", "digest"),
    [
        ('"abc-12"', "abc-12"),
        ('W/"abc"', 'W/"abc"'),
        ("abc", "abc"),  # unquoted (non-compliant) ETag kept as sent
        ('""', "https://h/x?sig=REDACTED"),
        ("W/", "https://h/x?sig=REDACTED"),
        (None, "https://h/x?sig=REDACTED"),
    ],
)
def test_digest_from_etag(etag: str | None, digest: str) -> None:
    assert digest_from_etag(etag) == digest


def test_extra_from_headers_picks_validators_and_checksums() -> None:
    h = CIMultiDict(
        [
            ("ETag", '"e1"'),
            ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww=="),
            ("x-goog-hash", "crc32c=n03x6A=="),
            ("x-goog-hash", "md5=XrY7u+Ae7tCTyyK7j1rNww=="),
            ("x-amz-checksum-sha256", "abc="),
            ("x-amz-checksum-type", "FULL_OBJECT"),
            ("Repr-Digest", "sha-256=:abc=:"),
            ("Content-Encoding", "gzip"),
            ("Authorization", "secret"),
        ]
    )
    assert extra_from_headers(CIMultiDictProxy(h)) == {
        "etag": '"e1"',
        "lastModified": "Wed, 21 Oct 2015 07:28:00 GMT",
        "contentMD5": "XrY7u+Ae7tCTyyK7j1rNww==",
        "xGoogHash": "crc32c=n03x6A==, md5=XrY7u+Ae7tCTyyK7j1rNww==",
        "amzChecksumSHA256": "abc=",
        "reprDigest": "sha-256=:abc=:",
        "contentEncoding": "gzip",
    }
    assert extra_from_headers(CIMultiDictProxy(CIMultiDict([("Content-Encoding", "identity")]))) == {}
    assert extra_from_headers(CIMultiDictProxy(CIMultiDict([("ETag", '""')]))) == {}


@pytest.mark.parametrize(
    ("value", "total"),
    [
        ("bytes 0-0/1234", 1234),
        ("bytes */0", 0),
        ("BYTES 0-0/7", 7),
        ("bytes 0-0/*", None),
        ("junk", None),
        (None, None),
    ],
)
def test_content_range_total(value: str | None, total: int | None) -> None:
    assert parse_content_range_total(value) == total


def test_content_length() -> None:
    assert parse_content_length({"Content-Length": "12"}) == 12
    assert parse_content_length({"Content-Length": "x"}) is None
    assert parse_content_length({}) is None


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 5, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(5.0)
    assert parse_retry_after(email.utils.formatdate(now - 50, usegmt=True), now=now) == 0.0


def test_backoff_delay_grows_with_jitter_and_is_capped() -> None:
    for attempt in range(1, 6):
        d = backoff_delay(RetryPolicy(backoff=0.5, max_backoff=4.0), attempt)
        nominal = min(4.0, 0.5 * 2 ** (attempt - 1))
        assert nominal / 2 <= d <= nominal
    assert backoff_delay(RetryPolicy(backoff=0.5, max_backoff=4.0), 1, retry_after=2.0) == 2.0
    assert 2.0 <= backoff_delay(RetryPolicy(backoff=0.5, max_backoff=8.0), 4, retry_after=1.0) <= 4.0  # backoff wins
    assert backoff_delay(RetryPolicy(backoff=0.5, max_backoff=4.0), 1, retry_after=3600.0) == 4.0


@pytest.mark.parametrize(
    ("status", "retry"),
    [(408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (501, False), (505, False)]
    + [(s, False) for s in (200, 206, 301, 400, 401, 403, 404, 405, 410, 416)],
)
def test_retryable_statuses(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_request_url_keeps_presigned_encoding_and_encodes_spaces() -> None:
    u = request_url("https://h/a%20b.csv?X-Amz-Credential=AK%2F2024%2Fus&X-Amz-Signature=ab")
    assert u.raw_path == "/a%20b.csv"
    assert u.raw_query_string == "X-Amz-Credential=AK%2F2024%2Fus&X-Amz-Signature=ab"
    assert request_url("http://h/a b.txt").raw_path == "/a%20b.txt"
    assert request_url("http://user:pw@h/x").user == "user"


def test_describe_exception_has_no_url() -> None:
    assert describe_exception(TimeoutError(), 3.0) == "timed out after 3 s"
    assert "http" not in describe_exception(ValueError("http://u:p@h/?sig=s"), None)


def test_list_is_refused() -> None:
    async def main() -> None:
        async with HTTPBackend(Options(), anyio.CapacityLimiter(1)) as r:
            with pytest.raises(InvalidURI, match="never expanded"):
                r.list(RefURI.parse("https://h/d/"), 10)

    anyio.run(main)


# -- proxy and netrc from the environment (routing.py) ----------------------------------------------------------


def write_netrc(tmp_path: Path, text: str) -> str:
    path = tmp_path / "netrc"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_basic_authorization_matches_aiohttp_encoding() -> None:
    assert basic_authorization("alice", "s3cr\xe9t") == "Basic YWxpY2U6czNjcul0"  # latin-1, like aiohttp
    assert basic_authorization("", "") == "Basic Og=="


def test_route_reads_proxies_no_proxy_and_netrc(bare_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bare_env.setenv("HTTP_PROXY", "http://pu:proxy-pw@proxy.test:3128")
    bare_env.setenv("https_proxy", "http://proxy2.test:8080")  # no credentials: the netrc entry of the proxy host
    bare_env.setenv("NO_PROXY", "skip.test,.internal.test")
    bare_env.setenv(
        "NETRC",
        write_netrc(
            tmp_path, "machine data.test login nu password netrc-pw\nmachine proxy2.test login p2 password p2-pw\n"
        ),
    )
    route = routing.resolve(YURL("http://data.test:8000/x"))
    assert route == routing.Route(
        YURL("http://proxy.test:3128"), basic_authorization("pu", "proxy-pw"), basic_authorization("nu", "netrc-pw")
    )
    secure = routing.resolve(YURL("https://data.test/x"))
    assert (secure.proxy, secure.proxy_authorization) == (
        YURL("http://proxy2.test:8080"),
        basic_authorization("p2", "p2-pw"),
    )
    assert routing.resolve(YURL("http://skip.test/x")).proxy is None
    assert routing.resolve(YURL("http://a.internal.test/x")).proxy is None
    assert routing.resolve(YURL("http://other.test/x")).netrc_authorization is None
    for secret in ("proxy-pw", "netrc-pw", "p2-pw", basic_authorization("pu", "proxy-pw")):
        assert secret not in repr(route) + repr(secure)


def test_route_without_environment_is_direct(bare_env: pytest.MonkeyPatch) -> None:
    assert routing.resolve(YURL("https://data.test/x")) == routing.DIRECT


def test_routes_resolve_once_per_scheme_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def slow_resolve(url: YURL) -> routing.Route:
        with lock:
            calls.append((url.scheme, url.host))
        time.sleep(0.05)  # concurrent first requests must wait for this one lookup
        return routing.Route(proxy=YURL(f"http://proxy-for-{url.host}:1"))

    monkeypatch.setattr(routing, "resolve", slow_resolve)

    async def main() -> list[routing.Route]:
        routes = routing.Routes()
        urls = [YURL(f"http://a.test:{8000 + i}/{i}") for i in range(50)] + [
            YURL("http://b.test/"),
            YURL("https://a.test/"),
        ]
        async with anyio.create_task_group() as tg:
            for u in urls:
                tg.start_soon(routes.get, u)
        return [await routes.get(u) for u in urls]

    got = anyio.run(main)
    assert sorted(calls) == [("http", "a.test"), ("http", "b.test"), ("https", "a.test")]
    assert got[0].proxy == YURL("http://proxy-for-a.test:1")


def test_routes_do_not_cache_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(url: YURL) -> routing.Route:
        calls.append(url)
        raise ValueError("bad proxy")

    monkeypatch.setattr(routing, "resolve", broken)

    async def main() -> None:
        routes = routing.Routes()
        for _ in range(2):
            with pytest.raises(ValueError, match="bad proxy"):
                await routes.get(YURL("http://a.test/"))

    anyio.run(main)
    assert len(calls) == 2


# -- the request path on a fake session: routes, credentials, redirects, retries ---------------------------------


@dataclass
class Sent:
    method: str
    url: YURL
    headers: dict[str, str]
    proxy: YURL | None
    proxy_headers: Mapping[str, str] | None


class FakeResponse:
    def __init__(self, method: str, url: YURL, status: int, headers: Mapping[str, str]) -> None:
        self.method, self.url, self.status, self.reason = method, url, status, None
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.closed = False

    def release(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def read(self) -> bytes:
        return b""


Answer = Callable[[YURL], tuple[int, Mapping[str, str]]]


class FakeSession:
    """Answers every request with `answer(url)` and records what was sent."""

    timeout = aiohttp.ClientTimeout(total=5)

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[Sent] = []

    async def request(self, method: str, url: YURL, **kw: Any) -> FakeResponse:
        assert kw["allow_redirects"] is False
        self.sent.append(Sent(method, url, dict(kw["headers"]), kw["proxy"], kw["proxy_headers"]))
        status, headers = self.answer(url)
        return FakeResponse(method, url, status, headers)

    async def close(self) -> None:
        pass


def ok(url: YURL) -> tuple[int, Mapping[str, str]]:
    return 200, {"ETag": '"e"', "Content-Length": "3"}


def stat(url: str, answer: Answer = ok, options: Options | None = None) -> tuple[ObjectMeta, list[Sent]]:
    session = FakeSession(answer)

    async def main() -> ObjectMeta:
        backend = HTTPBackend(options or Options(), anyio.CapacityLimiter(4))
        async with backend:
            real, backend._client._session = backend._client._session, session  # type: ignore[assignment]
            try:
                return await backend.stat(RefURI.parse(url))
            finally:
                backend._client._session = real

    return anyio.run(main), session.sent


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch) -> dict[str, routing.Route]:
    """Routes by host (default DIRECT) instead of the environment: fill the returned table."""
    table: dict[str, routing.Route] = {}
    monkeypatch.setattr(routing, "resolve", lambda url: table.get(url.host or "", routing.DIRECT))
    return table


PROXY_AUTH = basic_authorization("pu", "proxy-pw")
NETRC_AUTH = basic_authorization("nu", "netrc-pw")


def test_plain_http_proxy_gets_proxy_authorization_in_the_request(routes: dict[str, routing.Route]) -> None:
    routes["data.test"] = routing.Route(YURL("http://proxy.test:3128"), PROXY_AUTH)
    _, sent = stat("http://data.test/x")
    assert sent[0].proxy == YURL("http://proxy.test:3128")
    assert sent[0].headers["Proxy-Authorization"] == PROXY_AUTH
    assert sent[0].proxy_headers is None


def test_https_proxy_credentials_go_to_connect_only(routes: dict[str, routing.Route]) -> None:
    routes["data.test"] = routing.Route(YURL("http://proxy.test:3128"), PROXY_AUTH)
    _, sent = stat("https://data.test/x")
    assert sent[0].proxy_headers == {"Proxy-Authorization": PROXY_AUTH}
    assert "Proxy-Authorization" not in sent[0].headers  # never through the tunnel to the origin


def test_credentials_precedence(routes: dict[str, routing.Route]) -> None:
    routes["data.test"] = routing.Route(netrc_authorization=NETRC_AUTH)
    assert stat("http://data.test/x")[1][0].headers["Authorization"] == NETRC_AUTH
    sent = stat("http://bob:url-pw@data.test/x")[1][0]
    assert (sent.headers["Authorization"], sent.url) == (
        basic_authorization("bob", "url-pw"),
        YURL("http://data.test/x"),
    )
    bearer = Options(http=HTTPOptions(headers={"Authorization": "Bearer tok"}))
    with pytest.raises(BackendError, match=r"Authorization header and ~/\.netrc") as info:
        stat("http://data.test/x", options=bearer)
    assert "netrc-pw" not in str(info.value)
    assert NETRC_AUTH not in str(info.value)
    del routes["data.test"]
    sent = stat("http://bob:url-pw@data.test/x", options=bearer)[1][0]
    assert (sent.headers["Authorization"], sent.url) == ("Bearer tok", YURL("http://data.test/x"))


def test_trust_env_false_never_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(url: YURL) -> routing.Route:
        raise AssertionError("looked at the environment")

    monkeypatch.setattr(routing, "resolve", fail)
    _, sent = stat("http://data.test/x", options=Options(http=HTTPOptions(trust_env=False)))
    assert (sent[0].proxy, sent[0].proxy_headers, "Authorization" in sent[0].headers) == (None, None, False)


def test_unusable_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(url: YURL) -> routing.Route:
        raise ValueError("http://pu:proxy-pw@bad proxy")

    monkeypatch.setattr(routing, "resolve", broken)
    with pytest.raises(BackendError, match="trust_env=False") as info:
        stat("http://data.test/x")
    assert "proxy-pw" not in str(info.value)


def redirects(table: Mapping[str, tuple[int, Mapping[str, str]]]) -> Answer:
    return lambda url: table.get(str(url), (200, {"ETag": '"final"'}))


def test_redirect_hops_get_their_own_route_and_credentials(routes: dict[str, routing.Route]) -> None:
    routes["a.test"] = routing.Route(netrc_authorization=NETRC_AUTH)
    routes["b.test"] = routing.Route(
        YURL("http://proxy.test:3128"), netrc_authorization=basic_authorization("b", "b-pw")
    )
    answer = redirects(
        {
            "http://a.test/x": (302, {"Location": "/y"}),  # same origin: credentials kept
            "http://a.test/y": (307, {"Location": "http://b.test/z?sig=1"}),  # another origin: its own
        }
    )
    meta, sent = stat("http://a.test/x", answer)
    assert meta.etag == "final"
    assert [(str(s.url), s.proxy, s.headers.get("Authorization")) for s in sent] == [
        ("http://a.test/x", None, NETRC_AUTH),
        ("http://a.test/y", None, NETRC_AUTH),
        ("http://b.test/z?sig=1", YURL("http://proxy.test:3128"), basic_authorization("b", "b-pw")),
    ]
    assert all(s.method == "HEAD" for s in sent)


def test_leaving_the_origin_drops_authorization_and_cookies(routes: dict[str, routing.Route]) -> None:
    answer = redirects(
        {
            "http://u:url-pw@a.test/x": (301, {"Location": "/y"}),
            "http://a.test/x": (301, {"Location": "/y"}),
            "http://a.test/y": (308, {"Location": "https://a.test/z"}),  # another scheme is another origin
        }
    )
    opts = Options(http=HTTPOptions(headers={"Authorization": "Bearer tok", "Cookie": "c=1", "X-Keep": "k"}))
    _, sent = stat("http://a.test/x", answer, opts)
    assert [(s.headers.get("Authorization"), s.headers.get("Cookie"), s.headers.get("X-Keep")) for s in sent] == [
        ("Bearer tok", "c=1", "k"),
        ("Bearer tok", "c=1", "k"),
        (None, None, "k"),
    ]
    _, sent = stat("http://u:url-pw@a.test/x", answer)
    assert [s.headers.get("Authorization") for s in sent] == [basic_authorization("u", "url-pw")] * 2 + [None]


def test_too_many_redirects(routes: dict[str, routing.Route]) -> None:
    counted: list[YURL] = []

    def loop(url: YURL) -> tuple[int, Mapping[str, str]]:
        counted.append(url)
        return 302, {"Location": str(url)}

    with pytest.raises(BackendError, match="too many redirects"):
        stat("http://a.test/loop", loop)
    assert len(counted) == MAX_REDIRECTS  # the redirect that would be the 10th is refused, as aiohttp does


def test_redirect_targets() -> None:
    base = YURL("http://a.test/d/x?q=1")
    assert redirect_target(base, "../y?z=2") == YURL("http://a.test/y?z=2")
    assert redirect_target(base, "//b.test/p") == YURL("http://b.test/p")
    assert redirect_target(base, "https://b.test/a b") == YURL("https://b.test/a%20b")
    for bad in ("ftp://b.test/secret-location", "http:no-host-secret-location", "http://[bad/secret-location"):
        with pytest.raises(InvalidURI) as info:
            redirect_target(base, bad)
        assert "secret-location" not in str(info.value)


def test_404_after_redirect_says_where(routes: dict[str, routing.Route]) -> None:
    answer = redirects(
        {
            "http://a.test/x": (302, {"Location": "http://b.test/gone?sig=s3cr3t"}),
            "http://b.test/gone?sig=s3cr3t": (404, {}),
        }
    )
    with pytest.raises(NotFound, match=r"redirected to http://b\.test/gone\)") as info:
        stat("http://a.test/x", answer)
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_retries_count_the_first_attempt(routes: dict[str, routing.Route], max_attempts: int) -> None:
    opts = Options(http=HTTPOptions(max_attempts=max_attempts, backoff=0.001))
    sent: list[YURL] = []

    def busy(url: YURL) -> tuple[int, Mapping[str, str]]:
        sent.append(url)
        return 503, {}

    with pytest.raises(BackendError, match=f"after {max_attempts} attempts: HTTP 503"):
        stat("http://a.test/x", busy, opts)
    assert len(sent) == max_attempts


def test_retry_then_success(routes: dict[str, routing.Route]) -> None:
    answers: Iterator[tuple[int, Mapping[str, str]]] = iter(
        [(503, {}), (429, {"Retry-After": "0"}), (200, {"ETag": '"e"'})]
    )
    meta, sent = stat("http://a.test/x", lambda url: next(answers), Options(http=HTTPOptions(backoff=0.001)))
    assert (meta.etag, len(sent)) == ("e", 3)
