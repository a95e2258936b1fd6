"""`scan --inventory` and `verify --inventory` against inventories stored in moto S3 and fake-gcs-server
buckets, written in the documented layouts (tests/inventories.py) from ground truth listed with boto3 / the
GCS JSON API, and compared with live scans of the same unchanged buckets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import refscan
from refscan import InvalidInventory, NotFound, Options, S3Options, TooManyObjects
from refscan.cli import cli
from refscan.manifest import jsonl_line
from tests.inventories import (
    S3_CURRENT_COLUMNS,
    local_put,
    s3_ground_truth,
    write_gcs_report,
    write_s3_inventory,
)
from tests.servers import GCSServer, S3Server

pytestmark = [pytest.mark.integration]

FORMATS = ["csv", "parquet", "orc"]
ODD = {
    "data/a.txt": b"alpha",
    "data/with space.txt": b"space",
    "data/plus+sign.txt": b"plus",
    "data/per%cent.txt": b"percent",
    "data/ünï/cöde.bin": b"unicode",
    "data/sub/deep/x.bin": b"x" * 100,
    "data/empty.bin": b"",
    "data/sub/": b"",  # a folder marker: skipped by both
    "data2/not-in-data.txt": b"sibling",  # a string-prefix match only: never part of data/
    "top.txt": b"top",
}


def as_dicts(entries: list[refscan.ManifestEntry]) -> list[dict[str, Any]]:
    return [{"path": e.path, **e.to_dict()} for e in entries]


def core(entries: list[refscan.ManifestEntry]) -> list[tuple[Any, ...]]:
    """What a single object's entry must share with a live HeadObject scan: an inventory row is a listing row,
    so it also carries what only listings say (checksumAlgorithm), as a folder scan's entry does."""
    return [
        (e.path, e.ref, e.digest, e.size, e.extra.get("etag"), e.extra.get("versionID"), e.extra.get("lastModified"))
        for e in entries
    ]


def s3_put(server: S3Server, bucket: str) -> Any:
    client = server.client()
    return lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.fixture
def inventory_bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("fmt", FORMATS)
def test_s3_unversioned_scan_equals_live_scan(s3_server: S3Server, inventory_bucket: str, fmt: str) -> None:
    src = s3_server.create_bucket()
    s3_server.put_objects(src, ODD)
    rows = s3_ground_truth(s3_server.client(), src, all_versions=False)
    key = write_s3_inventory(
        s3_put(s3_server, inventory_bucket), inventory_bucket, src, rows, fmt=fmt, columns=S3_CURRENT_COLUMNS
    )
    inv = f"s3://{inventory_bucket}/{key}"
    for uri, kwargs in [
        (f"s3://{src}/data", {}),
        (f"s3://{src}/data/", {"name": "d"}),
        (f"s3://{src}", {}),
        (f"s3://{src}/data/sub", {}),
    ]:
        assert as_dicts(refscan.scan(uri, inventory=inv, **kwargs)) == as_dicts(refscan.scan(uri, **kwargs)), uri
    one = f"s3://{src}/data/with space.txt"
    assert core(refscan.scan(one, inventory=inv)) == core(refscan.scan(one))
    paths = [e.path for e in refscan.scan(f"s3://{src}/data", inventory=inv)]
    assert "not-in-data.txt" not in paths
    assert "sub/" not in paths
    assert "empty.bin" in paths
    with pytest.raises(NotFound):
        refscan.scan(f"s3://{src}/nothing-here", inventory=inv)


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("fmt", FORMATS)
def test_s3_versioned_all_versions_scan_equals_live_scan(s3_server: S3Server, inventory_bucket: str, fmt: str) -> None:
    src = s3_server.create_bucket(versioned=True)
    client = s3_server.client()
    s3_server.put_objects(src, {k: v for k, v in ODD.items() if k.startswith("data")})
    old = client.put_object(Bucket=src, Key="data/a.txt", Body=b"alpha 2")  # a second version
    client.put_object(Bucket=src, Key="data/a.txt", Body=b"alpha 3")
    client.delete_object(Bucket=src, Key="data/plus+sign.txt")  # latest is a delete marker
    rows = s3_ground_truth(client, src, all_versions=True)
    assert any(r["IsDeleteMarker"] for r in rows)
    assert any(not r["IsLatest"] for r in rows)
    inv = f"s3://{inventory_bucket}/" + write_s3_inventory(
        s3_put(s3_server, inventory_bucket), inventory_bucket, src, rows, fmt=fmt
    )
    uri = f"s3://{src}/data"
    from_inventory = as_dicts(refscan.scan(uri, inventory=inv))
    assert from_inventory == as_dicts(refscan.scan(uri))
    assert all("versionID" in e["extra"] for e in from_inventory)
    assert "plus+sign.txt" not in [e["path"] for e in from_inventory]
    pinned = f"s3://{src}/data/a.txt?versionId={old['VersionId']}"
    assert core(refscan.scan(pinned, inventory=inv)) == core(refscan.scan(pinned))


