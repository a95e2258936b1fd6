"""A third-party backend: registered from the test suite, it gets scan, verify and download with no change to
the engines (the plug-in contract of refscan.backends)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

import refscan
from refscan.backends import BucketBackend, backend_class, register_backend, registered_schemes
from refscan.errors import MissingDependency, NotFound, UnsupportedScheme
from refscan.fingerprint import MD5
from refscan.meta import ObjectMeta
from refscan.uri import RefURI


class MemoryBackend(BucketBackend):
    """`mem://bucket/key@N`: objects in a dict, versions numbered; the etag is the base64 MD5."""

    schemes = ("mem",)
    versioned = True
    version_pattern = re.compile(r"@(\d+)$")
    #: bucket → key → list of versions (bytes); the last is current, None = deleted
    objects: ClassVar[dict[str, dict[str, list[bytes | None]]]] = {}
    requests: ClassVar[list[str]] = []

    @classmethod
    def format_uri(cls, uri: RefURI) -> str:
        return cls.object_ref(uri) + (f"@{uri.version}" if uri.version else "")

    @classmethod
    def encode(cls, meta: ObjectMeta) -> tuple[str, dict[str, Any]]:
        return meta.hashes[MD5], {"generation": meta.version}

    @classmethod
    def decode(cls, key: str, digest: str, size: int | None, extra: Mapping[str, Any]) -> ObjectMeta:
        version = extra.get("generation")
        return ObjectMeta(key, size, version=str(version) if version else None, hashes={MD5: digest})

    def _meta(self, key: str, version: int, data: bytes) -> ObjectMeta:
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        return ObjectMeta(key, len(data), version=str(version), hashes={MD5: md5})

    def _find(self, uri: RefURI) -> tuple[int, bytes]:
        versions = self.objects.get(uri.bucket, {}).get(uri.key)
        if not versions:
            raise NotFound(f"{uri}: no such object")
        index = int(uri.version) if uri.version is not None else len(versions) - 1
        data = versions[index] if index < len(versions) else None
        if data is None:
            raise NotFound(f"{uri}: no such object or version")
        return index, data

    async def stat(self, uri: RefURI) -> ObjectMeta:
        self.requests.append(f"stat {uri}")
        return self._meta(uri.key, *self._find(uri))

    async def list(self, folder: RefURI, limit: int) -> AsyncGenerator[list[ObjectMeta], None]:
        self.requests.append(f"list {folder}")
        found = []
        for key, versions in sorted(self.objects.get(folder.bucket, {}).items()):
            if key.startswith(folder.key) and versions[-1] is not None:
                found.append(self._meta(key, len(versions) - 1, versions[-1]))
        yield found[:limit]

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        self.requests.append(f"read {uri}")
        yield self._find(uri)[1]


@pytest.fixture
def mem() -> type[MemoryBackend]:
    MemoryBackend.objects = {"b": {"data/a.txt": [b"alpha"], "data/sub/b.txt": [b"beta"], "other.txt": [b"o"]}}
    MemoryBackend.requests = []
    register_backend("mem", MemoryBackend)
    return MemoryBackend


def test_scan_verify_download_on_a_registered_backend(mem: type[MemoryBackend], tmp_path: Path) -> None:
    assert "mem" in registered_schemes()
    entries = refscan.scan("mem://b/data", name="d")
    assert [(e.path, e.ref, e.size, dict(e.extra)) for e in entries] == [
        ("d/a.txt", "mem://b/data/a.txt", 5, {"generation": "0"}),
        ("d/sub/b.txt", "mem://b/data/sub/b.txt", 4, {"generation": "0"}),
    ]
    assert str(RefURI.parse("mem://b/data/a.txt@3")) == "mem://b/data/a.txt@3"

    assert refscan.verify(entries).counts["ok"] == 2
    mem.objects["b"]["data/a.txt"].append(b"ALPHA!")  # a new version: the pinned one still verifies
    mem.objects["b"]["data/sub/b.txt"] = [None]  # gone, every version
    report = refscan.verify(entries, deep=True)
    by_path = {r.path: r for r in report.results}
    assert by_path["d/a.txt"].status == "ok"
    assert by_path["d/a.txt"].cause == "deep-matches"
    assert by_path["d/sub/b.txt"].status == "missing"
    assert not report.ok

    unpinned = [refscan.ManifestEntry(e.path, e.digest, e.ref, e.size) for e in entries[:1]]
    assert refscan.verify(unpinned).results[0].status == "changed"  # the current object is the new version

    written = refscan.download(entries[:1], tmp_path / "out")
    assert written == [tmp_path / "out" / "d" / "a.txt"]
    assert written[0].read_bytes() == b"alpha"  # the pinned version, not the current one
    assert "read mem://b/data/a.txt@0" in mem.requests


def test_registration_by_import_path_and_missing_dependency_hint(mem: type[MemoryBackend]) -> None:
    register_backend("mem2", f"{__name__}:MemoryBackend")
    assert backend_class("mem2") is MemoryBackend
    register_backend("nope", "refscan_no_such_module.backend:Nope", install="refscan-nope")
    with pytest.raises(MissingDependency, match="pip install refscan-nope"):
        refscan.scan("nope://b/k")
    with pytest.raises(UnsupportedScheme, match="unsupported scheme 'zz'"):
        RefURI.parse("zz://b/k")
