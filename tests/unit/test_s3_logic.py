"""Pure logic of the S3 backend: ETags, version ids, timestamps, listing entries, the codec and fingerprints,
error mapping, the request path, the budget and the listing walk (on an in-memory page source)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import structlog
from botocore import UNSIGNED
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from refscan import AccessDenied, BackendError, InvalidURI, NotFound, Options, RefURI, S3Options
from refscan.backends.base import is_folder_marker
from refscan.backends.keyspace import KeyRange
from refscan.backends.s3 import S3Backend, xmlpages
from refscan.backends.s3 import listing as listing_mod
from refscan.backends.s3 import ranges as s3_ranges
from refscan.backends.s3.backend import head_meta
from refscan.backends.s3.client import (
    S3Client,
    client_config,
    iso_time,
    map_errors,
    strip_etag,
    translate_client_error,
    version_id,
)
from refscan.backends.s3.listing import (
    Budget,
    Cursor,
    Page,
    Walk,
    broken_rule,
    listed_meta,
    parse_v2_page,
    parse_versions_page,
)
from refscan.fingerprint import ETAG, MULTIPART_ETAG, VERSION, ContentHasher, Fingerprint, Match, compare
from refscan.fingerprint import MD5_HEX as MD5_HEX_KIND
from refscan.meta import ObjectMeta
from refscan.options import RetryPolicy


@pytest.mark.parametrize(
    ("etag", "digest"),
    [
        ('"9e107d9d372bb6826bd81d3542a419d6"', "9e107d9d372bb6826bd81d3542a419d6"),
        ('"d41d8cd98f00b204e9800998ecf8427e-2"', "d41d8cd98f00b204e9800998ecf8427e-2"),
        ("abc123", "abc123"),  # unquoted (S3-compatible stores): kept whole
        ('"abc', '"abc'),  # half-quoted: kept whole, never mangled
        ('abc"', 'abc"'),
        ('"', '"'),
        ('""', ""),
        (None, ""),
    ],
)
def test_strip_etag(etag: str | None, digest: str) -> None:
    assert strip_etag(etag) == digest


@pytest.mark.parametrize(("value", "expected"), [("null", None), ("", None), (None, None), (3, None), ("v1", "v1")])
def test_version_id(value: Any, expected: str | None) -> None:
    assert version_id(value) == expected


def test_iso_time_is_utc_to_the_second() -> None:
    listed = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    headed = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso_time(listed) == iso_time(headed) == "2024-05-01T12:00:00Z"
    assert iso_time(datetime(2024, 5, 1, 12, 0, 0)) == "2024-05-01T12:00:00Z"  # naive: taken as UTC
    # the texts the client now keeps: ISO 8601 from listings, RFC 1123 from HeadObject headers
    assert iso_time("2024-05-01T12:00:00.123Z") == iso_time("Wed, 01 May 2024 12:00:00 GMT") == "2024-05-01T12:00:00Z"
    assert iso_time("yesterday") is None
    assert iso_time(None) is None


@pytest.mark.parametrize(
    ("key", "size", "marker"),
    [
        ("a/", 0, True),
        ("a/", None, True),
        ("a/", 3, False),
        ("a", 0, False),
        ("a/b", 0, False),
        ("a/", "0", True),
        ("a/", "7", False),
    ],
)
def test_is_folder_marker(key: str, size: int | str | None, marker: bool) -> None:
    assert is_folder_marker(key, size) is marker


def test_listed_meta_versioned_entry() -> None:
    info = listed_meta(
        {
            "Key": "a/b.txt",
            "ETag": '"abc-3"',
            "Size": 12,
            "VersionId": "v7",
            "IsLatest": True,
            "LastModified": datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
            "ChecksumAlgorithm": ["CRC32"],
            "ChecksumType": "FULL_OBJECT",
        }
    )
    digest, extra = S3Backend.encode(info)
    assert info.key == "a/b.txt"
    assert digest == info.etag == "abc-3"
    assert info.size == 12
    assert info.version == "v7"
    assert extra == {
        "etag": "abc-3",
        "versionID": "v7",
        "lastModified": "2024-01-02T03:04:05Z",
        "checksumAlgorithm": ["CRC32"],
        "checksumType": "FULL_OBJECT",
    }


def test_listed_meta_null_version_and_zero_bytes() -> None:
    info = listed_meta({"Key": "empty", "ETag": '"d41d8cd98f00b204e9800998ecf8427e"', "Size": 0, "VersionId": "null"})
    assert info.version is None
    assert info.size == 0
    assert S3Backend.encode(info)[1] == {"etag": "d41d8cd98f00b204e9800998ecf8427e"}


def test_listed_meta_without_etag_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="no ETag"):
        listed_meta({"Key": "k", "Size": 1})


def test_head_meta_with_checksums() -> None:
    info = head_meta(
        "k",
        {
            "ETag": '"e"',
            "ContentLength": 5,
            "VersionId": "null",
            "ChecksumSHA256": "c2hh",
            "ChecksumCRC32": "Y3Jj",
            "ChecksumType": "FULL_OBJECT",
        },
    )
    assert info.version is None
    assert S3Backend.encode(info)[1] == {
        "etag": "e",
        "checksumCRC32": "Y3Jj",
        "checksumSHA256": "c2hh",
        "checksumType": "FULL_OBJECT",
    }


def _client_error(code: str, status: int, op: str = "HeadObject", headers: dict[str, str] | None = None) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "msg"},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
        },
        op,
    )


@pytest.mark.parametrize(
    ("code", "status", "version", "cls", "text"),
    [
        ("404", 404, None, NotFound, "no such object"),
        ("NoSuchKey", 404, None, NotFound, "no such object"),
        ("404", 404, "v1", NotFound, "no such version 'v1'"),
        ("NoSuchVersion", 404, "v1", NotFound, "no such version"),
        ("NoSuchBucket", 404, None, NotFound, "no such bucket 'b'"),
        ("405", 405, "v1", NotFound, "delete marker"),
        ("400", 400, "bogus", NotFound, "not a valid version id"),
        ("403", 403, None, AccessDenied, "need s3:GetObject"),
        ("AccessDenied", 403, None, AccessDenied, "s3:ListBucket"),
        ("InvalidAccessKeyId", 403, None, AccessDenied, "credentials"),
        ("SignatureDoesNotMatch", 403, None, AccessDenied, "credentials"),
        ("PermanentRedirect", 301, None, BackendError, "another region"),
        ("SlowDown", 503, None, BackendError, "after retries"),
        ("InternalError", 500, None, BackendError, "after retries"),
        ("Weird", 418, None, BackendError, "HeadObject failed"),
    ],
)
def test_translate_client_error(code: str, status: int, version: str | None, cls: type, text: str) -> None:
    err = translate_client_error(_client_error(code, status), "HeadObject", "s3://b/k", bucket="b", version=version)
    assert type(err) is cls
    assert text in str(err)
    assert str(err).startswith("s3://b")


def test_head_of_deleted_key_says_delete_marker() -> None:
    exc = _client_error("404", 404, headers={"x-amz-delete-marker": "true"})
    err = translate_client_error(exc, "HeadObject", "s3://b/k", bucket="b")
    assert isinstance(err, NotFound)
    assert "delete marker" in str(err)


def test_denied_hint_per_operation_and_requester_pays() -> None:
    exc = _client_error("AccessDenied", 403, op="ListObjectVersions")
    err = translate_client_error(exc, "ListObjectVersions", "s3://b/p/", bucket="b")
    assert "s3:ListBucketVersions" in str(err)
    assert "requester_pays=True" in str(err)
    err = translate_client_error(exc, "ListObjectVersions", "s3://b/p/", bucket="b", requester_pays=True)
    assert "requester_pays" not in str(err)


def test_map_errors_never_leaks_botocore() -> None:
    cases: list[tuple[Exception, type]] = [
        (_client_error("404", 404), NotFound),
        (NoCredentialsError(), AccessDenied),
        (ParamValidationError(report="bad key"), InvalidURI),
        (EndpointConnectionError(endpoint_url="http://user:pw@host/"), BackendError),
        (ReadTimeoutError(endpoint_url="http://host/"), BackendError),
        (ConnectionResetError("reset"), BackendError),
        (TimeoutError(), BackendError),
    ]
    for exc, cls in cases:
        with pytest.raises(cls) as info, map_errors("HeadObject", "s3://b/k", bucket="b"):
            raise exc
        assert not isinstance(info.value, ClientError)
        assert info.value.__cause__ is None
        assert "pw@" not in str(info.value)


def test_map_errors_lets_refscan_errors_and_cancellation_through() -> None:
    with pytest.raises(NotFound, match="mine"), map_errors("HeadObject", "s3://b/k", bucket="b"):
        raise NotFound("mine")
    with pytest.raises(KeyboardInterrupt), map_errors("HeadObject", "s3://b/k", bucket="b"):
        raise KeyboardInterrupt


def test_client_config() -> None:
    opts = Options(
        s3=S3Options(
            anonymous=True,
            addressing_style="path",
            retry_mode="standard",
            max_attempts=3,
            max_pool_connections=7,
            connect_timeout=1.5,
            read_timeout=2.5,
        )
    )
    cfg = client_config(opts)
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 3}
    assert cfg.max_pool_connections == 7
    assert cfg.connect_timeout == 1.5
    assert cfg.read_timeout == 2.5
    assert cfg.s3 == {"addressing_style": "path"}
    assert cfg.signature_version is UNSIGNED

    default = client_config(Options())  # S3Options leaves retries to Options.retry
    assert default.retries == {"mode": "adaptive", "total_max_attempts": Options().retry.max_attempts}
    assert default.signature_version is None
    assert not default.s3


@pytest.mark.anyio
async def test_budget_never_overcommits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing_mod, "PAGE", 10)
    budget = Budget(25)
    a = await budget.reserve()
    b = await budget.reserve()
    assert (a, b) == (10, 10)
    assert budget.reserved == 20
    # 5 left but two requests in flight: a short page waits for them instead of going out now.
    got: list[int] = []

    async def third() -> None:
        got.append(await budget.reserve())

    async with anyio.create_task_group() as tg:
        tg.start_soon(third)
        await anyio.sleep(0.01)
        assert got == []
        budget.settle(a, 3)  # gave 7 back: 25 - 3 - 10 = 12 >= PAGE
    assert got == [10]
    budget.settle(b, 10)
    budget.settle(10, 10)
    assert budget.found == 23
    assert await budget.reserve() == 2  # nothing in flight: the short remainder goes out
    budget.settle(2, 2)
    assert budget.full
    assert await budget.reserve() == 0


@pytest.mark.parametrize(
    ("parse", "resp"),
    [
        (parse_v2_page, {"IsTruncated": True, "Contents": [{"Key": "a", "ETag": '"e"', "Size": 1}]}),
        (
            parse_versions_page,
            {"IsTruncated": True, "Versions": [{"Key": "a", "ETag": '"e"', "Size": 1, "IsLatest": True}]},
        ),
    ],
)
def test_truncated_page_without_a_marker_is_an_error_not_the_end(parse: Any, resp: dict[str, Any]) -> None:
    with pytest.raises(BackendError, match="no continuation marker"):
        parse(resp)
    resp["IsTruncated"] = False
    assert [o.key for o in parse(resp).objects] == ["a"]


# -- URIs and direct URLs -------------------------------------------------------------------------


def test_uri_forms() -> None:
    uri = S3Backend.parse_uri("s3", "s3://b/dir/a b.txt?versionId=V1")
    assert (uri.bucket, uri.key, uri.version) == ("b", "dir/a b.txt", "V1")
    assert S3Backend.format_uri(uri) == "s3://b/dir/a b.txt?versionId=V1"
    assert S3Backend.object_ref(uri) == "s3://b/dir/a b.txt"
    assert S3Backend.format_uri(uri.child("k")) == "s3://b/k"
    assert S3Backend.parse_uri("s3", "s3://b/q?x=1&y").key == "q?x=1&y"  # only a trailing versionId is a version
    with pytest.raises(InvalidURI, match="only pin an object"):
        S3Backend.parse_uri("s3", "s3://b/dir/?versionId=V1")


def test_direct_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    uri = S3Backend.parse_uri("s3", "s3://b/dir/a b#1.txt")
    assert S3Backend.direct_url(uri, Options()) == "https://b.s3.amazonaws.com/dir/a%20b%231.txt"
    pinned = uri.child(uri.key, "v/1+2")
    local = Options(s3=S3Options(endpoint_url="http://127.0.0.1:9000/"))
    assert S3Backend.direct_url(pinned, local) == "http://127.0.0.1:9000/b/dir/a%20b%231.txt?versionId=v%2F1%2B2"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000")
    assert S3Backend.direct_url(uri, Options()) == "http://minio:9000/b/dir/a%20b%231.txt"


# -- codec ----------------------------------------------------------------------------------------

MD5_HEX = "9e107d9d372bb6826bd81d3542a419d6"
MULTIPART = "d41d8cd98f00b204e9800998ecf8427e-2"


def test_encode_keeps_the_extra_order_of_listings_and_heads() -> None:
    listed = listed_meta(
        {
            "Key": "k",
            "ETag": f'"{MD5_HEX}"',
            "Size": 3,
            "VersionId": "v1",
            "LastModified": "2024-01-02T03:04:05.678Z",
            "ChecksumAlgorithm": ["CRC32C"],
            "ChecksumType": "FULL_OBJECT",
        }
    )
    digest, extra = S3Backend.encode(listed)
    assert digest == MD5_HEX
    assert list(extra.items()) == [
        ("etag", MD5_HEX),
        ("versionID", "v1"),
        ("lastModified", "2024-01-02T03:04:05Z"),
        ("checksumAlgorithm", ["CRC32C"]),
        ("checksumType", "FULL_OBJECT"),
    ]
    headed = head_meta(
        "k",
        {
            "ETag": f'"{MULTIPART}"',
            "ContentLength": 9,
            "VersionId": "v2",
            "LastModified": "Tue, 02 Jan 2024 03:04:05 GMT",
            "ServerSideEncryption": "aws:kms",
            "ChecksumSHA256": "c2hh",
            "ChecksumCRC32C": "Y3Jj",
            "ChecksumType": "COMPOSITE",
        },
    )
    assert headed.hashes == {"checksumSHA256": "c2hh", "checksumCRC32C": "Y3Jj"}
    assert list(headed.hashes) == ["checksumSHA256", "checksumCRC32C"]  # strongest first
    assert (headed.encryption, headed.parts, headed.attrs) == ("aws:kms", 2, {"checksumType": "COMPOSITE"})
    digest, extra = S3Backend.encode(headed)
    assert digest == MULTIPART
    assert list(extra.items()) == [
        ("etag", MULTIPART),
        ("versionID", "v2"),
        ("lastModified", "2024-01-02T03:04:05Z"),
        ("sse", "aws:kms"),
        ("checksumCRC32C", "Y3Jj"),
        ("checksumSHA256", "c2hh"),
        ("checksumType", "COMPOSITE"),
    ]
    for meta in (listed, headed):
        digest, extra = S3Backend.encode(meta)
        assert S3Backend.decode(meta.key, digest, meta.size, extra) == meta
        assert S3Backend.encode(S3Backend.decode(meta.key, digest, meta.size, extra)) == (digest, extra)


@pytest.mark.parametrize(
    ("resp", "sse"),
    [
        ({"ServerSideEncryption": "aws:kms"}, "aws:kms"),
        ({"ServerSideEncryption": "aws:kms:dsse"}, "aws:kms:dsse"),
        ({"SSECustomerAlgorithm": "AES256"}, "sse-c"),
        ({"ServerSideEncryption": "AES256"}, None),  # SSE-S3: the ETag is still the MD5
        ({}, None),
    ],
)
def test_head_meta_encryption(resp: dict[str, Any], sse: str | None) -> None:
    meta = head_meta("k", {"ETag": f'"{MD5_HEX}"', "ContentLength": 1, **resp})
    assert meta.encryption == sse
    assert S3Backend.encode(meta)[1].get("sse") == sse


def test_decode_entries_written_by_wandb() -> None:
    meta = S3Backend.decode("a.txt", MD5_HEX, 4, {"etag": MD5_HEX, "versionID": "null"})
    assert (meta.key, meta.size, meta.etag, meta.version) == ("a.txt", 4, MD5_HEX, None)
    assert (meta.modified, dict(meta.hashes), meta.encryption, dict(meta.attrs)) == (None, {}, None, {})
    assert S3Backend.decode("a", MD5_HEX, 4, {"etag": MD5_HEX, "versionID": "v9"}).version == "v9"
    no_etag = S3Backend.decode("a", MULTIPART, None, {})  # the digest is the ETag
    assert (no_etag.etag, no_etag.version, no_etag.parts) == (MULTIPART, None, 2)
    assert S3Backend.encode(no_etag) == (MULTIPART, {"etag": MULTIPART})
    kept = S3Backend.decode("a", "e", 1, {"etag": "e", "sse": "aws:kms", "checksumSHA1": "c2hh", "other": 1})
    assert (kept.encryption, dict(kept.hashes), dict(kept.attrs)) == ("aws:kms", {"checksumSHA1": "c2hh"}, {"other": 1})
    assert S3Backend.encode(kept)[1] == {"etag": "e", "sse": "aws:kms", "checksumSHA1": "c2hh", "other": 1}


def test_encode_needs_an_etag() -> None:
    with pytest.raises(ValueError, match="without an ETag"):
        S3Backend.encode(ObjectMeta(key="k", size=1))


# -- fingerprints ---------------------------------------------------------------------------------


def test_fingerprint_order_and_etag_aliases() -> None:
    meta = ObjectMeta(
        key="k",
        size=3,
        etag=MD5_HEX,
        version="v1",
        hashes={"checksumCRC32": "Y3Jj", "checksumSHA256": "c2hh"},
    )
    assert S3Backend.fingerprint(meta) == Fingerprint(
        (
            ("checksumSHA256", "c2hh"),
            ("checksumCRC32", "Y3Jj"),
            (VERSION, "v1"),
            (ETAG, MD5_HEX),
            (MD5_HEX_KIND, MD5_HEX),
        ),
        3,
    )
    multipart = S3Backend.fingerprint(ObjectMeta(key="k", size=3, etag=MULTIPART))
    assert multipart.hashes == ((ETAG, MULTIPART), (MULTIPART_ETAG, MULTIPART))
    encrypted = S3Backend.fingerprint(ObjectMeta(key="k", size=3, etag=MD5_HEX, encryption="aws:kms"))
    assert encrypted.hashes == ((ETAG, MD5_HEX),)  # an SSE-KMS ETag is not an MD5: nothing to recompute
    other = S3Backend.fingerprint(ObjectMeta(key="k", size=3, etag="abc-3"))  # not S3's shape: a change signal only
    assert other.hashes == ((ETAG, "abc-3"),)


def test_fingerprints_of_a_manifest_entry_and_a_listing_compare() -> None:
    recorded = head_meta("k", {"ETag": f'"{MD5_HEX}"', "ContentLength": 3, "VersionId": "v1", "ChecksumSHA256": "c2hh"})
    digest, extra = S3Backend.encode(recorded)
    expected = S3Backend.fingerprint(S3Backend.decode("k", digest, 3, extra))
    listed = listed_meta({"Key": "k", "ETag": f'"{MD5_HEX}"', "Size": 3, "VersionId": "v1", "IsLatest": True})
    assert compare(expected, S3Backend.fingerprint(listed)) is Match.SAME
    rewritten = listed_meta({"Key": "k", "ETag": '"0123456789abcdef0123456789abcdef"', "Size": 3, "VersionId": "v2"})
    assert compare(expected, S3Backend.fingerprint(rewritten)) is Match.DIFFERENT
    hasher = ContentHasher(expected)
    hasher.update(b"abc")
    assert hasher.check().match is Match.DIFFERENT  # md5hex recomputed: the bytes are not MD5_HEX's
    assert hasher.check().kind == MD5_HEX_KIND


# -- the request path -----------------------------------------------------------------------------


class FakeBoto:
    """Stands in for the aiobotocore client: records calls, answers or raises what it is told."""

    def __init__(self, limiter: anyio.CapacityLimiter, answer: dict[str, Any] | Exception) -> None:
        self.limiter = limiter
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any], float]] = []

    def __getattr__(self, name: str) -> Any:
        async def call(**params: Any) -> dict[str, Any]:
            self.calls.append((name, params, self.limiter.borrowed_tokens))
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

        return call


@pytest.mark.anyio
async def test_request_holds_the_limiter_adds_the_payer_logs_and_maps_errors() -> None:
    limiter = anyio.CapacityLimiter(2)
    client = S3Client(Options(s3=S3Options(requester_pays=True)), limiter)
    fake = FakeBoto(limiter, {"ETag": '"e"', "ResponseMetadata": {"RetryAttempts": 1}})
    client._boto = fake
    with structlog.testing.capture_logs() as logs:
        resp = await client.request("HeadObject", "s3://b/k", event="s3.head", Bucket="b", Key="k")
        await client.request("GetBucketVersioning", "s3://b", Bucket="b")
    assert resp["ETag"] == '"e"'
    assert [(name, params, held) for name, params, held in fake.calls] == [
        ("head_object", {"Bucket": "b", "Key": "k", "RequestPayer": "requester"}, 1),
        ("get_bucket_versioning", {"Bucket": "b"}, 1),  # takes no RequestPayer
    ]
    assert limiter.borrowed_tokens == 0
    head, versioning = logs
    assert (head["event"], head["op"], head["bucket"], head["key"], head["pinned"]) == (
        "s3.head",
        "HeadObject",
        "b",
        "k",
        False,
    )
    assert (head["retries"], head["elapsed"] >= 0) == (1, True)
    assert (versioning["event"], versioning["op"]) == ("s3.request", "GetBucketVersioning")

    fake.answer = _client_error("NoSuchVersion", 404)
    with structlog.testing.capture_logs() as logs, pytest.raises(NotFound, match="no such version 'v1'"):
        await client.request(
            "HeadObject", "s3://b/k?versionId=v1", event="s3.head", Bucket="b", Key="k", VersionId="v1"
        )
    [failed] = logs
    assert (failed["event"], failed["pinned"], failed["error"]) == ("s3.head", True, "NotFound")
    assert limiter.borrowed_tokens == 0


def test_client_needs_opening() -> None:
    with pytest.raises(RuntimeError, match="async with S3Backend"):
        _ = S3Client(Options(), anyio.CapacityLimiter(1)).boto


def test_retry_policy_and_s3_overrides() -> None:
    policy = RetryPolicy(max_attempts=4, s3_mode="standard")
    assert client_config(Options(retry=policy)).retries == {"mode": "standard", "total_max_attempts": 4}
    mixed = Options(retry=policy, s3=S3Options(max_attempts=2))
    assert client_config(mixed).retries == {"mode": "standard", "total_max_attempts": 2}
    mode_only = Options(retry=policy, s3=S3Options(retry_mode="adaptive"))
    assert client_config(mode_only).retries == {"mode": "adaptive", "total_max_attempts": 4}


# -- the HEAD fallback (GetBucketVersioning denied) ----------------------------------------------


@pytest.mark.anyio
async def test_head_all_drops_deleted_objects_and_the_first_failure_cancels_the_rest() -> None:
    backend = S3Backend(Options(), anyio.CapacityLimiter(8))
    folder = S3Backend.parse_uri("s3", "s3://b/dir/")
    listed = [ObjectMeta(key=f"dir/{i}", size=1, etag="e") for i in range(6)]
    finished: list[str] = []

    async def head(uri: RefURI, *, event: str = "s3.request") -> ObjectMeta:
        if uri.key == "dir/2":
            raise NotFound("gone")
        await anyio.lowlevel.checkpoint()
        finished.append(uri.key)
        return ObjectMeta(key=uri.key, size=1, etag="e", version=f"v{uri.key[-1]}")

    backend._head = head  # type: ignore[method-assign]
    found = await backend._head_all(folder, listed)
    assert [(m.key, m.version) for m in found] == [(f"dir/{i}", f"v{i}") for i in (0, 1, 3, 4, 5)]

    async def denied(uri: RefURI, *, event: str = "s3.request") -> ObjectMeta:
        if uri.key == "dir/0":
            raise AccessDenied("no")
        await anyio.sleep(1)
        finished.append(uri.key)
        return ObjectMeta(key=uri.key, size=1, etag="e")

    finished.clear()
    backend._head = denied  # type: ignore[method-assign]
    with anyio.fail_after(0.5), pytest.raises(AccessDenied, match="no"):
        await backend._head_all(folder, listed)
    assert finished == []


# -- the walk, on an in-memory ListObjectsV2 / ListObjectVersions -----------------------------------


class FakeBucket:
    """A `PageSource` over a list of keys (or versions: (key, version, live), latest first per key) with S3's
    listing semantics, or, with `order="directory"`, a SeaweedFS-like server that lists by path component
    (`a/b` before `a-c`) and reads StartAfter / KeyMarker in that same order. `moto_markers`: a KeyMarker alone
    starts at the first entry at or after it and drops that entry, as moto 5 does."""

    def __init__(
        self,
        keys: list[str],
        versions: list[tuple[str, str, bool]] | None = None,
        *,
        order: str = "s3",
        moto_markers: bool = False,
    ) -> None:
        self.moto_markers = moto_markers
        self.sort_key: Any = (lambda k: k.split("/")) if order == "directory" else (lambda k: k)
        self.keys = sorted(keys, key=self.sort_key)
        self.versions = versions
        self.requests: list[dict[str, Any]] = []

    def _after(self, key: str, position: str) -> bool:
        return bool(self.sort_key(key) > self.sort_key(position))

    async def page(
        self, bucket: str, prefix: str, *, cursor: Cursor | None, max_keys: int, versioned: bool, end: str | None
    ) -> Page:
        self.requests.append({"prefix": prefix, "cursor": cursor, "max_keys": max_keys})
        await anyio.lowlevel.checkpoint()
        if versioned:
            return self._versions(prefix, cursor, max_keys, end)
        after = None if cursor is None else (cursor.token or cursor.start_after)
        items = [k for k in self.keys if k.startswith(prefix) and (after is None or self._after(k, after))]
        page, more = items[:max_keys], len(items) > max_keys
        resp: dict[str, Any] = {
            "IsTruncated": more,
            "Contents": [{"Key": k, "ETag": f'"{k}"', "Size": int(not k.endswith("/"))} for k in page],
        }
        if more:
            resp["NextContinuationToken"] = page[-1]
        return parse_v2_page(resp, end)

    def _versions(self, prefix: str, cursor: Cursor | None, max_keys: int, end: str | None) -> Page:
        assert self.versions is not None
        entries = sorted(self.versions, key=lambda e: self.sort_key(e[0]))  # stable: versions keep their order
        start = 0
        if cursor is not None and cursor.key_marker is not None:
            marker, version = cursor.key_marker, cursor.version_marker
            if version:
                start = entries.index(next(e for e in entries if e[0] == marker and e[1] == version)) + 1
            elif self.moto_markers:
                start = next((i for i, e in enumerate(entries) if not self._after(marker, e[0])), len(entries)) + 1
            else:
                start = next((i for i, e in enumerate(entries) if self._after(e[0], marker)), len(entries))
        items = [e for e in entries[start:] if e[0].startswith(prefix)]
        page, more = items[:max_keys], len(items) > max_keys
        latest: dict[str, str] = {}
        for k, v, _ in self.versions:
            latest.setdefault(k, v)
        resp: dict[str, Any] = {
            "IsTruncated": more,
            "Versions": [
                {"Key": k, "VersionId": v, "ETag": f'"{k}"', "Size": 1, "IsLatest": latest[k] == v}
                for k, v, live in page
                if live
            ],
            "DeleteMarkers": [{"Key": k, "VersionId": v} for k, v, live in page if not live],
        }
        if more:
            resp["NextKeyMarker"], resp["NextVersionIdMarker"] = page[-1][0], page[-1][1]
        return parse_versions_page(resp, end)


async def walk(source: FakeBucket, prefix: str, limit: int, *, versioned: bool = False) -> list[str]:
    """The keys a fresh walk yields (the marker probe included: each walk is on a bucket not seen before)."""
    return (await walk_with_stats(source, prefix, limit, versioned=versioned))[0]


async def walk_with_stats(
    source: FakeBucket, prefix: str, limit: int, *, versioned: bool = False
) -> tuple[list[str], Walk]:
    found: list[str] = []
    walker = Walk(source, "b", versioned=versioned, limit=limit)
    async for batch in walker.rounds(prefix):
        found.extend(m.key for m in batch)
    return found, walker


@contextlib.contextmanager
def page_size(size: int) -> Iterator[None]:
    """S3's page cap, lowered so small key sets page and split (hypothesis runs many examples per test)."""
    saved, listing_mod.PAGE = listing_mod.PAGE, size
    try:
        yield
    finally:
        listing_mod.PAGE = saved


