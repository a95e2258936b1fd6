"""Getting an inventory's files: the manifest and its data files, from a store (through the session's backend,
with the same credentials and endpoint as any scan) or from a local copy, each data file checked against the
size and MD5 the manifest lists before any of its rows is used.

A local copy keeps the key layout of the destination bucket from some folder down: a data file's key is
looked for under each folder above the manifest (nearest first), as the longest tail of the key that exists
there, keeping at least its last two components (so a copy of the whole bucket, of the inventory prefix, or
of one config folder all work).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import anyio

from ..errors import InvalidInventory, NotFound
from ..session import Session
from ..uri import RefURI
from .manifest import DataFile, InventoryManifest, parse_manifest

CHUNK = 1 << 20


async def read_bytes(session: Session, uri: RefURI) -> bytes:
    """The whole object at `uri` (a small file: a manifest or its checksum)."""
    backend = await session.backend(uri.scheme)
    return b"".join([chunk async for chunk in backend.read(uri)])


async def load_manifest(session: Session, location: str) -> tuple[InventoryManifest, RefURI]:
    """The manifest at `location` (a URI or a local path) and where it is. An S3 `manifest.checksum` beside a
    `manifest.json` is checked when there is one."""
    uri = RefURI.parse(location)
    remote = uri.scheme != "file"
    try:
        if remote:
            data = await read_bytes(session, uri)
        else:
            data = await anyio.Path(uri.key).read_bytes()
    except (NotFound, FileNotFoundError):
        raise InvalidInventory(f"{location}: no inventory manifest there") from None
    manifest = parse_manifest(data, location, uri if remote else None)
    if manifest.kind == "s3" and uri.key.endswith("manifest.json"):
        await _check_manifest_checksum(session, uri, data, location)
    return manifest, uri


async def _check_manifest_checksum(session: Session, uri: RefURI, data: bytes, location: str) -> None:
    checksum_key = uri.key[: -len("manifest.json")] + "manifest.checksum"
    try:
        if uri.scheme != "file":
            expected = await read_bytes(session, uri.child(checksum_key))
        else:
            expected = await anyio.Path(checksum_key).read_bytes()
    except (NotFound, FileNotFoundError):
        return  # optional: the data files' own checksums are what guard the rows
    if expected.strip().decode("ascii", "replace").lower() != hashlib.md5(data).hexdigest():
        raise InvalidInventory(f"{location}: manifest.json does not match its manifest.checksum")


def _md5_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.md5(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _check(file: DataFile, md5: str, size: int, where: str) -> None:
    if file.size is not None and size != file.size:
        raise InvalidInventory(f"{where}: data file is {size} bytes, the manifest says {file.size}: not using it")
    if file.md5 is not None and md5 != file.md5:
        raise InvalidInventory(f"{where}: data file fails its MD5 check (manifest {file.md5}, file {md5})")


def find_local(manifest_path: Path, name: str) -> Path | None:
    """Where the data file `name` (a key in the destination bucket, or a shard name) lies in a local copy
    (see the module docstring); None when it is not there."""
    parts = [p for p in name.split("/") if p]
    here = manifest_path.parent.resolve()
    for folder in (here, *here.parents):
        for start in range(len(parts) - min(2, len(parts)) + 1):  # at least `data/<file>` of an S3 key
            candidate = folder.joinpath(*parts[start:])
            if candidate.is_file():
                return candidate
    return None


class DataFiles:
    """The data files of one inventory as checked local files; downloads live in a temporary folder removed
    by `close()`."""

    def __init__(self, session: Session, manifest: InventoryManifest, where: RefURI) -> None:
        self.session = session
        self.manifest = manifest
        self.where = where
        self._checked: dict[str, Path] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def require_all(self) -> None:
        """Fail now when any data file is missing, before a single row is read."""
        for file in self.manifest.files:
            if file.uri is None:
                self._local_path(file)
            else:
                uri = RefURI.parse(file.uri)
                try:
                    await (await self.session.backend(uri.scheme)).stat(uri)
                except NotFound:
                    raise InvalidInventory(f"{file.uri}: a data file of the inventory is missing") from None

    def _local_path(self, file: DataFile) -> Path:
        found = find_local(Path(self.where.key), file.name)
        if found is None:
            raise InvalidInventory(f"{file.name}: a data file of the inventory {self.where.key} is missing")
        return found

    async def path(self, file: DataFile) -> Path:
        """`file` as a local file whose size and MD5 match the manifest; raises `InvalidInventory`."""
        done = self._checked.get(file.name)
        if done is not None:
            return done
        if file.uri is None:
            path = self._local_path(file)
            md5, size = await anyio.to_thread.run_sync(_md5_file, path)
            _check(file, md5, size, str(path))
        else:
            path = await self._download(file, file.uri)
        self._checked[file.name] = path
        return path

    async def _download(self, file: DataFile, location: str) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="refscan-inventory-")
        uri = RefURI.parse(location)
        backend = await self.session.backend(uri.scheme)
        target = Path(self._tmp.name) / f"{len(self._checked)}-{uri.key.rsplit('/', 1)[-1]}"
        digest, size = hashlib.md5(), 0
        try:
            with target.open("wb") as out:
                async for chunk in backend.read(uri):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except NotFound:
            raise InvalidInventory(f"{location}: a data file of the inventory is missing") from None
        _check(file, digest.hexdigest(), size, location)
        return target
