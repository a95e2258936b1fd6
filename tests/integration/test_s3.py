"""s3:// references end to end against moto in server mode (tests/servers/s3.py), plus small aiohttp apps
for what moto cannot do: deny access, fail with 5xx, deny only GetBucketVersioning (a proxy to moto).

Every row of docs/behaviour.md (URIs, Entries) for s3 on unversioned and versioned buckets, explicit old
versions, delete markers, folder markers, zero-byte files, sibling prefixes, odd keys, multipart ETags,
>1,000 objects, max_objects, missing buckets, denied access, retries, request counts, and the listing fan-out
on many tree shapes (with small pages forced, so every pagination path runs on a few dozen objects).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import pytest
import structlog
from aiohttp import web

import refscan
from refscan import (
    AccessDenied,
    BackendError,
    ManifestEntry,
    NotFound,
    Options,
    S3Options,
    Scanner,
    TooManyObjects,
)
from refscan.backends.s3 import S3Backend
from refscan.backends.s3 import listing as listing_mod
from refscan.uri import RefURI
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.integration

MiB = 1 << 20


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def opts(server: S3Server, **kw: Any) -> Options:
    """Options that reach the server with explicit keys (no environment needed)."""
    settings: dict[str, Any] = {
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "aws_access_key_id": server.access_key,
        "aws_secret_access_key": server.secret_key,
    }
    settings.update(kw)
    return Options(s3=S3Options(**settings))


def rows(entries: list[ManifestEntry]) -> list[tuple[str, str | None, str, int | None]]:
    return [(e.path, e.ref, e.digest, e.size) for e in entries]


@dataclass
class Traffic:
    """Requests seen by the backend's client: HTTP sends per operation (retries included) and MaxKeys."""

    sends: Counter[str] = field(default_factory=Counter)
    max_keys: list[int] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def lists(self) -> int:
        return self.sends["ListObjectsV2"] + self.sends["ListObjectVersions"]


async def scan_traffic(uri: str, options: Options, **kw: Any) -> tuple[list[ManifestEntry] | Exception, Traffic]:
    traffic = Traffic()
    async with Scanner(options) as scanner:
        backend = await scanner.session.backend("s3")
        assert isinstance(backend, S3Backend)

        def on_send(event_name: str, request: Any, **_: Any) -> None:
            traffic.sends[event_name.rsplit(".", 1)[-1]] += 1
            traffic.headers.append(
                {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
            )

        def on_params(params: dict[str, Any], **_: Any) -> None:
            if "MaxKeys" in params:
                traffic.max_keys.append(params["MaxKeys"])

        backend.client.boto.meta.events.register("before-send.s3.*", on_send)
        backend.client.boto.meta.events.register("provide-client-params.s3.*", on_params)
        try:
            return await scanner.scan(uri, **kw), traffic
        except refscan.RefscanError as exc:
            return exc, traffic


# -- fixtures: buckets seeded once per module ---------------------------------------------------------------------

TREE = {
    "model.h5": b"weights",
    "checkpoints/model.h5": b"ckpt",
    "images/cat.png": b"meow",
    "images/dog.png": b"woof!",
    "data": b"the object named data",
    "data/x": b"under data/",
    "data2/x": b"sibling prefix",
    "data.txt": b"sibling file",
    "mk/": b"",  # folder marker
    "mk/inner/": b"",  # nested folder marker
    "mk/empty.bin": b"",  # zero-byte file: kept
    "mk/full.bin": b"full",
    "onlymarker/": b"",
    "odd/a b#1.txt": b"space hash",
    "odd/ünï çødé.txt": b"unicode",
    "odd/q?x=1&y": b"question",
    "odd/pct%41": b"percent",
    "odd/semi;colon+plus=eq": b"punct",
    "dbl//x": b"double slash",
}


@pytest.fixture(scope="module")
def tree(s3_server: S3Server) -> str:
    bucket = s3_server.create_bucket()
    s3_server.put_objects(bucket, TREE)
    return bucket


@dataclass
class Versioned:
    bucket: str
    model_v1: str
    model_v2: str
    gone_versions: list[str]
    gone_marker: str
    a_versions: list[str]


@pytest.fixture(scope="module")
def versioned(s3_server: S3Server) -> Versioned:
    c = s3_server.client()
    bucket = s3_server.create_bucket()
    c.put_object(Bucket=bucket, Key="vdir/prenull", Body=b"before versioning")  # VersionId "null"
    c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket=bucket, Key="model.h5", Body=b"old weights")["VersionId"]
    v2 = c.put_object(Bucket=bucket, Key="model.h5", Body=b"new weights!")["VersionId"]
    a = [c.put_object(Bucket=bucket, Key="vdir/a", Body=body)["VersionId"] for body in (b"a1", b"a22", b"a333")]
    gone = [c.put_object(Bucket=bucket, Key="vdir/gone", Body=b"soon gone")["VersionId"]]
    marker = c.delete_object(Bucket=bucket, Key="vdir/gone")["VersionId"]
    s3_server.put_objects(
        bucket, {"vdir/b": b"b", "vdir/sub/c": b"c", "vdir/mk/": b"", "vdir/empty": b"", "vdir2/x": b"sibling"}
    )
    c.put_object(Bucket=bucket, Key="deleted/x", Body=b"x")
    c.delete_object(Bucket=bucket, Key="deleted/x")
    return Versioned(bucket, v1, v2, gone, marker, a)