TREE_KEYS = [
    *(f"t/f{i}" for i in range(7)),
    *(f"t/big/{i:02d}" for i in range(12)),
    *(f"t/big/deep/{i}" for i in range(6)),
    "t/big/",
    *(f"t/s{j}/{k}" for j in range(9) for k in range(2)),
    "t/zz/only",
    "tt/not-me",
]


@pytest.mark.anyio
@pytest.mark.parametrize("page", [1000, 2, 3, 5])
async def test_walk_lists_every_object_once(page: int) -> None:
    with page_size(page):
        bucket = FakeBucket(TREE_KEYS)
        got, walker = await walk_with_stats(bucket, "t/", 10_000)
    expected = sorted(k for k in TREE_KEYS if k.startswith("t/") and k != "t/big/")
    assert sorted(got) == expected
    assert len(got) == len(expected)
    assert all(r["max_keys"] <= page for r in bucket.requests)
    assert walker.requests == len(bucket.requests)
    assert walker.fallback is None
    if page <= 3:
        assert walker.splits >= 1  # listed as concurrent key ranges
        assert any(r["cursor"] is not None and r["cursor"].start_after for r in bucket.requests)
    if page == 1000:
        assert len(bucket.requests) == 1  # a folder that fits in one page costs one request


@pytest.mark.anyio
async def test_a_flat_folder_is_listed_as_concurrent_ranges() -> None:
    keys = [f"flat/obj-{i:05d}.bin" for i in range(2000)]
    with page_size(10):
        bucket = FakeBucket(keys)
        got, walker = await walk_with_stats(bucket, "flat/", 10_000)
    assert sorted(got) == keys
    assert walker.splits > 5
    chain = len(keys) // 10
    assert walker.requests < 2 * chain  # guessed bounds cost some extra requests, never a request per key


