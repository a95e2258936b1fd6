"""`Artifact`: a named, typed set of manifest entries built from references and local files.

Every add is all-or-nothing: a call that fails (scan error, `TooManyObjects`, a path conflict anywhere in
the batch) leaves the artifact exactly as it was. Local files (`add_file`, `add_dir`, `new_file`) become
entries without a ref; their source paths are kept out of the manifest. `draft()` hands all of it, frozen,
to whoever records the artifact (a `Store` copies the local files' bytes from their sources).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any

from .backends.file import md5_b64_file
from .errors import AccessDenied, BackendError, InvalidName, ManifestError, NotFound, UnsafePath
from .manifest import Manifest, ManifestEntry, manifest_digest
from .naming import PathIndex, clean_path
from .options import Options
from .scan import Scanner, ScanRequest
from .sync import synchronous

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HASH_WORKERS = 8


def validate_name(value: str, what: str = "artifact name") -> str:
    """`value` when it is 1–128 ASCII letters, digits, `-`, `_` or `.`; else raises `InvalidName`."""
    if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
        raise InvalidName(f"invalid {what} {value!r}: use 1-128 ASCII letters, digits, '-', '_' or '.'")
    return value


@dataclass(frozen=True)
class LocalFile:
    """Where the bytes of a local-file entry are (`source`, an absolute path) and the base64 MD5 `digest`
    they had when added; whoever copies them must check the copy against that digest."""

    source: str
    digest: str


@dataclass(frozen=True)
class ArtifactDraft:
    """A frozen snapshot of an `Artifact`, what a store records: later changes to the artifact do not
    reach it. `entries` are in the order they were added; `local_files` maps the path of each entry
    without a ref to its `LocalFile`. `metadata` is a deep copy (read-only at the top level)."""

    name: str
    type: str
    description: str | None
    metadata: Mapping[str, Any]
    entries: tuple[ManifestEntry, ...]
    local_files: Mapping[str, LocalFile] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.entries)

    @property
    def digest(self) -> str:
        """The W&B manifest digest of `entries`."""
        return manifest_digest(self.entries)


class Artifact:
    """A W&B-style artifact under construction: `name`, `type`, optional `description` and `metadata`
    (JSON-serialisable), and its entries. `options` configures the scanners used by `add_reference`."""

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        options: Options | None = None,
    ) -> None:
        self.name = validate_name(name)
        self.type = validate_name(type, "artifact type")
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        json.dumps(self.metadata)  # fail now, not at log time, on values JSON cannot hold
        self.options = options
        self._entries: PathIndex[ManifestEntry] = PathIndex(
            where=f"in artifact {self.name!r}", hint="; pass a different name="
        )
        # entry path → the local file holding its bytes (add_file / add_dir / new_file entries only)
        self._local_files: dict[str, LocalFile] = {}
        self._staging: str | None = None

    def __repr__(self) -> str:
        return f"Artifact({self.name!r}, type={self.type!r}, {len(self._entries)} entries)"

    @property
    def manifest(self) -> Manifest:
        """A snapshot of the entries (changing it does not change the artifact)."""
        return Manifest(self._entries.values())

    @property
    def digest(self) -> str:
        """The W&B manifest digest of the current entries."""
        return manifest_digest(self._entries.values())

    def draft(self) -> ArtifactDraft:
        """A frozen snapshot of the artifact as it is now, for a store to record."""
        return ArtifactDraft(
            name=self.name,
            type=self.type,
            description=self.description,
            metadata=MappingProxyType(copy.deepcopy(self.metadata)),
            entries=tuple(self._entries.values()),
            local_files=MappingProxyType(dict(self._local_files)),
        )

    # -- references -------------------------------------------------------------------------------

    async def aadd_reference(
        self,
        uri: str,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
        inventory: str | None = None,
    ) -> list[ManifestEntry]:
        """Scan `uri` (an object, or every object under a folder) and add its entries, all or none;
        returns the entries scanned. With `inventory` the objects come from that inventory (see `Scanner`),
        which `metadata["inventories"]` then records."""
        async with Scanner(self.options) as scanner:
            entries = await scanner.scan(
                uri, name=name, checksum=checksum, max_objects=max_objects, inventory=inventory
            )
            used = scanner.inventories_used()
        self._merge(entries, {})
        self._note_inventories(used)
        return entries

    add_reference = synchronous(aadd_reference)

    async def aadd_references(
        self, requests: Iterable[ScanRequest | str], *, on_entry: Callable[[ManifestEntry], object] | None = None
    ) -> list[list[ManifestEntry]]:
        """Scan many references concurrently with one `Scanner` and add them all, or none when any scan
        fails or any two entries conflict. Returns the entries of each request, in request order.
        `on_entry` is called with each entry as it is found (progress)."""
        async with Scanner(self.options) as scanner:
            results = await scanner.scan_many(requests, on_entry=on_entry)
            used = scanner.inventories_used()
        self._merge([e for entries in results for e in entries], {})
        self._note_inventories(used)
        return results

    def _note_inventories(self, used: list[dict[str, Any]]) -> None:
        """Record in `metadata["inventories"]` the inventories entries were read from (location, taken when)."""
        if used:
            noted = self.metadata.setdefault("inventories", [])
            noted.extend(u for u in used if u not in noted)

    add_references = synchronous(aadd_references)

    def add_entries(self, entries: Iterable[ManifestEntry]) -> None:
        """Add reference entries scanned earlier (e.g. a loaded `Manifest`), all or none. Entries without
        a ref are refused (`ManifestError`): their bytes are unknown here, add them with `add_file`."""
        entries = list(entries)
        for entry in entries:
            if entry.ref is None:
                raise ManifestError(f"entry {entry.path!r} has no ref: add local files with add_file/add_dir")
            if clean_path(entry.path, source=f"entry {entry.path!r}") != entry.path:
                raise UnsafePath(f"entry path {entry.path!r} is not a clean relative POSIX path")
        self._merge(entries, {})

    # -- local files ------------------------------------------------------------------------------

    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None) -> ManifestEntry:
        """Add one local file at `name`, else at its base name. Raises `NotFound` when it is not a file."""
        source = os.path.abspath(local_path)
        if not os.path.isfile(source):
            raise NotFound(f"{source}: not a regular file")
        path = clean_path(name if name is not None else os.path.basename(source), source=source)
        entry = self._local_entry(path, source)
        self._merge([entry], {path: source})
        return entry

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None) -> list[ManifestEntry]:
        """Add every file under a local folder (recursively; symlinked folders are not followed) at its
        path relative to the folder, under `name/` when given. Raises `NotFound` when it is not a folder."""
        root = os.path.abspath(local_path)
        if not os.path.isdir(root):
            raise NotFound(f"{root}: not a directory")
        prefix = clean_path(name, source=f"name {name!r}") + "/" if name else ""
        sources: dict[str, str] = {}
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for file in files:
                full = os.path.join(folder, file)
                if os.path.isfile(full):
                    rel = os.path.relpath(full, root).replace(os.sep, "/")
                    sources[clean_path(prefix + rel, source=full)] = full
        with ThreadPoolExecutor(_HASH_WORKERS, thread_name_prefix="refscan-hash") as pool:
            entries = list(pool.map(self._local_entry, sources, sources.values()))
        self._merge(entries, sources)
        return sorted(entries, key=lambda e: e.path)

    @contextmanager
    def new_file(self, name: str, mode: str = "w", encoding: str | None = None) -> Iterator[IO[Any]]:
        """Open a new file in the artifact's staging folder; it is added at `name` when the block exits
        without an exception (and discarded otherwise). `mode` must create the file: `w`/`x`, optionally
        with `b` or `+`."""
        path = clean_path(name, source=f"name {name!r}")
        if mode.lstrip("b")[:1] not in ("w", "x"):
            raise ValueError(f"new_file mode must write a new file ('w', 'wb', 'x', ...), got {mode!r}")
        folder = tempfile.mkdtemp(dir=self._staging_dir())
        source = os.path.join(folder, path.rsplit("/", 1)[-1])
        try:
            with open(source, mode, encoding=encoding) as f:
                yield f
            self._merge([self._local_entry(path, source)], {path: source})
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _staging_dir(self) -> str:
        """The artifact's private staging folder, removed when the artifact is garbage-collected."""
        if self._staging is None:
            self._staging = tempfile.mkdtemp(prefix="refscan-artifact-")
            weakref.finalize(self, shutil.rmtree, self._staging, ignore_errors=True)
        return self._staging

    @staticmethod
    def _local_entry(path: str, source: str) -> ManifestEntry:
        try:
            digest, size = md5_b64_file(source)
        except FileNotFoundError:
            raise NotFound(f"{source}: no such file") from None
        except PermissionError:
            raise AccessDenied(f"{source}: permission denied") from None
        except OSError as exc:
            raise BackendError(f"{source}: {exc.strerror or exc}") from None
        return ManifestEntry(path=path, digest=digest, size=size)

    # -- the all-or-nothing commit ----------------------------------------------------------------

    def _merge(self, entries: Iterable[ManifestEntry], sources: Mapping[str, str]) -> None:
        """Add `entries` (and the local `sources` of some of them) or nothing, under the path-clash rule of
        `naming.check_clashes`: an entry equal in digest to one already at its path is a no-op; a different
        digest, or a path that is both a file and a folder (`obj` beside `obj/inner.txt`), raises
        `PathConflict`."""
        added = self._entries.add(entries)
        self._local_files.update((e.path, LocalFile(sources[e.path], e.digest)) for e in added if e.path in sources)
