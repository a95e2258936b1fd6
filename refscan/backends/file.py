"""`file://` backend: local files and folders. Digest = base64 MD5 of the content, hashed off the loop.

URIs follow RFC 8089 (`file:///abs/path`, percent-decoded; `file://localhost/...` too); a plain path is made
absolute and normalised, a trailing separator (folder) kept.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat as stat_mod
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import anyio

from ..concurrency import gather_map
from ..errors import AccessDenied, BackendError, InvalidURI, NotFound
from ..fingerprint import MD5
from ..meta import ObjectMeta
from ..uri import RefURI, shown
from .base import Backend

CHUNK = 1 << 20
BATCH = 256


def md5_b64_file(path: str) -> tuple[str, int]:
    """Base64 MD5 and size of the file at `path` (blocking)."""
    h = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return base64.b64encode(h.digest()).decode("ascii"), size


def _oserror(exc: OSError, path: str) -> Exception:
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return NotFound(f"file://{path}: no such file")
    if isinstance(exc, PermissionError):
        return AccessDenied(f"file://{path}: permission denied")
    return BackendError(f"file://{path}: {exc.strerror or exc}")


def _walk(folder: str) -> list[str]:
    """Regular files under `folder`, recursively, in sorted path order; symlinked folders are not followed."""
    out: list[str] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        with os.scandir(current) as it:
            entries = sorted(it, key=lambda e: e.name, reverse=True)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file():
                out.append(entry.path)
    return sorted(out)


def _normalize_local(path: str) -> str:
    """Absolute, normalized local path; a trailing separator (folder) is kept."""
    folder = path.endswith(("/", os.sep)) and len(path) > 1
    absolute = os.path.abspath(path)
    return absolute + "/" if folder and absolute != "/" else absolute


class FileBackend(Backend):
    schemes = ("file",)

    @classmethod
    def parse_uri(cls, scheme: str, text: str) -> RefURI:
        if text[:5].lower() != "file:":  # a plain local path
            return RefURI(scheme, "", _normalize_local(text))
        try:
            parts = urlsplit(text)
        except ValueError as exc:  # e.g. an unbalanced '[' in the host part
            detail = f": {exc}" if "@" not in text else ""
            raise InvalidURI(f"malformed file URI {shown(text)}{detail}") from None
        if parts.netloc not in ("", "localhost"):
            raise InvalidURI(f"file URI {shown(text)} names a host: only local files are supported (file:///abs/path)")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidURI(f"file URI {shown(text)} must hold an absolute path (file:///abs/path)")
        if "\x00" in path:
            raise InvalidURI("file URI decodes to a path with a NUL byte")
        return RefURI(scheme, "", _normalize_local(path))

    @classmethod
    def object_ref(cls, uri: RefURI) -> str:
        return "file://" + quote(uri.key, safe="/")

    @classmethod
    def format_uri(cls, uri: RefURI) -> str:
        return cls.object_ref(uri)

    @classmethod
    def encode(cls, meta: ObjectMeta) -> tuple[str, dict[str, Any]]:
        return meta.hashes[MD5], {}

    @classmethod
    def decode(cls, key: str, digest: str, size: int | None, extra: Mapping[str, Any]) -> ObjectMeta:
        return ObjectMeta(key=key, size=size, hashes={MD5: digest})

    async def _info(self, path: str) -> ObjectMeta:
        async with self.limiter:
            try:
                digest, size = await anyio.to_thread.run_sync(md5_b64_file, path)
            except OSError as exc:
                raise _oserror(exc, path) from None
        return ObjectMeta(key=path, size=size, hashes={MD5: digest})

    async def stat(self, uri: RefURI) -> ObjectMeta:
        try:
            st = await anyio.to_thread.run_sync(os.stat, uri.key)
        except OSError as exc:
            raise _oserror(exc, uri.key) from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotFound(f"file://{uri.key}: not a regular file")
        return await self._info(uri.key)

    async def list(self, folder: RefURI, limit: int) -> AsyncGenerator[list[ObjectMeta], None]:
        root = folder.key.rstrip("/") or "/"
        try:
            paths = await anyio.to_thread.run_sync(_walk, root)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _oserror(exc, root) from None
        paths = paths[:limit]
        for start in range(0, len(paths), BATCH):
            yield await gather_map(self._info, paths[start : start + BATCH])

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        try:
            f = await anyio.open_file(uri.key, "rb")
        except OSError as exc:
            raise _oserror(exc, uri.key) from None
        async with f:
            while chunk := await f.read(CHUNK):
                yield chunk
