"""Inventory pure logic: manifest parsing and validation, column names, key ranges, local copies, CSV rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import refscan
from refscan import InvalidInventory
from refscan.inventory import parse_manifest
from refscan.inventory.files import find_local
from refscan.inventory.readers import KEY, column_map, prefix_end, read_batches
from refscan.uri import RefURI
from tests.inventories import S3_CURRENT_COLUMNS, local_put, write_s3_inventory

S3_DOC: dict[str, Any] = {
    "sourceBucket": "src",
    "destinationBucket": "arn:aws:s3:::dest",
    "version": "2016-11-30",
    "creationTimestamp": "1514944800000",
    "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag",
    "files": [{"key": "inv/src/cfg/data/a.csv.gz", "size": 10, "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc"}],
}


def doc(**changes: Any) -> bytes:
    return json.dumps({**S3_DOC, **changes}).encode()


def test_s3_manifest_fields() -> None:
    m = parse_manifest(doc(), "m", RefURI.parse("s3://dest/inv/src/cfg/2018-01-03T00-00Z/manifest.json"))
    assert (m.kind, m.scheme, m.bucket, m.format, m.created) == ("s3", "s3", "src", "csv", "2018-01-03T02:00:00Z")
    assert m.columns is not None
    assert m.columns[1] == "Key"
    assert m.files[0].uri == "s3://dest/inv/src/cfg/data/a.csv.gz"
    assert m.files[0].size == 10
    local = parse_manifest(doc(), "m", None)
    assert local.files[0].uri is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fileFormat": "Avro"}, "unknown inventory file format"),
        ({"files": []}, "lists no data files"),
        ({"files": [{"key": "k", "size": 1}]}, "no valid MD5checksum"),
        ({"files": [{"key": "k", "size": "1", "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc"}]}, "malformed size"),
        ({"creationTimestamp": "yesterday"}, "milliseconds"),
        ({"fileSchema": None}, "fileSchema"),
    ],
)
def test_bad_s3_manifests(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInventory, match=message):
        parse_manifest(doc(**changes), "m", None)


def test_not_a_manifest() -> None:
    with pytest.raises(InvalidInventory, match="invalid JSON"):
        parse_manifest(b"{", "m", None)
    with pytest.raises(InvalidInventory, match="neither an S3 Inventory"):
        parse_manifest(b'{"hello": 1}', "m", None)


def test_gcs_manifest_fields() -> None:
    report = {
        "reportConfig": {"parquetOptions": {}, "objectMetadataReportOptions": {"storageFilters": {"bucket": "b"}}},
        "recordsProcessed": "7",
        "snapshotTime": "2030-01-01T00:00:00Z",
        "reportShardsFileNames": ["r_0.parquet", "r_1.parquet"],
    }
    m = parse_manifest(json.dumps(report).encode(), "m", RefURI.parse("gs://dest/reports/r_manifest.json"))
    assert (m.kind, m.scheme, m.bucket, m.format, m.records) == ("gcs", "gs", "b", "parquet", 7)
    assert [f.uri for f in m.files] == ["gs://dest/reports/r_0.parquet", "gs://dest/reports/r_1.parquet"]


def test_column_names_of_every_spelling() -> None:
    m = parse_manifest(doc(), "m", None)
    assert column_map(m, ["bucket", "key", "version_id", "size", "e_tag"], "f")["etag"] == "e_tag"
    assert column_map(m, ["Bucket", "Key", "Size", "ETag"], "f")["key"] == "Key"
    with pytest.raises(InvalidInventory, match="no etag, size column"):
        column_map(m, ["Bucket", "Key"], "f")


@pytest.mark.parametrize(
    ("prefix", "end"), [("data/", "data0"), ("a", "b"), ("\U0010ffff", None), ("x\U0010ffff", "y")]
)
def test_prefix_end_bounds_every_key_under_the_prefix(prefix: str, end: str | None) -> None:
    assert prefix_end(prefix) == end
    if end is not None:
        assert prefix + "\U0010ffff" * 3 < end


def test_find_local_in_copies_of_any_depth(tmp_path: Path) -> None:
    key = "inv/src/cfg/data/a.csv.gz"
    for root in (tmp_path / "bucket", tmp_path / "prefix-only" / "src"):
        strip = 0 if root.name == "bucket" else 2
        data = root.joinpath(*key.split("/")[strip:])
        data.parent.mkdir(parents=True)
        data.write_bytes(b"x")
        manifest = root.joinpath(*["inv", "src", "cfg", "2030-01-01T00-00Z", "manifest.json"][strip:])
        manifest.parent.mkdir(parents=True)
        assert find_local(manifest, key) == data.resolve()
    assert find_local(tmp_path / "bucket" / "manifest.json", "elsewhere/zzz.csv.gz") is None


def test_csv_keys_are_url_decoded_and_selected_by_prefix(tmp_path: Path) -> None:
    rows = [
        {"Bucket": "src", "Key": k, "Size": 1, "ETag": "e", "LastModifiedDate": None}
        for k in ("d/a b+c%.txt", "d/ü.txt", "d0/x", "e")
    ]
    key = write_s3_inventory(local_put(tmp_path), "dest", "src", rows, fmt="csv", columns=S3_CURRENT_COLUMNS, files=1)
    m = parse_manifest((tmp_path / key).read_bytes(), "m", None)
    path = next(tmp_path.rglob("part-0.csv.gz"))
    keys = [k for b in read_batches(path, m, "f", prefix="d/") for k in b.column(KEY).to_pylist()]
    assert keys == ["d/a b+c%.txt", "d/ü.txt"]
    found = [k for b in read_batches(path, m, "f", keys=["e", "nope"]) for k in b.column(KEY).to_pylist()]
    assert found == ["e"]


def test_manifest_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    rows = [{"Bucket": "src", "Key": "k", "Size": 1, "ETag": "e"}]
    key = write_s3_inventory(local_put(tmp_path), "dest", "src", rows, fmt="csv", columns=S3_CURRENT_COLUMNS, files=1)
    (tmp_path / key).with_name("manifest.checksum").write_text("0" * 32)
    with pytest.raises(InvalidInventory, match=r"manifest\.checksum"):
        refscan.scan("s3://src/k", inventory=str(tmp_path / key))


def test_missing_pyarrow_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    with pytest.raises(refscan.MissingDependency, match=r"pip install 'refscan\[inventory\]'"):
        refscan.scan("s3://src/k", inventory=str(tmp_path / "manifest.json"))
