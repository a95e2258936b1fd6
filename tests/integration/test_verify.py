"""verify and download against the real servers, for every scheme (docs/behaviour.md, Verification and Download).

Each backend adapter seeds, overwrites and deletes objects on a real server; the same scenarios then run on
S3 (versioned and not), GCS (versioned and not) and HTTP (nginx), plus a lying aiohttp server for deep mode.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

import refscan
from refscan import GCSOptions, Manifest, ManifestEntry, Options, S3Options, UnsafePath
from tests.servers import GCSServer, NginxServer, S3Server


@dataclass
class Backend:
    """One store under test: write/delete objects and name them as URIs."""

    name: str
    versioned: bool
    options: Options
    put: Callable[[str, bytes], None]
    delete: Callable[[str], None]
    uri: Callable[[str], str]


def s3_backend(server: S3Server, versioned: bool) -> Backend:
    bucket = server.create_bucket(versioned=versioned)
    client = server.client()
    options = Options(
        s3=S3Options(
            endpoint_url=server.endpoint_url,
            region=server.region,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        )
    )
    return Backend(
        f"s3-{'versioned' if versioned else 'plain'}",
        versioned,
        options,
        lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data),
        lambda key: client.delete_object(Bucket=bucket, Key=key),
        lambda key: f"s3://{bucket}/{key}",
    )


def gcs_backend(server: GCSServer, versioned: bool) -> Backend:
    bucket = server.create_bucket(versioning=versioned)
    return Backend(
        f"gcs-{'versioned' if versioned else 'plain'}",
        versioned,
        Options(gcs=GCSOptions(endpoint_url=server.endpoint_url, token="anon")),
        lambda key, data: server.upload(bucket, key, data),
        lambda key: server.delete(bucket, key),
        lambda key: f"gs://{bucket}/{key}",
    )


def http_backend(server: NginxServer) -> Backend:
    prefix = f"verify-{os.urandom(6).hex()}"

    def put(key: str, data: bytes) -> None:
        path = server.root / prefix / key
        server.write(f"{prefix}/{key}", data)
        # nginx's ETag is mtime-size: move the mtime so a rewrite of the same size is visible
        stamp = path.stat().st_mtime + (hash(data) % 1000) + 1
        os.utime(path, (stamp, stamp))

    return Backend(
        "http",
        False,
        Options(),
        put,
        lambda key: (server.root / prefix / key).unlink(),
        lambda key: server.url(f"{prefix}/{key}"),
    )


@pytest.fixture(params=["s3-versioned", "s3-plain", "gcs-versioned", "gcs-plain", "http"])
def backend(request: pytest.FixtureRequest) -> Backend:
    kind: str = request.param
    if kind.startswith("s3"):
        return s3_backend(request.getfixturevalue("s3_server"), kind.endswith("versioned"))
    if kind.startswith("gcs"):
        return gcs_backend(request.getfixturevalue("gcs_server"), kind.endswith("versioned"))
    return http_backend(request.getfixturevalue("nginx_server"))


def statuses(report: refscan.VerifyReport) -> dict[str, str]:
    return {r.path: r.status for r in report.results}


def unpinned(entries: list[ManifestEntry]) -> list[ManifestEntry]:
    """The same entries without their recorded versions (verified against the current objects)."""
    return [
        ManifestEntry(e.path, e.digest, e.ref, e.size, {k: v for k, v in e.extra.items() if k != "versionID"})
        for e in entries
    ]


def scan_all(backend: Backend, keys: list[str]) -> list[ManifestEntry]:
    return [e for key in keys for e in refscan.scan(backend.uri(key), options=backend.options)]


def test_unchanged_refs_are_ok_also_deep(backend: Backend) -> None:
    backend.put("a.bin", b"alpha" * 100)
    backend.put("b.bin", b"")
    entries = scan_all(backend, ["a.bin", "b.bin"])
    assert statuses(refscan.verify(entries, options=backend.options)) == {"a.bin": "ok", "b.bin": "ok"}
    deep = refscan.verify(entries, deep=True, options=backend.options)
    assert deep.ok
    if backend.name != "http":  # nginx's ETag is no content hash: nothing to recompute, said so
        assert all(r.reason.startswith("deep check:") for r in deep.results), deep.results


def test_overwrite_is_changed_unless_the_old_version_is_pinned(backend: Backend, tmp_path: Path) -> None:
    backend.put("data.csv", b"v1,1\n")
    entries = scan_all(backend, ["data.csv"])
    backend.put("data.csv", b"v2,2\n")  # same size, other content
    assert statuses(refscan.verify(unpinned(entries), options=backend.options)) == {"data.csv": "changed"}
    report = refscan.verify(entries, options=backend.options)
    if not backend.versioned:
        assert statuses(report) == {"data.csv": "changed"}
        assert report.results[0].expected != report.results[0].actual
        return
    assert statuses(report) == {"data.csv": "ok"}  # the pinned version still exists
    [written] = refscan.download(entries, tmp_path / "out", options=backend.options)
    assert written.read_bytes() == b"v1,1\n"


def test_deleted_object_is_missing_unless_its_version_remains(backend: Backend, tmp_path: Path) -> None:
    backend.put("gone.txt", b"bye")
    entries = scan_all(backend, ["gone.txt"])
    backend.delete("gone.txt")
    assert statuses(refscan.verify(unpinned(entries), options=backend.options)) == {"gone.txt": "missing"}
    expected = "ok" if backend.versioned else "missing"
    assert statuses(refscan.verify(entries, options=backend.options)) == {"gone.txt": expected}
    if backend.versioned:  # the noncurrent version still downloads
        [written] = refscan.download(entries, tmp_path / "out", options=backend.options)
        assert written.read_bytes() == b"bye"


def test_checksum_false_is_unverifiable(backend: Backend) -> None:
    entries = refscan.scan(backend.uri("never-looked-up.bin"), checksum=False, options=backend.options)
    report = refscan.verify(entries, options=backend.options)
    assert statuses(report) == {"never-looked-up.bin": "unverifiable"}
    assert report.ok
    assert not report.strict_ok()


def test_download_checks_bytes_and_refuses_escaping_paths(backend: Backend, tmp_path: Path) -> None:
    backend.put("dir/x.txt", b"x")
    backend.put("dir/y.txt", b"yy")
    entries = refscan.scan(backend.uri("dir/x.txt"), options=backend.options)
    entries += refscan.scan(backend.uri("dir/y.txt"), name="sub/y.txt", options=backend.options)
    written = refscan.download(Manifest(entries), tmp_path / "out", options=backend.options)
    assert [p.read_bytes() for p in written] == [b"yy", b"x"]  # path order: sub/y.txt, x.txt
    evil = ManifestEntry("../../etc/x", entries[0].digest, entries[0].ref, entries[0].size, entries[0].extra)
    with pytest.raises(UnsafePath):
        refscan.download([entries[0], evil], tmp_path / "evil", options=backend.options)
    assert not (tmp_path / "evil").exists()


def test_s3_multipart_etag_is_recomputed_in_deep_mode(s3_server: S3Server) -> None:
    backend = s3_backend(s3_server, versioned=False)
    client = s3_server.client()
    bucket, key = backend.uri("big.bin")[5:].split("/", 1)
    parts = [os.urandom(5 * 1024 * 1024), b"tail"]
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)
    done = [
        {
            "PartNumber": n,
            "ETag": client.upload_part(Bucket=bucket, Key=key, PartNumber=n, UploadId=upload["UploadId"], Body=body)[
                "ETag"
            ],
        }
        for n, body in enumerate(parts, 1)
    ]
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
    )
    entries = refscan.scan(backend.uri("big.bin"), options=backend.options)
    assert entries[0].digest.endswith("-2")
    [result] = refscan.verify(entries, deep=True, options=backend.options).results
    assert result.status == "ok"
    assert result.reason == "deep check: multipartETag of the content matches"
    assert result.cause == "deep-matches"


@pytest.fixture
def lying_server(serve_app: Callable[[web.Application], str]) -> tuple[str, dict[str, bytes]]:
    """An HTTP server whose HEAD keeps describing the original bytes while GET serves what `state` holds."""
    original = b"the original bytes"
    state = {"body": original}
    md5 = base64.b64encode(hashlib.md5(original).digest()).decode()

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"ETag": '"v1"', "Content-MD5": md5, "Content-Length": str(len(original))}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        return web.Response(body=state["body"], headers={"ETag": '"v1"', "Content-MD5": md5})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return serve_app(app) + "/file.bin", state


def test_deep_mode_catches_same_size_content_behind_a_lying_server(
    lying_server: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, state = lying_server
    entries = refscan.scan(url)
    assert entries[0].extra["contentMD5"]
    state["body"] = b"THE ORIGINAL BYTES"  # same size, same validators, other content
    assert statuses(refscan.verify(entries)) == {"file.bin": "ok"}  # metadata cannot tell
    [result] = refscan.verify(entries, deep=True).results
    assert result.status == "changed"
    assert result.cause == "deep-differs"
    assert "md5 of the content is" in result.reason
    with pytest.raises(refscan.DownloadError, match="md5 of the content is"):
        refscan.download(entries, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp file left


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_many_entries_of_a_folder_are_verified_from_one_listing(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "s3":
        backend = s3_backend(request.getfixturevalue("s3_server"), versioned=True)
    else:
        backend = gcs_backend(request.getfixturevalue("gcs_server"), versioned=False)
    for i in range(40):
        backend.put(f"many/f{i:02}.txt", f"file {i}".encode())
    backend.put("many/sub/deep.txt", b"deep")
    entries = refscan.scan(backend.uri("many"), options=backend.options)
    backend.put("many/f01.txt", b"FILE 1")  # overwritten: a pinned (versioned) entry still holds, else changed
    backend.delete("many/f02.txt")
    with structlog.testing.capture_logs() as logs:
        report = refscan.verify(entries, options=backend.options)
    lookups = [e for e in logs if e["event"] in ("s3.head", "gcs.stat", "gcs.get")]
    status = statuses(report)
    assert status.pop("f01.txt") == ("ok" if backend.versioned else "changed")
    assert status.pop("f02.txt") == ("ok" if backend.versioned else "missing")
    assert set(status.values()) == {"ok"}
    assert len(status) == 39  # 38 untouched files and sub/deep.txt
    # only the two objects the listing could not vouch for were looked up one by one
    assert len(lookups) <= 2, lookups
    verify_module = importlib.import_module("refscan.verify")  # (refscan.verify is the function)
    monkeypatch.setattr(verify_module, "LIST_MIN_ENTRIES", 10**9)  # control: no listing, one lookup each
    with structlog.testing.capture_logs() as logs:
        assert statuses(refscan.verify(entries, options=backend.options)) == statuses(report)
    assert len([e for e in logs if e["event"] in ("s3.head", "gcs.stat")]) >= 39


@pytest.mark.parametrize(("cuts", "status"), [(1, "ok"), (2, "changed")])
def test_a_body_cut_short_once_is_read_again_and_one_always_short_is_a_change(
    serve_app: Callable[[web.Application], str], cuts: int, status: str, tmp_path: Path
) -> None:
    """HEAD gives the recorded size; GET answers with half the bytes behind a matching Content-Length (a
    response cut on the way, which HTTP cannot tell) for its odd-numbered answers (`cuts` 1) or all of them.
    verify --deep has just seen the recorded size, so one such read is taken for a fault and read again; a
    download of an unpinned ref cannot tell a cut from a change and refuses the bytes at once."""
    body = b"0123456789" * 10
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    gets = []

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"ETag": '"v1"', "Content-MD5": md5, "Content-Length": str(len(body))}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        gets.append(request.path)
        cut = len(gets) % 2 == 1 or cuts == 2
        return web.Response(body=body[: len(body) // 2] if cut else body, headers={"ETag": '"v1"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    entries = refscan.scan(serve_app(app) + "/data.bin")
    [result] = refscan.verify(entries, deep=True).results
    assert (result.status, result.cause) == (status, "deep-matches" if status == "ok" else "deep-differs")
    assert len(gets) == 2
    if status == "changed":
        assert result.reason == "deep check: read 50 bytes, expected 100"
    with pytest.raises(refscan.DownloadError, match="read 50 bytes, expected 100"):
        refscan.download(entries, tmp_path)
    assert len(gets) == 3
    assert list(tmp_path.iterdir()) == []
    if status == "ok":  # run again: the whole body
        assert refscan.download(entries, tmp_path) == [tmp_path / "data.bin"]
        assert (tmp_path / "data.bin").read_bytes() == body