KEY_CHARS = st.sampled_from(["a", "b", "z", "0", "9", "-", ".", "/", "é", "~", " ", "%"])
KEYS = st.lists(st.text(KEY_CHARS, min_size=1, max_size=6), min_size=0, max_size=60, unique=True)


@pytest.mark.anyio
@settings(max_examples=60, deadline=None)
@given(keys=KEYS, page=st.integers(1, 7), order=st.sampled_from(["s3", "directory"]))
async def test_walk_property_every_key_once(keys: list[str], page: int, order: str) -> None:
    """Random key sets (unicode, `/`, keys equal to guessed bounds), either listing order: every object exactly
    once, none outside the folder, and exactly `limit` when there are more."""
    keys = [f"p/{k}" for k in keys] + ["p-sibling", "q/outside"]
    expected = sorted(k for k in keys if k.startswith("p/") and not is_folder_marker(k, int(not k.endswith("/"))))
    with page_size(page):
        got = await walk(FakeBucket(keys, order=order), "p/", 10_000)
        assert sorted(got) == expected
        assert len(got) == len(set(got))
        if len(expected) > 1:
            limited = await walk(FakeBucket(keys, order=order), "p/", len(expected) - 1)
            assert len(limited) == len(expected) - 1 == len(set(limited))
            assert set(limited) <= set(expected)