# -- docs/behaviour.md rows (URIs, Entries), unversioned ---------------------------------------------------------------


def test_single_object(s3_server: S3Server, tree: str) -> None:
    [e] = refscan.scan(f"s3://{tree}/model.h5", options=opts(s3_server))
    assert rows([e]) == [("model.h5", f"s3://{tree}/model.h5", md5(b"weights"), 7)]
    assert e.extra["etag"] == md5(b"weights")
    assert "versionID" not in e.extra
    assert e.extra["lastModified"].endswith("Z")


def test_nested_object_basename_and_name(s3_server: S3Server, tree: str) -> None:
    o = opts(s3_server)
    assert [e.path for e in refscan.scan(f"s3://{tree}/checkpoints/model.h5", options=o)] == ["model.h5"]
    [e] = refscan.scan(f"s3://{tree}/model.h5", name="models/mymodel.h5", options=o)
    assert (e.path, e.ref) == ("models/mymodel.h5", f"s3://{tree}/model.h5")


@pytest.mark.parametrize("suffix", ["images", "images/"])
def test_folder_relative_names(s3_server: S3Server, tree: str, suffix: str) -> None:
    entries = refscan.scan(f"s3://{tree}/{suffix}", options=opts(s3_server))
    assert rows(entries) == [
        ("cat.png", f"s3://{tree}/images/cat.png", md5(b"meow"), 4),
        ("dog.png", f"s3://{tree}/images/dog.png", md5(b"woof!"), 5),
    ]
    named = refscan.scan(f"s3://{tree}/{suffix}", name="images", options=opts(s3_server))
    assert [e.path for e in named] == ["images/cat.png", "images/dog.png"]


@pytest.mark.parametrize("suffix", ["", "/"])
def test_bucket_root_full_keys(s3_server: S3Server, tree: str, suffix: str) -> None:
    entries = refscan.scan(f"s3://{tree}{suffix}", options=opts(s3_server))
    expected = {k for k, v in TREE.items() if not (k.endswith("/") and not v)}
    assert {e.ref for e in entries} == {f"s3://{tree}/{k}" for k in expected}
    paths = {e.path for e in entries}
    assert "mk/empty.bin" in paths
    assert "checkpoints/model.h5" in paths
    assert "dbl/x" in paths  # empty segment dropped from the path, kept in the ref
    assert f"s3://{tree}/dbl//x" in {e.ref for e in entries}


