"""Pure logic of the S3 resolver: ETags, version ids, timestamps, listing entries, error mapping, budget."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from botocore import UNSIGNED
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from refscan import AccessDenied, BackendError, InvalidURI, NotFound, Options, S3Options
from refscan.resolvers import s3 as s3mod
from refscan.resolvers.s3 import (
    Budget,
    S3Resolver,
    child_of,
    head_info,
    is_folder_marker,
    iso_time,
    listed_info,
    map_errors,
    strip_etag,
    translate_client_error,
    version_id,
)


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
    [("a/", 0, True), ("a/", None, True), ("a/", 3, False), ("a", 0, False), ("a/b", 0, False)],
)
def test_is_folder_marker(key: str, size: int | None, marker: bool) -> None:
    assert is_folder_marker(key, size) is marker


@pytest.mark.parametrize(
    ("prefix", "key", "child"),
    [
        ("data/", "data/x", None),
        ("data/", "data/sub/x", "data/sub/"),
        ("data/", "data/sub/deeper/x", "data/sub/"),
        ("data/", "data//x", "data//"),
        ("", "top", None),
        ("", "a/b", "a/"),
        ("data/", "data/sub/", "data/sub/"),
    ],
)
def test_child_of(prefix: str, key: str, child: str | None) -> None:
    assert child_of(prefix, key) == child


def test_listed_info_versioned_entry() -> None:
    info = listed_info(
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
    assert info.key == "a/b.txt"
    assert info.digest == "abc-3"
    assert info.size == 12
    assert info.version == "v7"
    assert info.extra == {
        "etag": "abc-3",
        "versionID": "v7",
        "lastModified": "2024-01-02T03:04:05Z",
        "checksumAlgorithm": ["CRC32"],
        "checksumType": "FULL_OBJECT",
    }


def test_listed_info_null_version_and_zero_bytes() -> None:
    info = listed_info({"Key": "empty", "ETag": '"d41d8cd98f00b204e9800998ecf8427e"', "Size": 0, "VersionId": "null"})
    assert info.version is None
    assert info.size == 0
    assert info.extra == {"etag": "d41d8cd98f00b204e9800998ecf8427e"}


def test_listed_info_without_etag_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="no ETag"):
        listed_info({"Key": "k", "Size": 1})


def test_head_info_with_checksums() -> None:
    info = head_info(
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
    assert info.extra == {
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
    cfg = S3Resolver(opts, anyio.CapacityLimiter(1)).client_config()
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 3}
    assert cfg.max_pool_connections == 7
    assert cfg.connect_timeout == 1.5
    assert cfg.read_timeout == 2.5
    assert cfg.s3 == {"addressing_style": "path"}
    assert cfg.signature_version is UNSIGNED

    default = S3Resolver(Options(), anyio.CapacityLimiter(1)).client_config()
    assert default.retries == {"mode": "adaptive", "total_max_attempts": 8}
    assert default.signature_version is None
    assert not default.s3


@pytest.mark.anyio
async def test_budget_never_overcommits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3mod, "PAGE", 10)
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
        (s3mod.S3Resolver._v2_page, {"IsTruncated": True, "Contents": [{"Key": "a", "ETag": '"e"', "Size": 1}]}),
        (
            s3mod.S3Resolver._versions_page,
            {"IsTruncated": True, "Versions": [{"Key": "a", "ETag": '"e"', "Size": 1, "IsLatest": True}]},
        ),
    ],
)
def test_truncated_page_without_a_marker_is_an_error_not_the_end(parse: Any, resp: dict[str, Any]) -> None:
    with pytest.raises(BackendError, match="no continuation marker"):
        parse(resp)
    resp["IsTruncated"] = False
    assert [o.key for o in parse(resp).objects] == ["a"]