@pytest.mark.anyio
@settings(max_examples=40, deadline=None)
@given(keys=KEYS, page=st.integers(1, 5), order=st.sampled_from(["s3", "directory"]))
async def test_walk_property_versioned(keys: list[str], page: int, order: str) -> None:
    versions = []
    for i, k in enumerate(sorted(f"v/{k}" for k in keys if not k.endswith("/"))):
        if i % 3 == 0:
            versions += [(k, "3", True), (k, "2", True), (k, "1", True)]
        elif i % 5 == 0:
            versions += [(k, "m", False), (k, "1", True)]  # deleted: its latest entry is a delete marker
        else:
            versions.append((k, "1", True))
    live_latest = sorted({k for k, _, _ in versions if next(e for e in versions if e[0] == k)[2]})  # latest live
    with page_size(page):
        for moto in (False, True):
            got = await walk(FakeBucket([], versions, order=order, moto_markers=moto), "v/", 10_000, versioned=True)
            assert sorted(got) == live_latest
            assert len(got) == len(set(got))


@pytest.mark.anyio
@pytest.mark.parametrize("moto", [False, True])
async def test_versioned_walk_splits_only_where_markers_are_exact(moto: bool) -> None:
    """A server that starts KeyMarker listings as S3 does gets concurrent ranges; on moto's marker bug (the first
    version after the marker dropped) the probe sees it and the walk stays one chain, losing nothing."""
    versions = [(f"v/{i:04d}", str(v), True) for i in range(300) for v in range(1 + (i % 4 == 0), 0, -1)]
    with page_size(10):
        bucket = FakeBucket([], versions, moto_markers=moto)
        got, walker = await walk_with_stats(bucket, "v/", 10_000, versioned=True)
    assert sorted(got) == sorted({k for k, _, _ in versions})
    assert len(got) == len(set(got))
    assert walker.markers_exact is (not moto)
    assert (walker.splits > 0) is (not moto)
    assert (walker.fallback is not None) is moto
    probes = [r for r in bucket.requests if r["max_keys"] == 1]
    assert len(probes) == 1


