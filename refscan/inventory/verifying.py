"""The bulk step of `verify --inventory` against an S3 inventory: the manifest's simple entries as columns
(`entries.py`), those an inventory shows unchanged found column by column (`matching.py`) and kept as columns
(`Settled`: a result each only when read), the rest handed back as entry objects for the per-entry check.

A manifest file is read straight into columns; a Manifest, store version or entry list is turned into
columns. Either way no object per settled entry is made, which is what lets a million entries be verified in
a few hundred MB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio

from ..arrow import pyarrow
from ..backends import backend_class
from ..manifest import Manifest, ManifestEntry, ManifestSource, as_manifest
from ..sources import StoredVersion
from . import matching
from .entries import EntryColumns, entries_of, from_entries, from_rows, read_columns

if TYPE_CHECKING:
    from ..verify import VerifyResult
    from .source import Inventory

#: Rows turned into results at a time when a `Settled` block is read.
SLICE = 4096


class Settled:
    """Entries an inventory shows unchanged (the rows of an `EntryColumns` table where `mask` is true): each
    is `ok`, its fingerprint matching; read as `VerifyResult`s in path order."""

    def __init__(self, table: Any, mask: Any, scheme: str, ref_head: str) -> None:
        self.table = table
        self.mask = mask
        self.count = int(pyarrow().compute.sum(mask).as_py() or 0)
        self.backend = backend_class(scheme)
        self.head = len(ref_head)

    def __len__(self) -> int:
        return self.count

    def _rows(self, columns: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
        for start in range(0, self.table.num_rows, SLICE):
            rows = self.table.slice(start, SLICE).select(columns).filter(self.mask.slice(start, SLICE))
            yield from zip(*(rows.column(c).to_pylist() for c in columns), strict=True)

    def __iter__(self) -> Iterator[VerifyResult]:
        from ..verify import VerifyResult

        backend, head = self.backend, self.head
        names = ("path", "ref_base", "ref_tail", "digest", "size", "version", "modified")
        for path, base, tail, digest, size, version, modified in self._rows(names):
            extra = {"etag": digest}
            if version is not None:
                extra["versionID"] = version
            if modified is not None:
                extra["lastModified"] = modified
            full = base + (path if tail is None else tail)
            found = backend.fingerprint(backend.decode(full[head:], digest, size, extra)).as_dict()
            yield VerifyResult(path, full, "ok", "fingerprint matches", found, found, "fingerprint-matches")

    def refs(self) -> Iterator[str]:
        """The settled entries' refs."""
        return (
            base + (path if tail is None else tail) for path, base, tail in self._rows(("path", "ref_base", "ref_tail"))
        )


async def load(source: ManifestSource) -> EntryColumns:
    """The entries of `source` as columns; a manifest file (unless its layout needs `Manifest.load`) or a
    `StoredVersion` is read in chunks, in a worker thread."""
    if isinstance(source, StoredVersion):
        return await anyio.to_thread.run_sync(source.store.read_entries, source.spec, from_rows)
    if isinstance(source, str | os.PathLike):
        found = await anyio.to_thread.run_sync(read_columns, source)
        if found is not None:
            return found
        source = await anyio.to_thread.run_sync(Manifest.load, source)
    return from_entries(as_manifest(source))


async def settle(inventory: Inventory, source: ManifestSource) -> tuple[Settled, list[ManifestEntry]]:
    """The entries of `source` the (S3) `inventory` shows unchanged, and the others in path order."""
    pa = pyarrow()
    columns = await load(source)
    mask = await matching.unchanged(inventory, columns.table)
    left = entries_of(columns.table.filter(pa.compute.invert(mask)))
    entries = left if not columns.others else sorted(left + columns.others, key=lambda e: e.path)
    ref_head = f"{inventory.manifest.scheme}://{inventory.manifest.bucket}/"
    return Settled(columns.table, mask, inventory.manifest.scheme, ref_head), entries
