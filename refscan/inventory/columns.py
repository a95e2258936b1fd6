"""Inventory rows to folder-scan entries column by column (pyarrow): the fast path of `scan --inventory`.

A folder scan turns each listed object into an entry by three rules: the listing parser (S3
`backends.s3.listing.listed_meta`, GCS `backends.gcs.backend.object_meta`), the backend's codec (`encode`,
`entry_ref`) and the naming rule (`naming.folder_entry_path`). On *regular* rows those rules only copy fields,
and this module applies them to whole Arrow columns (`s3_columns`, `gcs_columns`):

- S3: the ETag is non-empty text JSON need not escape (no quotes: nothing to strip), so digest = `extra.etag`
  = the ETag; a version id that is empty or `null` means unversioned; a time is null or in the listings' ISO
  form, cut to the second; no checksum algorithm is named;
- GCS: digest = the ETag; `versionID` the generation and `metageneration` as whole numbers, `md5` / `crc32c`
  as given (empty: none);
- the path (the key below the folder, under `name/`) is one `naming` keeps as it is (`NOT_PLAIN` does not
  match) and needs no JSON escape; the ref is the backend's ref of the empty key followed by the key.

Every other row (quoted or odd ETags, checksum algorithms, other time forms, numbers written otherwise, paths
the naming rule cleans or refuses, folder markers) is handed back for the per-row path, so there is one rule
and two speeds of it (tests/unit/test_inventory_columns.py checks them equal, field for field, on random rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..arrow import pyarrow
from ..backends.s3.client import ISO_UTC
from ..manifest import EntryList, ManifestEntry
from ..naming import NOT_PLAIN
from .readers import CHECKSUM, CRC32C, ETAG, KEY, MD5, METAGENERATION, MODIFIED, SIZE, VERSION

#: Text that JSON writes with escapes (`json.dumps(..., ensure_ascii=False)` escapes only these).
NEEDS_ESCAPE = r'["\\\x00-\x1f]'


@dataclass
class Field:
    """One `extra` value of column entries: its key, its values (an Arrow array; null: absent) and whether
    JSON writes them as numbers (int64 values) rather than text."""

    name: str
    values: Any
    number: bool = False


@dataclass
class ColumnEntries:
    """An `EntryBatch` held as Arrow columns: path, key (each ref is `ref_head` + key), size, digest and the
    `extra` fields in the order the backend's codec writes them (the first is never null), plus `others`:
    entries built one by one, after them."""

    ref_head: str
    path: Any
    key: Any
    size: Any
    digest: Any
    extra: list[Field]
    others: list[ManifestEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.path) + len(self.others)

    def values(self, name: str) -> Any:
        """The `extra` values named `name`."""
        return next(f.values for f in self.extra if f.name == name)

    def head(self, n: int) -> ColumnEntries:
        """The first `n` entries (columns first, then others)."""
        cut = min(n, len(self.path))
        path, key, size, digest = (c.slice(0, cut) for c in (self.path, self.key, self.size, self.digest))
        extra = [Field(f.name, f.values.slice(0, cut), f.number) for f in self.extra]
        return ColumnEntries(self.ref_head, path, key, size, digest, extra, self.others[: max(0, n - cut)])

    def entries(self) -> list[ManifestEntry]:
        out = []
        head = self.ref_head
        names = [f.name for f in self.extra]
        columns = (
            c.to_pylist() for c in (self.path, self.key, self.size, self.digest, *(f.values for f in self.extra))
        )
        for path, key, size, digest, *values in zip(*columns, strict=True):
            extra = {name: value for name, value in zip(names, values, strict=True) if value is not None}
            out.append(ManifestEntry(path, digest, head + key, size, extra))
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
            self.digest,
            f'", "ref": "{self.ref_head}',
            self.key,
            '", "size": ',
            self.size.cast(pa.string()),
            ', "extra": {',
        ]
        for i, f in enumerate(self.extra):
            values = f.values.cast(pa.string()) if f.number else f.values
            quote = "" if f.number else '"'
            lead = f'{", " if i else ""}"{f.name}": {quote}'
            if values.null_count == len(values):
                continue
            if values.null_count:
                parts.append(pc.fill_null(pc.binary_join_element_wise(lead, values, quote, ""), ""))
            else:
                parts += [lead, values, quote]
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


def _text_checks(pa: Any, values: Any) -> list[Any]:
    """The per-row check that the text `values` (null: none) need no JSON escape; none when no value does
    (one pass over the column's bytes)."""
    if values.null_count == len(values) or _escape_free(pa, values):
        return []
    pc = pa.compute
    return [pc.invert(pc.fill_null(pc.match_substring_regex(values, NEEDS_ESCAPE), False))]


def _common(pa: Any, key: Any, etag: Any, size: Any, folder_key: str, name: str | None) -> tuple[Any, list[Any]]:
    """The paths a folder scan of `folder_key` with `name` gives the keys, and the checks every regular row
    passes: a plain path, a non-empty ETag JSON need not escape, a size."""
    pc = pa.compute
    relative = pc.utf8_slice_codeunits(key, len(folder_key))  # code points, as Python slices
    path = pc.binary_join_element_wise(f"{name}/", relative, "") if name else relative
    checks = [*_path_checks(pa, path), pc.greater(pc.binary_length(etag), 0)]
    if size.null_count:
        checks.append(pc.is_valid(size))
    return path, checks + _text_checks(pa, etag)


def _regular(pc: Any, checks: list[Any]) -> Any:
    """Per row, whether it passes every check (a null: it does not)."""
    regular = checks[0]
    for check in checks[1:]:
        regular = pc.and_kleene(regular, check)
    return pc.fill_null(regular, False)


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
    path, checks = _common(pa, key, etag, size, folder_key, name)
    checks += _text_checks(pa, version)
    if modified.null_count < len(modified) and (times := _iso_check(pa, modified)) is not None:
        checks.append(times)
    if CHECKSUM in names and batch.column(CHECKSUM).null_count < len(batch):
        checks.append(pc.fill_null(pc.equal(batch.column(CHECKSUM), ""), True))
    regular = _regular(pc, checks)
    if version.null_count < len(version):
        unversioned = pc.fill_null(pc.is_in(version, pa.array(["", "null"])), True)
        version = pc.if_else(unversioned, pa.scalar(None, pa.string()), version)
    if (pc.max(pc.binary_length(modified)).as_py() or 20) > 20:  # some times have fractions to cut
        modified = pc.binary_join_element_wise(pc.utf8_slice_codeunits(modified, 0, 19), "Z", "")
    extra = [Field("etag", etag), Field("versionID", version), Field("lastModified", modified)]
    return _split(pa, regular, batch, ColumnEntries(ref_head, path, key, size, etag, extra))


#: A whole number as `int()` and `str()` of it write it (no sign, no leading zero) that fits int64.
WHOLE = r"^(?:0|[1-9][0-9]{0,17})$"


def gcs_columns(batch: Any, folder_key: str, name: str | None, ref_head: str) -> tuple[ColumnEntries, Any]:
    """As `s3_columns`, for GCS report rows (`backends.gcs.backend.object_meta`, `GCSBackend.encode`). Regular
    rows: a plain path, a non-empty ETag (the digest) JSON need not escape, a size, a generation written as a
    whole number (`versionID`), MD5 and CRC32C hashes JSON need not escape (an empty one is none) and a
    metageneration that is none or a whole number; every other row is handed back."""
    pa = pyarrow()
    pc = pa.compute
    names = batch.schema.names
    if VERSION not in names:  # no generations: the per-row path (entries have no versionID)
        none = pa.array([], pa.string())
        return ColumnEntries(ref_head, none, none, pa.array([], pa.int64()), none, []), batch
    key, etag, size, generation = batch.column(KEY), batch.column(ETAG), batch.column(SIZE), batch.column(VERSION)
    path, checks = _common(pa, key, etag, size, folder_key, name)
    checks.append(pc.match_substring_regex(generation, WHOLE))
    hashes = []
    for column, label in ((MD5, "md5"), (CRC32C, "crc32c")):
        values = batch.column(column) if column in names else pa.nulls(len(batch), pa.string())
        values = pc.if_else(pc.fill_null(pc.equal(values, ""), False), pa.scalar(None, pa.string()), values)
        checks += _text_checks(pa, values)
        hashes.append(Field(label, values))
    metageneration = batch.column(METAGENERATION) if METAGENERATION in names else pa.nulls(len(batch), pa.string())
    if metageneration.null_count < len(metageneration):
        checks.append(pc.fill_null(pc.match_substring_regex(metageneration, WHOLE), True))
    regular = _regular(pc, checks)

    def whole(values: Any) -> Any:  # only the regular rows are used: the others may be any text
        return pc.if_else(regular, values, pa.scalar(None, pa.string())).cast(pa.int64())

    extra = [Field("versionID", whole(generation), True), *hashes, Field("metageneration", whole(metageneration), True)]
    return _split(pa, regular, batch, ColumnEntries(ref_head, path, key, size, etag, extra))


def _split(pa: Any, regular: Any, batch: Any, found: ColumnEntries) -> tuple[ColumnEntries, Any]:
    """`found` cut to its `regular` rows, and the other rows of `batch`."""
    pc = pa.compute
    if pc.all(regular).as_py():
        return found, batch.slice(0, 0)
    path, key, size, digest = (pc.filter(c, regular) for c in (found.path, found.key, found.size, found.digest))
    extra = [Field(f.name, pc.filter(f.values, regular), f.number) for f in found.extra]
    return ColumnEntries(found.ref_head, path, key, size, digest, extra), batch.filter(pc.invert(regular))
