"""Resumable downloads: a connection dropped mid-body (the fault proxy resets it after half the body) resumes
with a Range request pinned to what was first served — S3 `VersionId` + `If-Match`, the GCS generation, HTTP
`If-Range` with the strong ETag — and the file is still checked as a whole. When the object changed between
the drop and the resume, the read starts again from zero and the changed bytes are refused.

The bytes the proxy sent for a 64 MiB object cut at 50% are reported (`pytest -rP`) and must stay under 1.6x
its size: a restart from zero costs at least 1.5x (the half, then the whole), a resume about 1.0x.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import refscan
from refscan import ChecksumMismatch, DownloadError, GCSOptions, HTTPOptions, Manifest, Options, S3Options
from refscan.options import RetryPolicy
from tests.faults import FaultPlan, FaultProxy, ProxyRequest
from tests.servers import GCSServer, NginxServer, S3Server, unique_name
from tests.servers.s3 import ACCESS_KEY, REGION, SECRET_KEY

pytestmark = pytest.mark.integration

BIG = 64 << 20
LIMIT = 1.6


@pytest.fixture(scope="module")
def big_bytes() -> bytes:
    return os.urandom(BIG)


def s3_options(proxy: FaultProxy) -> Options:
    s3 = S3Options(
        endpoint_url=proxy.url,
        region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        addressing_style="path",
    )
    return Options(s3=s3)


def object_gets(key: str) -> Callable[[ProxyRequest], bool]:
    """The GETs of the object's bytes (not HEADs, listings or metadata)."""
    quoted = key.replace("/", "%2F")

    def match(req: ProxyRequest) -> bool:
        if req.method != "GET":
            return False
        if "alt=media" in req.query:
            return quoted in req.path or key in req.path
        return req.path.endswith("/" + key) and "list-type" not in req.query

    return match


def cut_once(match: Callable[[ProxyRequest], bool], **kwargs: object) -> FaultPlan:
    """Reset the first matching response after half its body; record every request."""
    return FaultPlan(rate=1.0, kinds=("reset",), max_faults=1, match=match, record=True, **kwargs)  # type: ignore[arg-type]


