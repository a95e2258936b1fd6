"""Manifest entries as Arrow columns (`EntryColumns`), so that `verify --inventory` of millions of entries
holds them in a few bytes each and compares them with the inventory column by column.

Only *simple* entries are held as columns: `extra` holds nothing but text values of the keys a folder scan
records (`etag`, `versionID`, `lastModified`); every other entry stays a `ManifestEntry` (`others`).
`from_entries` sorts entry objects that way, `from_rows` a store's rows a chunk at a time (each chunk's
extras parsed together), and `read_columns` reads a manifest file straight into columns in chunks, never
holding the file or an object per entry:

- the file must have the layout `json.dumps(..., indent=N)` gives (refscan's and W&B's own): each entry of
  `contents` starts on its own line at one indentation, so the text can be cut at those lines (a newline is
  never inside a JSON string);
- each chunk is parsed by msgspec into typed entries; the lines that start an entry are counted against the
  entries parsed, so a path given twice is never silently merged;
- a chunk whose entries are not all simple is parsed again generically and its entries checked one by one
  by `ManifestEntry.from_dict` (`others`).

Whenever the file is not in that layout, or anything does not parse, `read_columns` returns None and the
caller reads the file with `Manifest.load`, which gives the exact error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import IO, Annotated, Any

from ..arrow import pyarrow
from ..errors import ManifestError, MissingDependency
from ..manifest import MAX_SIZE, Manifest, ManifestEntry

try:
    import msgspec
except ImportError as exc:
    raise MissingDependency(
        f"verifying against inventories needs msgspec ({exc}): pip install 'refscan[inventory]'"
    ) from exc

#: Bounds of the whole numbers a column holds (int64).
INT64 = (-(2**63), 2**63 - 1)


class _S3Extra(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    etag: str | None = None
    versionID: str | None = None
    lastModified: str | None = None


Whole = Annotated[int, msgspec.Meta(ge=INT64[0], le=INT64[1])]


class _GCSExtra(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    versionID: Whole | None = None
    md5: str | None = None
    crc32c: str | None = None
    metageneration: Whole | None = None


class _S3Entry(msgspec.Struct, gc=False):  # other keys of an entry are ignored, as `from_dict` does
    digest: str
    ref: str | None = None
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_SIZE)] | None = None
    extra: _S3Extra | None = None


class _GCSEntry(msgspec.Struct, gc=False):
    digest: str
    ref: str | None = None
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_SIZE)] | None = None
    extra: _GCSExtra | None = None


@dataclass(frozen=True)
class Profile:
    """What a folder scan of one store records in `extra`, in its codec's order: each key with its column and
    whether it is a whole number (else text); entries whose `extra` holds nothing else are *simple*. With the
    msgspec decoders of such entries and extras."""

    extras: tuple[tuple[str, str, bool], ...]
    entries: Any  # decodes `{path: entry, ...}`
    extra_list: Any  # decodes `[extra, ...]`
    no_extra: Any  # an extra with nothing in it

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for _, column, _ in self.extras)

    def fields(self) -> tuple[str, ...]:
        """What is gathered of an entry (`ref` becomes `ref_base` and `ref_tail` in the table)."""
        return ("path", "digest", "ref", "size", *self.columns)


S3 = Profile(
    (("etag", "etag", False), ("versionID", "version", False), ("lastModified", "modified", False)),
    msgspec.json.Decoder(dict[str, _S3Entry]),
    msgspec.json.Decoder(list[_S3Extra]),
    _S3Extra(),
)
GCS = Profile(
    (
        ("versionID", "version", True),
        ("md5", "md5", False),
        ("crc32c", "crc32c", False),
        ("metageneration", "metageneration", True),
    ),
    msgspec.json.Decoder(dict[str, _GCSEntry]),
    msgspec.json.Decoder(list[_GCSExtra]),
    _GCSExtra(),
)
PROFILES = {"s3": S3, "gcs": GCS}
#: Bytes of the file read at a time; each chunk is about this long.
BLOCK = 4 << 20
_CONTENTS = re.compile(rb'\n([ \t]+)"contents": \{')


@dataclass
class EntryColumns:
    """Entries of a manifest in path order: the simple ones as a table, the others as objects.

    The table's columns are `path`, `digest`, `size`, `version`, `modified`, and, to hold each value once:
    `etag` (null when `etag_is_digest`: it is the digest) and the ref as `ref_base` + (`ref_tail` or, when
    that is null, the path) — a folder scan's refs end with their paths, so `ref_base` is the folder's ref,
    dictionary-encoded; a null `ref_base` is no ref."""

    table: Any
    profile: Profile
    others: list[ManifestEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.table.num_rows) + len(self.others)


def ref(base: str | None, tail: str | None, path: str) -> str | None:
    """A ref from its columns."""
    return None if base is None else base + (path if tail is None else tail)


def refs_of(table: Any) -> Any:
    """The refs of the rows of an `EntryColumns` table (or a slice of it), as text."""
    pa = pyarrow()
    pc = pa.compute
    base = table.column("ref_base").cast(pa.string())
    return pc.binary_join_element_wise(base, pc.coalesce(table.column("ref_tail"), table.column("path")), "")


def entries_of(table: Any, profile: Profile) -> list[ManifestEntry]:
    """The rows of an `EntryColumns` table (or a slice of it) of `profile` as entry objects."""
    out = []
    names = ("path", "digest", "ref_base", "ref_tail", "size", *profile.columns)
    same = table.column("etag_is_digest").to_pylist() if "etag_is_digest" in table.column_names else None
    keys = [key for key, _, _ in profile.extras]
    for i, (path, digest, base, tail, size, *values) in enumerate(
        zip(*(table.column(name).to_pylist() for name in names), strict=True)
    ):
        extra = {key: value for key, value in zip(keys, values, strict=True) if value is not None}
        if same is not None and same[i]:
            extra = {"etag": digest, **extra}
        out.append(ManifestEntry(path, digest, ref(base, tail, path), size, extra))
    return out


def _gathered(profile: Profile) -> dict[str, list[Any]]:
    """Empty lists to gather the profile's fields in."""
    return {name: [] for name in profile.fields()}