def test_checksum_false_makes_no_request(s3_server: S3Server) -> None:
    uri = "s3://no-such-bucket-anywhere/some/key.bin?versionId=abc"
    [e] = refscan.scan(uri, checksum=False, options=opts(s3_server, endpoint_url="http://127.0.0.1:9"))
    assert (e.path, e.ref, e.digest, e.size, dict(e.extra)) == ("key.bin", uri, uri, None, {})
    [root] = refscan.scan("s3://bucket-root-only", checksum=False)
    assert (root.path, root.ref) == ("bucket-root-only", "s3://bucket-root-only")


def test_sibling_prefix_and_object_wins(s3_server: S3Server, tree: str) -> None:
    o = opts(s3_server)
    # The object `data` exists: it wins over the folder data/.
    assert rows(refscan.scan(f"s3://{tree}/data", options=o)) == [
        ("data", f"s3://{tree}/data", md5(b"the object named data"), 21)
    ]
    # The folder data/ never picks up data2/x or data.txt.
    assert [e.ref for e in refscan.scan(f"s3://{tree}/data/", options=o)] == [f"s3://{tree}/data/x"]
    assert [e.ref for e in refscan.scan(f"s3://{tree}/data2", options=o)] == [f"s3://{tree}/data2/x"]


def test_folder_markers_skipped_zero_byte_files_kept(s3_server: S3Server, tree: str) -> None:
    entries = refscan.scan(f"s3://{tree}/mk", options=opts(s3_server))
    assert rows(entries) == [
        ("empty.bin", f"s3://{tree}/mk/empty.bin", md5(b""), 0),
        ("full.bin", f"s3://{tree}/mk/full.bin", md5(b"full"), 4),
    ]


def test_empty_folder_and_missing_key_are_not_found(s3_server: S3Server, tree: str) -> None:
    o = opts(s3_server)
    with pytest.raises(NotFound, match="no objects under"):
        refscan.scan(f"s3://{tree}/onlymarker", options=o)
    with pytest.raises(NotFound):
        refscan.scan(f"s3://{tree}/nothing/here/", options=o)
    with pytest.raises(NotFound):
        refscan.scan(f"s3://{tree}/missing.bin", options=o)


@pytest.mark.parametrize("key", [k for k in TREE if k.startswith(("odd/", "dbl/"))])
def test_odd_keys_single_object(s3_server: S3Server, tree: str, key: str) -> None:
    [e] = refscan.scan(f"s3://{tree}/{key}", options=opts(s3_server))
    assert (e.ref, e.digest, e.size) == (f"s3://{tree}/{key}", md5(TREE[key]), len(TREE[key]))
    assert e.path == key.rsplit("/", 1)[-1]


def test_odd_keys_folder(s3_server: S3Server, tree: str) -> None:
    entries = refscan.scan(f"s3://{tree}/odd", options=opts(s3_server))
    odd = sorted(k for k in TREE if k.startswith("odd/"))
    assert [e.ref for e in entries] == [f"s3://{tree}/{k}" for k in odd]
    assert [e.path for e in entries] == [k[len("odd/") :] for k in odd]
    assert [e.path for e in refscan.scan(f"s3://{tree}/dbl", options=opts(s3_server))] == ["x"]


def test_multipart_etag(s3_server: S3Server, s3_bucket: str) -> None:
    c = s3_server.client()
    parts = [b"a" * (5 * MiB), b"tail"]
    upload = c.create_multipart_upload(Bucket=s3_bucket, Key="mp/big.bin")
    done = []
    for n, body in enumerate(parts, start=1):
        r = c.upload_part(Bucket=s3_bucket, Key="mp/big.bin", UploadId=upload["UploadId"], PartNumber=n, Body=body)
        done.append({"ETag": r["ETag"], "PartNumber": n})
    c.complete_multipart_upload(
        Bucket=s3_bucket, Key="mp/big.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
    )
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-2"
    for uri in (f"s3://{s3_bucket}/mp/big.bin", f"s3://{s3_bucket}/mp"):
        [e] = refscan.scan(uri, options=opts(s3_server))
        assert (e.digest, e.extra["etag"], e.size) == (expected, expected, 5 * MiB + 4)


# -- versioned buckets --------------------------------------------------------------------------------------