def download_cut_at_half(
    proxy: FaultProxy, uri: str, key: str, data: bytes, options: Options, tmp_path: Path
) -> list[ProxyRequest]:
    """Scan `uri`, download it with its first body GET cut at 50%; check the bytes; return the GETs seen."""
    proxy.configure(FaultPlan())
    manifest = Manifest(refscan.scan(uri, options=options))
    match = object_gets(key)
    proxy.configure(cut_once(match))
    (path,) = refscan.download(manifest, tmp_path / "out", options=options)
    stats = proxy.configure(FaultPlan())
    assert path.read_bytes() == data
    assert stats.faults["reset"] == 1
    ratio = stats.bytes_sent / len(data)
    print(f"{uri}: {stats.bytes_sent:,} bytes sent for a {len(data):,}-byte object cut at 50% ({ratio:.2f}x)")
    assert ratio < LIMIT
    assert [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".part")] == []
    gets = [r for r in stats.seen if match(r)]
    assert len(gets) == 2, [g.key for g in gets]
    assert gets[0].header("Range") is None
    offset = int((gets[1].header("Range") or "").removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= len(data) // 2
    return gets


# -- S3 ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url, flavor="s3") as proxy:
        yield proxy


def test_s3_download_resumes_pinned_to_version_and_etag(
    s3_server: S3Server, s3_proxy: FaultProxy, big_bytes: bytes, tmp_path: Path
) -> None:
    bucket = s3_server.create_bucket(versioned=True)
    put = s3_server.client().put_object(Bucket=bucket, Key="big.bin", Body=big_bytes)
    options = s3_options(s3_proxy)
    gets = download_cut_at_half(s3_proxy, f"s3://{bucket}/big.bin", "big.bin", big_bytes, options, tmp_path)
    assert f"versionId={put['VersionId']}" in gets[1].query
    assert gets[1].header("If-Match") == put["ETag"]


def test_s3_download_restarts_from_zero_when_the_object_changed(
    s3_server: S3Server, s3_proxy: FaultProxy, tmp_path: Path
) -> None:
    bucket = s3_server.create_bucket()  # unversioned: only the ETag can pin the bytes
    client = s3_server.client()
    original, changed = os.urandom(4 << 20), os.urandom(4 << 20)
    client.put_object(Bucket=bucket, Key="obj.bin", Body=original)
    options = s3_options(s3_proxy)
    s3_proxy.configure(FaultPlan())
    manifest = Manifest(refscan.scan(f"s3://{bucket}/obj.bin", options=options))
    match = object_gets("obj.bin")

    def overwrite(_: ProxyRequest) -> None:
        client.put_object(Bucket=bucket, Key="obj.bin", Body=changed)

    s3_proxy.configure(cut_once(match, on_fault=overwrite))
    with pytest.raises(DownloadError) as caught:
        refscan.download(manifest, tmp_path / "out", options=options)
    stats = s3_proxy.configure(FaultPlan())
    assert isinstance(caught.value.failures["obj.bin"], ChecksumMismatch)  # the new bytes were read whole
    gets = [r for r in stats.seen if match(r)]
    assert [(g.header("Range") is not None, g.header("If-Match") is not None) for g in gets] == [
        (False, False),  # cut at 50%, then the object is overwritten
        (True, True),  # resume: 412, the ETag no longer matches
        (False, False),  # from zero
    ]
    assert list((tmp_path / "out").rglob("*.part")) == []
    assert not (tmp_path / "out" / "obj.bin").exists()


def test_s3_download_reads_a_body_failing_its_checksum_again(
    s3_server: S3Server, s3_proxy: FaultProxy, tmp_path: Path
) -> None:
    """A body cut behind a matching Content-Length looks whole to HTTP, but not to the checksum header S3
    sends with it: the bytes handed on are in doubt, so the read starts again from zero (once)."""
    bucket = s3_server.create_bucket()
    data = os.urandom(1 << 20)
    s3_server.client().put_object(Bucket=bucket, Key="obj.bin", Body=data)
    options = s3_options(s3_proxy)
    s3_proxy.configure(FaultPlan())
    manifest = Manifest(refscan.scan(f"s3://{bucket}/obj.bin", options=options))
    match = object_gets("obj.bin")
    s3_proxy.configure(FaultPlan(rate=1.0, kinds=("truncate",), max_faults=1, match=match, record=True))
    (path,) = refscan.download(manifest, tmp_path / "out", options=options)
    stats = s3_proxy.configure(FaultPlan(rate=1.0, kinds=("truncate",), match=match))
    assert path.read_bytes() == data
    assert stats.faults["truncate"] == 1
    assert [r.header("Range") for r in stats.seen if match(r)] == [None, None]
    with pytest.raises(DownloadError) as caught:  # cut every time
        refscan.download(manifest, tmp_path / "again", options=options)
    assert "does not match its checksum header" in str(caught.value.failures["obj.bin"])


# -- GCS ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_proxy(gcs_server: GCSServer) -> Iterator[FaultProxy]:
    with FaultProxy(gcs_server.endpoint_url, flavor="gcs") as proxy:
        yield proxy


def test_gcs_download_resumes_pinned_to_the_generation(
    gcs_server: GCSServer, gcs_proxy: FaultProxy, big_bytes: bytes, tmp_path: Path
) -> None:
    bucket = gcs_server.create_bucket()
    resource = gcs_server.upload(bucket, "big.bin", big_bytes)
    options = Options(retry=RetryPolicy(backoff=0.01), gcs=GCSOptions(endpoint_url=gcs_proxy.url, token="anon"))
    gets = download_cut_at_half(gcs_proxy, f"gs://{bucket}/big.bin", "big.bin", big_bytes, options, tmp_path)
    assert f"generation={resource['generation']}" in gets[1].query


def test_gcs_download_of_a_pinned_generation_reads_a_cut_body_again(
    gcs_server: GCSServer, gcs_proxy: FaultProxy, tmp_path: Path
) -> None:
    """A pinned generation cannot have changed, so bytes of another size than recorded are taken for a body
    cut on the way (behind a matching Content-Length) and the generation is read once more."""
    bucket = gcs_server.create_bucket()
    data = os.urandom(1 << 20)
    gcs_server.upload(bucket, "obj.bin", data)
    options = Options(retry=RetryPolicy(backoff=0.01), gcs=GCSOptions(endpoint_url=gcs_proxy.url, token="anon"))
    gcs_proxy.configure(FaultPlan())
    manifest = Manifest(refscan.scan(f"gs://{bucket}/obj.bin", options=options))
    match = object_gets("obj.bin")
    gcs_proxy.configure(FaultPlan(rate=1.0, kinds=("truncate",), max_faults=1, match=match, record=True))
    (path,) = refscan.download(manifest, tmp_path / "out", options=options)
    stats = gcs_proxy.configure(FaultPlan())
    assert path.read_bytes() == data
    assert stats.faults["truncate"] == 1
    assert len([r for r in stats.seen if match(r)]) == 2


# -- HTTP --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_proxy(nginx_server: NginxServer) -> Iterator[FaultProxy]:
    with FaultProxy(nginx_server.base_url, flavor="http") as proxy:
        yield proxy


def http_options() -> Options:
    return Options(http=HTTPOptions(backoff=0.01, max_backoff=0.1, timeout=30.0))


def test_http_download_resumes_with_if_range(
    nginx_server: NginxServer, http_proxy: FaultProxy, big_bytes: bytes, tmp_path: Path
) -> None:
    path = f"{unique_name('resume')}/big.bin"
    nginx_server.write(path, big_bytes)
    gets = download_cut_at_half(http_proxy, f"{http_proxy.url}/{path}", path, big_bytes, http_options(), tmp_path)
    etag = gets[1].header("If-Range")
    assert etag is not None
    assert etag.startswith('"')  # the strong ETag nginx served


def test_http_download_restarts_from_zero_when_the_file_changed(
    nginx_server: NginxServer, http_proxy: FaultProxy, tmp_path: Path
) -> None:
    path = f"{unique_name('resume')}/obj.bin"
    nginx_server.write(path, os.urandom(4 << 20))
    uri = f"{http_proxy.url}/{path}"
    options = http_options()
    http_proxy.configure(FaultPlan())
    manifest = Manifest(refscan.scan(uri, options=options))
    match = object_gets(path)

    def rewrite(_: ProxyRequest) -> None:
        nginx_server.write(path, os.urandom(5 << 20))  # another size: another ETag, even within the second

    http_proxy.configure(cut_once(match, on_fault=rewrite))
    with pytest.raises(DownloadError) as caught:
        refscan.download(manifest, tmp_path / "out", options=options)
    stats = http_proxy.configure(FaultPlan())
    assert isinstance(caught.value.failures["obj.bin"], ChecksumMismatch)
    gets = [r for r in stats.seen if match(r)]
    assert [(g.header("Range") is not None, g.header("If-Range") is not None) for g in gets] == [
        (False, False),  # cut at 50%, then the file is rewritten
        (True, True),  # resume: nginx answers 200 (If-Range failed), refused
        (False, False),  # from zero
    ]
    assert list((tmp_path / "out").rglob("*.part")) == []