def test_broken_rule_names_what_the_server_did() -> None:
    ok = parse_v2_page({"Contents": [{"Key": "p/a", "ETag": '"e"', "Size": 1}, {"Key": "p/b", "ETag": '"e"'}]})
    assert broken_rule("p/", None, ok) == ""
    assert broken_rule("p/", "p/a", ok) == "'p/a' was listed after 'p/a'"
    assert broken_rule("q/", None, ok) == "a key outside 'q/' was listed"
    swapped = parse_v2_page({"Contents": [{"Key": "p/b", "ETag": '"e"'}, {"Key": "p/a", "ETag": '"e"'}]})
    assert broken_rule("p/", None, swapped) == "keys were listed out of byte order"


@pytest.mark.anyio
async def test_walk_on_a_directory_ordered_server_falls_back_and_stays_exact() -> None:
    """SeaweedFS lists `a/b` before `a-c`: once a page shows it, the walk lists the server's own chain."""
    keys = [f"a/{i:03d}" for i in range(40)] + ["a-c", "a.d", "a0"] + [f"fo/b/{i:03d}" for i in range(40)] + ["fo-x"]
    with page_size(4):
        got, walker = await walk_with_stats(FakeBucket(keys, order="directory"), "", 10_000)
    assert sorted(got) == sorted(keys)
    assert len(got) == len(keys)
    assert walker.fallback is not None


