"""The test servers start and behave as the rest of the suite assumes."""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.servers import GCSHTTPError, GCSServer, NginxServer, S3Server, serve_app

pytestmark = pytest.mark.integration

ODD_KEYS = ["a b#1.txt", "q?x=1", "ünï.txt", "a//b", "p%2Fq", "x+y=z&w", "dir/sub/file.bin"]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- S3 ---------------------------------------------------------------------------------------------------


def test_s3_odd_keys_and_empty_body_round_trip(s3_server: S3Server, s3_bucket: str) -> None:
    c = s3_server.client()
    t0 = time.monotonic()
    c.put_object(Bucket=s3_bucket, Key="empty", Body=b"")  # Expect: 100-continue + Content-Length: 0
    for key in ODD_KEYS:  # also: the keep-alive connection is still usable after the empty put
        c.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
    assert time.monotonic() - t0 < 5, "a put stalled (waitress Expect: 100-continue handling?)"

    listed = c.list_objects_v2(Bucket=s3_bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted([*ODD_KEYS, "empty"])
    sizes = {o["Key"]: o["Size"] for o in listed["Contents"]}
    assert sizes["empty"] == 0

    for key in ODD_KEYS:
        head = c.head_object(Bucket=s3_bucket, Key=key)
        assert head["ContentLength"] == len(key.encode())
        assert head["ETag"] == f'"{_md5(key.encode())}"'
        assert c.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == key.encode()
    assert c.head_object(Bucket=s3_bucket, Key="empty")["ETag"] == f'"{_md5(b"")}"'
    # "a//b" and "q?x=1" must not alias other keys
    with pytest.raises(c.exceptions.ClientError):
        c.head_object(Bucket=s3_bucket, Key="a/b")
    with pytest.raises(c.exceptions.ClientError):
        c.head_object(Bucket=s3_bucket, Key="q")


def test_s3_empty_put_with_expect_continue_on_the_wire(s3_server: S3Server) -> None:
    """Raw check of the waitress patch: 100 Continue then the final response, and the connection survives."""
    host, port = s3_server.endpoint_url.removeprefix("http://").split(":")
    bucket = s3_server.create_bucket()
    auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"
    req = (
        f"PUT /{bucket}/raw-empty HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\n"
        f"Expect: 100-continue\r\nAuthorization: {auth}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(req)
        buf = b""
        deadline = time.monotonic() + 5
        while b"HTTP/1.1 200" not in buf or not buf.endswith(b"\r\n\r\n"):
            assert time.monotonic() < deadline, f"no final response: {buf!r}"
            chunk = sock.recv(65536)
            assert chunk, f"connection closed: {buf!r}"
            buf += chunk
    assert buf.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")
    assert s3_server.client().head_object(Bucket=bucket, Key="raw-empty")["ContentLength"] == 0


def test_s3_versioned_bucket(s3_server: S3Server, s3_versioned_bucket: str) -> None:
    c = s3_server.client()
    assert c.get_bucket_versioning(Bucket=s3_versioned_bucket)["Status"] == "Enabled"
    v1 = c.put_object(Bucket=s3_versioned_bucket, Key="k", Body=b"one")["VersionId"]
    v2 = c.put_object(Bucket=s3_versioned_bucket, Key="k", Body=b"two!")["VersionId"]
    c.delete_object(Bucket=s3_versioned_bucket, Key="k")
    assert v1 != v2
    assert c.head_object(Bucket=s3_versioned_bucket, Key="k", VersionId=v1)["ContentLength"] == 3
    versions = c.list_object_versions(Bucket=s3_versioned_bucket)
    assert {v["VersionId"] for v in versions["Versions"]} == {v1, v2}
    assert len(versions["DeleteMarkers"]) == 1


def test_s3_env_and_unique_buckets(s3_server: S3Server, s3_env: dict[str, str], s3_bucket: str) -> None:
    import os

    import boto3

    assert os.environ["AWS_ENDPOINT_URL_S3"] == s3_server.endpoint_url
    assert s3_env["AWS_REGION"] == "us-east-1"
    # A client built only from the environment reaches the test server.
    c = boto3.session.Session().client("s3")
    assert s3_bucket in {b["Name"] for b in c.list_buckets()["Buckets"]}
    assert s3_server.create_bucket() != s3_server.create_bucket()


# -- GCS --------------------------------------------------------------------------------------------------


def test_gcs_upload_list_paginated(gcs_server: GCSServer, gcs_bucket: str) -> None:
    names = [*ODD_KEYS, "empty"]
    for name in names:
        data = b"" if name == "empty" else name.encode()
        res = gcs_server.upload(gcs_bucket, name, data, content_type="text/plain")
        assert res["name"] == name
        assert int(res["size"]) == len(data)
        assert gcs_server.get_meta(gcs_bucket, name)["md5Hash"] == res["md5Hash"]
        assert gcs_server.download(gcs_bucket, name) == data

    seen: list[str] = []
    pages = 0
    token: str | None = None
    while True:
        params: dict[str, str | int] = {"maxResults": 2}
        if token:
            params["pageToken"] = token
        page: dict[str, Any] = gcs_server.list_objects(gcs_bucket, **params)
        items = page.get("items", [])
        assert len(items) <= 2
        seen += [o["name"] for o in items]
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages >= len(names) // 2
    assert seen == sorted(names)

    gcs_server.delete(gcs_bucket, "empty")
    with pytest.raises(GCSHTTPError) as exc:
        gcs_server.get_meta(gcs_bucket, "empty")
    assert exc.value.status == 404


def test_gcs_versioning_keeps_noncurrent_generations(gcs_server: GCSServer, gcs_versioned_bucket: str) -> None:
    b = gcs_versioned_bucket
    g1 = gcs_server.upload(b, "f", b"one")["generation"]
    g2 = gcs_server.upload(b, "f", b"two!")["generation"]
    assert int(g2) > int(g1)
    gcs_server.delete(b, "f")
    with pytest.raises(GCSHTTPError):
        gcs_server.get_meta(b, "f")
    assert gcs_server.get_meta(b, "f", generation=g1)["size"] == "3"
    assert gcs_server.download(b, "f", generation=g2) == b"two!"
    versions = gcs_server.list_objects(b, versions="true")["items"]
    assert sorted(v["generation"] for v in versions) == sorted([g1, g2])

    # versioning can also be switched on later
    other = gcs_server.create_bucket()
    assert gcs_server.set_versioning(other)["versioning"] == {"enabled": True}


def test_gcs_env(gcs_server: GCSServer, gcs_env: dict[str, str]) -> None:
    import os

    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_server.endpoint_url
    assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
    assert gcs_env["GOOGLE_CLOUD_PROJECT"] == "test"


# -- nginx ------------------------------------------------------------------------------------------------


def test_nginx_head_etag_range(nginx_server: NginxServer) -> None:
    url = nginx_server.write("dir/a b#ü.txt", b"hello world")
    head = urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5)
    assert head.status == 200
    assert head.headers["Content-Length"] == "11"
    etag = head.headers["ETag"]
    assert etag
    assert etag.startswith('"')
    assert etag.endswith('-b"')  # "<mtime hex>-<size hex>"
    assert head.headers["Last-Modified"]

    rng = urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-0"}), timeout=5)
    assert rng.status == 206
    assert rng.read() == b"h"
    assert rng.headers["Content-Range"] == "bytes 0-0/11"

    with pytest.raises(urllib.error.HTTPError) as e404:
        urllib.request.urlopen(nginx_server.url("missing.txt"), timeout=5)
    assert e404.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e416:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=100-"}), timeout=5)
    assert e416.value.code == 416


# -- aiohttp apps -----------------------------------------------------------------------------------------


def _no_head_app() -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=405, headers={"Allow": "GET"})
        return web.Response(body=b"payload", headers={"ETag": '"abc"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def test_serve_app_context_manager_sync() -> None:
    with serve_app(_no_head_app()) as base:
        assert base.startswith("http://127.0.0.1:")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(urllib.request.Request(base + "/f", method="HEAD"), timeout=5)
        assert exc.value.code == 405
        with urllib.request.urlopen(base + "/f", timeout=5) as resp:
            assert resp.read() == b"payload"
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # stopped on exit


@pytest.mark.anyio
async def test_serve_app_fixture_from_async_test(serve_app: Callable[[web.Application], str]) -> None:
    base = serve_app(_no_head_app())
    async with aiohttp.ClientSession() as session:
        async with session.head(base + "/x") as r:
            assert r.status == 405
        async with session.get(base + "/x") as r:
            assert r.status == 200
            assert await r.read() == b"payload"
            assert r.headers["ETag"] == '"abc"'
