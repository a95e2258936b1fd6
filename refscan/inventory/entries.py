"""Manifest entries as Arrow columns (`EntryColumns`), so that `verify --inventory` of millions of entries
holds them in a few bytes each and compares them with the inventory column by column.

Only *simple* entries are held as columns: `extra` holds nothing but text values of the keys a folder scan
records (`etag`, `versionID`, `lastModified`); every other entry stays a `ManifestEntry` (`others`).
`from_entries` sorts entry objects that way; `read_columns` reads a manifest file straight into columns in
chunks, never holding the file or an object per entry:

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

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter, eq
from pathlib import Path
from typing import IO, Annotated, Any

from ..errors import ManifestError, MissingDependency
from ..manifest import MAX_SIZE, Manifest, ManifestEntry
from .readers import pyarrow

try:
    import msgspec
except ImportError as exc:
    raise MissingDependency(
        f"verifying against inventories needs msgspec ({exc}): pip install 'refscan[inventory]'"
    ) from exc

#: The `extra` keys of a simple entry (what a folder scan of S3 records), by column name.
EXTRA_COLUMNS = {"etag": "etag", "versionID": "version", "lastModified": "modified"}
FIELDS = ("path", "digest", "ref", "size", "etag", "version", "modified")
#: Bytes of the file read at a time; each chunk is about this long.
BLOCK = 4 << 20
_CONTENTS = re.compile(rb'\n([ \t]+)"contents": \{')


@dataclass
class EntryColumns:
    """Entries of a manifest: the simple ones as a table with columns `FIELDS` and `etag_is_digest` (then
    `etag` is null: the value is the digest's), the others as objects; both in path order."""

    table: Any
    others: list[ManifestEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.table.num_rows) + len(self.others)


def entries_of(table: Any) -> list[ManifestEntry]:
    """The rows of an `EntryColumns` table (or a slice of it) as entry objects."""
    out = []
    columns = (table.column(name).to_pylist() for name in (*FIELDS, "etag_is_digest"))
    for path, digest, ref, size, etag, version, modified, same in zip(*columns, strict=True):
        etag = digest if same else etag
        extra = {k: v for k, v in (("etag", etag), ("versionID", version), ("lastModified", modified)) if v is not None}
        out.append(ManifestEntry(path, digest, ref, size, extra))
    return out


def _table(columns: dict[str, list[Any]]) -> Any:
    """The columns as a table, an etag equal to the digest held once. Built in the system allocator: its
    memory is given back as soon as it is freed, where Arrow's default pool keeps the builders' freed buffers
    and grows by a chunk's worth each time."""
    pa = pyarrow()
    pool = pa.system_memory_pool()
    same = list(map(eq, columns["etag"], columns["digest"]))
    columns["etag"] = [None if s else etag for s, etag in zip(same, columns["etag"], strict=True)]
    arrays = {n: pa.array(columns[n], pa.int64() if n == "size" else pa.string(), memory_pool=pool) for n in FIELDS}
    return pa.table({**arrays, "etag_is_digest": pa.array(same, pa.bool_(), memory_pool=pool)})


def _add(entries: Iterable[ManifestEntry], columns: dict[str, list[Any]], others: list[ManifestEntry]) -> None:
    """Each entry into `columns` when it is simple, else into `others`."""
    for e in entries:
        x = e.extra
        size = e.size
        simple = (
            x.keys() <= EXTRA_COLUMNS.keys()
            and all(v is None or type(v) is str for v in x.values())
            and (size is None or type(size) is int)
            and (e.ref is None or type(e.ref) is str)
        )
        if not simple:
            others.append(e)
            continue
        columns["path"].append(e.path)
        columns["digest"].append(e.digest)
        columns["ref"].append(e.ref)
        columns["size"].append(size)
        for key, name in EXTRA_COLUMNS.items():
            columns[name].append(x.get(key))


def from_entries(entries: Iterable[ManifestEntry]) -> EntryColumns:
    """The entries as columns (the simple ones) and objects (the others)."""
    columns: dict[str, list[Any]] = {name: [] for name in FIELDS}
    others: list[ManifestEntry] = []
    _add(entries, columns, others)
    return EntryColumns(_table(columns), others)


# -- reading a manifest file in chunks --------------------------------------------------------------------------


class _Extra(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    etag: str | None = None
    versionID: str | None = None
    lastModified: str | None = None


class _Entry(msgspec.Struct, gc=False):  # other keys of an entry are ignored, as `from_dict` does
    digest: str
    ref: str | None = None
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_SIZE)] | None = None
    extra: _Extra | None = None


_TYPED = msgspec.json.Decoder(dict[str, _Entry])
_GENERIC = msgspec.json.Decoder()
_NO_EXTRA = _Extra()


