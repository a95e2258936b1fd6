"""Content fingerprints and their comparison, for verification (SPEC §7).

A fingerprint is read the same way from a manifest entry and from a fresh lookup (both carry `digest`,
`size` and `extra`), so "did it change?" is one comparison of the strongest evidence both sides share.
Metadata-only changes (a new GCS etag or metageneration with the same crc32c/md5) do not count.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import google_crc32c

_HEX_MD5 = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART = re.compile(r"^[0-9a-f]{32}-[0-9]+$")
_S3_CHECKSUM_KEYS = ("checksumSHA256", "checksumSHA1", "checksumCRC32", "checksumCRC32C", "checksumCRC64NVME")


class Match(Enum):
    SAME = "same"
    DIFFERENT = "different"
    UNKNOWN = "unknown"  # nothing both sides know could prove it either way


@dataclass(frozen=True)
class Fingerprint:
    """`hashes`: kind → value, strongest first (content hashes, then ETags). `size` when known."""

    hashes: tuple[tuple[str, str], ...]
    size: int | None

    @property
    def provable(self) -> bool:
        return bool(self.hashes)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.hashes)
        if self.size is not None:
            out["size"] = self.size
        return out


def fingerprint(scheme: str, digest: str, size: int | None, extra: Mapping[str, Any]) -> Fingerprint:
    """The fingerprint of an object of `scheme` with this manifest digest, size and extra."""
    hashes: list[tuple[str, str]] = []
    if scheme == "file":
        hashes.append(("md5", digest))
    elif scheme == "gs":
        for kind in ("md5", "crc32c"):
            if extra.get(kind):
                hashes.append((kind, str(extra[kind])))
        if not hashes:
            hashes.append(("etag", digest))
    elif scheme == "s3":
        hashes.extend((k, str(extra[k])) for k in _S3_CHECKSUM_KEYS if extra.get(k))
        hashes.append(("etag", str(extra.get("etag") or digest)))
    elif scheme in ("http", "https"):
        for kind, header in (("contentMD5", "contentMD5"), ("reprDigest", "reprDigest")):
            if extra.get(header):
                hashes.append((kind, str(extra[header])))
        etag = extra.get("etag")
        if isinstance(etag, str) and etag:
            hashes.append(("weakETag" if etag.startswith("W/") else "etag", etag))
    return Fingerprint(tuple(hashes), size)


def compare(expected: Fingerprint, actual: Fingerprint) -> Match:
    """SAME when the strongest shared hash matches, DIFFERENT when it (or a known size) differs,
    UNKNOWN when the two share no hash."""
    if expected.size is not None and actual.size is not None and expected.size != actual.size:
        return Match.DIFFERENT
    theirs = dict(actual.hashes)
    for kind, value in expected.hashes:
        if kind in theirs:
            return Match.SAME if theirs[kind] == value else Match.DIFFERENT
    return Match.UNKNOWN


class ContentHasher:
    """Hashes a byte stream and checks it against the strongest content hash a fingerprint records.

    Computes MD5 (hex and base64), CRC32C (base64) and, given `part_size`, the S3 multipart ETag. `check()`
    answers SAME / DIFFERENT, or UNKNOWN with a reason when nothing recorded can be recomputed from bytes.
    """

    def __init__(self, scheme: str, expected: Fingerprint, *, part_size: int | None = None) -> None:
        self.scheme = scheme
        self.expected = dict(expected.hashes)
        self.expected_size = expected.size
        self.part_size = part_size
        self._md5 = hashlib.md5()
        self._crc = 0
        self._size = 0
        self._part = hashlib.md5()
        self._part_fill = 0
        self._part_digests: list[bytes] = []

    def update(self, chunk: bytes) -> None:
        self._md5.update(chunk)
        self._crc = google_crc32c.extend(self._crc, chunk)
        self._size += len(chunk)
        if self.part_size:
            view = memoryview(chunk)
            while view:
                take = min(len(view), self.part_size - self._part_fill)
                self._part.update(view[:take])
                self._part_fill += take
                view = view[take:]
                if self._part_fill == self.part_size:
                    self._part_digests.append(self._part.digest())
                    self._part, self._part_fill = hashlib.md5(), 0

    def computed(self) -> dict[str, str]:
        """The hashes of the bytes seen so far, by kind."""
        md5 = self._md5.digest()
        out = {
            "md5": base64.b64encode(md5).decode(),
            "md5hex": md5.hex(),
            "crc32c": base64.b64encode(self._crc.to_bytes(4, "big")).decode(),
            "size": str(self._size),
        }
        if self.part_size:
            parts = self._part_digests + ([self._part.digest()] if self._part_fill else [])
            out["multipartETag"] = f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
        return out

    def check(self) -> tuple[Match, str]:
        """Compare the bytes with the recorded fingerprint: (result, what was compared or why not)."""
        got = self.computed()
        if self.expected_size is not None and self._size != self.expected_size:
            return Match.DIFFERENT, f"read {self._size} bytes, expected {self.expected_size}"
        for kind, value in self.expected.items():
            recomputed = self._recompute(kind, value, got)
            if recomputed is not None:
                if recomputed == value:
                    return Match.SAME, f"{kind} of the content matches"
                return Match.DIFFERENT, f"{kind} of the content is {recomputed}, expected {value}"
        return Match.UNKNOWN, "no recorded hash can be recomputed from the bytes (" + ", ".join(self.expected) + ")"

    def _recompute(self, kind: str, value: str, got: dict[str, str]) -> str | None:
        if kind in ("md5", "contentMD5"):
            return got["md5"]
        if kind == "crc32c":
            return got["crc32c"]
        if kind == "etag" and self.scheme == "s3":
            if _HEX_MD5.match(value):
                return got["md5hex"]
            if _MULTIPART.match(value) and "multipartETag" in got:
                return got["multipartETag"]
        return None
