"""Entry paths: the name of each object inside the artifact (docs/behaviour.md, Entries: paths).

Paths are POSIX, relative, without empty, `.` or `..` segments. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, ValuesView
from typing import Generic, Protocol, TypeVar

from .errors import InvalidURI, PathConflict, UnsafePath
from .uri import RefURI


def _plain(path: str) -> bool:
    """True when `path` is already clean: non-empty segments, none starting with `.`, no NUL or backslash
    (the common case, decided without splitting)."""
    return (
        path != ""
        and path[0] not in "/."
        and path[-1] != "/"
        and "//" not in path
        and "/." not in path
        and "\\" not in path
        and "\x00" not in path
    )


#: The paths `_plain` refuses, as one regular expression (RE2 and Python syntax), for checking whole columns.
NOT_PLAIN = r"^$|^[/.]|/$|//|/\.|\\|\x00"


def clean_path(path: str, *, source: str) -> str:
    """`path` with empty segments dropped; raises `UnsafePath` for `.`/`..` segments, NUL or empty result."""
    if _plain(path):
        return path
    if "\x00" in path:
        raise UnsafePath(f"{source}: path {path!r} contains a NUL byte")
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise UnsafePath(f"{source}: path {path!r} has a '.' or '..' segment; pass name= to rename it")
    if not parts:
        raise UnsafePath(f"{source}: cannot derive a file name; pass name=")
    return "/".join(parts)


def parent_folders(path: str) -> list[str]:
    """The folders that contain `path`: `a/b/c` → `a`, `a/b` (a file at one of them would clash with it)."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


# -- the path-clash rule --------------------------------------------------------------------------------
#
# Within one artifact (or manifest, or pending group) a path holds at most one file:
# - the same path again with the same digest is a no-op, with another digest a `PathConflict`;
# - a path cannot be both a file and a folder: no download could hold `obj` beside `obj/inner.txt`.
# (docs/behaviour.md, "Artifacts and the store".)


class PathEntry(Protocol):
    """Anything with a `path` and a `digest`, such as a `ManifestEntry`."""

    @property
    def path(self) -> str: ...

    @property
    def digest(self) -> str: ...


class TakenPaths(Protocol):
    """The paths already taken, as `check_clashes` needs to see them (in memory, or rows in a database)."""

    def digest_at(self, path: str) -> str | None:
        """The digest of the file at `path`; None when no file is there."""
        ...

    def is_folder(self, path: str) -> bool:
        """True when some file lies under `path/`."""
        ...


E = TypeVar("E", bound=PathEntry)


def check_same_path(path: str, prior: str, digest: str, *, where: str, hint: str = "") -> None:
    """The same-path half of the rule: raises `PathConflict` when `digest` differs from the `prior` digest
    at `path`, worded `path P is already <where> with digest D (new digest N)<hint>`."""
    if prior != digest:
        raise PathConflict(f"path {path!r} is already {where} with digest {prior!r} (new digest {digest!r}){hint}")


def check_clashes(entries: Iterable[E], taken: TakenPaths, *, where: str, hint: str = "") -> dict[str, E]:
    """The entries of `entries` whose paths are new (first of each path, in order), after checking the whole
    batch against `taken` and against itself; raises `PathConflict` on the first clash, in this order:

    1. a path already taken, or earlier in the batch, with another digest (`check_same_path`'s message);
    2. a new path inside a folder that is a file: `path F would be both a file and a folder (holding P)`;
    3. a new path that is a folder of a file: `path P would be both a file and a folder`.

    Pure: nothing is recorded, so a caller that adds the result gets all of the batch or none of it."""
    new: dict[str, E] = {}
    for entry in entries:
        earlier = new.get(entry.path)
        prior = earlier.digest if earlier is not None else taken.digest_at(entry.path)
        if prior is None:
            new[entry.path] = entry
        else:
            check_same_path(entry.path, prior, entry.digest, where=where, hint=hint)
    new_folders: set[str] = set()
    for path in new:
        for folder in parent_folders(path):
            if folder in new or taken.digest_at(folder) is not None:
                raise PathConflict(f"path {folder!r} would be both a file and a folder (holding {path!r})")
            new_folders.add(folder)
    for path in new:
        if path in new_folders or taken.is_folder(path):
            raise PathConflict(f"path {path!r} would be both a file and a folder")
    return new


class PathIndex(Generic[E]):
    """Entries by path, plus the folders that hold them: the in-memory `TakenPaths`. `add` keeps the rule
    above, all or nothing; `where`/`hint` word its same-path message (e.g. `in artifact 'x'`)."""

    def __init__(self, entries: Iterable[E] = (), *, where: str = "taken", hint: str = "") -> None:
        self.where = where
        self.hint = hint
        self._entries: dict[str, E] = {}
        self._folders: set[str] = set()
        self.add(entries)

    def add(self, entries: Iterable[E]) -> list[E]:
        """Add `entries`, or nothing when any clashes (`PathConflict`); returns those at new paths. An
        entry whose path already holds the same digest is skipped (the first one stays)."""
        new = check_clashes(entries, self, where=self.where, hint=self.hint)
        self._entries.update(new)
        self._folders.update(folder for path in new for folder in parent_folders(path))
        return list(new.values())

    def digest_at(self, path: str) -> str | None:
        entry = self._entries.get(path)
        return entry.digest if entry is not None else None

    def is_folder(self, path: str) -> bool:
        return path in self._folders

    def get(self, path: str) -> E | None:
        return self._entries.get(path)

    def values(self) -> ValuesView[E]:
        """The entries in the order they were added (a live view)."""
        return self._entries.values()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries


def last_segment(uri: RefURI) -> str:
    """The last path component of `uri`, as its backend reads it (the bucket for a bucket root)."""
    return uri.backend.file_name(uri)


def object_path(uri: RefURI, name: str | None) -> str:
    """Path of the single object `uri` names: `name`, else its last path component."""
    if name is not None:
        return clean_path(name, source=f"name {name!r}")
    segment = last_segment(uri)
    if not segment:
        raise InvalidURI(f"{uri} has no file name (it ends in '/'): pass name=")
    return clean_path(segment, source=str(uri))


def folder_entry_path(folder: RefURI, key: str, name: str | None) -> str:
    """Path of object `key` found under `folder`: relative to the folder, under `name/` when given."""
    relative = key[len(folder.key) :]
    path = f"{name}/{relative}" if name else relative
    if _plain(path):  # per listed object: skip building the error's source text
        return path
    return clean_path(path, source=f"{folder.object_ref()}{relative}")