@pytest.mark.anyio
async def test_walk_honours_the_limit() -> None:
    n = len([k for k in TREE_KEYS if k.startswith("t/") and k != "t/big/"])
    with page_size(4):
        for limit in (1, 5, n - 1, n, n + 1):
            bucket = FakeBucket(TREE_KEYS)
            got = await walk(bucket, "t/", limit)
            assert len(got) == min(limit, n) == len(set(got))
            assert all(r["max_keys"] <= 4 for r in bucket.requests)


@pytest.mark.anyio
async def test_walk_versioned_keeps_latest_live_versions() -> None:
    versions = [
        ("v/a", "3", True),
        ("v/a", "2", True),
        ("v/a", "1", True),
        ("v/gone", "m", False),
        ("v/gone", "1", True),
        ("v/sub/b", "1", True),
        ("v/sub/c", "2", True),
        ("v/sub/c", "1", True),
        ("v/z", "1", True),
    ]
    with page_size(2):
        bucket = FakeBucket([], versions)
        assert sorted(await walk(bucket, "v/", 100, versioned=True)) == ["v/a", "v/sub/b", "v/sub/c", "v/z"]


@pytest.mark.anyio
async def test_walk_raises_the_first_error_as_itself() -> None:
    class Failing(FakeBucket):
        async def page(self, bucket: str, prefix: str, **kw: Any) -> Page:
            raise AccessDenied("denied listing")

    with pytest.raises(AccessDenied, match="denied listing"):
        await walk(Failing(TREE_KEYS), "t/", 10)