def _pieces(f: IO[bytes], first: bytes, indent: bytes) -> Iterator[tuple[bytes, bool]]:
    """The text of `contents` from `first` on, cut just before lines that start an entry (`\n` + `indent` +
    `"`), each piece about `BLOCK` long, with True for the last piece (it runs to the end of the file)."""
    start = b"\n" + indent + b'"'
    buf = first
    while block := f.read(BLOCK):
        buf += block
        cut = buf.rfind(start)
        if cut > 0:
            yield buf[:cut], False
            buf = buf[cut:]
    yield buf, True


def read_columns(path: str | os.PathLike[str]) -> EntryColumns | None:
    """The entries of the manifest file at `path` as columns, or None when the file is not in the layout this
    reader takes (see the module docstring). Raises `ManifestError` for an entry `from_dict` refuses."""
    try:
        with Path(path).open("rb") as f:
            return _read(f)
    except OSError:
        return None


def _read(f: IO[bytes]) -> EntryColumns | None:
    """`read_columns` of the open file `f`."""
    head = f.read(max(BLOCK, 1 << 16))  # the text before `contents`: a few hundred bytes
    found = _CONTENTS.search(head)
    if found is None or not head.startswith(b"{"):
        return None
    opening = head[found.end() :]
    outer = found.group(1)
    if opening.lstrip().startswith(b"}"):  # an empty contents
        return _checked(head[: found.end()], opening + f.read(), [], [])
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
        if not _parse_piece(body, member, tables, others, more=not last):
            return None
    return _checked(head[: found.end()], tail, tables, others) if tail is not None else None


def _split_last(piece: bytes, outer: bytes) -> tuple[bytes, bytes | None]:
    """A piece's entries, and (for the piece that closes `contents`) the text from there on: `contents`
    closes on the first line that is `outer` + `}` (entries' own lines are indented deeper)."""
    close = piece.find(b"\n" + outer + b"}")
    if close < 0:
        return piece, None
    return piece[:close], piece[close:]


def _parse_piece(body: bytes, member: bytes, tables: list[Any], others: list[ManifestEntry], *, more: bool) -> bool:
    """Add the entries of `body` (entries separated by commas, and followed by one when `more` come after) to
    `tables` (one more table) / `others`; False when the text does not parse as exactly as many entries as it
    has entry lines."""
    columns: dict[str, list[Any]] = {name: [] for name in FIELDS}
    body = body.rstrip()
    if more:
        if not body.endswith(b","):
            return False
        body = body[:-1]
    text = b"{" + body + b"}"
    lines = body.count(b"\n" + member + b'"')
    try:
        entries = _TYPED.decode(text)
    except msgspec.ValidationError:
        try:
            values = _GENERIC.decode(text)
        except msgspec.DecodeError:
            return False
        if not isinstance(values, dict) or len(values) != lines:
            return False
        _add((ManifestEntry.from_dict(p, v, copy=False) for p, v in values.items()), columns, others)
        tables.append(_table(columns))
        return True
    except msgspec.DecodeError:
        return False
    if len(entries) != lines:
        return False
    if "" in entries:
        raise ManifestError("manifest path '' is not a non-empty string")
    values = list(entries.values())
    columns["path"].extend(entries)
    for name in ("digest", "ref", "size"):
        columns[name].extend(map(attrgetter(name), values))
    extras = list(map(attrgetter("extra"), values))
    if None in extras:
        extras = [x if x is not None else _NO_EXTRA for x in extras]
    for key, name in EXTRA_COLUMNS.items():
        columns[name].extend(map(attrgetter(key), extras))
    tables.append(_table(columns))
    return True


def _checked(head: bytes, tail: bytes, tables: list[Any], others: list[ManifestEntry]) -> EntryColumns | None:
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
    pa = pyarrow()
    pc = pa.compute
    table = pa.concat_tables([_table({name: [] for name in FIELDS}), *tables])
    if not ascending(pc, table.column("path")):
        table = table.take(pc.sort_indices(table, [("path", "ascending")]))
        if not ascending(pc, table.column("path")):
            return None  # a path given twice: `Manifest.load` names it
    paths = [e.path for e in others]
    if len(set(paths)) < len(paths) or pc.any(pc.is_in(table.column("path"), pa.array(paths, pa.string()))).as_py():
        return None
    return EntryColumns(table, sorted(others, key=lambda e: e.path))


def ascending(pc: Any, values: Any) -> bool:
    """True when every value is greater than the one before it."""
    n = len(values)
    return n < 2 or bool(pc.all(pc.less(values.slice(0, n - 1), values.slice(1))).as_py())
