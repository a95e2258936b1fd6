"""`file://` resolver: local files and folders. Digest = base64 MD5 of the content, hashed off the loop."""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
import stat as stat_mod
from collections.abc import AsyncGenerator, AsyncIterator

import anyio

from ..errors import AccessDenied, BackendError, NotFound
from ..uri import RefURI
from .base import ObjectInfo, Resolver

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


class FileResolver(Resolver):
    schemes = ("file",)

    async def _info(self, path: str) -> ObjectInfo:
        async with self.limiter:
            try:
                digest, size = await anyio.to_thread.run_sync(md5_b64_file, path)
            except OSError as exc:
                raise _oserror(exc, path) from None
        return ObjectInfo(key=path, digest=digest, size=size)

    async def stat(self, uri: RefURI) -> ObjectInfo:
        try:
            st = await anyio.to_thread.run_sync(os.stat, uri.key)
        except OSError as exc:
            raise _oserror(exc, uri.key) from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotFound(f"file://{uri.key}: not a regular file")
        return await self._info(uri.key)

    async def list(self, folder: RefURI, limit: int) -> AsyncGenerator[list[ObjectInfo], None]:
        root = folder.key.rstrip("/") or "/"
        try:
            paths = await anyio.to_thread.run_sync(_walk, root)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _oserror(exc, root) from None
        paths = paths[:limit]
        for start in range(0, len(paths), BATCH):
            yield await self._hash_all(paths[start : start + BATCH])

    async def _hash_all(self, paths: builtins.list[str]) -> builtins.list[ObjectInfo]:
        infos: dict[int, ObjectInfo] = {}

        async def one(i: int) -> None:
            infos[i] = await self._info(paths[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(paths)):
                tg.start_soon(one, i)
        return [infos[i] for i in range(len(paths))]

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        try:
            f = await anyio.open_file(uri.key, "rb")
        except OSError as exc:
            raise _oserror(exc, uri.key) from None
        async with f:
            while chunk := await f.read(CHUNK):
                yield chunk
