"""Inventory data files as Arrow record batches with one set of column names, streamed (pyarrow, imported on
first use: `pip install 'refscan[inventory]'`).

Columns are renamed to `COLUMNS` whatever the source spells them (S3 CSV `VersionId`, Parquet/ORC
`version_id`, GCS `generation` all become `version`); only the columns refscan reads are decoded. Keys in S3
CSV files are URL-encoded (form encoding: `+` is a space) and decoded here; Parquet, ORC and GCS reports hold
them plain. Rows are selected by key prefix or key set inside Arrow: for Parquet that prunes whole row groups
by their Key statistics, so a prefix of a sorted inventory costs only its own row groups.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote_plus

from ..arrow import pyarrow
from ..errors import InvalidInventory
from .manifest import InventoryManifest

KEY, VERSION, LATEST, DELETED, SIZE, ETAG, MODIFIED, CHECKSUM = (
    "key",
    "version",
    "latest",
    "deleted",
    "size",
    "etag",
    "modified",
    "checksum",
)
BUCKET, MD5, CRC32C, METAGENERATION = "bucket", "md5", "crc32c", "metageneration"

#: Source column (lower case, without `_`) → canonical name, per inventory kind.
COLUMNS: dict[str, dict[str, str]] = {
    "s3": {
        "bucket": BUCKET,
        "key": KEY,
        "versionid": VERSION,
        "islatest": LATEST,
        "isdeletemarker": DELETED,
        "size": SIZE,
        "etag": ETAG,
        "lastmodifieddate": MODIFIED,
        "checksumalgorithm": CHECKSUM,
    },
    "gcs": {
        "bucket": BUCKET,
        "name": KEY,
        "generation": VERSION,
        "size": SIZE,
        "etag": ETAG,
        "md5hash": MD5,
        "crc32c": CRC32C,
        "metageneration": METAGENERATION,
    },
}
REQUIRED = (KEY, ETAG, SIZE)
BATCH_ROWS = 1 << 16
#: Rows per batch where memory counts more than speed (verify holds its entries beside the rows).
LEAN_BATCH_ROWS = 1 << 14

T = TypeVar("T")


def column_map(manifest: InventoryManifest, names: Sequence[str], where: str) -> dict[str, str]:
    """Canonical name → the file's own column name, for the columns refscan reads; raises `InvalidInventory`
    when the key, ETag or size column is missing."""
    known = COLUMNS[manifest.kind]
    found: dict[str, str] = {}
    for name in names:
        canonical = known.get(name.replace("_", "").lower())
        if canonical is not None and canonical not in found:
            found[canonical] = name
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise InvalidInventory(
            f"{where}: the inventory schema has no {', '.join(missing)} column (columns: {', '.join(names)}); "
            "an inventory refscan can read lists at least the key, size and ETag of each object"
        )
    return found


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with `prefix` (None when there is none)."""
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


def _key_filter(pa: Any, field: Any, prefix: str | None, keys: Any, between: tuple[str, str] | None = None) -> Any:
    """The Arrow expression selecting rows by key: under `prefix`, in `keys`, and/or `between` two keys
    (inclusive); None: every row. The range bounds let Parquet skip row groups by their statistics."""
    pc = pa.compute
    expr = (field >= between[0]) & (field <= between[1]) if between is not None else None
    if prefix:
        under = (field >= prefix) & pc.starts_with(field, prefix)
        end = prefix_end(prefix)
        if end is not None:
            under = under & (field < end)
        expr = under if expr is None else expr & under
    if keys is not None:
        if not len(keys):
            return pc.scalar(False)
        low, high = pc.min_max(keys).values()
        in_keys = (field >= low.as_py()) & (field <= high.as_py()) & field.isin(keys)
        expr = in_keys if expr is None else expr & in_keys
    return expr


