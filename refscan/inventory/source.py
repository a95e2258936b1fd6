"""`Inventory`: an S3 Inventory or GCS inventory report read as a listing (`stat`, and `list_entries`: what a
folder scan finds, the scan engine passing its own rule for one object and its limit) and as an index that
verify looks entries up in.

Rows become `ObjectMeta` through the same functions that read the store's own listings (S3 `Contents` /
`Versions` entries, GCS objects resources), so an object unchanged since the inventory was taken gives the
entry a live scan gives; S3 rows those rules only copy fields of are built column by column (`columns.py`).
Only the latest row of a key counts as the object, and only when it is not a delete marker; a current-only
inventory's rows are all latest (and carry no version ids).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..arrow import pyarrow
from ..backends.base import is_folder_marker
from ..errors import InvalidInventory, NotFound, RefscanError
from ..manifest import EntryBatch, ManifestEntry
from ..meta import ObjectMeta
from ..session import Session
from ..uri import RefURI
from .columns import gcs_columns, s3_columns
from .files import DataFiles, load_manifest
from .manifest import InventoryManifest
from .readers import (
    BATCH_ROWS,
    BUCKET,
    CHECKSUM,
    CRC32C,
    DELETED,
    ETAG,
    KEY,
    LATEST,
    LEAN_BATCH_ROWS,
    MD5,
    METAGENERATION,
    MODIFIED,
    SIZE,
    VERSION,
    available_columns,
    read_ahead,
    read_batches,
)

Row = dict[str, Any]


def row_reader(kind: str) -> Callable[[Row], ObjectMeta]:
    """Row (canonical columns) → `ObjectMeta`, by the store's own listing parser (imported only when used).
    A row the parser rejects raises `ValueError`."""
    if kind == "s3":
        from ..backends.s3.listing import listed_meta

        def s3_meta(row: Row) -> ObjectMeta:
            checksum = row.get(CHECKSUM)
            entry = {
                "Key": row[KEY],
                "ETag": row[ETAG],
                "Size": row[SIZE],
                "VersionId": row.get(VERSION),
                "LastModified": row.get(MODIFIED),
                "ChecksumAlgorithm": [checksum] if checksum else None,
            }
            try:
                return listed_meta(entry)
            except RefscanError as exc:
                raise ValueError(str(exc)) from None

        return s3_meta

    from ..backends.gcs.backend import object_meta

    def gcs_meta(row: Row) -> ObjectMeta:
        resource = {
            "name": row[KEY],
            "size": row[SIZE],
            "etag": row[ETAG],
            "generation": row.get(VERSION),
            "md5Hash": row.get(MD5),
            "crc32c": row.get(CRC32C),
            "metageneration": row.get(METAGENERATION),
        }
        return object_meta(resource)  # its MalformedResource is a ValueError

    return gcs_meta


@dataclass
class Index:
    """What an inventory says about a set of keys: the current object of each key (None: the latest row is a
    delete marker), and the rows of versions pinned by entries. Keys absent from both are not in the
    inventory."""

    current: dict[str, ObjectMeta | None] = field(default_factory=dict)
    versions: dict[tuple[str, str], ObjectMeta] = field(default_factory=dict)

    def get(self, uri: RefURI) -> ObjectMeta | None:
        """The object `uri` names (its pinned version when it has one); None when the inventory lacks it."""
        return self.current.get(uri.key) if uri.version is None else self.versions.get((uri.key, uri.version))


class Inventory:
    """An opened inventory; use `async with await Inventory.open(location, session)` or `close()` it. `created`
    is when it was taken (ISO 8601 UTC), `location` where its manifest is."""

    def __init__(self, location: str, manifest: InventoryManifest, files: DataFiles) -> None:
        self.location = location
        self.manifest = manifest
        self.files = files
        self.created = manifest.created
        self._meta = row_reader(manifest.kind)
        self._all_versions: bool | None = None

    @classmethod
    async def open(cls, location: str, session: Session) -> Inventory:
        """Read and check the manifest at `location` (URI or local path); every data file must exist."""
        pyarrow()  # the install hint before any request
        manifest, where = await load_manifest(session, location)
        files = DataFiles(session, manifest, where)
        await files.require_all()
        return cls(location, manifest, files)

    async def __aenter__(self) -> Inventory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.files.close()

    def describe(self) -> dict[str, Any]:
        """The inventory as recorded with what was built from it (store metadata, reports)."""
        return {"location": self.location, "created": self.created, "bucket": self.manifest.bucket}

    # -- what the inventory can speak for ----------------------------------------------------------------

    def holds(self, uri: RefURI) -> bool:
        """True when `uri` is in the bucket this inventory describes."""
        return uri.scheme == self.manifest.scheme and self.manifest.bucket in (None, uri.bucket)

    def _require(self, uri: RefURI) -> None:
        if not self.holds(uri):
            raise InvalidInventory(
                f"{self.location} is an inventory of {self.manifest.scheme}://{self.manifest.bucket}, "
                f"not of {uri.scheme}://{uri.bucket}: nothing of {uri} can be read from it"
            )

    # -- rows --------------------------------------------------------------------------------------------

    async def _batches(
        self,
        *,
        prefix: str | None = None,
        keys: Any = None,
        between: tuple[str, str] | None = None,
        lean: bool = False,
    ) -> AsyncIterator[Any]:
        """Matching rows of every data file, file by file, the next batch read while the caller works on this
        one (`lean`: smaller batches, none read ahead); each file is checked before its rows are read. A GCS
        report must hold as many rows as its manifest says it processed."""
        stats: dict[str, int] = {}
        for file in self.manifest.files:
            path = await self.files.path(file)
            rows = read_batches(
                path,
                self.manifest,
                file.name,
                prefix=prefix,
                keys=keys,
                between=between,
                stats=stats,
                batch_rows=LEAN_BATCH_ROWS if lean else BATCH_ROWS,
            )
            batches = rows if lean else read_ahead(rows)
            try:
                while (batch := await anyio.to_thread.run_sync(next, batches, None)) is not None:
                    self._check_bucket(batch, file.name)
                    yield batch
            finally:
                batches.close()
        if self.manifest.records is not None and stats.get("rows", 0) != self.manifest.records:
            raise InvalidInventory(
                f"{self.location}: the report's files hold {stats.get('rows', 0)} rows, its manifest says "
                f"{self.manifest.records} were processed: a shard is missing or truncated"
            )

    def _check_bucket(self, batch: Any, where: str) -> None:
        if BUCKET not in batch.schema.names:
            if self.manifest.bucket is None:
                raise InvalidInventory(f"{self.location}: neither the manifest nor the rows say which bucket")
            return
        pc = pyarrow().compute
        expected = self.manifest.bucket
        if expected is None:
            expected = batch.column(BUCKET)[0].as_py()
        if not pc.all(pc.equal(batch.column(BUCKET), expected)).as_py():
            raise InvalidInventory(f"{where}: rows of another bucket than {expected} in the inventory")

    @staticmethod
    def _current_mask(batch: Any) -> Any:
        """Latest rows that are not delete markers (every row of a current-only inventory)."""
        pc = pyarrow().compute
        names = batch.schema.names
        mask = pc.fill_null(batch.column(LATEST), True) if LATEST in names else None
        if DELETED in names:
            alive = pc.invert(pc.fill_null(batch.column(DELETED), False))
            mask = alive if mask is None else pc.and_(mask, alive)
        return mask

    def _rows(self, batch: Any) -> Iterator[Row]:
        names = batch.schema.names
        for values in zip(*(batch.column(name).to_pylist() for name in names), strict=True):
            yield dict(zip(names, values, strict=True))

    def _to_meta(self, row: Row) -> ObjectMeta:
        try:
            return self._meta(row)
        except ValueError as exc:
            raise InvalidInventory(f"{self.location}: a row for key {row[KEY]!r} is unusable ({exc})") from None

    # -- listing ----------------------------------------------------------------------------------------------

    async def stat(self, uri: RefURI) -> ObjectMeta:
        """The object `uri` names (its pinned version when it has one), as the inventory saw it."""
        self._require(uri)
        meta = (await self.index([uri])).get(uri)
        if meta is None:
            scope = (
                "" if uri.version is None or await self.lists_all_versions() else ", which lists current objects only"
            )
            raise NotFound(f"{uri}: not in the inventory {self.location} of {self.created}{scope}")
        return meta

    async def current_rows(
        self, *, prefix: str | None = None, between: tuple[str, str] | None = None, lean: bool = False
    ) -> AsyncIterator[Any]:
        """Record batches (canonical columns) of the rows of current objects (folder markers too) whose key is
        under `prefix` and/or `between` two keys (inclusive); `lean`: smaller batches, none read ahead."""
        async for batch in self._batches(prefix=prefix, between=between, lean=lean):
            mask = self._current_mask(batch)
            rows = batch.filter(mask) if mask is not None else batch
            if rows.num_rows:
                yield rows

    def _metas(self, rows: Any) -> list[ObjectMeta]:
        """The objects of `rows`, folder markers skipped."""
        return [self._to_meta(r) for r in self._rows(rows) if not is_folder_marker(r[KEY], r[SIZE])]

    async def list_entries(
        self, folder: RefURI, limit: int, name: str | None, entry: Callable[[ObjectMeta], ManifestEntry]
    ) -> AsyncGenerator[EntryBatch, None]:
        """What a folder scan of `folder` with `name` finds, as entry batches, at most `limit` in all: `entry`
        is the scan's rule for one object; S3 rows it would only copy fields of are built column by column
        (`refscan.inventory.columns`), the others through `entry`."""
        self._require(folder)
        ref_head = folder.backend.entry_ref(folder, ObjectMeta("", None))
        left = limit
        async for rows in self.current_rows(prefix=folder.key or None):
            if left <= 0:
                return
            columns_of = s3_columns if self.manifest.kind == "s3" else gcs_columns
            columns, others = columns_of(rows, folder.key, name, ref_head)
            columns.others = [entry(meta) for meta in self._metas(others)]
            found = columns.head(left) if len(columns) > left else columns
            left -= len(found)
            if len(found):
                yield found

    # -- verification -------------------------------------------------------------------------------------

    async def lists_all_versions(self) -> bool:
        """True for an S3 inventory of all versions (rows say which is latest): a version it does not list is
        gone. Current-only inventories and GCS reports list live objects only."""
        if self._all_versions is None:
            file = self.manifest.files[0]
            columns = available_columns(await self.files.path(file), self.manifest, file.name)
            self._all_versions = LATEST in columns and VERSION in columns
        return self._all_versions

    async def index(self, uris: Iterable[RefURI]) -> Index:
        """What the inventory says about the objects `uris` name (all in its bucket): one pass over the rows
        of those keys."""
        wanted_versions = set()
        keys = set()
        for uri in uris:
            keys.add(uri.key)
            if uri.version is not None:
                wanted_versions.add((uri.key, uri.version))
        index = Index()
        if not keys:
            return index
        async for batch in self._batches(keys=sorted(keys)):
            latest = batch.column(LATEST).to_pylist() if LATEST in batch.schema.names else None
            deleted = batch.column(DELETED).to_pylist() if DELETED in batch.schema.names else None
            for i, row in enumerate(self._rows(batch)):
                key, version = row[KEY], row.get(VERSION)
                is_marker = bool(deleted[i]) if deleted is not None else False
                if latest is None or latest[i] is not False:
                    index.current[key] = None if is_marker else self._to_meta(row)
                if not is_marker and version is not None and (key, str(version)) in wanted_versions:
                    index.versions[(key, str(version))] = self._to_meta(row)
        return index
