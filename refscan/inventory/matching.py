"""Entries that record exactly what a scan of an S3 inventory records now: the fast path of
`verify --inventory`, found by a hash join of the entries with the inventory's current rows (pyarrow).

Verify decodes an entry and the inventory's row of its object and compares their fingerprints. When the entry
holds what a folder scan would record from that row (ref, digest = `extra.etag` = the row's ETag, size,
`versionID`, `lastModified`, nothing else in `extra`) both decode to the same object, so the comparison can
only say "fingerprint matches" (an ETag always proves). `unchanged` finds those entries column by column,
building the rows' entries with the scan's own column rule (`columns.s3_columns`); verify answers them at once
and checks every other entry as before (tests/integration/test_inventory.py checks both ways give the same
report on random manifests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..manifest import ManifestEntry
from .columns import s3_columns
from .readers import pyarrow

if TYPE_CHECKING:
    from .source import Inventory

#: The `extra` keys a scan of an S3 inventory row writes.
SCANNED = frozenset({"etag", "versionID", "lastModified"})


def entry_table(entries: Sequence[ManifestEntry], ref_head: str) -> Any:
    """The entries that may be unchanged (ref under `ref_head` with no `?`, a size, only scanned `extra` keys,
    all of them text) as a table: pos, key, digest, size, etag, version, modified."""
    pa = pyarrow()
    pc = pa.compute
    extras = [e.extra for e in entries]
    fits = [x.keys() <= SCANNED for x in extras]
    columns: dict[str, list[Any]] = {
        "ref": [e.ref for e in entries],
        "digest": [e.digest for e in entries],
        "size": [e.size for e in entries],
        "etag": [x.get("etag") for x in extras],
        "version": [x.get("versionID") for x in extras],
        "modified": [x.get("lastModified") for x in extras],
    }
    arrays = {}
    for name, values in columns.items():
        arrays[name], typed = _column(pa, values, int if name == "size" else str)
        if typed is not None:
            fits = [f and t for f, t in zip(fits, typed, strict=True)]
    ref = arrays.pop("ref")
    mask = pc.and_(pa.array(fits, pa.bool_()), pc.fill_null(pc.starts_with(ref, ref_head), False))
    mask = pc.and_(mask, pc.invert(pc.fill_null(pc.match_substring(ref, "?"), True)))
    for name in ("size", "etag"):
        mask = pc.and_(mask, pc.is_valid(arrays[name]))
    table = pa.table(
        {"pos": pa.array(range(len(entries)), pa.int64()), "key": pc.utf8_slice_codeunits(ref, len(ref_head)), **arrays}
    )
    return table.filter(mask)


def _column(pa: Any, values: list[Any], kind: type) -> tuple[Any, list[bool] | None]:
    """`values` as an Arrow array of `kind` (int64 or string); when some are of another type they become null
    and the flags say which values were None or of `kind` (None: all were)."""
    arrow_type = pa.int64() if kind is int else pa.string()
    try:
        return pa.array(values, arrow_type), None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        typed = [v is None or type(v) is kind for v in values]
        return pa.array([v if t else None for v, t in zip(values, typed, strict=True)], arrow_type), typed


def _same(pc: Any, a: Any, b: Any) -> Any:
    """Element-wise equality where two nulls are equal."""
    return pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))


async def unchanged(inventory: Inventory, entries: Sequence[ManifestEntry]) -> list[int]:
    """Positions in `entries` of those that record what a scan of the (S3) `inventory` records now and were
    not modified after it was taken."""
    pa = pyarrow()
    pc = pa.compute
    ref_head = f"{inventory.manifest.scheme}://{inventory.manifest.bucket}/"
    table = entry_table(entries, ref_head)
    if not table.num_rows:
        return []
    rows = []
    bounds = pc.min_max(table.column("key"))
    async for batch in inventory.current_rows(between=(bounds["min"].as_py(), bounds["max"].as_py())):
        found, _ = s3_columns(batch, "", None, ref_head)
        rows.append(
            pa.table(
                {"key": found.key, "r_size": found.size, "r_etag": found.etag, "r_version": found.version}
                | {"r_modified": found.modified}
            )
        )
    if not rows:
        return []
    joined = table.join(pa.concat_tables(rows), keys="key", join_type="inner")
    etag = joined.column("etag")
    same = pc.and_(pc.equal(joined.column("digest"), etag), pc.equal(etag, joined.column("r_etag")))
    same = pc.and_(same, pc.equal(joined.column("size"), joined.column("r_size")))
    same = pc.and_(same, _same(pc, joined.column("version"), joined.column("r_version")))
    modified = joined.column("modified")
    same = pc.and_(same, _same(pc, modified, joined.column("r_modified")))
    same = pc.and_(same, pc.fill_null(pc.less_equal(modified, inventory.created), True))
    return sorted(pc.filter(joined.column("pos"), pc.fill_null(same, False)).to_pylist())