@pytest.mark.usefixtures("s3_env")
def test_s3_max_objects_is_exact(s3_server: S3Server, inventory_bucket: str) -> None:
    src = s3_server.create_bucket()
    s3_server.put_objects(src, {f"f/{i:02d}": b"x" for i in range(12)} | {"f/sub/": b""})
    rows = s3_ground_truth(s3_server.client(), src, all_versions=False)
    inv = f"s3://{inventory_bucket}/" + write_s3_inventory(
        s3_put(s3_server, inventory_bucket), inventory_bucket, src, rows, fmt="parquet", columns=S3_CURRENT_COLUMNS
    )
    assert len(refscan.scan(f"s3://{src}/f", inventory=inv, max_objects=12)) == 12  # the marker does not count
    with pytest.raises(TooManyObjects, match="Exceeded 11 objects"):
        refscan.scan(f"s3://{src}/f", inventory=inv, max_objects=11)


def _verify_setup(s3_server: S3Server, tmp_path: Path, fmt: str) -> tuple[str, refscan.Manifest, list[Any], Path]:
    """A versioned bucket, a manifest scanned live (plain and pinned entries), then changes, then a newer
    inventory written locally from the new ground truth."""
    src = s3_server.create_bucket(versioned=True)
    client = s3_server.client()
    s3_server.put_objects(src, {f"d/{i:02d}.bin": bytes([i]) * (i + 1) for i in range(20)})
    manifest = refscan.Manifest(refscan.scan(f"s3://{src}/d"))
    client.put_object(Bucket=src, Key="d/03.bin", Body=b"changed")  # the pinned version stays: ok (pinned)
    client.delete_object(Bucket=src, Key="d/04.bin")  # a delete marker on top: the pin still exists
    versions = client.list_object_versions(Bucket=src, Prefix="d/05.bin")["Versions"]
    client.delete_object(Bucket=src, Key="d/05.bin", VersionId=versions[0]["VersionId"])  # the pinned version gone
    client.put_object(Bucket=src, Key="d/05.bin", Body=b"other content")
    client.put_object(Bucket=src, Key="d/06.bin", Body=bytes([6]) * 7)  # the same bytes again
    v6 = client.list_object_versions(Bucket=src, Prefix="d/06.bin")["Versions"]
    client.delete_object(Bucket=src, Key="d/06.bin", VersionId=next(v for v in v6 if not v["IsLatest"])["VersionId"])
    unpinned = [
        refscan.ManifestEntry(e.path + ".latest", e.digest, e.ref, e.size, {"etag": e.digest})
        for e in list(manifest)[7:12]
    ]
    client.put_object(Bucket=src, Key="d/08.bin", Body=b"overwritten")
    client.delete_object(Bucket=src, Key="d/09.bin")
    manifest = refscan.Manifest([*manifest, *unpinned])
    rows = s3_ground_truth(client, src, all_versions=True)
    root = tmp_path / "copy-of-destination"
    key = write_s3_inventory(local_put(root), "dest", src, rows, fmt=fmt)
    return src, manifest, rows, root / key


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_verify_from_inventory_matches_live_verify_without_requests(
    s3_server: S3Server, tmp_path: Path, fmt: str
) -> None:
    _, manifest, _, inv = _verify_setup(s3_server, tmp_path, fmt)
    live = refscan.verify(manifest)
    # the store is unreachable for this run: every answer must come from the (local) inventory
    dead = Options(s3=S3Options(endpoint_url="http://127.0.0.1:9"))
    report = refscan.verify(manifest, inventory=str(inv), options=dead)
    assert report.inventory is not None
    assert report.inventory["live"] == 0
    assert report.inventory["from_inventory"] == len(manifest)
    assert [(r.path, r.status, r.cause) for r in report.results] == [(r.path, r.status, r.cause) for r in live.results]
    statuses = {r.path: r.status for r in report.results}
    assert statuses["03.bin"] == "ok"
    assert statuses["04.bin"] == "ok"
    assert statuses["05.bin"] == "changed"
    assert statuses["06.bin"] == "ok"
    assert statuses["08.bin.latest"] == "changed"
    assert statuses["09.bin.latest"] == "missing"
    assert report.counts["error"] == 0