def _table(columns: dict[str, list[Any]], profile: Profile) -> Any:
    """The gathered fields as an `EntryColumns` table. Built in the system allocator: its memory is given
    back as soon as it is freed, where Arrow's default pool keeps the builders' freed buffers and grows by a
    chunk's worth each time."""
    pa = pyarrow()
    pc = pa.compute
    pool = pa.system_memory_pool()

    def array(values: list[Any], number: bool = False) -> Any:
        return pa.array(values, pa.int64() if number else pa.string(), memory_pool=pool)

    digest = array(columns["digest"])
    extras = {column: array(columns[column], number) for _, column, number in profile.extras}
    same = None
    if "etag" in extras:  # an etag equal to the digest (the usual) is held once
        same = pc.fill_null(pc.equal(extras["etag"], digest), False)
        if pc.all(same).as_py():
            extras["etag"] = pa.nulls(len(same), pa.string())
        else:
            extras["etag"] = array([None if s else e for s, e in zip(same.to_pylist(), columns["etag"], strict=True)])
    path = array(columns["path"])
    base, tail = _split_refs(pa, columns["path"], columns["ref"], array(columns["ref"]), path)
    table = {"path": path, "digest": digest, "ref_base": base, "ref_tail": tail}
    table |= {"size": array(columns["size"], True), **extras}
    if same is not None:
        table["etag_is_digest"] = same
    return pa.table(table)


def _split_refs(pa: Any, paths: list[str], refs: list[str | None], ref: Any, path: Any) -> tuple[Any, Any]:
    """The `ref_base` and `ref_tail` columns of refs `refs` (also as the array `ref`) of entries at `paths`
    (`path`): at once when every ref is the first one's folder followed by its path, else one by one."""
    pc = pa.compute
    n = len(refs)
    first, at = (refs[0], paths[0]) if n else (None, "")
    if first is not None and first.endswith(at):
        folder = first[: len(first) - len(at)]
        if pc.all(pc.fill_null(pc.equal(ref, pc.binary_join_element_wise(folder, path, "")), False)).as_py():
            zeros = pc.fill_null(pa.nulls(n, pa.int32()), 0)
            return pa.DictionaryArray.from_arrays(zeros, pa.array([folder])), pa.nulls(n, pa.string())
    bases: list[str | None] = []
    tails: list[str | None] = []
    for entry_path, full in zip(paths, refs, strict=True):
        if full is None:
            bases.append(None)
            tails.append(None)
        elif full.endswith(entry_path):
            bases.append(full[: len(full) - len(entry_path)])
            tails.append(None)
        else:
            bases.append("")
            tails.append(full)
    return pa.array(bases, pa.string()).dictionary_encode(), pa.array(tails, pa.string())


def _fits(value: Any, number: bool) -> bool:
    """Whether `value` is None or what a column of text (`number` False) or whole numbers holds."""
    if value is None:
        return True
    if number:
        return type(value) is int and INT64[0] <= value <= INT64[1]
    return type(value) is str