# -- the one-pass listing parser (xmlpages) ------------------------------------------------------------------

LISTING_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>d%2F</Prefix>'
    b"<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
    b"<Contents><Key>d%2Fa+b%23%3F.bin</Key><LastModified>2024-05-01T12:00:00.000Z</LastModified>"
    b"<ETag>&quot;e1&quot;</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>3</Size>"
    b"<Owner><ID>o</ID></Owner><StorageClass>STANDARD</StorageClass></Contents>"
    b"<Contents><Key>d%2F%C3%A9</Key><LastModified>2024-05-01T12:00:01.000Z</LastModified>"
    b"<ETag>&quot;e2-2&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>"
    b"<CommonPrefixes><Prefix>d%2Fsub%2F</Prefix></CommonPrefixes>"
    b"<NextContinuationToken>tok+en</NextContinuationToken></ListBucketResult>"
)


def test_parse_page_gives_what_botocore_gives() -> None:
    """The same fields as botocore's own parser plus its URL-decoding handler (keys decoded, token not)."""
    got = xmlpages.parse_page(LISTING_BODY)
    assert got is not None
    assert got["IsTruncated"] is True
    assert got["KeyCount"] == 2
    assert got["Prefix"] == "d/"
    assert got["NextContinuationToken"] == "tok+en"
    assert [c["Key"] for c in got["Contents"]] == ["d/a b#?.bin", "d/é"]
    assert got["Contents"][0]["Size"] == 3
    assert got["Contents"][0]["ETag"] == '"e1"'
    assert got["Contents"][0]["ChecksumAlgorithm"] == ["CRC32"]
    assert "Owner" not in got["Contents"][0]
    assert got["CommonPrefixes"] == [{"Prefix": "d/sub/"}]
    assert "EncodingType" not in got  # so botocore's handler does not decode the keys a second time


