"""Pure logic of the HTTP backend: header parsing, digests, retry policy, URL handling (no network)."""

from __future__ import annotations

import email.utils

import anyio
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from refscan import InvalidURI, Options
from refscan.backends.http import HTTPBackend
from refscan.backends.http.backend import describe_exception, request_url
from refscan.backends.http.headers import (
    is_retryable_status,
    object_meta,
    parse_content_length,
    parse_content_range_total,
    parse_retry_after,
)
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
