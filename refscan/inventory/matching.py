"""Entries that record exactly what a scan of an S3 inventory records now: the fast path of
`verify --inventory`, found column by column (pyarrow) while the inventory's rows stream past.

Verify decodes an entry and the inventory's row of its object and compares their fingerprints. When the entry
holds what a folder scan would record from that row (ref, digest = `extra.etag` = the row's ETag, size,
`versionID`, `lastModified`, nothing else in `extra`) both decode to the same object, so the comparison can
only say "fingerprint matches" (an ETag always proves). `unchanged` finds those entries among the simple ones
(`entries.EntryColumns`), building the rows' entries with the scan's own column rule (`columns.s3_columns`);
verify answers them at once and checks every other entry as before (tests/unit/test_inventory_verify.py checks
both ways give the same report on random manifests).

Memory stays at the entries' own columns: the candidates' keys are sorted once, and each batch of rows is
matched against the keys in its own key range only (inventories list keys in order, so that range is small).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Any

from ..arrow import pyarrow
from .columns import gcs_columns, s3_columns
from .entries import EntryColumns, ascending, refs_of

if TYPE_CHECKING:
    from .source import Inventory


def single_folder(table: Any) -> str | None:
    """The folder every ref of `table` (an `EntryColumns` table) is followed by its path in (one folder
    scan's entries); None when there is no such one folder."""
    base, tail = table.column("ref_base"), table.column("ref_tail")
    if not len(base) or base.null_count or tail.null_count != len(tail):
        return None
    folders = {value for chunk in base.chunks for value in chunk.dictionary.to_pylist()}
    return folders.pop() if len(folders) == 1 else None


def candidates(table: Any, names: Any, ref_head: str, created: str, *, under_head: bool) -> Any:
    """A mask of the rows of `table` (an `EntryColumns` table) that may be unchanged: ref under `ref_head`
    (known of every row when `under_head`) with no `?` in `names` (the refs, or the paths below one folder
    known to hold none), a size, and for S3 entries digest = etag and not modified after the inventory was
    taken (`created`)."""
    pc = pyarrow().compute
    mask = pc.is_valid(table.column("size"))
    if "etag_is_digest" in table.column_names:
        mask = pc.and_(mask, table.column("etag_is_digest"))
    if "modified" in table.column_names:
        mask = pc.and_(mask, pc.fill_null(pc.less_equal(table.column("modified"), created), True))
    if not under_head:
        mask = pc.and_(mask, pc.fill_null(pc.starts_with(names, ref_head), False))
    return pc.and_(mask, pc.invert(pc.fill_null(pc.match_substring(names, "?"), True)))


def _same(pc: Any, a: Any, b: Any) -> Any:
    """Element-wise equality where two nulls are equal."""
    return pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))


def _rows_at(pc: Any, table: Any, span: Any, hit: Any) -> Any:
    """The rows of `table` at the positions `span` where `hit` is true. When `span` is a run of consecutive
    positions (entries listed in key order, as a folder scan writes them) that is a slice of the table, far
    cheaper than a `take` from its many chunks."""
    n = len(span)
    first, last = span[0].as_py(), span[n - 1].as_py()
    if last - first == n - 1 and ascending(pc, span):
        return table.slice(first, n).filter(hit)
    return table.take(span.filter(hit))


async def unchanged(inventory: Inventory, entries: EntryColumns) -> Any:
    """A boolean Arrow array over the rows of `entries.table`: true for the entries that record what a scan of
    the `inventory` records now (and, for S3, were not modified after it was taken).

    Entries and rows meet by name: for one folder scan's entries (`single_folder`) the entries' paths and the
    rows' keys below that folder, else the entries' refs and the rows' refs."""
    pa = pyarrow()
    pc = pa.compute
    table = entries.table
    columns_of = s3_columns if inventory.manifest.kind == "s3" else gcs_columns
    ref_head = f"{inventory.manifest.scheme}://{inventory.manifest.bucket}/"
    folder = single_folder(table)
    if folder is not None and not (folder.startswith(ref_head) and "?" not in folder):
        folder = None
    names = table.column("path") if folder is not None else refs_of(table)  # each row's name
    chosen = candidates(table, names, ref_head, inventory.created, under_head=folder is not None)
    order = None
    if folder is not None:  # ascending: the table is in path order
        prefix = folder[len(ref_head) :]
        every = pc.all(chosen).as_py()
        names = names if every else names.filter(chosen)
        positions = None if every else pc.indices_nonzero(chosen)

        def row_names(keys: Any) -> Any:
            under = pc.fill_null(pc.starts_with(keys, prefix), False)
            return pc.if_else(under, pc.utf8_slice_codeunits(keys, len(prefix)), pa.scalar(None, pa.string()))

        def key_of(name: str) -> str:
            return prefix + name
    else:
        names, positions = names.filter(chosen).combine_chunks(), pc.indices_nonzero(chosen)
        if not ascending(pc, names):  # entries not in key order: match them sorted
            order = pc.sort_indices(names)
            names, positions = names.take(order), positions.take(order)

        def row_names(keys: Any) -> Any:
            return pc.binary_join_element_wise(ref_head, keys, "")

        def key_of(name: str) -> str:
            return name[len(ref_head) :]

    sorted_names = _Texts(names)
    n = len(sorted_names)
    if not n:
        return _false(pa, table.num_rows)
    settled = _false(pa, n)  # by name
    compared = [(column, key) for key, column, _ in entries.profile.extras if key != "etag"]  # etag: the digest
    columns = table.select(["digest", "size", *(column for column, _ in compared)])
    async for batch in inventory.current_rows(
        between=(key_of(sorted_names[0]), key_of(sorted_names[n - 1])), lean=True
    ):
        rows, _ = columns_of(batch, "", None, ref_head)
        found = row_names(rows.key)
        if found.null_count == len(found):
            continue
        bounds = pc.min_max(found)
        lo = bisect_left(sorted_names, bounds["min"].as_py())
        hi = bisect_right(sorted_names, bounds["max"].as_py())
        if lo >= hi:
            continue
        index = pc.index_in(names.slice(lo, hi - lo), value_set=found)
        hit = pc.is_valid(index)
        if not pc.any(hit).as_py():
            continue
        row = index.filter(hit)
        if positions is None:
            found_entries = columns.slice(lo, hi - lo).filter(hit)
        else:
            found_entries = _rows_at(pc, columns, positions.slice(lo, hi - lo), hit)
        same = pc.equal(found_entries.column("digest"), rows.digest.take(row))
        same = pc.and_(same, pc.equal(found_entries.column("size"), rows.size.take(row)))
        for column, key in compared:
            same = pc.and_(same, _same(pc, found_entries.column(column), rows.values(key).take(row)))
        in_span = pc.replace_with_mask(_false(pa, hi - lo), _array(pa, hit), _array(pa, pc.fill_null(same, False)))
        settled = pc.or_(settled, pa.concat_arrays([_false(pa, lo), in_span, _false(pa, n - hi)]))
    if order is not None:  # back to the candidates' own order
        settled = settled.take(pc.sort_indices(order))
    return pc.replace_with_mask(_false(pa, table.num_rows), _array(pa, chosen), _array(pa, settled))


class _Texts:
    """An Arrow string array as a sequence of Python strings, for `bisect`."""

    def __init__(self, values: Any) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> str:
        return str(self.values[i].as_py())


def _array(pa: Any, values: Any) -> Any:
    """`values` as one Arrow array (a chunked array combined)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _false(pa: Any, n: int) -> Any:
    """`n` false values."""
    return pa.compute.fill_null(pa.nulls(n, pa.bool_()), False)
