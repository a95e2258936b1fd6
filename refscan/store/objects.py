"""Content-addressed copies of local files: `<objects>/<2 hex>/<md5 hex>`, one per content.

Copies are written atomically (temp file, fsync, rename) and checked against the digest recorded when the
file was added to the artifact, so a logged version never depends on its source files again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from ..artifact import LocalFile
from ..errors import SourceChanged, StoreError

_COPY_CHUNK = 1 << 20


def object_path(objects: Path, digest: str) -> Path:
    """Where under the folder `objects` the copy of a file with base64-MD5 `digest` lives."""
    hex_digest = base64.b64decode(digest, validate=True).hex()
    return objects / hex_digest[:2] / hex_digest


def store_copies(objects: Path, local_files: Mapping[str, LocalFile]) -> None:
    """Copy each local file (entry path → `LocalFile`) under `objects`, skipping contents already there.
    Raises `SourceChanged`, leaving no partial copy, when a source cannot be read or no longer has the
    digest recorded when it was added."""
    for path, local in local_files.items():
        target = object_path(objects, local.digest)
        if not target.exists():
            _copy_checked(local, target, path)


def _copy_checked(local: LocalFile, target: Path, path: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as dst:
            with _open_source(local, path) as src:
                while chunk := _read(src, local, path):
                    h.update(chunk)
                    _write(dst, chunk, target)
            try:
                dst.flush()
                os.fsync(dst.fileno())
            except OSError as exc:
                raise _write_error(target, exc) from None
        if base64.b64encode(h.digest()).decode("ascii") != local.digest:
            raise SourceChanged(f"{local.source} (artifact path {path!r}) changed since it was added; add it again")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open_source(local: LocalFile, path: str) -> BinaryIO:
    try:
        return open(local.source, "rb")  # the caller closes it
    except OSError as exc:
        raise SourceChanged(f"{local.source} (artifact path {path!r}) cannot be read: {exc}") from None


def _read(src: BinaryIO, local: LocalFile, path: str) -> bytes:
    try:
        return src.read(_COPY_CHUNK)
    except OSError as exc:
        raise SourceChanged(f"{local.source} (artifact path {path!r}) cannot be read: {exc}") from None


def _write(dst: BinaryIO, chunk: bytes, target: Path) -> None:
    try:
        dst.write(chunk)
    except OSError as exc:
        raise _write_error(target, exc) from None


def _write_error(target: Path, exc: OSError) -> StoreError:
    return StoreError(f"cannot write the store copy {target}: {exc.strerror or exc}; nothing was logged")
