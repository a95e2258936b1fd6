"""S3 inventory rows to folder-scan entries column by column (pyarrow): the fast path of `scan --inventory`.

A folder scan turns each listed object into an entry by three rules: the listing parser
(`backends.s3.listing.listed_meta`), the S3 codec (`S3Backend.encode`, `entry_ref`) and the naming rule
(`naming.folder_entry_path`). On *regular* rows those rules only copy fields, and this module applies them to
whole Arrow columns:

- the ETag is non-empty text JSON need not escape (no quotes: nothing to strip), so digest = `extra.etag` =
  the ETag; a version id that is empty or `null` means unversioned; a time is null or in the listings' ISO
  form, cut to the second; no checksum algorithm is named;
- the path (the key below the folder, under `name/`) is one `naming` keeps as it is (`NOT_PLAIN` does not
  match) and needs no JSON escape; the ref is the backend's ref of the empty key followed by the key.

Every other row (quoted or odd ETags, checksum algorithms, other time forms, paths the naming rule cleans or
refuses, folder markers) is handed back for the per-row path, so there is one rule and two speeds of it
(tests/unit/test_inventory_columns.py checks them equal, field for field, on random rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backends.s3.client import ISO_UTC
from ..manifest import ManifestEntry, jsonl_line
from ..naming import NOT_PLAIN
from .readers import CHECKSUM, ETAG, KEY, MODIFIED, SIZE, VERSION, pyarrow

#: Text that JSON writes with escapes (`json.dumps(..., ensure_ascii=False)` escapes only these).
NEEDS_ESCAPE = r'["\\\x00-\x1f]'


@dataclass
class ColumnEntries:
    """An `EntryBatch` held as Arrow columns (the S3 entry fields: path, key, size, etag, version, modified;
    each ref is `ref_head` + key), plus `others`: entries built one by one, after them."""

    ref_head: str
    path: Any
    key: Any
    size: Any
    etag: Any
    version: Any
    modified: Any
    others: list[ManifestEntry] = field(default_factory=list)

    def _columns(self) -> tuple[Any, ...]:
        return (self.path, self.key, self.size, self.etag, self.version, self.modified)

    def __len__(self) -> int:
        return len(self.path) + len(self.others)

    def head(self, n: int) -> ColumnEntries:
        """The first `n` entries (columns first, then others)."""
        cut = min(n, len(self.path))
        sliced = (c.slice(0, cut) for c in self._columns())
        return ColumnEntries(self.ref_head, *sliced, others=self.others[: max(0, n - cut)])  # type: ignore[misc]

    def entries(self) -> list[ManifestEntry]:
        out = []
        head = self.ref_head
        for path, key, size, etag, version, modified in zip(*(c.to_pylist() for c in self._columns()), strict=True):
            extra = {"etag": etag}
            if version is not None:
                extra["versionID"] = version
            if modified is not None:
                extra["lastModified"] = modified
            out.append(ManifestEntry(path, etag, head + key, size, extra))
        return out + self.others

    def jsonl(self) -> str:
        rest = "".join(map(jsonl_line, self.others))
        if not len(self.path):
            return rest
        pa = pyarrow()
        pc = pa.compute
        version = pc.binary_join_element_wise(', "versionID": "', self.version, '"', "")  # null stays null
        modified = pc.binary_join_element_wise(', "lastModified": "', self.modified, '"', "")
        lines = pc.binary_join_element_wise(
            '{"path": "',
            self.path,
            '", "digest": "',
            self.etag,
            f'", "ref": "{self.ref_head}',
            self.key,
            '", "size": ',
            self.size.cast(pa.string()),
            ', "extra": {"etag": "',
            self.etag,
            '"',
            version,
            modified,
            "}}\n",
            "",
            null_handling="skip",
        )
        offsets = pa.array([0, len(lines)], pa.int64())
        text: str = pc.binary_join(pa.LargeListArray.from_arrays(offsets, lines), "")[0].as_py()
        return text + rest


def s3_columns(batch: Any, folder_key: str, name: str | None, ref_head: str) -> tuple[ColumnEntries, Any]:
    """The entries of the regular rows of `batch` (canonical columns, current objects under `folder_key`) as a
    folder scan with `name` names them, and the other rows (a record batch, maybe empty) for the per-row
    path. `ref_head`: the backend's ref of the folder's empty key (`s3://bucket/`); it must need no JSON
    escape (bucket names do not)."""
    pa = pyarrow()
    pc = pa.compute
    names = batch.schema.names
    key, etag, size = batch.column(KEY), batch.column(ETAG), batch.column(SIZE)
    version = batch.column(VERSION) if VERSION in names else pa.nulls(len(batch), pa.string())
    modified = batch.column(MODIFIED) if MODIFIED in names else pa.nulls(len(batch), pa.string())
    relative = pc.utf8_slice_codeunits(key, len(folder_key))  # code points, as Python slices
    path = pc.binary_join_element_wise(f"{name}/", relative, "") if name else relative
    checks = [
        pc.invert(pc.match_substring_regex(path, f"{NOT_PLAIN}|{NEEDS_ESCAPE}")),
        pc.greater(pc.utf8_length(etag), 0),
        pc.invert(pc.match_substring_regex(etag, NEEDS_ESCAPE)),
        pc.is_valid(size),
    ]
    if version.null_count < len(version):
        checks.append(pc.invert(pc.fill_null(pc.match_substring_regex(version, NEEDS_ESCAPE), False)))
    if modified.null_count < len(modified):
        checks.append(pc.fill_null(pc.match_substring_regex(modified, f"^{ISO_UTC}$"), True))
    if CHECKSUM in names:
        checks.append(pc.fill_null(pc.equal(batch.column(CHECKSUM), ""), True))
    regular = checks[0]
    for check in checks[1:]:
        regular = pc.and_kleene(regular, check)
    regular = pc.fill_null(regular, False)
    if version.null_count < len(version):
        unversioned = pc.fill_null(pc.is_in(version, pa.array(["", "null"])), True)
        version = pc.if_else(unversioned, pa.scalar(None, pa.string()), version)
    if (pc.max(pc.utf8_length(modified)).as_py() or 20) > 20:  # some times have fractions to cut
        modified = pc.binary_join_element_wise(pc.utf8_slice_codeunits(modified, 0, 19), "Z", "")
    found = (path, key, size, etag, version, modified)
    if pc.all(regular).as_py():
        return ColumnEntries(ref_head, *found), batch.slice(0, 0)
    kept = (pc.filter(c, regular) for c in found)
    return ColumnEntries(ref_head, *kept), batch.filter(pc.invert(regular))