def _add(
    entries: Iterable[ManifestEntry], columns: dict[str, list[Any]], others: list[ManifestEntry], profile: Profile
) -> None:
    """Each entry into `columns` when it is simple, else into `others`."""
    kinds = {key: number for key, _, number in profile.extras}
    for e in entries:
        x = e.extra
        simple = (
            x.keys() <= kinds.keys()
            and all(_fits(v, kinds[k]) for k, v in x.items())
            and _fits(e.size, True)
            and (e.ref is None or type(e.ref) is str)
        )
        if not simple:
            others.append(e)
            continue
        columns["path"].append(e.path)
        columns["digest"].append(e.digest)
        columns["ref"].append(e.ref)
        columns["size"].append(e.size)
        for key, column, _ in profile.extras:
            columns[column].append(x.get(key))


def _extra_columns(extras: list[Any], profile: Profile) -> dict[str, list[Any]]:
    """The typed extras (msgspec structs of `profile`) as the profile's columns."""
    return {column: list(map(attrgetter(key), extras)) for key, column, _ in profile.extras}


def from_rows(chunks: Iterable[list[tuple[str, str, str | None, int | None, str]]], profile: Profile) -> EntryColumns:
    """Entries kept as rows `(path, digest, ref, size, extra JSON)` (a store's), in path order and a chunk at
    a time, as columns: each chunk's extras parsed together, typed; a chunk with an entry that is not simple
    is read entry by entry."""
    tables: list[Any] = []
    others: list[ManifestEntry] = []
    for rows in chunks:
        paths, digests, refs, sizes, extras = (list(c) for c in zip(*rows, strict=True)) if rows else ([],) * 5
        try:
            typed = profile.extra_list.decode(("[" + ",".join(extras) + "]").encode())
        except msgspec.ValidationError:
            columns: dict[str, list[Any]] = _gathered(profile)
            entries = (ManifestEntry(p, d, r, s, json.loads(x)) for p, d, r, s, x in rows)
            _add(entries, columns, others, profile)
            tables.append(_table(columns, profile))
            continue
        columns = {"path": paths, "digest": digests, "ref": refs, "size": sizes}
        tables.append(_table(columns | _extra_columns(typed, profile), profile))
    found = _columns(tables, others, profile)
    if found is None:
        raise ManifestError("the store holds a path twice in one version")
    return found


def from_entries(entries: Iterable[ManifestEntry], profile: Profile) -> EntryColumns:
    """The entries as columns (the simple ones) and objects (the others)."""
    columns: dict[str, list[Any]] = _gathered(profile)
    others: list[ManifestEntry] = []
    _add(entries, columns, others, profile)
    return EntryColumns(_table(columns, profile), profile, others)


# -- reading a manifest file in chunks --------------------------------------------------------------------------


_GENERIC = msgspec.json.Decoder()


def _pieces(f: IO[bytes], first: bytes, indent: bytes) -> Iterator[tuple[bytearray, bool]]:
    """The text of `contents` from `first` on, cut just before lines that start an entry (`\n` + `indent` +
    `"`), each piece about `BLOCK` long and preceded by a `{` (so that it parses in place), with True for the
    last piece (it runs to the end of the file)."""
    start = b"\n" + indent + b'"'
    buf = bytearray(b"{") + first
    while block := f.read(BLOCK):
        buf += block
        cut = buf.rfind(start)
        if cut > 1:
            rest = buf[cut:]
            del buf[cut:]
            yield buf, False
            buf = bytearray(b"{") + rest
    yield buf, True


def read_columns(path: str | os.PathLike[str], profile: Profile) -> EntryColumns | None:
    """The entries of the manifest file at `path` as columns of `profile`, or None when the file is not in
    the layout this reader takes or is not a valid manifest (see the module docstring)."""
    try:
        with Path(path).open("rb") as f:
            return _read(f, profile)
    except (OSError, ManifestError):  # `Manifest.load` gives the error it finds first
        return None


def _read(f: IO[bytes], profile: Profile) -> EntryColumns | None:
    """`read_columns` of the open file `f`."""
    head = f.read(max(BLOCK, 1 << 16))  # the text before `contents`: a few hundred bytes
    found = _CONTENTS.search(head)
    if found is None or not head.startswith(b"{"):
        return None
    opening = head[found.end() :]
    outer = found.group(1)
    if opening.lstrip().startswith(b"}"):  # an empty contents
        return _checked(head[: found.end()], opening + f.read(), [], [], profile)
    indent = re.match(rb"\n([ \t]*)", opening)
    if indent is None:
        return None
    member = indent.group(1)
    if len(member) != 2 * len(outer):  # not json.dumps(indent=N)'s layout
        return None
    tables: list[Any] = []
    others: list[ManifestEntry] = []
    for piece, last in _pieces(f, opening, member):
        # `contents` closes in the last piece (when a later piece holds the closing line, the entries
        # parsed with it do not parse and the file is left to `Manifest.load`)
        body, tail = _split_last(piece, outer) if last else (piece, None)
        if not _parse_piece(body, member, tables, others, profile, more=not last):
            return None
    return _checked(head[: found.end()], tail, tables, others, profile) if tail is not None else None


