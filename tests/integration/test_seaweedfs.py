"""s3:// scans against SeaweedFS, a second S3 server (tests/servers/seaweed.py), that users rely on.

SeaweedFS is faithful where moto is (pagination, StartAfter, Delimiter, MD5 ETags, multipart ETags, versions)
but its listings follow the filer's directory order rather than S3's byte order (`a/...` before `a-c` and
`a.d`; S3 puts `a-c` and `a.d` first), and three of its answers differ from S3's in ways a listing that resumes
from a key position meets (LAYOUTS below has one bucket layout for each):

- a delimited listing resumed from a StartAfter inside a sub-folder also returns prefixes nested in that
  sub-folder (Prefix=fo/ StartAfter=fo/b/0999 -> [fo/b/, fo/b/y/], S3: [fo/b/]);
- a delimited listing resumed from StartAfter returns keys that sort before it in byte order but after it in
  directory order (Prefix='' StartAfter=a/0999 -> a-c, a.d);
- StartAfter naming a key that is also a folder (`a/b` and `a/b/...`) skips that folder's keys.

Each test asserts the exact set of entries (path, ref, digest = ETag = MD5 hex of the bytes put, size, version
id), so a duplicated or missing key fails it; requests are signed with the session's key (`S3Options` keys,
path-style addressing).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from boto3.s3.transfer import TransferConfig

import refscan
from refscan import ManifestEntry, Options, S3Options, TooManyObjects
from tests.servers.seaweed import SeaweedFSServer

pytestmark = pytest.mark.integration

MiB = 1 << 20

#: (path, ref, digest, etag, size, versionID) of one entry
Row = tuple[str, str | None, str, str | None, int | None, str | None]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def opts(server: SeaweedFSServer) -> Options:
    return Options(
        s3=S3Options(
            endpoint_url=server.endpoint_url,
            region=server.region,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            addressing_style="path",
        )
    )


def rows(entries: list[ManifestEntry]) -> list[Row]:
    return sorted((e.path, e.ref, e.digest, e.extra.get("etag"), e.size, e.extra.get("versionID")) for e in entries)


def expected(
    bucket: str, prefix: str, objects: Mapping[str, bytes], versions: Mapping[str, str] | None = None
) -> list[Row]:
    """The entries a scan of `s3://bucket/prefix` must give for `objects` (keys relative to the bucket)."""
    out: list[Row] = []
    for key, data in objects.items():
        assert key.startswith(prefix)
        version = versions[key] if versions is not None else None
        out.append((key[len(prefix) :], f"s3://{bucket}/{key}", md5(data), md5(data), len(data), version))
    return sorted(out)


def assert_exact(entries: list[ManifestEntry], want: list[Row]) -> None:
    """`entries` are exactly `want`: first no duplicated and no missing/unexpected paths (the counts say how
    the listing went wrong), then every field of every entry."""
    counts = Counter(e.path for e in entries)
    duplicated = sorted(p for p, n in counts.items() if n > 1)
    wanted = {r[0] for r in want}
    missing = sorted(wanted - counts.keys())
    unexpected = sorted(counts.keys() - wanted)
    assert (len(duplicated), len(missing), len(unexpected)) == (0, 0, 0), (
        f"{len(entries)} entries for {len(want)} objects: {len(duplicated)} listed more than once "
        f"({len(entries) - len(counts)} extra entries, e.g. {duplicated[:3]}), "
        f"{len(missing)} missing (e.g. {missing[:5]}), {len(unexpected)} unexpected (e.g. {unexpected[:5]})"
    )
    assert rows(entries) == want


# -- seeded buckets (once per module: seeding is the slow part) ---------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    bucket: str
    objects: dict[str, bytes]


def seed(server: SeaweedFSServer, objects: dict[str, bytes]) -> Seeded:
    bucket = server.create_bucket()
    server.put_objects(bucket, objects, workers=8)
    return Seeded(bucket, objects)


FLAT = {f"flat/{i:05d}.bin": f"flat object {i}".encode() for i in range(2500)}

UNEVEN = {
    **{f"tree/big/{i:05d}.bin": f"big {i}".encode() for i in range(2200)},
    **{f"tree/small{j:02d}/{k}.txt": f"small {j} {k}".encode() for j in range(30) for k in range(j % 4 + 1)},
    **{f"tree/top{i}.txt": f"top {i}".encode() for i in range(3)},
}


@pytest.fixture(scope="module")
def flat(seaweed_server: SeaweedFSServer) -> Seeded:
    return seed(seaweed_server, FLAT)


@pytest.fixture(scope="module")
def uneven(seaweed_server: SeaweedFSServer) -> Seeded:
    return seed(seaweed_server, UNEVEN)


# -- listings -------------------------------------------------------------------------------------------------


def test_flat_folder_of_2500_objects_scan(seaweed_server: SeaweedFSServer, flat: Seeded) -> None:
    entries = refscan.scan(f"s3://{flat.bucket}/flat", options=opts(seaweed_server))
    assert_exact(entries, expected(flat.bucket, "flat/", flat.objects))


@pytest.mark.anyio
async def test_flat_folder_of_2500_objects_iter_scan(seaweed_server: SeaweedFSServer, flat: Seeded) -> None:
    entries = [e async for e in refscan.iter_scan(f"s3://{flat.bucket}/flat/", options=opts(seaweed_server))]
    assert_exact(entries, expected(flat.bucket, "flat/", flat.objects))


def test_uneven_sub_folders_fan_out(seaweed_server: SeaweedFSServer, uneven: Seeded) -> None:
    """One sub-folder of 2,200 keys, 30 small ones and three direct objects: the walk fans out after page one."""
    entries = refscan.scan(f"s3://{uneven.bucket}/tree", options=opts(seaweed_server))
    assert_exact(entries, expected(uneven.bucket, "tree/", uneven.objects))
    # the same folder one level down
    big = {k: v for k, v in uneven.objects.items() if k.startswith("tree/big/")}
    entries = refscan.scan(f"s3://{uneven.bucket}/tree/big", options=opts(seaweed_server))
    assert_exact(entries, expected(uneven.bucket, "tree/big/", big))


# -- bucket roots whose listing order differs from S3's ----------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    objects: dict[str, bytes]
    folder: str  # a folder of the layout, scanned too (`s3://bucket/<folder>`)


def _objects(*groups: dict[str, bytes] | tuple[str, ...]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for g in groups:
        out.update(g if isinstance(g, dict) else {key: f"key {key}".encode() for key in g})
    return out


#: Keys whose S3 byte order ('-' < '.' < '/': a-c, a.d, a/b, ...) differs from SeaweedFS's directory order
#: (a/..., a/b, a/b/c, a-c, a.d, fo/..., fo-x, foo), with enough keys under `a/` and `fo/b/` that the listing
#: pages and fans out.
SIBLINGS = _objects(
    ("a/b", "a-c", "a.d", "a/b/c", "fo/b/x", "fo-x", "foo"),
    {f"fo/b/{i:04d}": f"fo/b {i}".encode() for i in range(2000)},
    {f"a/{i:04d}": f"a {i}".encode() for i in range(1500)},
)

LAYOUTS = {
    "siblings": Layout(SIBLINGS, "a"),
    # ... plus a folder nested in fo/b/, after the first page of fo/: SeaweedFS answers the delimited listing
    # of fo/ from StartAfter=fo/b/0999 with CommonPrefixes [fo/b/, fo/b/y/] (S3: [fo/b/]).
    "nested": Layout(_objects(SIBLINGS, {f"fo/b/y/{i:04d}": f"y {i}".encode() for i in range(1200)}), "fo"),
    # A typical dataset bucket: the first page of the root ends two levels down (data/train/0999.bin), and the
    # delimited root listing from there answers [data/, data/train/aug/, data/val/] (S3: [data/]).
    "deep": Layout(
        _objects(
            ("data-v2.txt", "data.txt", "readme"),
            {f"data/train/{i:04d}.bin": f"train {i}".encode() for i in range(2000)},
            {f"data/train/aug/{i:04d}.bin": f"aug {i}".encode() for i in range(1200)},
            {f"data/val/{i:03d}.bin": f"val {i}".encode() for i in range(100)},
        ),
        "data",
    ),
    # A key that is also a folder (a/b and a/b/...) as the last key of a page: SeaweedFS answers
    # Prefix=a/ StartAfter=a/b with nothing (S3: a/b/0 ... a/b/4).
    "dir-key": Layout(
        _objects(
            ("a/b", "a-c", "foo"),
            {f"a/{i:04d}": f"a {i}".encode() for i in range(999)},
            {f"a/b/{i}": f"a/b {i}".encode() for i in range(5)},
        ),
        "a",
    ),
}


@dataclass(frozen=True)
class SeededLayout(Seeded):
    folder: str


@pytest.fixture(scope="module", params=list(LAYOUTS))
def root(request: pytest.FixtureRequest, seaweed_server: SeaweedFSServer) -> SeededLayout:
    layout = LAYOUTS[request.param]
    seeded = seed(seaweed_server, layout.objects)
    return SeededLayout(seeded.bucket, seeded.objects, layout.folder)


def test_bucket_root_every_key_once(seaweed_server: SeaweedFSServer, root: SeededLayout) -> None:
    entries = refscan.scan(f"s3://{root.bucket}", options=opts(seaweed_server))
    assert_exact(entries, expected(root.bucket, "", root.objects))


def test_bucket_root_max_objects_exact_count(seaweed_server: SeaweedFSServer, root: SeededLayout) -> None:
    """`max_objects` = the number of objects is enough: no spurious TooManyObjects."""
    entries = refscan.scan(f"s3://{root.bucket}", max_objects=len(root.objects), options=opts(seaweed_server))
    assert_exact(entries, expected(root.bucket, "", root.objects))


def test_bucket_root_max_objects_one_short(seaweed_server: SeaweedFSServer, root: SeededLayout) -> None:
    with pytest.raises(TooManyObjects, match=f"Exceeded {len(root.objects) - 1} objects"):
        refscan.scan(f"s3://{root.bucket}", max_objects=len(root.objects) - 1, options=opts(seaweed_server))


def test_folder_of_the_layout(
    seaweed_server: SeaweedFSServer, root: SeededLayout, request: pytest.FixtureRequest
) -> None:
    """The folder holds its own keys only (`a` not `a-c` nor `a.d`, which SeaweedFS lists after `a/`'s keys)."""
    if request.node.callspec.params["root"] == "dir-key":
        # SeaweedFS 4.48 bug: `Prefix=a/ MaxKeys=1000` returns exactly 1,000 keys ending at `a/b` (a key that is
        # also a folder) with IsTruncated=false, hiding `a/b/0..4`; no continuation can see them. Strict: when
        # SeaweedFS (or refscan) changes, this must be looked at again.
        request.applymarker(pytest.mark.xfail(strict=True, reason="SeaweedFS ends a full page as not truncated"))
    prefix = root.folder + "/"
    inside = {k: v for k, v in root.objects.items() if k.startswith(prefix)}
    entries = refscan.scan(f"s3://{root.bucket}/{root.folder}", options=opts(seaweed_server))
    assert_exact(entries, expected(root.bucket, prefix, inside))


# -- versions, multipart ---------------------------------------------------------------------------------------


def test_versioned_bucket_latest_versions_and_verify(seaweed_server: SeaweedFSServer) -> None:
    server = seaweed_server
    bucket = server.create_bucket(versioned=True)
    c = server.client()

    def put(key: str, data: bytes) -> str:
        version: str = c.put_object(Bucket=bucket, Key=key, Body=data)["VersionId"]
        return version

    latest: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    for key, bodies in {
        "v/model.h5": [b"weights v1", b"weights v2!", b"weights v3!!"],
        "v/config.json": [b'{"lr": 0.1}'],
        "v/sub/data.csv": [b"a,b\n1,2\n", b"a,b\n1,2\n3,4\n"],
        "v/gone.txt": [b"soon deleted"],
    }.items():
        ids = [put(key, body) for body in bodies]
        assert len(set(ids)) == len(ids), "a new VersionId per overwrite"
        latest[key], versions[key] = bodies[-1], ids[-1]
    marker = c.delete_object(Bucket=bucket, Key="v/gone.txt")
    assert marker.get("DeleteMarker") is True
    del latest["v/gone.txt"], versions["v/gone.txt"]

    o = opts(server)
    entries = refscan.scan(f"s3://{bucket}/v", options=o)
    assert_exact(entries, expected(bucket, "v/", latest, versions))

    report = refscan.verify(entries, options=o)
    assert [(r.path, r.status) for r in report.results] == [(e.path, "ok") for e in entries]

    # An overwrite after the scan: the entries are pinned to their versions, so they still verify.
    new_id = put("v/model.h5", b"weights v4, after the scan")
    assert new_id != versions["v/model.h5"]
    report = refscan.verify(entries, options=o)
    assert [(r.path, r.status) for r in report.results] == [(e.path, "ok") for e in entries]
    [pinned] = [e for e in entries if e.path == "model.h5"]
    assert (pinned.digest, pinned.extra["versionID"]) == (md5(b"weights v3!!"), versions["v/model.h5"])
    # ... and a new scan sees the new version.
    [now] = refscan.scan(f"s3://{bucket}/v/model.h5", options=o)
    assert (now.digest, now.size, now.extra["versionID"]) == (md5(b"weights v4, after the scan"), 26, new_id)


def test_versioned_folder_is_listed_as_concurrent_ranges(seaweed_server: SeaweedFSServer) -> None:
    """SeaweedFS starts a version listing at a KeyMarker as S3 does, so the walk's probe lets a versioned folder
    fan out by key range: every latest version once, deleted keys left out, none from the sibling prefix."""
    server = seaweed_server
    bucket = server.create_bucket(versioned=True)
    objects = {f"vf/{i:04d}.bin": f"first {i}".encode() for i in range(2400)}
    server.put_objects(bucket, objects, workers=8)
    newer = {k: b"second " + k.encode() for k in list(objects)[::3]}
    server.put_objects(bucket, newer | {"vf-sibling": b"not me"}, workers=8)
    c = server.client()
    for key in list(objects)[1::50]:
        c.delete_object(Bucket=bucket, Key=key)
    latest: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    for page in c.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="vf/"):
        for v in page.get("Versions", []):
            if v["IsLatest"]:
                latest[v["Key"]], versions[v["Key"]] = (objects | newer)[v["Key"]], v["VersionId"]
    assert len(latest) == 2400 - 48

    with structlog.testing.capture_logs() as logs:
        entries = refscan.scan(f"s3://{bucket}/vf", options=opts(server))
    assert_exact(entries, expected(bucket, "vf/", latest, versions))
    [event] = [e for e in logs if e["event"] == "s3.list"]
    assert (event["mode"], event["sequential"]) == ("versioned", None)
    assert event["splits"] >= 1


def test_multipart_object_etag_and_deep_verify(seaweed_server: SeaweedFSServer, tmp_path: Path) -> None:
    server = seaweed_server
    bucket = server.create_bucket()
    part = 5 * MiB
    data = bytes(range(256)) * (2 * part // 256) + b"the tail of the last part"
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=part, use_threads=False)
    server.client().upload_file(str(source), bucket, "mp/big.bin", Config=transfer)
    parts = [data[i : i + part] for i in range(0, len(data), part)]
    assert len(parts) == 3
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"

    o = opts(server)
    want: list[Row] = [("big.bin", f"s3://{bucket}/mp/big.bin", etag, etag, len(data), None)]
    for uri in (f"s3://{bucket}/mp/big.bin", f"s3://{bucket}/mp"):
        entries = refscan.scan(uri, options=o)
        assert_exact(entries, want)
    [result] = refscan.verify(entries, deep=True, options=o).results
    assert (result.status, result.cause) == ("ok", "deep-matches"), result.reason
