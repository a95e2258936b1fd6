"""The bulk step of `verify --inventory` (S3 inventories and GCS reports): the manifest's simple entries as columns
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
from .entries import PROFILES, EntryColumns, Profile, entries_of, from_entries, from_rows, read_columns

if TYPE_CHECKING:
    from ..verify import VerifyResult
    from .source import Inventory

#: Rows turned into results at a time when a `Settled` block is read.
SLICE = 4096


class Settled:
    """Entries an inventory shows unchanged (the rows of an `EntryColumns` table where `mask` is true): each
    is `ok`, its fingerprint matching; read as `VerifyResult`s in path order."""

    def __init__(self, columns: EntryColumns, mask: Any, scheme: str, ref_head: str) -> None:
        self.columns = columns
        self.mask = mask
        self.count = int(pyarrow().compute.sum(mask).as_py() or 0)
        self.backend = backend_class(scheme)
        self.head = len(ref_head)

    def __len__(self) -> int:
        return self.count

    def _entries(self) -> Iterator[ManifestEntry]:
        table = self.columns.table
        for start in range(0, table.num_rows, SLICE):
            yield from entries_of(table.slice(start, SLICE).filter(self.mask.slice(start, SLICE)), self.columns.profile)

    def __iter__(self) -> Iterator[VerifyResult]:
        from ..verify import VerifyResult

        backend, head = self.backend, self.head
        for e in self._entries():
            assert e.ref is not None  # a settled entry has a ref under the inventory's bucket
            found = backend.fingerprint(backend.decode(e.ref[head:], e.digest, e.size, e.extra)).as_dict()
            yield VerifyResult(e.path, e.ref, "ok", "fingerprint matches", found, found, "fingerprint-matches")

    def refs(self) -> Iterator[str]:
        """The settled entries' refs."""
        return (str(e.ref) for e in self._entries())


async def load(source: ManifestSource, profile: Profile) -> EntryColumns:
    """The entries of `source` as columns of `profile`; a manifest file (unless its layout needs
    `Manifest.load`) or a `StoredVersion` is read in chunks, in a worker thread."""
    if isinstance(source, StoredVersion):
        stored = source

        def rows() -> EntryColumns:
            return stored.store.read_entries(stored.spec, lambda chunks: from_rows(chunks, profile))

        return await anyio.to_thread.run_sync(rows)
    if isinstance(source, str | os.PathLike):
        found = await anyio.to_thread.run_sync(read_columns, source, profile)
        if found is not None:
            return found
        source = await anyio.to_thread.run_sync(Manifest.load, source)
    return from_entries(as_manifest(source), profile)


async def settle(inventory: Inventory, source: ManifestSource) -> tuple[Settled, list[ManifestEntry]]:
    """The entries of `source` the `inventory` shows unchanged, and the others in path order."""
    pa = pyarrow()
    columns = await load(source, PROFILES[inventory.manifest.kind])
    mask = await matching.unchanged(inventory, columns)
    left = entries_of(columns.table.filter(pa.compute.invert(mask)), columns.profile)
    entries = left if not columns.others else sorted(left + columns.others, key=lambda e: e.path)
    ref_head = f"{inventory.manifest.scheme}://{inventory.manifest.bucket}/"
    return Settled(columns, mask, inventory.manifest.scheme, ref_head), entries
