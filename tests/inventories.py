"""Inventories written the way S3 Inventory and GCS Storage Insights write them, from ground truth listed with
boto3 / the GCS JSON API (not through refscan), for the inventory tests.

S3: `<prefix>/<source-bucket>/<config-id>/<timestamp>/manifest.json` (+ `manifest.checksum`) with the data files
under `<prefix>/<source-bucket>/<config-id>/data/`; CSV files are gzipped, header-less, every value quoted, keys
URL-encoded (form encoding); Parquet/ORC use the lower-case snake_case column names and plain keys. GCS: the
report's shards and `<config>_<snapshot>_manifest.json` side by side; CSV with a header.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

S3_CSV_COLUMNS = (
    "Bucket",
    "Key",
    "VersionId",
    "IsLatest",
    "IsDeleteMarker",
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
    "ChecksumAlgorithm",
)
S3_CURRENT_COLUMNS = ("Bucket", "Key", "Size", "LastModifiedDate", "ETag", "StorageClass", "ChecksumAlgorithm")
SNAKE = {
    "Bucket": "bucket",
    "Key": "key",
    "VersionId": "version_id",
    "IsLatest": "is_latest",
    "IsDeleteMarker": "is_delete_marker",
    "Size": "size",
    "LastModifiedDate": "last_modified_date",
    "ETag": "e_tag",
    "StorageClass": "storage_class",
    "ChecksumAlgorithm": "checksum_algorithm",
}
TIMESTAMP = "2030-01-01T00-00Z"  # after every object the tests write: the inventory vouches for them all
CREATED_MS = int(datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)


def s3_ground_truth(client: Any, bucket: str, *, all_versions: bool) -> list[dict[str, Any]]:
    """One row per object version (and delete marker) of `bucket`, as S3 Inventory lists them."""
    rows: list[dict[str, Any]] = []
    if not all_versions:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                rows.append(
                    {
                        "Bucket": bucket,
                        "Key": o["Key"],
                        "Size": o["Size"],
                        "LastModifiedDate": o["LastModified"],
                        "ETag": o["ETag"].strip('"'),
                        **_extras(o),
                    }
                )
        return rows
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for o in page.get("Versions", []):
            rows.append(
                {
                    "Bucket": bucket,
                    "Key": o["Key"],
                    "VersionId": o["VersionId"],
                    "IsLatest": o["IsLatest"],
                    "IsDeleteMarker": False,
                    "Size": o["Size"],
                    "LastModifiedDate": o["LastModified"],
                    "ETag": o["ETag"].strip('"'),
                    **_extras(o),
                }
            )
        for o in page.get("DeleteMarkers", []):
            rows.append(
                {
                    "Bucket": bucket,
                    "Key": o["Key"],
                    "VersionId": o["VersionId"],
                    "IsLatest": o["IsLatest"],
                    "IsDeleteMarker": True,
                    "Size": None,
                    "LastModifiedDate": o["LastModified"],
                    "ETag": None,
                }
            )
    return rows


def _extras(listed: Mapping[str, Any]) -> dict[str, Any]:
    algorithms = listed.get("ChecksumAlgorithm") or []
    return {"StorageClass": listed.get("StorageClass", "STANDARD"), "ChecksumAlgorithm": ",".join(algorithms) or None}


def _csv_value(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "Key":
        return quote_plus(value, safe="/")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return str(value)


def s3_data_file(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str) -> bytes:
    """One data file holding `rows` in `fmt` (csv: gzipped)."""
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for row in rows:
            writer.writerow([_csv_value(c, row.get(c)) for c in columns])
        return gzip.compress(text.getvalue().encode())
    types = {
        "Size": pa.int64(),
        "IsLatest": pa.bool_(),
        "IsDeleteMarker": pa.bool_(),
        "LastModifiedDate": pa.timestamp("ms", tz="UTC"),
    }
    table = pa.table({SNAKE[c]: pa.array([row.get(c) for row in rows], types.get(c, pa.string())) for c in columns})
    sink = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, sink, row_group_size=2)  # several row groups even for a small inventory
    else:
        orc.write_table(table, sink)
    return sink.getvalue()


def s3_schema(columns: Sequence[str], fmt: str) -> str:
    if fmt == "csv":
        return ", ".join(columns)
    if fmt == "parquet":
        return "message s3.inventory { " + " ".join(f"optional binary {SNAKE[c]};" for c in columns) + " }"
    return "struct<" + ",".join(f"{SNAKE[c]}:string" for c in columns) + ">"


def write_s3_inventory(
    put: Callable[[str, bytes], None],
    destination: str,
    source: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    fmt: str,
    columns: Sequence[str] = S3_CSV_COLUMNS,
    files: int = 2,
    prefix: str = "inventories",
    config: str = "daily",
    manifest_doc: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """Write an inventory of `rows` with `put(key, data)` into bucket `destination`; returns the manifest key.
    `manifest_doc` may alter the manifest before it is written (bad-input tests)."""
    base = f"{prefix}/{source}/{config}"
    ext = {"csv": "csv.gz", "parquet": "parquet", "orc": "orc"}[fmt]
    listed = []
    for i in range(files):
        data = s3_data_file(rows[i::files], columns, fmt)
        key = f"{base}/data/part-{i}.{ext}"
        put(key, data)
        listed.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})
    doc: dict[str, Any] = {
        "sourceBucket": source,
        "destinationBucket": f"arn:aws:s3:::{destination}",
        "version": "2016-11-30",
        "creationTimestamp": str(CREATED_MS),
        "fileFormat": {"csv": "CSV", "parquet": "Parquet", "orc": "ORC"}[fmt],
        "fileSchema": s3_schema(columns, fmt),
        "files": listed,
    }
    if manifest_doc is not None:
        manifest_doc(doc)
    body = json.dumps(doc).encode()
    manifest = f"{base}/{TIMESTAMP}/manifest.json"
    put(manifest, body)
    put(f"{base}/{TIMESTAMP}/manifest.checksum", hashlib.md5(body).hexdigest().encode())
    return manifest


def local_put(root: Path) -> Callable[[str, bytes], None]:
    """`put(key, data)` into a local folder laid out like the destination bucket."""

    def put(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return put


GCS_FIELDS = ("bucket", "name", "size", "etag", "generation", "md5Hash", "crc32c", "metageneration", "updated")


def gcs_report(items: Sequence[Mapping[str, Any]], fmt: str, fields: Sequence[str] = GCS_FIELDS) -> bytes:
    """One report shard of objects resources `items` (CSV with a header, or Parquet)."""
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(fields)
        for item in items:
            writer.writerow([item.get(f, "") for f in fields])
        return text.getvalue().encode()
    types = {"size": pa.int64(), "generation": pa.int64(), "metageneration": pa.int64()}
    table = pa.table(
        {
            f: pa.array(
                [int(i[f]) if f in types and i.get(f) is not None else i.get(f) for i in items],
                types.get(f, pa.string()),
            )
            for f in fields
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=2)
    return sink.getvalue()


def write_gcs_report(
    put: Callable[[str, bytes], None],
    source: str,
    items: Sequence[Mapping[str, Any]],
    *,
    fmt: str,
    folder: str = "reports",
    shards: int = 2,
    fields: Sequence[str] = GCS_FIELDS,
    records: int | None = None,
) -> str:
    """Write a report of `items` into `folder/`; returns the manifest's name."""
    stem = f"{folder}/cfg-1234_2030-01-01T00:00:00"
    names = []
    for i in range(shards):
        name = f"cfg-1234_2030-01-01T00:00:00_{i}.{fmt}"
        put(f"{folder}/{name}", gcs_report(items[i::shards], fmt, fields))
        names.append(name)
    options = {"csv_options": {"delimiter": ",", "header_required": True}} if fmt == "csv" else {"parquet_options": {}}
    doc = {
        "report_config": {
            "name": "projects/p/locations/us/reportConfigs/cfg-1234",
            **options,
            "object_metadata_report_options": {"metadata_fields": list(fields), "storage_filters": {"bucket": source}},
        },
        "records_processed": len(items) if records is None else records,
        "snapshot_time": "2030-01-01T00:00:00Z",
        "shard_count": shards,
        "report_shards_file_names": names,
    }
    manifest = f"{stem}_manifest.json"
    put(manifest, json.dumps(doc).encode())
    return manifest
