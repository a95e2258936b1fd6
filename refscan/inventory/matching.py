"""Entries that record exactly what a scan of an S3 inventory records now: the fast path of
`verify --inventory`, found column by column (pyarrow) while the inventory's rows stream past.

Verify decodes an entry and the inventory's row of its object and compares their fingerprints. When the entry
holds what a folder scan would record from that row (ref, digest = `extra.etag` = the row's ETag, size,
`versionID`, `lastModified`, nothing else in `extra`) both decode to the same object, so the comparison can
only say "fingerprint matches" (an ETag always proves). `unchanged` finds those entries among the simple ones
(`entries.EntryColumns`), building the rows' entries with the scan's own column rule (`columns.s3_columns`);
verify answers them at once and checks every other entry as before (tests/unit/test_inventory_verify.py checks
both ways give the same report on random manifests).

Memory stays near the entries' own columns: the candidates' names are sorted once, and rows are matched
against the names in their own key range only. An inventory in key order (S3's, in practice) is matched a
batch at a time, its range holding about as many entries as the batch has rows; rows out of order are
gathered (`_Gathering`) until the entries they span are at most `SPAN_PER_ROW` per row, or until they number
1/`SPAN_PER_ROW` of the entries, so the work stays linear in the rows however they are ordered.
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
    compared = [(column, key) for key, column, _ in entries.profile.extras if key != "etag"]  # etag: the digest
    columns = table.select(["digest", "size", *(column for column, _ in compared)])
    settled = _false(pa, n)  # by name

    def settle(gathered: Any, lo: int, hi: int) -> None:
        """Mark the entries `lo:hi` (by name) that match one of the `gathered` rows field for field."""
        nonlocal settled
        if lo >= hi:
            return
        index = pc.index_in(names.slice(lo, hi - lo), value_set=gathered.column("name").combine_chunks())
        hit = pc.is_valid(index)
        if not pc.any(hit).as_py():
            return
        row = index.filter(hit)
        if positions is None:
            found = columns.slice(lo, hi - lo).filter(hit)
        else:
            found = _rows_at(pc, columns, positions.slice(lo, hi - lo), hit)
        same = pc.and_(
            pc.equal(found.column("digest"), gathered.column("digest").take(row)),
            pc.equal(found.column("size"), gathered.column("size").take(row)),
        )
        for column, _ in compared:
            same = pc.and_(same, _same(pc, found.column(column), gathered.column(column).take(row)))
        in_span = pc.replace_with_mask(_false(pa, hi - lo), _array(pa, hit), _array(pa, pc.fill_null(same, False)))
        settled = pc.or_(settled, pa.concat_arrays([_false(pa, lo), in_span, _false(pa, n - hi)]))

    gathering = _Gathering(sorted_names)
    async for batch in inventory.current_rows(
        between=(key_of(sorted_names[0]), key_of(sorted_names[n - 1])), lean=True
    ):
        rows, _ = columns_of(batch, "", None, ref_head)
        found = row_names(rows.key)
        if found.null_count == len(found):
            continue
        values = {"name": found, "digest": rows.digest, "size": rows.size}
        values |= {column: rows.values(key) for column, key in compared}
        gathered = pa.table(values)
        gathering.add(gathered.filter(pc.is_valid(found)) if found.null_count else gathered, pc.min_max(found))
        if gathering.ready():
            settle(*gathering.take())
    if gathering.rows:
        settle(*gathering.take())
    if order is not None:  # back to the candidates' own order
        settled = settled.take(pc.sort_indices(order))
    return pc.replace_with_mask(_false(pa, table.num_rows), _array(pa, chosen), _array(pa, settled))


#: Rows are gathered while their names span more than this many entries per row (an inventory not in key
#: order), up to this fraction (1/N) of the entries: each match looks once at every entry of its span, so a
#: row costs at most about this many lookups however the inventory is ordered, and the rows held stay a
#: small part of the entries' own memory (16: 4.9 s and 310 MB for 1M entries against 10M shuffled rows;
#: 4: 4.6 s and 360 MB).
SPAN_PER_ROW = 16


class _Gathering:
    """Inventory rows (tables with a `name` column) gathered for one match against the entries' sorted names:
    ready when the names they span are few for their number, or when they are 1/`SPAN_PER_ROW` of them."""

    def __init__(self, names: _Texts) -> None:
        self.names = names
        self.tables: list[Any] = []
        self.rows = 0
        self.low = self.high = ""

    def add(self, rows: Any, bounds: Any) -> None:
        low, high = str(bounds["min"].as_py()), str(bounds["max"].as_py())
        self.low, self.high = (min(self.low, low), max(self.high, high)) if self.rows else (low, high)
        self.tables.append(rows)
        self.rows += rows.num_rows

    def span(self) -> tuple[int, int]:
        """The entries (by name) between the lowest and the highest name gathered."""
        return bisect_left(self.names, self.low), bisect_right(self.names, self.high)

    def ready(self) -> bool:
        lo, hi = self.span()
        return hi - lo <= SPAN_PER_ROW * self.rows or SPAN_PER_ROW * self.rows >= len(self.names)

    def take(self) -> tuple[Any, int, int]:
        """The rows gathered (one table) and their span; the gathering starts again."""
        lo, hi = self.span()
        gathered = pyarrow().concat_tables(self.tables, promote_options="permissive")  # an all-null batch
        self.tables, self.rows = [], 0
        return gathered, lo, hi


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
