"""Inventory manifests: what an S3 Inventory `manifest.json` or a GCS inventory report manifest says (pure, no
I/O, no pyarrow).

- S3 Inventory: `sourceBucket`, `destinationBucket` (an ARN), `creationTimestamp` (ms since the epoch as text),
  `fileFormat` (CSV, ORC, Parquet), `fileSchema` (CSV: the column names in order; ORC and Parquet: the
  schema, whose own column names the reader uses) and `files` (`key`, `size`, `MD5checksum`), stored at
  `<prefix>/<source-bucket>/<config-id>/<timestamp>/manifest.json` with the data under `.../data/`.
- GCS Storage Insights: `snapshot_time`, `report_shards_file_names` (beside the manifest), `records_processed`,
  and `report_config` (source bucket under `object_metadata_report_options.storage_filters.bucket`, format
  from `csv_options` / `parquet_options`); camelCase spellings are accepted too. CSV reports have a header.

Both become one `InventoryManifest`; anything missing or malformed raises `InvalidInventory`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from ..errors import InvalidInventory
from ..uri import RefURI

Format = Literal["csv", "parquet", "orc"]
FORMATS: dict[str, Format] = {"csv": "csv", "parquet": "parquet", "orc": "orc"}
_HEX_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class DataFile:
    """One data file: `name` as the manifest gives it (an S3 key in the destination bucket, or a GCS shard
    name beside the manifest), `uri` where it is read from (set when the manifest was remote), `size` and hex
    `md5` when the manifest lists them."""

    name: str
    uri: str | None
    size: int | None = None
    md5: str | None = None


@dataclass(frozen=True)
class InventoryManifest:
    """An inventory: `kind` (`s3` or `gcs`), the URI `scheme` of the bucket it describes, the source `bucket`
    (None when a GCS report does not name it: rows must then carry it), `created` (ISO 8601 UTC), the data
    files' `format`, `columns` for header-less CSV, the data `files`, and `records` (GCS: rows promised)."""

    kind: Literal["s3", "gcs"]
    scheme: str
    bucket: str | None
    created: str
    format: Format
    columns: tuple[str, ...] | None
    files: tuple[DataFile, ...]
    records: int | None = None


def parse_manifest(data: bytes, location: str, remote: RefURI | None) -> InventoryManifest:
    """The manifest in `data`, read from `location` (for messages); `remote` is where it was read from when
    that was a store (None for a local file): the data files are then read from the same store."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInventory(f"{location}: not an inventory manifest (invalid JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise InvalidInventory(f"{location}: not an inventory manifest (not a JSON object)")
    if "sourceBucket" in doc or "fileSchema" in doc:
        return _s3(doc, location, remote)
    if any(k in doc for k in ("report_shards_file_names", "reportShardsFileNames", "report_config", "reportConfig")):
        return _gcs(doc, location, remote)
    raise InvalidInventory(
        f"{location}: neither an S3 Inventory manifest.json (sourceBucket, fileSchema, files) nor a GCS inventory "
        "report manifest (report_shards_file_names)"
    )


def _need(doc: Mapping[str, Any], location: str, *names: str) -> Any:
    for name in names:
        if doc.get(name) is not None:
            return doc[name]
    raise InvalidInventory(f"{location}: the manifest has no {names[0]!r}")


def _format(text: Any, location: str) -> Format:
    fmt = FORMATS.get(str(text).strip().lower())
    if fmt is None:
        raise InvalidInventory(f"{location}: unknown inventory file format {text!r} (CSV, Parquet or ORC)")
    return fmt


def _s3(doc: Mapping[str, Any], location: str, remote: RefURI | None) -> InventoryManifest:
    bucket = str(_need(doc, location, "sourceBucket"))
    fmt = _format(_need(doc, location, "fileFormat"), location)
    schema = str(_need(doc, location, "fileSchema"))
    columns = tuple(c.strip() for c in schema.split(",")) if fmt == "csv" else None
    try:
        millis = int(_need(doc, location, "creationTimestamp"))
    except (TypeError, ValueError):
        raise InvalidInventory(f"{location}: creationTimestamp is not milliseconds since the epoch") from None
    created = datetime.fromtimestamp(millis / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    destination = str(doc.get("destinationBucket") or "").rsplit(":", 1)[-1]
    files_doc = _need(doc, location, "files")
    if not isinstance(files_doc, list) or not files_doc:
        raise InvalidInventory(f"{location}: the manifest lists no data files")
    files = []
    for item in files_doc:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise InvalidInventory(f"{location}: a data file entry has no key")
        md5 = item.get("MD5checksum")
        if not isinstance(md5, str) or not _HEX_MD5.match(md5):
            raise InvalidInventory(f"{location}: data file {item['key']!r} has no valid MD5checksum")
        size = item.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise InvalidInventory(f"{location}: data file {item['key']!r} has a malformed size")
        uri = f"{remote.scheme}://{destination or remote.bucket}/{item['key']}" if remote is not None else None
        files.append(DataFile(item["key"], uri, size, md5.lower()))
    return InventoryManifest("s3", "s3", bucket, created, fmt, columns, tuple(files))


def _gcs(doc: Mapping[str, Any], location: str, remote: RefURI | None) -> InventoryManifest:
    names = _need(doc, location, "report_shards_file_names", "reportShardsFileNames")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise InvalidInventory(f"{location}: report_shards_file_names is not a list of file names")
    config = doc.get("report_config") or doc.get("reportConfig") or {}
    options = config.get("object_metadata_report_options") or config.get("objectMetadataReportOptions") or {}
    filters = options.get("storage_filters") or options.get("storageFilters") or {}
    bucket = filters.get("bucket") if isinstance(filters, Mapping) else None
    if "parquet_options" in config or "parquetOptions" in config:
        fmt: Format = "parquet"
    elif "csv_options" in config or "csvOptions" in config:
        fmt = "csv"
    else:
        fmt = _format(names[0].rsplit(".", 1)[-1] if names else "", location)
    created = str(_need(doc, location, "snapshot_time", "snapshotTime"))
    records = doc.get("records_processed", doc.get("recordsProcessed"))
    try:
        count = int(records) if records is not None else None
    except (TypeError, ValueError):
        raise InvalidInventory(f"{location}: records_processed is not a number") from None
    folder = None
    if remote is not None:  # shards sit beside the manifest
        parent = remote.key.rpartition("/")[0]
        folder = f"{remote.scheme}://{remote.bucket}/{parent + '/' if parent else ''}"
    files = tuple(DataFile(n, f"{folder}{n}" if folder is not None else None) for n in names)
    return InventoryManifest("gcs", "gs", str(bucket) if bucket else None, created, fmt, None, files, count)