def test_versioned_single_object_latest_and_old(s3_server: S3Server, versioned: Versioned) -> None:
    o = opts(s3_server)
    b = versioned.bucket
    [latest] = refscan.scan(f"s3://{b}/model.h5", options=o)
    assert (latest.digest, latest.size, latest.extra["versionID"]) == (md5(b"new weights!"), 12, versioned.model_v2)
    [old] = refscan.scan(f"s3://{b}/model.h5?versionId={versioned.model_v1}", options=o)
    assert (old.path, old.ref) == ("model.h5", f"s3://{b}/model.h5")
    assert (old.digest, old.size, old.extra["etag"]) == (md5(b"old weights"), 11, md5(b"old weights"))
    assert old.extra["versionID"] == versioned.model_v1
    [named] = refscan.scan(f"s3://{b}/vdir/a?versionId={versioned.a_versions[1]}", name="a.txt", options=o)
    assert (named.path, named.digest, named.extra["versionID"]) == ("a.txt", md5(b"a22"), versioned.a_versions[1])


def test_versioned_folder_latest_only(s3_server: S3Server, versioned: Versioned) -> None:
    b = versioned.bucket
    entries = refscan.scan(f"s3://{b}/vdir", options=opts(s3_server))
    got = {e.path: (e.digest, e.size, e.extra.get("versionID")) for e in entries}
    assert set(got) == {"a", "b", "empty", "prenull", "sub/c"}  # no gone (delete marker), no mk/ marker
    assert got["a"] == (md5(b"a333"), 4, versioned.a_versions[2])
    assert got["empty"][:2] == (md5(b""), 0)
    assert got["prenull"] == (md5(b"before versioning"), 17, None)  # "null" version id is omitted
    assert all(v is not None for p, (_, _, v) in got.items() if p != "prenull")
    assert [e.ref for e in refscan.scan(f"s3://{b}/vdir2", options=opts(s3_server))] == [f"s3://{b}/vdir2/x"]


def test_versioned_root_and_prenull_single(s3_server: S3Server, versioned: Versioned) -> None:
    b = versioned.bucket
    refs = {e.ref for e in refscan.scan(f"s3://{b}", options=opts(s3_server))}
    assert f"s3://{b}/model.h5" in refs
    assert f"s3://{b}/vdir/gone" not in refs
    assert f"s3://{b}/deleted/x" not in refs
    [e] = refscan.scan(f"s3://{b}/vdir/prenull", options=opts(s3_server))
    assert "versionID" not in e.extra


def test_delete_marker_cases(s3_server: S3Server, versioned: Versioned) -> None:
    o = opts(s3_server)
    b = versioned.bucket
    with pytest.raises(NotFound):  # latest is a delete marker: no object, no folder
        refscan.scan(f"s3://{b}/vdir/gone", options=o)
    with pytest.raises(NotFound, match="no objects under"):  # folder whose only key is deleted
        refscan.scan(f"s3://{b}/deleted", options=o)
    with pytest.raises(NotFound, match="delete marker"):  # pinning the marker's own version
        refscan.scan(f"s3://{b}/vdir/gone?versionId={versioned.gone_marker}", options=o)
    # The noncurrent version behind the marker still exists and can be pinned.
    [e] = refscan.scan(f"s3://{b}/vdir/gone?versionId={versioned.gone_versions[0]}", options=o)
    assert (e.digest, e.extra["versionID"]) == (md5(b"soon gone"), versioned.gone_versions[0])


def test_missing_and_malformed_version(s3_server: S3Server, versioned: Versioned) -> None:
    o = opts(s3_server)
    b = versioned.bucket
    with pytest.raises(NotFound, match="no such version"):
        refscan.scan(f"s3://{b}/model.h5?versionId=00000000-0000-0000-0000-000000000000", options=o)
    with pytest.raises(NotFound, match="version"):
        refscan.scan(f"s3://{b}/model.h5?versionId=not-a-version", options=o)


