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
from .columns import s3_columns
from .entries import ascending, ref, refs_of

if TYPE_CHECKING:
    from .source import Inventory


class _Refs:
    """The refs of rows `lo`.. of an `EntryColumns` table (read one by one), for `bisect`."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.columns = [table.column(name) for name in ("ref_base", "ref_tail", "path")]

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, i: int) -> str:
        base, tail, path = (column[i].as_py() for column in self.columns)
        return str(ref(base, tail, path))


def candidates(table: Any, ref_head: str, created: str) -> Any:
    """A mask of the rows of `table` (an `EntryColumns` table) that may be unchanged: ref under `ref_head`
    with no `?`, digest = etag, a size, not modified after the inventory was taken (`created`)."""
    pa = pyarrow()
    pc = pa.compute
    masks = []
    for rows in table.to_batches():
        refs = refs_of(rows)
        mask = pc.and_(rows.column("etag_is_digest"), pc.is_valid(rows.column("size")))
        mask = pc.and_(mask, pc.fill_null(pc.starts_with(refs, ref_head), False))
        mask = pc.and_(mask, pc.invert(pc.fill_null(pc.match_substring(refs, "?"), True)))
        masks.append(pc.and_(mask, pc.fill_null(pc.less_equal(rows.column("modified"), created), True)))
    return pa.chunked_array(masks, pa.bool_())


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


async def unchanged(inventory: Inventory, table: Any) -> Any:
    """A boolean Arrow array over the rows of `table` (an `EntryColumns` table): true for the entries that
    record what a scan of the (S3) `inventory` records now and were not modified after it was taken."""
    pa = pyarrow()
    pc = pa.compute
    ref_head = f"{inventory.manifest.scheme}://{inventory.manifest.bucket}/"
    chosen = candidates(table, ref_head, inventory.created)
    if pc.all(chosen).as_py() and _in_ref_order(pc, table):  # the usual case: the table's own rows, no copy
        refs, positions, order = None, None, None
        sorted_refs: Any = _Refs(table)
    else:
        refs, positions = refs_of(table.filter(chosen)).combine_chunks(), pc.indices_nonzero(chosen)
        order = None if ascending(pc, refs) else pc.sort_indices(refs)
        if order is not None:  # entries not in key order: match them sorted
            refs, positions = refs.take(order), positions.take(order)
        sorted_refs = _Texts(refs)
    n = len(sorted_refs)
    if not n:
        return _false(pa, table.num_rows)
    settled = _false(pa, n)  # by sorted ref
    columns = table.select(["digest", "size", "version", "modified"])
    between = (sorted_refs[0][len(ref_head) :], sorted_refs[n - 1][len(ref_head) :])
    async for batch in inventory.current_rows(between=between, lean=True):
        rows, _ = s3_columns(batch, "", None, ref_head)
        if not len(rows.key):
            continue
        bounds = pc.min_max(rows.key)
        lo = bisect_left(sorted_refs, ref_head + bounds["min"].as_py())
        hi = bisect_right(sorted_refs, ref_head + bounds["max"].as_py())
        if lo >= hi:
            continue
        span = refs_of(table.slice(lo, hi - lo)) if refs is None else refs.slice(lo, hi - lo)
        index = pc.index_in(span, value_set=pc.binary_join_element_wise(ref_head, rows.key, ""))
        hit = pc.is_valid(index)
        if not pc.any(hit).as_py():
            continue
        row = index.filter(hit)
        if positions is None:
            entries = columns.slice(lo, hi - lo).filter(hit)
        else:
            entries = _rows_at(pc, columns, positions.slice(lo, hi - lo), hit)
        same = pc.equal(entries.column("digest"), rows.digest.take(row))
        same = pc.and_(same, pc.equal(entries.column("size"), rows.size.take(row)))
        same = pc.and_(same, _same(pc, entries.column("version"), rows.values("versionID").take(row)))
        same = pc.and_(same, _same(pc, entries.column("modified"), rows.values("lastModified").take(row)))
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


def _in_ref_order(pc: Any, table: Any) -> bool:
    """True when the table's refs ascend (read a batch at a time)."""
    last = None
    for rows in table.to_batches():
        refs = refs_of(rows)
        if not len(refs):
            continue
        if (last is not None and not last < refs[0].as_py()) or not ascending(pc, refs):
            return False
        last = refs[len(refs) - 1].as_py()
    return True


def _array(pa: Any, values: Any) -> Any:
    """`values` as one Arrow array (a chunked array combined)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _false(pa: Any, n: int) -> Any:
    """`n` false values."""
    return pa.compute.fill_null(pa.nulls(n, pa.bool_()), False)