@pytest.mark.parametrize(
    "body",
    [
        LISTING_BODY[: len(LISTING_BODY) // 2],  # cut short on the way
        b"",
        b"<Error><Code>InternalError</Code><Message>try again</Message></Error>",  # an error inside a 200
        LISTING_BODY.replace(b"<Size>3</Size>", b"<Size>three</Size>"),
    ],
)
def test_a_bad_listing_body_becomes_a_retryable_500(body: bytes) -> None:
    class Model:
        name = "ListObjectsV2"

    response: dict[str, Any] = {"status_code": 200, "body": body}
    custom: dict[str, Any] = {}
    xmlpages.before_parse(Model(), response, custom)
    assert response["status_code"] == 500
    assert custom == {}
    assert response["body"] == body  # left for botocore's error handling


def test_a_good_listing_body_is_parsed_once() -> None:
    class Model:
        name = "ListObjectVersions"

    response: dict[str, Any] = {"status_code": 200, "body": LISTING_BODY}
    custom: dict[str, Any] = {}
    xmlpages.before_parse(Model(), response, custom)
    assert response == {"status_code": 200, "body": b""}  # botocore's generic parser gets nothing to do
    assert len(custom["Contents"]) == 2


# -- key ranges for scale-out (backends/s3/ranges.py), driven as the distributed driver drives them -----------


async def list_by_ranges(
    source: FakeBucket, prefix: str, *, versioned: bool, parts: int, pages: int = 2
) -> tuple[list[str], list[str | None], int]:
    """Every key found listing `prefix` as KeyRanges: each step `pages` pages, each rest split into `parts`.
    Returns the keys, the disorders reported and how many steps were split."""
    todo, found, disorders, splits = [KeyRange()], [], [], 0
    markers: bool | None = None
    while todo:
        rng = todo.pop(0)
        step, markers = await s3_ranges.list_range(
            source, "b", prefix, rng, 10_000, pages, versioned=versioned, markers_exact=markers
        )
        found += [m.key for m in step.objects]
        disorders.append(step.disorder)
        if step.rest is not None:
            pieces = s3_ranges.split_range(prefix, step.rest, step.sample, parts) if step.splittable else [step.rest]
            splits += len(pieces) > 1
            todo += pieces
    return found, disorders, splits


@pytest.mark.anyio
@settings(max_examples=60, deadline=None)
@given(keys=KEYS, page=st.integers(1, 6), parts=st.integers(1, 5))
async def test_key_ranges_partition_the_folder(keys: list[str], page: int, parts: int) -> None:
    """Random key sets split into random numbers of ranges, rests split again: every object once."""
    keys = [f"p/{k}" for k in keys] + ["p-sibling", "q/outside"]
    expected = sorted(k for k in keys if k.startswith("p/") and not is_folder_marker(k, int(not k.endswith("/"))))
    with page_size(page):
        got, disorders, _ = await list_by_ranges(FakeBucket(keys), "p/", versioned=False, parts=parts)
    assert sorted(got) == expected
    assert disorders == [None] * len(disorders)


@pytest.mark.anyio
@pytest.mark.parametrize("moto", [False, True])
async def test_versioned_key_ranges_split_only_where_markers_are_exact(moto: bool) -> None:
    versions = [(f"v/{i:04d}", str(v), True) for i in range(200) for v in range(1 + (i % 3 == 0), 0, -1)]
    with page_size(10):
        got, _, splits = await list_by_ranges(
            FakeBucket([], versions, moto_markers=moto), "v/", versioned=True, parts=4
        )
    assert sorted(got) == sorted({k for k, _, _ in versions})
    assert len(got) == len(set(got))
    assert (splits > 0) is (not moto)


@pytest.mark.anyio
async def test_key_ranges_report_a_directory_ordered_server() -> None:
    """SeaweedFS's order breaks positions after a split: the step says so (the driver then lists one chain)."""
    keys = [f"a/{i:03d}" for i in range(60)] + ["a-c", "a.d", "a0"]
    with page_size(4):
        _, disorders, _ = await list_by_ranges(FakeBucket(keys, order="directory"), "", versioned=False, parts=4)
    assert any(d is not None for d in disorders)