@pytest.mark.anyio
async def test_read_latest_old_and_missing(s3_server: S3Server, versioned: Versioned) -> None:
    b = versioned.bucket
    async with S3Backend(opts(s3_server), anyio.CapacityLimiter(4)) as r:

        async def read(uri: str) -> bytes:
            return b"".join([chunk async for chunk in r.read(RefURI.parse(uri))])

        assert await read(f"s3://{b}/model.h5") == b"new weights!"
        assert await read(f"s3://{b}/model.h5?versionId={versioned.model_v1}") == b"old weights"
        assert await read(f"s3://{b}/vdir/empty") == b""
        with pytest.raises(NotFound):
            await read(f"s3://{b}/vdir/gone")
        with pytest.raises(NotFound):
            await read(f"s3://{b}/model.h5?versionId=00000000-0000-0000-0000-000000000000")


# -- missing bucket, configuration through the environment ------------------------------------------------------


def test_missing_bucket(s3_server: S3Server) -> None:
    o = opts(s3_server)
    for uri in ("s3://no-such-bucket-xyz/key.bin", "s3://no-such-bucket-xyz", "s3://no-such-bucket-xyz/dir/"):
        with pytest.raises(NotFound, match="no such bucket 'no-such-bucket-xyz'"):
            refscan.scan(uri, options=o)


