"""Verification: prove that what a manifest references is still exactly there (SPEC §7).

Each entry is re-resolved at its recorded version (S3 version id, GCS generation) or, when unpinned, as the
current object, and its fingerprint compared with the recorded one. `deep=True` also reads the bytes and
checks them against the strongest hash known. Entries are checked concurrently, bounded by the scanner.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from .errors import InvalidURI, NotFound, RefscanError
from .fingerprint import ContentHasher, Fingerprint, Match, compare, fingerprint
from .manifest import ManifestEntry, ManifestSource, as_manifest
from .options import Options
from .resolvers import ObjectInfo, Resolver
from .scan import Scanner
from .sync import run_sync
from .uri import RefURI

Status = Literal["ok", "changed", "missing", "unverifiable", "error", "added"]
STATUSES: tuple[Status, ...] = ("ok", "changed", "missing", "unverifiable", "error", "added")


@dataclass(frozen=True)
class VerifyResult:
    """The outcome for one entry: `expected` / `actual` are fingerprints as dicts (None when unknown)."""

    path: str
    ref: str | None
    status: Status
    reason: str
    expected: dict[str, Any] | None = None
    actual: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ref": self.ref,
            "status": self.status,
            "reason": self.reason,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(frozen=True)
class VerifyReport:
    """All results in path order. `ok` is True when every result is ok or unverifiable."""

    results: tuple[VerifyResult, ...]
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        tally = Counter(r.status for r in self.results)
        object.__setattr__(self, "counts", {s: tally.get(s, 0) for s in STATUSES})

    @property
    def ok(self) -> bool:
        """True when every result is ok or unverifiable (nothing changed, missing, failed or added)."""
        return all(r.status in ("ok", "unverifiable") for r in self.results)

    def strict_ok(self) -> bool:
        """True when every result is ok (unverifiable entries fail, as with the CLI's --strict)."""
        return all(r.status == "ok" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts, "results": [r.to_dict() for r in self.results]}


def pinned_uri(entry: ManifestEntry) -> RefURI:
    """The URI an entry's ref names, pinned to its recorded version (S3 versionID, GCS generation)."""
    if entry.ref is None:
        raise InvalidURI(f"{entry.path}: entry has no external reference")
    uri = RefURI.parse(entry.ref)
    version = entry.extra.get("versionID")
    if uri.scheme in ("s3", "gs") and version not in (None, "", "null"):
        return uri.child(uri.key, str(version))
    return uri


def is_unchecked(entry: ManifestEntry) -> bool:
    """True for an entry recorded with checksum=False (ref = digest, nothing else)."""
    return entry.ref == entry.digest and entry.size is None and not entry.extra


async def read_and_check(
    resolver: Resolver, uri: RefURI, expected: Fingerprint, *, part_size: int | None = None
) -> tuple[Match, str]:
    """Stream the object's bytes through a `ContentHasher` and check them against `expected`."""
    hasher = ContentHasher(uri.scheme, expected, part_size=part_size)
    async for chunk in resolver.read(uri):
        hasher.update(chunk)
    return hasher.check()


def _result(
    entry: ManifestEntry,
    status: Status,
    reason: str,
    expected: Fingerprint | None = None,
    actual: Fingerprint | None = None,
) -> VerifyResult:
    return VerifyResult(
        entry.path,
        entry.ref,
        status,
        reason,
        expected.as_dict() if expected else None,
        actual.as_dict() if actual else None,
    )


#: Entries of one bucket folder from which verify lists the folder instead of sending a HEAD per entry.
LIST_MIN_ENTRIES = 16
_LISTABLE = ("s3", "gs")


def listing_plan(entries: Iterable[ManifestEntry]) -> dict[tuple[str, str, str], int]:
    """Folders worth listing instead of a HEAD per entry: (scheme, bucket, folder key) → entries under it.

    Entries are grouped by their ref's parent folder; a folder inside another listed one is covered by that
    listing (listings are recursive), so only the outermost folders are kept. Pure, no I/O.
    """
    parents: Counter[tuple[str, str, str]] = Counter()
    for entry in entries:
        if entry.ref is None or is_unchecked(entry):
            continue
        try:
            uri = RefURI.parse(entry.ref)
        except InvalidURI:
            continue
        if uri.scheme in _LISTABLE:
            parents[(uri.scheme, uri.bucket, uri.key.rpartition("/")[0] + "/" if "/" in uri.key else "")] += 1
    plan: dict[tuple[str, str, str], int] = {}
    for (scheme, bucket, folder), count in sorted(parents.items(), key=lambda item: len(item[0][2])):
        outer = next((k for k in plan if k[:2] == (scheme, bucket) and folder.startswith(k[2])), None)
        if outer is not None:
            plan[outer] += count
        else:
            plan[(scheme, bucket, folder)] = count
    return {key: count for key, count in plan.items() if count >= LIST_MIN_ENTRIES}


class _Verifier:
    """Checks entries one by one; objects already seen in a folder listing (`prefetch`) need no request."""

    def __init__(self, scanner: Scanner, deep: bool) -> None:
        self.scanner = scanner
        self.deep = deep
        self.listed: dict[tuple[str, str, str], ObjectInfo] = {}

    async def prefetch(self, entries: list[ManifestEntry]) -> None:
        """List the folders many entries live in, concurrently. A listing that fails only means HEADs later."""

        async def one(scheme: str, bucket: str, folder: str, count: int) -> None:
            try:
                resolver = await self.scanner.resolver(scheme)
                # room for objects added since the scan; past that, the entries not seen get their own HEAD
                async with aclosing(resolver.list(RefURI(scheme, bucket, folder), 2 * count + 1000)) as batches:  # type: ignore[arg-type]
                    async for batch in batches:
                        for info in batch:
                            self.listed[(scheme, bucket, info.key)] = info
            except RefscanError:
                return

        async with anyio.create_task_group() as tg:
            for (scheme, bucket, folder), count in listing_plan(entries).items():
                tg.start_soon(one, scheme, bucket, folder, count)

    async def _current(self, resolver: Resolver, uri: RefURI) -> ObjectInfo:
        """The object at `uri` (pinned version if any): from a prefetched listing when it holds exactly that
        version, else one lookup."""
        info = self.listed.get((uri.scheme, uri.bucket, uri.key))
        if info is not None and (uri.version is None or info.version == uri.version):
            return info
        return await resolver.stat(uri)

    async def check(self, entry: ManifestEntry) -> VerifyResult:
        if entry.ref is None:
            return _result(entry, "unverifiable", "a stored file, not a reference")
        if is_unchecked(entry):
            return _result(entry, "unverifiable", "recorded with checksum=False: nothing to compare")
        try:
            uri = pinned_uri(entry)
        except InvalidURI as exc:
            return _result(entry, "error", str(exc))
        expected = fingerprint(uri.scheme, entry.digest, entry.size, entry.extra)
        if not expected.provable:
            return _result(entry, "unverifiable", "no validator recorded (the server sent no ETag or hash)", expected)
        try:
            return await self._check(entry, uri, expected)
        except RefscanError as exc:
            return _result(entry, "error", str(exc), expected)

    async def _check(self, entry: ManifestEntry, uri: RefURI, expected: Fingerprint) -> VerifyResult:
        resolver = await self.scanner.resolver(uri.scheme)
        try:
            info = await self._current(resolver, uri)
        except NotFound:
            if uri.version is None:
                return _result(entry, "missing", "the object no longer exists", expected)
            return await self._pin_gone(entry, uri, resolver, expected)
        actual = fingerprint(uri.scheme, info.digest, info.size, info.extra)
        match = compare(expected, actual)
        if match is Match.DIFFERENT:
            return _result(entry, "changed", "the content fingerprint differs", expected, actual)
        if match is Match.UNKNOWN:
            return _result(entry, "unverifiable", "no fingerprint both sides share", expected, actual)
        if not self.deep:
            return _result(entry, "ok", "fingerprint matches", expected, actual)
        part_size = await _part_size(resolver, uri, entry)
        deep, why = await read_and_check(resolver, uri, expected, part_size=part_size)
        if deep is Match.UNKNOWN:
            return _result(entry, "ok", f"fingerprint matches; deep check impossible: {why}", expected, actual)
        if deep is Match.SAME:
            return _result(entry, "ok", f"deep check: {why}", expected, actual)
        if info.extra.get("sse") and why.startswith("etag"):
            why = f"the ETag of an object encrypted with {info.extra['sse']} is not its MD5 ({why})"
            return _result(entry, "unverifiable", why, expected, actual)
        return _result(entry, "changed", f"deep check: {why}", expected, actual)

    async def _pin_gone(
        self, entry: ManifestEntry, uri: RefURI, resolver: Resolver, expected: Fingerprint
    ) -> VerifyResult:
        try:
            current = await resolver.stat(uri.child(uri.key))
        except NotFound:
            return _result(entry, "missing", f"version {uri.version} and the object are gone", expected)
        actual = fingerprint(uri.scheme, current.digest, current.size, current.extra)
        if compare(expected, actual) is Match.SAME:
            why = f"pinned version {uri.version} is gone; the current object has identical content (the pin moved)"
            return _result(entry, "ok", why, expected, actual)
        why = f"pinned version {uri.version} is gone and the object now holds different content"
        return _result(entry, "changed", why, expected, actual)


async def _part_size(resolver: Resolver, uri: RefURI, entry: ManifestEntry) -> int | None:
    """The part size behind a multipart ETag (`<hex>-<parts>`), when the resolver can tell it."""
    etag = str(entry.extra.get("etag") or entry.digest)
    return await resolver.part_size(uri) if "-" in etag else None


async def averify(
    source: ManifestSource,
    *,
    deep: bool = False,
    options: Options | None = None,
    rescan: Iterable[str] = (),
    on_result: Callable[[VerifyResult], None] | None = None,
) -> VerifyReport:
    """Verify every entry of `source` (a Manifest, a store version, entries, or a manifest JSON path); one
    result per entry, checked concurrently by a bounded pool of workers.

    `rescan`: folder URIs to list again; each object found there whose ref is not in the manifest gives a
    result with status `added` (path as a plain scan of that folder names it), like `dvc status`.
    `on_result` is called with each result as it is known (progress).
    """
    entries = list(as_manifest(source))
    results: list[VerifyResult | None] = [None] * len(entries)
    added: list[VerifyResult] = []
    async with Scanner(options) as scanner:
        verifier = _Verifier(scanner, deep)
        await verifier.prefetch(entries)
        todo = iter(range(len(entries)))

        async def worker() -> None:
            for i in todo:
                results[i] = outcome = await verifier.check(entries[i])
                if on_result is not None:
                    on_result(outcome)

        async with anyio.create_task_group() as tg:
            for _ in range(min(len(entries), 2 * scanner.options.concurrency)):
                tg.start_soon(worker)
        known = {e.ref for e in entries}
        for folder in rescan:
            async for found in scanner.iter_scan(folder, max_objects=sys.maxsize):
                if found.ref not in known:
                    actual = fingerprint(RefURI.parse(folder).scheme, found.digest, found.size, found.extra)
                    added.append(
                        _result(found, "added", f"new under {folder} since the manifest was made", None, actual)
                    )
    return VerifyReport(tuple(r for r in results if r is not None) + tuple(added))


def verify(
    source: ManifestSource, *, deep: bool = False, options: Options | None = None, rescan: Iterable[str] = ()
) -> VerifyReport:
    """Synchronous `averify`; safe inside a running event loop."""
    return run_sync(lambda: averify(source, deep=deep, options=options, rescan=rescan))