def _canonical(pa: Any, batch: Any, columns: dict[str, str]) -> Any:
    """`batch` with canonical names and types: strings, `size` int64, `latest`/`deleted` booleans, times as
    ISO 8601 UTC text."""
    arrays, names = [], []
    for canonical, source in columns.items():
        array = batch.column(source)
        kind = array.type
        if canonical == SIZE:
            array = array.cast(pa.int64())
        elif canonical in (LATEST, DELETED):
            array = array.cast(pa.bool_()) if not pa.types.is_boolean(kind) else array
        elif pa.types.is_timestamp(kind):
            array = iso_seconds(pa, array)
        elif not pa.types.is_string(kind):
            array = array.cast(pa.string())
        arrays.append(array)
        names.append(canonical)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def iso_seconds(pa: Any, times: Any) -> Any:
    """Timestamps as ISO 8601 UTC text to the second (`2024-05-01T12:00:00Z`), cut (not rounded) as the
    listings' times are. Cast through naive timestamps: Arrow's zoned `strftime` is ten times slower."""
    pc = pa.compute
    naive = times.cast(pa.int64()).cast(pa.timestamp(times.type.unit))  # the same instants, read as UTC
    text = pc.cast(pc.cast(naive, pa.timestamp("s"), safe=False), pa.string())  # `YYYY-MM-DD HH:MM:SS`
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T", max_replacements=1), "Z", "")


@dataclass(frozen=True)
class _Read:
    """One `read_batches` call: the data file, what selects its rows, the batch size, the row count to add
    to."""

    path: Path
    manifest: InventoryManifest
    where: str
    prefix: str | None
    keys: Any
    between: tuple[str, str] | None
    stats: dict[str, int] | None
    batch_rows: int

    def key_filter(self, pa: Any, field: Any) -> Any:
        """`_key_filter` of the key column `field` for this read's selection."""
        return _key_filter(pa, field, self.prefix, self.keys, self.between)

    def count(self, rows: int) -> None:
        """Add `rows` to `stats["rows"]`."""
        if self.stats is not None:
            self.stats["rows"] = self.stats.get("rows", 0) + rows


def read_batches(
    path: Path,
    manifest: InventoryManifest,
    where: str,
    *,
    prefix: str | None = None,
    keys: Any = None,
    between: tuple[str, str] | None = None,
    stats: dict[str, int] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Generator[Any, None, None]:
    """The rows of the data file at `path` whose key is under `prefix`, in `keys` (strings: any sequence or
    an Arrow array) and/or `between` two keys (inclusive); none of them: all rows. As record batches with
    canonical columns of about `batch_rows` rows. `stats["rows"]` counts the rows the file holds (read or
    skipped by statistics). `where` names the file in errors."""
    pa = pyarrow()
    if keys is not None and not isinstance(keys, pa.Array):
        keys = pa.array(keys, pa.string())
    read = _Read(path, manifest, where, prefix, keys, between, stats, batch_rows)
    readers = {"csv": _csv_batches, "parquet": _parquet_batches}
    try:
        yield from readers.get(manifest.format, _orc_batches)(pa, read)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError, EOFError) as exc:
        raise InvalidInventory(f"{where}: cannot read the {manifest.format} data file ({exc})") from None


def read_ahead(items: Iterator[T]) -> Generator[T, None, None]:
    """`items` (not None), the next one read in a worker thread while the caller works on the current one: at
    most two held at a time. Closing it waits for a read under way, then closes `items` when it can be."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="refscan-read-ahead")
    try:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item
    finally:
        pool.shutdown()
        if isinstance(items, Generator):
            items.close()


def available_columns(path: Path, manifest: InventoryManifest, where: str) -> set[str]:
    """The canonical columns the data file at `path` holds (of those refscan reads)."""
    pa = pyarrow()
    if manifest.format == "csv":
        names = list(manifest.columns or _csv_header(path))
    else:
        try:
            names = pa.dataset.dataset(str(path), format=manifest.format).schema.names
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInventory(f"{where}: cannot read the {manifest.format} data file ({exc})") from None
    return set(column_map(manifest, names, where))


def _orc_batches(pa: Any, read: _Read) -> Iterator[Any]:
    dataset = pa.dataset.dataset(str(read.path), format=read.manifest.format)
    columns = column_map(read.manifest, dataset.schema.names, read.where)
    read.count(dataset.count_rows())
    scanner = dataset.scanner(
        columns=list(columns.values()),
        filter=read.key_filter(pa, pa.dataset.field(columns[KEY])),
        batch_size=read.batch_rows,
        batch_readahead=2,
        fragment_readahead=1,
    )
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield _canonical(pa, batch, columns)


def _parquet_batches(pa: Any, read: _Read) -> Iterator[Any]:
    """Parquet row groups whose Key statistics may hold a selected key, read in the calling thread and
    filtered exactly (Arrow's dataset scanner prunes the same way, but its thread pools cost more wall time
    than the reading itself on a busy machine)."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(str(read.path))
    columns = column_map(read.manifest, file.schema_arrow.names, read.where)
    read.count(file.metadata.num_rows)
    low, high = _key_bounds(read.prefix, read.keys, read.between)
    index = file.schema_arrow.get_field_index(columns[KEY])
    key_filter = read.key_filter(pa, pa.compute.field(columns[KEY]))
    for group in range(file.num_row_groups):
        held = _held(file.metadata.row_group(group).column(index), low, high)
        if held == "none":
            continue
        # a group wholly inside the prefix and range holds only selected keys: no filter to apply
        exact = held == "all" and read.keys is None
        for batch in file.iter_batches(batch_size=read.batch_rows, row_groups=[group], columns=list(columns.values())):
            rows = batch if exact or key_filter is None else batch.filter(key_filter)
            if rows.num_rows:
                yield _canonical(pa, rows, columns)