def test_environment_configuration(s3_env: dict[str, str], tree: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert [e.path for e in refscan.scan(f"s3://{tree}/images")] == ["cat.png", "dog.png"]
    # W&B's variable works too.
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", s3_env["AWS_ENDPOINT_URL_S3"])
    assert [e.path for e in refscan.scan(f"s3://{tree}/model.h5")] == ["model.h5"]


def test_anonymous_needs_no_credentials(
    s3_server: S3Server, tree: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    o = Options(s3=S3Options(endpoint_url=s3_server.endpoint_url, anonymous=True, addressing_style="path"))
    assert [e.path for e in refscan.scan(f"s3://{tree}/images", options=o)] == ["cat.png", "dog.png"]


@pytest.mark.anyio
async def test_requester_pays_header(s3_server: S3Server, tree: str) -> None:
    result, traffic = await scan_traffic(f"s3://{tree}/images", opts(s3_server, requester_pays=True))
    assert not isinstance(result, Exception)
    payer = [h.get("x-amz-request-payer") for h in traffic.headers]
    # Every object/listing request carries it (GetBucketVersioning takes no RequestPayer parameter).
    assert payer.count("requester") == traffic.sends["HeadObject"] + traffic.lists >= 2


# -- limits -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(s3_server: S3Server) -> str:
    """1,078 objects: big/a holds 1,010 (flat: two pages), plus sibling sub-folders and direct objects."""
    bucket = s3_server.create_bucket()
    objects = {f"big/a/{i:04d}": b"a" for i in range(1010)}
    objects.update({f"big/b/{i:02d}": b"b" for i in range(60)})
    objects.update({f"big/c/{i}": b"c" for i in range(3)})
    objects.update({f"big/d{i}": b"d" for i in range(5)})
    s3_server.put_objects(bucket, objects, workers=32)
    return bucket


@pytest.mark.anyio
async def test_more_than_one_page(s3_server: S3Server, big: str) -> None:
    entries, traffic = await scan_traffic(f"s3://{big}/big/a/", opts(s3_server))
    assert isinstance(entries, list)
    assert [e.path for e in entries] == [f"{i:04d}" for i in range(1010)]
    assert traffic.sends["HeadObject"] == 0
    # the first page, then its truncated rest split into key ranges listed together (some past the end: empty)
    assert 2 <= traffic.lists <= 1 + listing_mod.MAX_PARTS
    assert sum(traffic.max_keys) <= 10_001


@pytest.mark.anyio
async def test_tree_fans_out_without_a_request_per_object(s3_server: S3Server, big: str) -> None:
    with structlog.testing.capture_logs() as logs:
        entries, traffic = await scan_traffic(f"s3://{big}/big", opts(s3_server))
    assert isinstance(entries, list)
    assert len(entries) == 1078
    assert {e.path for e in entries} >= {"a/0000", "a/1009", "b/59", "c/2", "d4"}
    # One HEAD (the engine asks whether `big` is an object), one GetBucketVersioning, a handful of lists:
    # the first page (1,000 keys of big/a/), then its rest as concurrent key ranges.
    assert traffic.sends["HeadObject"] == 1
    assert traffic.sends["GetBucketVersioning"] == 1
    assert traffic.lists <= 1 + listing_mod.MAX_PARTS
    [event] = [e for e in logs if e["event"] == "s3.list"]
    assert event["splits"] >= 1
    assert event["objects"] == 1078
    assert event["pages"] == traffic.lists


@pytest.mark.anyio
async def test_max_objects(s3_server: S3Server, big: str) -> None:
    o = opts(s3_server)
    entries, _ = await scan_traffic(f"s3://{big}/big/a", o, max_objects=1010)
    assert isinstance(entries, list)
    assert len(entries) == 1010
    error, traffic = await scan_traffic(f"s3://{big}/big/a", o, max_objects=1009)
    assert isinstance(error, TooManyObjects)
    assert "Exceeded 1009 objects" in str(error)
    assert "max_objects" in str(error)
    assert sum(traffic.max_keys) <= 1010  # never asks for more than max_objects + 1
    error, traffic = await scan_traffic(f"s3://{big}/big", o, max_objects=10)
    assert isinstance(error, TooManyObjects)
    assert traffic.max_keys == [11]


# -- listing shapes with small pages: every pagination/fan-out path on a few dozen objects ------------------------

SHAPE_KEYS: dict[str, bytes] = {
    **{f"shape/f{i}": f"f{i}".encode() for i in range(7)},
    **{f"shape/big/{i:02d}": f"big{i}".encode() for i in range(12)},
    **{f"shape/big/deep/{i}": f"deep{i}".encode() for i in range(6)},
    "shape/big/": b"",
    **{f"shape/t{j}/{k}": f"t{j}{k}".encode() for j in range(9) for k in range(2)},
    **{f"shape/zz{i}": f"zz{i}".encode() for i in range(3)},
    "shape/zz/only": b"z",
    "shapes/not-me": b"sibling",
}


@pytest.fixture(scope="module", params=["unversioned", "versioned"])
def shapes(request: pytest.FixtureRequest, s3_server: S3Server) -> str:
    versioned = request.param == "versioned"
    bucket = s3_server.create_bucket(versioned=versioned)
    s3_server.put_objects(bucket, SHAPE_KEYS)
    if versioned:  # noncurrent versions and delete markers in the middle of pages
        c = s3_server.client()
        for key in ("shape/big/03", "shape/big/03", "shape/t1/0", "shape/f6"):
            c.put_object(Bucket=bucket, Key=key, Body=b"newer " + key.encode())
        for key in ("shape/f2", "shape/big/deep/0", "shape/t4/1"):
            c.delete_object(Bucket=bucket, Key=key)
    return bucket


def truth(server: S3Server, bucket: str, prefix: str) -> dict[str, tuple[str, str | None]]:
    """key -> (etag, version id) of the live objects under `prefix`, by a plain full listing."""
    c = server.client()
    out: dict[str, tuple[str, str | None]] = {}
    for page in c.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            if v["IsLatest"] and not (v["Key"].endswith("/") and v["Size"] == 0):
                vid = v.get("VersionId")
                out[v["Key"]] = (v["ETag"].strip('"'), None if vid in (None, "null") else vid)
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("page", [2, 3])
async def test_listing_shapes(s3_server: S3Server, shapes: str, monkeypatch: pytest.MonkeyPatch, page: int) -> None:
    monkeypatch.setattr(listing_mod, "PAGE", page)
    o = opts(s3_server)
    for prefix in ("shape/", "shape/big/", ""):
        expected = truth(s3_server, shapes, prefix)
        with structlog.testing.capture_logs() as logs:
            entries, traffic = await scan_traffic(f"s3://{shapes}/{prefix}", o)
        assert isinstance(entries, list), entries
        got = {e.ref.split("/", 3)[3]: (e.digest, e.extra.get("versionID")) for e in entries if e.ref}
        assert got == expected, prefix
        assert len(entries) == len(expected)  # no duplicates
        [event] = [e for e in logs if e["event"] == "s3.list"]
        if prefix == "shape/" and page <= 3:
            # ListObjectsV2 folders split into key ranges; version listings stay one chain: the walk's probe
            # sees moto drop the first version after a KeyMarker
            versioned = event["mode"] == "versioned"
            assert (event["splits"] >= 1) is not versioned
            assert event["sequential"] == (listing_mod.MARKERS_INEXACT if versioned else None)
        assert traffic.sends["HeadObject"] == 0
        assert all(k <= page for k in traffic.max_keys)
    # The limit holds on every shape: exactly n objects is fine, n - 1 raises, and never over-asks.
    n = len(truth(s3_server, shapes, "shape/"))
    entries, _ = await scan_traffic(f"s3://{shapes}/shape/", o, max_objects=n)
    assert isinstance(entries, list)
    assert len(entries) == n
    error, traffic = await scan_traffic(f"s3://{shapes}/shape/", o, max_objects=n - 1)
    assert isinstance(error, TooManyObjects)
    assert all(k <= page for k in traffic.max_keys)


@pytest.mark.anyio
async def test_large_listings_stream_in_rounds(
    s3_server: S3Server, shapes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries arrive while the listing is still running: memory holds about ROUND_WIDTH pages, not a folder."""
    monkeypatch.setattr(listing_mod, "PAGE", 2)
    monkeypatch.setattr(listing_mod, "ROUND_WIDTH", 2)
    sends: list[str] = []
    arrivals: list[int] = []  # list requests made when each entry arrived
    async with Scanner(opts(s3_server)) as scanner:
        backend = await scanner.session.backend("s3")
        assert isinstance(backend, S3Backend)

        def on_send(event_name: str, **_: Any) -> None:
            if event_name.rsplit(".", 1)[-1] in ("ListObjectsV2", "ListObjectVersions"):
                sends.append(event_name)

        backend.client.boto.meta.events.register("before-send.s3.*", on_send)
        async for _entry in scanner.iter_scan(f"s3://{shapes}/shape/"):
            arrivals.append(len(sends))
    assert len(arrivals) == len(truth(s3_server, shapes, "shape/"))
    assert arrivals[0] <= 2 < len(sends)  # the first entries came after one round, long before the last page


# -- denied, failing and partly-denied servers (aiohttp apps) ----------------------------------------------------

DENIED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message>'
    b"<RequestId>R</RequestId></Error>"
)


def s3_error(status: int, code: str) -> web.Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message></Error>"
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


def denying_app(hits: list[str]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path_qs}")
        if request.method == "HEAD":
            return web.Response(status=403)
        return web.Response(status=403, body=DENIED_XML, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def proxy_app(upstream: str, fail: Callable[[web.Request], web.Response | None]) -> web.Application:
    """Forwards every request to moto unchanged, unless `fail(request)` returns a response to send instead."""
    hop = {"host", "connection", "transfer-encoding", "keep-alive", "content-length"}

    async def handler(request: web.Request) -> web.StreamResponse:
        early = fail(request)
        if early is not None:
            return early
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                upstream + request.raw_path,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as resp,
        ):
            data = await resp.read()
            out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in hop}
            response = web.Response(status=resp.status, headers=out_headers, body=data if data else None)
            if request.method == "HEAD" and "Content-Length" in resp.headers:
                response.headers["Content-Length"] = resp.headers["Content-Length"]
            return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def test_access_denied(s3_server: S3Server, serve_app: Callable[[web.Application], str]) -> None:
    hits: list[str] = []
    url = serve_app(denying_app(hits))
    o = opts(s3_server, endpoint_url=url, addressing_style="path", retry_mode="standard", max_attempts=2)
    with pytest.raises(AccessDenied, match=r"HeadObject was denied.*need s3:GetObject.*s3:ListBucket") as info:
        refscan.scan("s3://locked/secret.bin", options=o)
    assert isinstance(info.value, PermissionError)
    assert s3_server.secret_key not in str(info.value)
    # A folder: GetBucketVersioning denied -> fallback to ListObjectsV2, denied too -> AccessDenied.
    with pytest.raises(AccessDenied, match=r"ListObjectsV2 was denied.*s3:ListBucket"):
        refscan.scan("s3://locked/dir/", options=o)
    assert any("versioning" in h for h in hits)
    assert any("list-type=2" in h for h in hits)


def test_server_errors_after_retries(s3_server: S3Server, serve_app: Callable[[web.Application], str]) -> None:
    hits: list[str] = []

    def always(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        return s3_error(500, "InternalError")

    url = serve_app(proxy_app(s3_server.endpoint_url, always))
    o = opts(s3_server, endpoint_url=url, addressing_style="path", retry_mode="standard", max_attempts=2)
    with pytest.raises(BackendError, match="after retries"):
        refscan.scan("s3://any-bucket/dir/", options=o)
    assert len(hits) == 2  # max_attempts honoured: the first try plus one retry


def test_slowdown_is_retried(s3_server: S3Server, tree: str, serve_app: Callable[[web.Application], str]) -> None:
    count = Counter[str]()

    def flaky(request: web.Request) -> web.Response | None:
        count["all"] += 1
        if count["all"] == 1:
            return s3_error(503, "SlowDown")
        return None

    url = serve_app(proxy_app(s3_server.endpoint_url, flaky))
    o = opts(s3_server, endpoint_url=url, addressing_style="path", retry_mode="standard", max_attempts=4)
    assert [e.path for e in refscan.scan(f"s3://{tree}/images/", options=o)] == ["cat.png", "dog.png"]
    assert count["all"] >= 3  # GetBucketVersioning twice (one SlowDown), then the listing


@pytest.mark.anyio
async def test_versioning_denied_falls_back_to_heads(
    s3_server: S3Server, versioned: Versioned, serve_app: Callable[[web.Application], str]
) -> None:
    def deny_versioning(request: web.Request) -> web.Response | None:
        if request.method == "GET" and "versioning" in request.query:
            return s3_error(403, "AccessDenied")
        return None

    url = serve_app(proxy_app(s3_server.endpoint_url, deny_versioning))
    o = opts(s3_server, endpoint_url=url, addressing_style="path")
    direct = refscan.scan(f"s3://{versioned.bucket}/vdir", options=opts(s3_server))
    via_proxy, traffic = await scan_traffic(f"s3://{versioned.bucket}/vdir", o)
    assert isinstance(via_proxy, list)
    assert [(e.path, e.digest, e.size, e.extra.get("versionID")) for e in via_proxy] == [
        (e.path, e.digest, e.size, e.extra.get("versionID")) for e in direct
    ]
    assert traffic.sends["ListObjectVersions"] == 0
    assert traffic.sends["HeadObject"] == 1 + len(direct)  # the engine's stat of `vdir`, then one per object


# -- events carry no secrets ------------------------------------------------------------------------------------


def test_events_have_counts_and_no_secrets(s3_server: S3Server, tree: str) -> None:
    # moto checks no signatures, so any key works: make them recognisable.
    o = opts(s3_server, aws_secret_access_key="SECRET-KEY-abc123", aws_session_token="SESSION-TOKEN-SECRET")
    with structlog.testing.capture_logs() as logs:
        refscan.scan(f"s3://{tree}/images", options=o)
        refscan.scan(f"s3://{tree}/model.h5", options=o)
    names = [e["event"] for e in logs]
    assert {"s3.open", "s3.versioning", "s3.list", "s3.head"} <= set(names)
    [listed] = [e for e in logs if e["event"] == "s3.list"]
    assert (listed["bucket"], listed["prefix"], listed["objects"], listed["pages"]) == (tree, "images/", 2, 1)
    assert listed["elapsed"] >= 0
    text = repr(logs) + repr(o)
    assert "SECRET-KEY-abc123" not in text
    assert "SESSION-TOKEN-SECRET" not in text
