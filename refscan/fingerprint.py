"""Typed content fingerprints, their comparison, and recomputing them from bytes (docs/behaviour.md,
Verification).

A backend turns an `ObjectMeta` into a `Fingerprint`: evidence by kind, strongest first. Verification is one
comparison of the strongest evidence both sides share, whatever the store; nothing here knows a scheme.

Kinds: content hashes (`md5` and `crc32c` base64, `md5hex`, `multipartETag`, `sha256`, ...; the store's own
names for others), then `version` (an immutable version id: the same id means the same bytes, a different one
proves nothing), then `etag` / `weakETag` (change signals of the store).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Any

import google_crc32c

MD5 = "md5"  # base64 MD5 of the bytes
MD5_HEX = "md5hex"  # hex MD5 of the bytes (a single-part S3 ETag)
CRC32C = "crc32c"  # base64 big-endian CRC32C
MULTIPART_ETAG = "multipartETag"  # hex MD5 of the parts' MD5s, "-", part count
VERSION = "version"
ETAG = "etag"
WEAK_ETAG = "weakETag"

#: The kinds `ContentHasher` can recompute from the bytes.
RECOMPUTABLE = frozenset({MD5, MD5_HEX, CRC32C, MULTIPART_ETAG})


class Match(Enum):
    SAME = "same"
    DIFFERENT = "different"
    UNKNOWN = "unknown"  # nothing both sides know could prove it either way


@dataclass(frozen=True)
class Fingerprint:
    """`hashes`: kind → value, strongest first. `size` when known."""

    hashes: tuple[tuple[str, str], ...]
    size: int | None

    @property
    def provable(self) -> bool:
        """True when something here can prove a change: any kind but `version` (which only proves sameness)."""
        return any(kind != VERSION for kind, _ in self.hashes)

    def kinds(self) -> frozenset[str]:
        return frozenset(kind for kind, _ in self.hashes)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.hashes)
        if self.size is not None:
            out["size"] = self.size
        return out


def compare(expected: Fingerprint, actual: Fingerprint) -> Match:
    """DIFFERENT when a known size differs; else the verdict of the strongest kind both share (an equal
    `version` is SAME, a different one is skipped); UNKNOWN when they share nothing conclusive."""
    if expected.size is not None and actual.size is not None and expected.size != actual.size:
        return Match.DIFFERENT
    theirs = dict(actual.hashes)
    for kind, value in expected.hashes:
        if kind not in theirs:
            continue
        if theirs[kind] == value:
            return Match.SAME
        if kind != VERSION:
            return Match.DIFFERENT
    return Match.UNKNOWN


@dataclass(frozen=True)
class DeepCheck:
    """The outcome of reading the bytes: `kind` is the recorded kind that decided it (None when none could)."""

    match: Match
    kind: str | None
    detail: str


class ContentHasher:
    """Hashes a byte stream and checks it against the strongest recomputable kind a fingerprint records.

    Computes MD5 (base64 and hex), CRC32C (base64) and, given `part_size`, the S3-style multipart ETag.
    """

    def __init__(self, expected: Fingerprint, *, part_size: int | None = None) -> None:
        self.expected = expected
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
        """The recomputable kinds of the bytes seen so far."""
        md5 = self._md5.digest()
        out = {
            MD5: base64.b64encode(md5).decode(),
            MD5_HEX: md5.hex(),
            CRC32C: base64.b64encode(self._crc.to_bytes(4, "big")).decode(),
        }
        if self.part_size:
            parts = self._part_digests + ([self._part.digest()] if self._part_fill else [])
            out[MULTIPART_ETAG] = f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
        return out

    def check(self) -> DeepCheck:
        """Compare the bytes with the recorded fingerprint."""
        expected_size = self.expected.size
        if expected_size is not None and self._size != expected_size:
            return DeepCheck(Match.DIFFERENT, "size", f"read {self._size} bytes, expected {expected_size}")
        got = self.computed()
        for kind, value in self.expected.hashes:
            if kind in got:
                if got[kind] == value:
                    return DeepCheck(Match.SAME, kind, f"{kind} of the content matches")
                return DeepCheck(Match.DIFFERENT, kind, f"{kind} of the content is {got[kind]}, expected {value}")
        kinds = ", ".join(kind for kind, _ in self.expected.hashes)
        return DeepCheck(Match.UNKNOWN, None, f"no recorded hash can be recomputed from the bytes ({kinds})")