@pytest.mark.usefixtures("s3_env")
def test_verify_falls_back_to_live_lookups_and_counts_them(s3_server: S3Server, tmp_path: Path) -> None:
    src, manifest, _, inv = _verify_setup(s3_server, tmp_path, "parquet")
    other = s3_server.create_bucket()
    s3_server.put_objects(other, {"o.txt": b"other bucket"})
    newer = refscan.scan(f"s3://{src}/d/10.bin", name="newer.bin")[0]
    newer = refscan.ManifestEntry(newer.path, newer.digest, newer.ref, newer.size, {**newer.extra})
    newer.extra["lastModified"] = "2031-01-01T00:00:00Z"  # recorded after the inventory was taken
    extra = [*refscan.scan(f"s3://{other}/o.txt"), newer]
    report = refscan.verify(refscan.Manifest([*manifest, *extra]), inventory=str(inv))
    assert report.inventory is not None
    assert report.inventory["live"] == 2
    assert report.inventory["from_inventory"] == len(manifest)
    assert {r.path: r.status for r in report.results}["o.txt"] == "ok"


@pytest.mark.usefixtures("s3_env")
def test_cli_scan_log_verify_with_inventory(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, manifest, _, inv = _verify_setup(s3_server, tmp_path, "csv")
    monkeypatch.setenv("REFSCAN_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    scanned = runner.invoke(cli, ["scan", f"s3://{src}/d", "--inventory", str(inv)])
    assert scanned.exit_code == 0, scanned.output
    assert "taken 2030-01-01T00:00:00Z" in scanned.stderr
    contents = json.loads(scanned.stdout)["contents"]
    assert contents == json.loads(runner.invoke(cli, ["scan", f"s3://{src}/d"]).stdout)["contents"]
    lines = sorted(jsonl_line(refscan.ManifestEntry.from_dict(p, e)) for p, e in contents.items())
    jsonl = ["scan", f"s3://{src}/d", "--inventory", str(inv), "--format", "jsonl"]
    assert sorted(runner.invoke(cli, jsonl).stdout.splitlines(keepends=True)) == lines
    assert runner.invoke(cli, [*jsonl, "-o", str(tmp_path / "e.jsonl")]).exit_code == 0
    assert sorted((tmp_path / "e.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)) == lines
    logged = runner.invoke(cli, ["log", "ds", "--type", "dataset", f"s3://{src}/d", "--inventory", str(inv)])
    assert logged.exit_code == 0, logged.output
    version = refscan.Store().get("ds:latest")
    assert version.metadata["inventories"][0]["created"] == "2030-01-01T00:00:00Z"
    path = tmp_path / "m.json"
    manifest.dump(path)
    verified = runner.invoke(cli, ["verify", str(path), "--inventory", str(inv)])
    assert verified.exit_code == 1  # changed and missing entries
    assert f"{len(manifest)} entries checked against it, 0 looked up live" in verified.stderr
    # the logged version, read from the store's rows: what the live scan logged is what the inventory holds
    stored = runner.invoke(cli, ["verify", "ds:latest", "--inventory", str(inv), "--json"])
    assert stored.exit_code == 0, stored.output
    report = json.loads(stored.stdout)
    assert report["counts"]["ok"] == len(version.manifest) == len(report["results"])
    assert report["inventory"]["from_inventory"] == len(version.manifest)
    missing = runner.invoke(cli, ["verify", "ds:v7", "--inventory", str(inv)])
    assert missing.exit_code == 1
    assert "ds:v7" in missing.stderr


# -- bad input ----------------------------------------------------------------------------------------------


def _bad(tmp_path: Path, s3_server: S3Server, **kwargs: Any) -> tuple[str, Path]:
    src = s3_server.create_bucket()
    s3_server.put_objects(src, {f"k/{i}": b"v" for i in range(6)})
    rows = s3_ground_truth(s3_server.client(), src, all_versions=False)
    root = tmp_path / "dest"
    kwargs.setdefault("columns", S3_CURRENT_COLUMNS)
    return src, root / write_s3_inventory(local_put(root), "dest", src, rows, **kwargs)


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_inventories_raise_one_clear_error(s3_server: S3Server, tmp_path: Path, fmt: str) -> None:
    src, inv = _bad(tmp_path / "missing", s3_server, fmt=fmt)
    next((tmp_path / "missing").rglob("part-1.*")).unlink()
    with pytest.raises(InvalidInventory, match="missing"):
        refscan.scan(f"s3://{src}/k", inventory=str(inv))

    src, inv = _bad(tmp_path / "corrupt", s3_server, fmt=fmt)
    part = next((tmp_path / "corrupt").rglob("part-0.*"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(InvalidInventory, match="MD5"):
        refscan.scan(f"s3://{src}/k", inventory=str(inv))

    src, inv = _bad(tmp_path / "other", s3_server, fmt=fmt)
    with pytest.raises(InvalidInventory, match="inventory of s3://"):
        refscan.scan("s3://some-other-bucket/k", inventory=str(inv))

    src, inv = _bad(tmp_path / "format", s3_server, fmt=fmt, manifest_doc=lambda d: d.update(fileFormat="Avro"))
    with pytest.raises(InvalidInventory, match="unknown inventory file format"):
        refscan.scan(f"s3://{src}/k", inventory=str(inv))

    src, inv = _bad(tmp_path / "schema", s3_server, fmt=fmt, columns=("Bucket", "Key", "Size", "LastModifiedDate"))
    with pytest.raises(InvalidInventory, match="no etag column"):
        refscan.scan(f"s3://{src}/k", inventory=str(inv))


@pytest.mark.usefixtures("s3_env")
def test_rows_of_another_bucket_are_refused(s3_server: S3Server, tmp_path: Path) -> None:
    _src, inv = _bad(tmp_path, s3_server, fmt="csv", manifest_doc=lambda d: d.update(sourceBucket="elsewhere"))
    with pytest.raises(InvalidInventory, match="another bucket"):
        refscan.scan("s3://elsewhere/k", inventory=str(inv))


# -- GCS ------------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("gcs_env")
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("versioned", [False, True])
def test_gcs_report_scan_equals_live_scan(gcs_server: GCSServer, fmt: str, versioned: bool) -> None:
    src = gcs_server.create_bucket(versioning=versioned)
    gcs_server.upload_many(src, {k: v for k, v in ODD.items() if k != "data/sub/"})
    if versioned:
        gcs_server.upload(src, "data/a.txt", b"alpha 2")  # the first generation becomes noncurrent
    items = gcs_server.list_objects(src)["items"]
    dest = gcs_server.create_bucket()
    key = write_gcs_report(lambda name, data: gcs_server.upload(dest, name, data), src, items, fmt=fmt)
    inv = f"gs://{dest}/{key}"
    for uri in (f"gs://{src}/data", f"gs://{src}", f"gs://{src}/data/a.txt"):
        assert as_dicts(refscan.scan(uri, inventory=inv)) == as_dicts(refscan.scan(uri)), uri  # same fields
    manifest = refscan.Manifest(refscan.scan(f"gs://{src}/data"))
    report = refscan.verify(manifest, inventory=inv)
    assert report.ok
    assert report.inventory is not None
    assert report.inventory["live"] == 0


@pytest.mark.usefixtures("gcs_env")
def test_gcs_report_with_missing_rows_is_refused(gcs_server: GCSServer) -> None:
    src = gcs_server.create_bucket()
    gcs_server.upload_many(src, {f"k/{i}": b"v" for i in range(4)})
    items = gcs_server.list_objects(src)["items"]
    dest = gcs_server.create_bucket()
    key = write_gcs_report(lambda n, d: gcs_server.upload(dest, n, d), src, items, fmt="csv", records=len(items) + 1)
    with pytest.raises(InvalidInventory, match="shard is missing or truncated"):
        refscan.scan(f"gs://{src}/k", inventory=f"gs://{dest}/{key}")
