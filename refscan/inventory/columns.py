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

from ..arrow import pyarrow
from ..backends.s3.client import ISO_UTC
from ..manifest import EntryList, ManifestEntry
from ..naming import NOT_PLAIN
from .readers import CHECKSUM, ETAG, KEY, MODIFIED, SIZE, VERSION

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
        return str(self.jsonl_bytes(), "utf-8")

    def jsonl_bytes(self) -> bytes | memoryview:
        """The JSON Lines of the column entries as one Arrow string column's own bytes (no copy), then those of
        `others` (a copy of the whole only when there are any)."""
        rest = EntryList(self.others).jsonl_bytes()
        if not len(self.path):
            return rest
        found = memoryview(_text(pyarrow(), self._lines()))
        return b"".join((found, rest)) if rest else found

    def _lines(self) -> Any:
        """The JSON line of each column entry (a string array): one join of the columns with the literal text
        between them; an optional field is spelt out only where it is not null."""
        pa = pyarrow()
        pc = pa.compute
        parts: list[Any] = [
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
        ]
        for name, values in (("versionID", self.version), ("lastModified", self.modified)):
            if values.null_count == len(values):
                continue
            if values.null_count:
                parts.append(pc.fill_null(pc.binary_join_element_wise(f', "{name}": "', values, '"', ""), ""))
            else:
                parts += [f', "{name}": "', values, '"']
        parts.append("}}\n")
        merged: list[Any] = []  # adjacent literals as one: fewer pieces to copy per line
        for part in parts:
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        return pc.binary_join_element_wise(*merged, "")


def _text(pa: Any, strings: Any) -> Any:
    """The bytes of the values of the string array `strings`, end to end (a null's bytes too, if it has any),
    as a slice of its own buffer."""
    offsets = pa.Array.from_buffers(pa.int32(), len(strings) + 1, [None, strings.buffers()[1]], strings.offset)
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    data = strings.buffers()[2]
    return data.slice(start, end - start) if data is not None else pa.py_buffer(b"")


def _whole(pa: Any, strings: Any) -> Any:
    """`_text(strings)` as a one-value binary array: a match in it is a match in some value or across two."""
    text = _text(pa, strings)
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, pa.array([0, text.size], pa.int64()).buffers()[1], text])


def _escape_free(pa: Any, strings: Any) -> bool:
    """True when no value of the string array `strings` holds a byte JSON escapes (quote, backslash, control;
    in UTF-8 those bytes are only those characters), by byte minima: no per-value work."""
    pc = pa.compute
    text = _text(pa, strings)
    if not text.size:
        return True
    data = pa.Array.from_buffers(pa.uint8(), text.size, [None, text])
    if pc.min(data).as_py() < 0x20:
        return False
    return all(pc.min(pc.bit_wise_xor(data, pa.scalar(b, pa.uint8()))).as_py() for b in (ord('"'), ord("\\")))


def _iso_check(pa: Any, modified: Any) -> Any:
    """Per row (null: no time), whether `modified` is in the listings' ISO form; None when every time is, as
    one pass over the column's bytes shows when all its times have one length (each `ISO_UTC` of that length:
    the bytes are a run of such times)."""
    pc = pa.compute
    length, longest = (v.as_py() for v in pc.min_max(pc.binary_length(modified)).values())
    valid = len(modified) - modified.null_count
    if length == longest and length >= 20 and len(_text(pa, modified)) == length * valid:
        fraction = "" if length == 20 else rf"\.\d{{{length - 21}}}"
        one = ISO_UTC.replace(r"(?:\.\d*)?", fraction)
        if pc.match_substring_regex(_whole(pa, modified), f"^(?:{one})*$")[0].as_py():
            return None
    return pc.fill_null(pc.match_substring_regex(modified, f"^{ISO_UTC}$"), True)


def _path_checks(pa: Any, path: Any) -> list[Any]:
    """Per-row checks that `path` is kept as it is by `naming` and needs no JSON escape (`NOT_PLAIN` and
    `NEEDS_ESCAPE` do not match): the parts of those rules that can match inside a path are first looked for
    in all paths' bytes at once (the per-row rules only when found), the path's ends are checked per row."""
    pc = pa.compute
    inner = rf"//|/\.|{NEEDS_ESCAPE}"
    if pc.match_substring_regex(_whole(pa, path), inner)[0].as_py():
        return [pc.invert(pc.match_substring_regex(path, f"{NOT_PLAIN}|{NEEDS_ESCAPE}"))]
    ends = pc.or_(pc.or_(pc.starts_with(path, "/"), pc.starts_with(path, ".")), pc.ends_with(path, "/"))
    return [pc.greater(pc.binary_length(path), 0), pc.invert(ends)]


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
    checks = [*_path_checks(pa, path), pc.greater(pc.binary_length(etag), 0)]
    if not _escape_free(pa, etag):
        checks.append(pc.invert(pc.match_substring_regex(etag, NEEDS_ESCAPE)))
    if size.null_count:
        checks.append(pc.is_valid(size))
    if version.null_count < len(version) and not _escape_free(pa, version):
        checks.append(pc.invert(pc.fill_null(pc.match_substring_regex(version, NEEDS_ESCAPE), False)))
    if modified.null_count < len(modified) and (times := _iso_check(pa, modified)) is not None:
        checks.append(times)
    if CHECKSUM in names and batch.column(CHECKSUM).null_count < len(batch):
        checks.append(pc.fill_null(pc.equal(batch.column(CHECKSUM), ""), True))
    regular = checks[0]
    for check in checks[1:]:
        regular = pc.and_kleene(regular, check)
    regular = pc.fill_null(regular, False)
    if version.null_count < len(version):
        unversioned = pc.fill_null(pc.is_in(version, pa.array(["", "null"])), True)
        version = pc.if_else(unversioned, pa.scalar(None, pa.string()), version)
    if (pc.max(pc.binary_length(modified)).as_py() or 20) > 20:  # some times have fractions to cut
        modified = pc.binary_join_element_wise(pc.utf8_slice_codeunits(modified, 0, 19), "Z", "")
    found = (path, key, size, etag, version, modified)
    if pc.all(regular).as_py():
        return ColumnEntries(ref_head, *found), batch.slice(0, 0)
    kept = (pc.filter(c, regular) for c in found)
    return ColumnEntries(ref_head, *kept), batch.filter(pc.invert(regular))