def _key_bounds(prefix: str | None, keys: Any, between: tuple[str, str] | None) -> tuple[str | None, str | None]:
    """The least key selectable and a key above every selectable one (None: unbounded)."""
    low = high = None
    if prefix:
        low, high = prefix, prefix_end(prefix)
    ranges = [between] if between is not None else []
    if keys is not None and len(keys):
        least, most = (v.as_py() for v in pyarrow().compute.min_max(keys).values())
        ranges.append((least, most))
    for least, most in ranges:
        low = max(low or "", least)
        top = most + "\x00"  # just above the largest key
        high = top if high is None else min(high, top)
    return low, high


def _held(column: Any, low: str | None, high: str | None) -> str:
    """How much of [low, high) a row group's Key column chunk may hold by its statistics: `none`, `some` or
    `all` (every key of the group lies in the range)."""
    stats = column.statistics
    if low is None and high is None:
        return "all"
    if stats is None or not stats.has_min_max or not isinstance(stats.min, str) or not isinstance(stats.max, str):
        return "some"
    lo, hi = stats.min, stats.max
    if (low is not None and hi < low) or (high is not None and lo >= high):
        return "none"
    if (low is None or lo >= low) and (high is None or hi < high):
        return "all"
    return "some"


def _csv_batches(pa: Any, read: _Read) -> Iterator[Any]:
    gzipped = _gzipped(read.path)
    stream = pa.CompressedInputStream(pa.OSFile(str(read.path)), "gzip") if gzipped else pa.OSFile(str(read.path))
    header = read.manifest.columns is None  # GCS reports carry a header; S3 lists the columns in the manifest
    names = list(read.manifest.columns or _csv_header(read.path))
    columns = column_map(read.manifest, names, read.where)
    types = {src: _csv_type(pa, canonical) for canonical, src in columns.items()}
    reader = pa.csv.open_csv(
        stream,
        read_options=pa.csv.ReadOptions(
            column_names=names, skip_rows=1 if header else 0, block_size=read.batch_rows * 64
        ),
        convert_options=pa.csv.ConvertOptions(column_types=types, include_columns=list(columns.values())),
    )
    url_encoded = read.manifest.kind == "s3"
    key_filter = read.key_filter(pa, pa.compute.field(KEY))
    with reader:
        for batch in reader:
            read.count(batch.num_rows)
            rows = _canonical(pa, batch, columns)
            if url_encoded:
                decoded = [unquote_plus(k) if "%" in k or "+" in k else k for k in rows.column(KEY).to_pylist()]
                rows = rows.set_column(rows.schema.get_field_index(KEY), KEY, pa.array(decoded, pa.string()))
            if key_filter is not None:
                rows = pa.Table.from_batches([rows]).filter(key_filter).combine_chunks()
                rows = rows.to_batches()[0] if rows.num_rows else None
            if rows is not None and rows.num_rows:
                yield rows


def _gzipped(path: Path) -> bool:
    with path.open("rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def _csv_header(path: Path) -> list[str]:
    """The first line of a CSV file with a header, as column names."""
    with gzip.open(path, "rb") if _gzipped(path) else path.open("rb") as raw:
        line = raw.readline().decode("utf-8-sig", "replace")
    return next(csv.reader([line]), [])


def _csv_type(pa: Any, canonical: str) -> Any:
    if canonical == SIZE:
        return pa.int64()
    if canonical in (LATEST, DELETED):
        return pa.bool_()
    return pa.string()