def _split_last(piece: bytearray, outer: bytes) -> tuple[bytearray, bytes | None]:
    """A piece's entries, and (for the piece that closes `contents`) the text from there on: `contents`
    closes on the first line that is `outer` + `}` (entries' own lines are indented deeper)."""
    close = piece.find(b"\n" + outer + b"}")
    if close < 0:
        return piece, None
    tail = bytes(piece[close:])
    del piece[close:]
    return piece, tail


def _parse_piece(
    piece: bytearray, member: bytes, tables: list[Any], others: list[ManifestEntry], profile: Profile, *, more: bool
) -> bool:
    """Add the entries of `piece` (`{` then entries separated by commas, and followed by one when `more` come
    after) to `tables` (one more table) / `others`; False when the text does not parse as exactly as many
    entries as it has entry lines. The piece is made the JSON object of its entries in place."""
    end = len(piece)
    while end and piece[end - 1] in b" \t\r\n":  # JSON's whitespace after the last entry
        end -= 1
    if more:
        if piece[end - 1 : end] != b",":
            return False
        piece[end - 1] = ord("}")  # the comma before the next piece closes this one
        text = memoryview(piece)[:end]
    else:
        del piece[end:]
        piece += b"}"
        text = memoryview(piece)
    lines = piece.count(b"\n" + member + b'"', 0, end)
    try:
        entries = profile.entries.decode(text)
    except msgspec.ValidationError:
        try:
            values = _GENERIC.decode(text)
        except msgspec.DecodeError:
            return False
        if not isinstance(values, dict) or len(values) != lines:
            return False
        columns: dict[str, list[Any]] = _gathered(profile)
        _add((ManifestEntry.from_dict(p, v, copy=False) for p, v in values.items()), columns, others, profile)
        tables.append(_table(columns, profile))
        return True
    except msgspec.DecodeError:
        return False
    if len(entries) != lines:
        return False
    if "" in entries:
        raise ManifestError("manifest path '' is not a non-empty string")
    values = list(entries.values())
    columns = {"path": list(entries)} | {
        name: list(map(attrgetter(name), values)) for name in ("digest", "ref", "size")
    }
    extras = list(map(attrgetter("extra"), values))
    if None in extras:
        extras = [x if x is not None else profile.no_extra for x in extras]
    tables.append(_table(columns | _extra_columns(extras, profile), profile))
    return True


def _checked(
    head: bytes, tail: bytes, tables: list[Any], others: list[ManifestEntry], profile: Profile
) -> EntryColumns | None:
    """The entries found, when the text around `contents` (`head` up to its `{`, `tail` from its `}`) makes a
    valid manifest with those contents and no path is given twice."""
    from ..manifest import _parse

    try:
        doc = _parse((head + tail.lstrip()).decode("utf-8"), "manifest")
    except (ManifestError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("contents") != {}:
        return None
    Manifest.from_dict(doc)  # the version and the shape of the document
    return _columns(tables, others, profile)


def _columns(tables: list[Any], others: list[ManifestEntry], profile: Profile) -> EntryColumns | None:
    """The tables and entries as `EntryColumns` (in path order); None when a path is given twice."""
    pa = pyarrow()
    pc = pa.compute
    table = pa.concat_tables([_table(_gathered(profile), profile), *tables])
    if not ascending(pc, table.column("path")):
        table = table.take(pc.sort_indices(table, [("path", "ascending")]))
        if not ascending(pc, table.column("path")):
            return None  # a path given twice: `Manifest.load` names it
    paths = [e.path for e in others]
    if len(set(paths)) < len(paths) or pc.any(pc.is_in(table.column("path"), pa.array(paths, pa.string()))).as_py():
        return None
    return EntryColumns(table, profile, sorted(others, key=lambda e: e.path))


def ascending(pc: Any, values: Any) -> bool:
    """True when every value is greater than the one before it."""
    n = len(values)
    return n < 2 or bool(pc.all(pc.less(values.slice(0, n - 1), values.slice(1))).as_py())
