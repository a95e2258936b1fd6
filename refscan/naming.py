"""Entry paths: the name of each object inside the artifact (SPEC §4 naming table).

Paths are POSIX, relative, without empty, `.` or `..` segments. Pure functions, no I/O.
"""

from __future__ import annotations

from urllib.parse import unquote

from .errors import InvalidURI, UnsafePath
from .uri import RefURI


def clean_path(path: str, *, source: str) -> str:
    """`path` with empty segments dropped; raises `UnsafePath` for `.`/`..` segments, NUL or empty result."""
    if "\x00" in path:
        raise UnsafePath(f"{source}: path {path!r} contains a NUL byte")
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise UnsafePath(f"{source}: path {path!r} has a '.' or '..' segment; pass name= to rename it")
    if not parts:
        raise UnsafePath(f"{source}: cannot derive a file name; pass name=")
    return "/".join(parts)


def parent_folders(path: str) -> list[str]:
    """The folders that contain `path`: `a/b/c` → `a`, `a/b` (a file there would clash with the entry)."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def last_segment(uri: RefURI) -> str:
    """The last path component of `uri`: URL segments percent-decoded, the bucket for a bucket root."""
    if uri.is_http:
        segment = uri.key.rsplit("/", 1)[-1]
        return unquote(segment)
    stripped = uri.key.rstrip("/")
    if not stripped:
        return uri.bucket
    return stripped.rsplit("/", 1)[-1]


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
    return clean_path(path, source=f"{folder.object_ref()}{relative}")
