"""Download: fetch every entry at its pinned version into a folder, checked and atomic (docs/behaviour.md,
Download).

All paths are validated for the whole manifest before anything is written: nothing may land outside
`root` (`UnsafePath`) and no file may sit where another entry needs a folder (`PathConflict`). Files already
present with the recorded content are kept, so an interrupted download resumes.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .backends import Backend
from .backends.base import read_checked
from .errors import ChecksumMismatch, DownloadError, NotFound, RefscanError, UnsafePath
from .fingerprint import ContentHasher, DeepCheck, Fingerprint, Match
from .manifest import ManifestEntry, ManifestSource, as_manifest
from .naming import PathIndex, check_clashes
from .options import Options
from .references import Recorded, part_size, recorded
from .session import Session
from .sync import synchronous

if TYPE_CHECKING:
    from .store import Store

_DRIVE = re.compile(r"^[A-Za-z]:")
CHUNK = 1 << 20


def safe_target(root: Path, path: str) -> Path:
    """`root/path`, or `UnsafePath` when `path` is absolute, has a drive, NUL, backslash, `.`/`..` or empty
    segments."""
    if not path or "\x00" in path or "\\" in path or path.startswith("/") or _DRIVE.match(path):
        raise UnsafePath(f"refusing to write {path!r}: not a plain relative path")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"refusing to write {path!r}: it has an empty, '.' or '..' segment")
    return root.joinpath(*parts)


def plan(entries: list[ManifestEntry], root: Path) -> list[tuple[ManifestEntry, Path]]:
    """Targets under the absolute folder `root` for all entries; raises before any write when one is unsafe
    or two clash."""
    targets = [(e, safe_target(root, e.path)) for e in entries]
    check_clashes(entries, PathIndex(), where="in the manifest")
    for _, target in targets:
        _refuse_symlinks(root, target)
    return targets


def _refuse_symlinks(root: Path, target: Path) -> None:
    """Refuse a target when a symlink stands anywhere between `root` and it (it could point outside)."""
    current = root
    for part in target.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePath(f"refusing to write through the symlink {current}")


def _make_parent(root: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _refuse_symlinks(root, target)  # again: a symlink may have been swapped in since planning


def _holds(path: Path, expected: Fingerprint, part_size: int | None) -> bool:
    """True when the file at `path` already holds the recorded content (blocking)."""
    hasher = ContentHasher(expected, part_size=part_size)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
    except OSError:
        return False
    return hasher.check().match is Match.SAME


def _source(entry: ManifestEntry, store: Store | None, options: Options) -> Recorded:
    """Where to fetch `entry` from: its ref, or a stored local file's copy in `store`."""
    if entry.ref is not None:
        return recorded(entry, options)
    if store is None:
        raise NotFound(f"{entry.path}: a stored file (no ref); download it from its store (NAME:VERSION)")
    copy = ManifestEntry(entry.path, entry.digest, store.object_path(entry.digest).as_uri(), entry.size)
    return recorded(copy)


async def _fetch(backend: Backend, source: Recorded, entry: ManifestEntry, root: Path, target: Path) -> None:
    parts = await part_size(backend, source)
    if await anyio.to_thread.run_sync(_holds, target, source.fingerprint, parts):
        return
    await anyio.to_thread.run_sync(_make_parent, root, target)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")

    async def write_part(chunks: AsyncIterator[bytes]) -> DeepCheck:
        hasher = ContentHasher(source.fingerprint, part_size=parts)
        async with await anyio.open_file(tmp, "wb") as f:
            async for chunk in chunks:
                hasher.update(chunk)
                await f.write(chunk)
        return hasher.check()

    try:
        check = await read_checked(backend, source.uri, write_part, size_vouched=source.uri.version is not None)
        if check.match is Match.DIFFERENT:
            raise ChecksumMismatch(f"{entry.path}: {check.detail}; not written")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


async def adownload(
    source: ManifestSource,
    root: str | os.PathLike[str],
    *,
    options: Options | None = None,
    store: Store | None = None,
) -> list[Path]:
    """Download every entry of `source` to `root/<path>`; returns the written paths in path order.

    Entries without a ref are local files kept in `store` (required for those).

    Raises `UnsafePath` / `PathConflict` before writing anything, and `DownloadError` listing every entry
    that failed (others are still written) after the rest finished.
    """
    entries = list(as_manifest(source))
    base = Path(await anyio.Path(root).absolute())
    targets = await anyio.to_thread.run_sync(plan, entries, base)
    failures: dict[str, RefscanError] = {}
    async with Session(options) as session:
        files = anyio.CapacityLimiter(session.options.concurrency)  # apart from the per-request limiter

        async def one(entry: ManifestEntry, target: Path) -> None:
            try:
                source = _source(entry, store, session.options)
                backend = await session.backend(source.uri.scheme)
                async with files:
                    await _fetch(backend, source, entry, base, target)
            except RefscanError as exc:
                failures[entry.path] = exc
            except OSError as exc:
                failures[entry.path] = RefscanError(f"cannot write {target}: {exc.strerror or exc}")

        async with anyio.create_task_group() as tg:
            for entry, target in targets:
                tg.start_soon(one, entry, target)
    if failures:
        first = "; ".join(f"{p}: {e}" for p, e in sorted(failures.items())[:3])
        raise DownloadError(f"{len(failures)} of {len(entries)} entries failed: {first}", failures)
    return [t for _, t in targets]


download = synchronous(adownload)
