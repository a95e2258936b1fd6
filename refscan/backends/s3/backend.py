"""`s3://` backend on aiobotocore: S3 and S3-compatible stores (MinIO, R2, Ceph, moto).

Requests (`client.py`): one aiobotocore client per backend; every request goes through `S3Client.request`, the
single place that holds the limiter, logs it and turns botocore/aiohttp failures into the refscan error tree.

Single objects cost one HeadObject. Folders never cost a request per object: the listing carries ETag, size
and (on versioned buckets, via ListObjectVersions) the version id. Versioning is decided once per bucket with
GetBucketVersioning; only when that call is denied does the backend fall back to ListObjectsV2 plus one
concurrent HeadObject per object (the only way left to learn version ids). How a folder is walked is
explained in `listing.py`.

Entries (docs/behaviour.md, Entries), `encode` / `decode`:
- `digest` is the ETag without quotes; `extra` holds, in this order and each only when known: `etag` (= the
  digest), `versionID` (never for unversioned objects, whose version id is "null"), `lastModified` (ISO 8601
  UTC, to the second), `checksumAlgorithm` (listings), `sse` (HeadObject of an SSE-KMS or SSE-C object),
  the additional checksums `checksumCRC32`, `checksumCRC32C`, `checksumCRC64NVME`, `checksumSHA1`,
  `checksumSHA256` (HeadObject with `S3Options(checksums=True)`), and `checksumType`.
- `decode` also reads entries W&B wrote: `extra` with only `etag` and `versionID` ("null" = unversioned),
  or no `etag` at all (the digest is then the ETag).

Fingerprints, strongest first: the additional checksums, the version id, the ETag, then the ETag again as the
hash it is when the bytes can recompute it: `md5hex` for a single-part ETag, `multipartETag` for `<hex>-<n>`.
An encrypted object (SSE-KMS, SSE-C) gets no such alias, since its ETag is not an MD5 of its content.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import anyio
from botocore.exceptions import FlexibleChecksumError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError

from ...concurrency import gather_map
from ...errors import AccessDenied, NotFound, ResumeRefused, Unsupported
from ...events import logger
from ...fingerprint import ETAG, MD5_HEX, MULTIPART_ETAG, VERSION, Fingerprint
from ...meta import ObjectMeta
from ...options import Options
from ...protection import BucketProtection, ObjectState
from ...uri import RefURI
from ..base import BucketBackend
from ..keyspace import KeyRange, RangeListing
from . import protection, ranges
from .client import (
    HEX_MD5_ETAG,
    MULTIPART_ETAG_RE,
    S3Client,
    iso_time,
    multipart_parts,
    required_etag,
    size_of,
    version_id,
)
from .listing import Cursor, Page, Walk, parse_v2_page, parse_versions_page

CHUNK = 1 << 20
#: What a GetObject body raises when the connection drops mid-body (worth resuming), with aiohttp's ClientError.
_DROPPED = (
    OSError,
    TimeoutError,
    ResponseStreamingError,
    IncompleteReadError,
    ReadTimeoutError,
)
BATCH = 1000
HEAD_FALLBACK_BATCH = 256

#: HeadObject response field -> checksum kind (its manifest `extra` key), in the order `extra` lists them.
CHECKSUM_FIELDS: dict[str, str] = {
    "ChecksumCRC32": "checksumCRC32",
    "ChecksumCRC32C": "checksumCRC32C",
    "ChecksumCRC64NVME": "checksumCRC64NVME",
    "ChecksumSHA1": "checksumSHA1",
    "ChecksumSHA256": "checksumSHA256",
}
#: The checksum kinds, strongest first: the order fingerprints offer them in.
CHECKSUM_STRENGTH: tuple[str, ...] = (
    "checksumSHA256",
    "checksumSHA1",
    "checksumCRC32",
    "checksumCRC32C",
    "checksumCRC64NVME",
)
_RANK = {kind: rank for rank, kind in enumerate(CHECKSUM_STRENGTH)}
#: (HeadObject field, kind), strongest first: `ObjectMeta.hashes` lists them in this order.
_HEAD_CHECKSUMS = sorted(CHECKSUM_FIELDS.items(), key=lambda item: _RANK[item[1]])
#: `extra` keys `decode` reads into named `ObjectMeta` fields; any other key is kept in `attrs`.
_CODEC_KEYS = frozenset({"etag", "versionID", "lastModified", "sse", *CHECKSUM_STRENGTH})
#: The `extra` keys of a listed object's entry.
_SCANNED_KEYS = frozenset({"etag", "versionID", "lastModified"})


def head_meta(key: str, resp: Mapping[str, Any]) -> ObjectMeta:
    """The object a HeadObject (or GetObject) response describes."""
    etag = required_etag(key, resp.get("ETag"), "HeadObject")
    sse = str(resp.get("ServerSideEncryption") or "")
    encryption = None
    if sse.startswith("aws:kms") or resp.get("SSECustomerAlgorithm"):
        encryption = sse or "sse-c"  # the ETag of such an object is not the MD5 of its content
    hashes = {kind: str(resp[f]) for f, kind in _HEAD_CHECKSUMS if resp.get(f)}
    attrs: dict[str, Any] = {}
    if hashes and resp.get("ChecksumType"):
        attrs["checksumType"] = str(resp["ChecksumType"])
    return ObjectMeta(
        key=key,
        size=size_of(resp.get("ContentLength")),
        etag=etag,
        version=version_id(resp.get("VersionId")),
        modified=iso_time(resp.get("LastModified")),
        hashes=hashes,
        encryption=encryption,
        parts=multipart_parts(etag),
        attrs=attrs,
    )


@dataclass
class _BucketState:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    mode: str | None = None  # "versioned" | "unversioned" | "denied"
    markers_exact: bool | None = None  # ListObjectVersions starts at a KeyMarker as S3 does (Walk.check_markers)
    protection: BucketProtection | None = None


class S3Backend(BucketBackend):
    """`s3://bucket/key`, pinned with `?versionId=V`."""

    schemes = ("s3",)
    versioned = True
    listing_fingerprints = True
    ranged = True
    guarded = True
    hold_kind = "legal hold"
    version_pattern: ClassVar[re.Pattern[str]] = re.compile(r"\?versionId=([^/?&#]+)$")

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        super().__init__(options, limiter)
        self.client = S3Client(options, limiter)
        self._buckets: dict[str, _BucketState] = {}

    # -- URIs (no I/O) ---------------------------------------------------------------------------------

    @classmethod
    def format_uri(cls, uri: RefURI) -> str:
        ref = cls.object_ref(uri)
        return ref if uri.version is None else f"{ref}?versionId={uri.version}"

    @classmethod
    def direct_url(cls, uri: RefURI, options: Options) -> str:
        """A URL of the object: path style under the configured endpoint, else virtual-host style on AWS;
        with `?versionId=` when `uri` is pinned."""
        key = quote(uri.key, safe="/")
        endpoint = options.s3.resolved_endpoint_url()
        if endpoint:
            url = f"{endpoint.rstrip('/')}/{uri.bucket}/{key}"
        else:
            url = f"https://{uri.bucket}.s3.amazonaws.com/{key}"
        return f"{url}?{urlencode({'versionId': uri.version})}" if uri.version is not None else url

    # -- codec (no I/O) --------------------------------------------------------------------------------

    @classmethod
    def encode(cls, meta: ObjectMeta) -> tuple[str, dict[str, Any]]:
        etag = meta.etag
        if not etag:
            raise ValueError(f"{meta.key!r}: an S3 object without an ETag has no manifest digest")
        extra: dict[str, Any] = {"etag": etag}
        if meta.version is not None:
            extra["versionID"] = meta.version
        if meta.modified is not None:
            extra["lastModified"] = meta.modified
        algorithms = meta.attrs.get("checksumAlgorithm")
        if algorithms:
            extra["checksumAlgorithm"] = builtins.list(algorithms)
        if meta.encryption:
            extra["sse"] = meta.encryption
        if meta.hashes:
            extra.update((kind, meta.hashes[kind]) for kind in CHECKSUM_FIELDS.values() if kind in meta.hashes)
        if meta.attrs:
            extra.update((k, v) for k, v in meta.attrs.items() if k not in extra and k != "checksumAlgorithm")
        return etag, extra

    @classmethod
    def decode(cls, key: str, digest: str, size: int | None, extra: Mapping[str, Any]) -> ObjectMeta:
        etag = str(extra.get("etag") or digest)
        modified = extra.get("lastModified")
        if extra.keys() <= _SCANNED_KEYS:  # what a listing records (most entries): no hashes, sse or attrs
            version = version_id(extra.get("versionID"))
            return ObjectMeta(
                key, size, etag, version, str(modified) if modified else None, parts=multipart_parts(etag)
            )
        sse = extra.get("sse")
        return ObjectMeta(
            key=key,
            size=size,
            etag=etag,
            version=version_id(extra.get("versionID")),
            modified=str(modified) if modified else None,
            hashes={kind: str(extra[kind]) for kind in CHECKSUM_STRENGTH if extra.get(kind)},
            encryption=str(sse) if sse else None,
            parts=multipart_parts(etag),
            attrs={k: v for k, v in extra.items() if k not in _CODEC_KEYS},
        )

    @classmethod
    def fingerprint(cls, meta: ObjectMeta) -> Fingerprint:
        hashes = sorted(meta.hashes.items(), key=lambda item: _RANK.get(item[0], len(_RANK)))
        if meta.version is not None:
            hashes.append((VERSION, meta.version))
        if meta.etag:
            hashes.append((ETAG, meta.etag))
            if not meta.encryption:  # an SSE-KMS / SSE-C ETag is not an MD5 of the content
                if HEX_MD5_ETAG.match(meta.etag):
                    hashes.append((MD5_HEX, meta.etag))
                elif MULTIPART_ETAG_RE.match(meta.etag):
                    hashes.append((MULTIPART_ETAG, meta.etag))
        return Fingerprint(tuple(hashes), meta.size)

    # -- lifecycle -------------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    # -- single objects --------------------------------------------------------------------------------

    async def _head(self, uri: RefURI, *, event: str = "s3.request") -> ObjectMeta:
        params: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key}
        if uri.version is not None:
            params["VersionId"] = uri.version
        if self.options.s3.checksums:
            params["ChecksumMode"] = "ENABLED"
        resp = await self.client.request("HeadObject", self.format_uri(uri), event=event, **params)
        return head_meta(uri.key, resp)

    async def stat(self, uri: RefURI) -> ObjectMeta:
        if not uri.key or uri.key.endswith("/"):
            raise NotFound(f"{self.format_uri(uri)}: a bucket or folder is not an object")
        return await self._head(uri, event="s3.head")

    async def part_size(self, uri: RefURI) -> int | None:
        """The size of part 1 of a multipart object (HeadObject PartNumber=1), None for a single-part one."""
        params: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key, "PartNumber": 1}
        if uri.version is not None:
            params["VersionId"] = uri.version
        resp = await self.client.request("HeadObject", self.format_uri(uri), **params)
        if not resp.get("PartsCount"):
            return None
        return int(resp["ContentLength"])

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        """GetObject streamed in chunks. A connection dropped mid-body resumes from the last byte received
        with a Range request pinned to the version first served (`VersionId`, on versioned buckets) and its
        ETag (`If-Match`), up to the retry policy's attempts; `ResumeRefused` when the object changed since
        or the body does not match the checksum header it came with."""
        import aiohttp  # loaded with the client already

        target = self.format_uri(uri)
        params: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key}
        if uri.version is not None:
            params["VersionId"] = uri.version
        attempts = max(1, self.options.retry.with_overrides(max_attempts=self.options.s3.max_attempts).max_attempts)
        started = time.perf_counter()
        total = resumes = 0
        while True:
            resp = await self.client.request("GetObject", target, **params)  # If-Match failed: ResumeRefused
            if not total:  # pin the rest of the read to what was first served
                if version_id(resp.get("VersionId")) is not None:
                    params["VersionId"] = resp["VersionId"]
                if resp.get("ETag"):
                    params["IfMatch"] = resp["ETag"]
            body = resp["Body"]
            try:
                async with body:
                    while chunk := await body.read(CHUNK):
                        total += len(chunk)
                        yield chunk
            except (aiohttp.ClientError, *_DROPPED) as exc:
                resumes += 1
                if resumes >= attempts:
                    with self.client.errors("GetObject", target, uri.bucket, uri.version):
                        raise exc from None
                logger().debug("s3.get.resume", bucket=uri.bucket, key=uri.key, offset=total, attempt=resumes)
                params["Range"] = f"bytes={total}-"
                continue
            except FlexibleChecksumError as exc:  # bytes already handed on are in doubt: from the start
                raise ResumeRefused(f"{target}: the body does not match its checksum header ({exc})") from None
            break
        logger().debug(
            "s3.get", bucket=uri.bucket, key=uri.key, bytes=total, elapsed=round(time.perf_counter() - started, 4)
        )

    # -- protection (protection.py) --------------------------------------------------------------------

    async def protection(self, bucket: str) -> BucketProtection:
        """Read once per bucket and backend (guard and holds share it)."""
        state = self._buckets.setdefault(bucket, _BucketState())
        async with state.lock:
            if state.protection is None:
                state.protection = await protection.read_protection(self.client, bucket)
            return state.protection

    async def object_state(self, uri: RefURI, size: int | None, *, tags: bool) -> ObjectState:
        return await protection.read_state(self.client, uri, size, tags=tags)

    async def set_hold(self, uri: RefURI, on: bool) -> bool:
        """An Object Lock legal hold on the version; the bucket must have Object Lock on."""
        if uri.version is None:
            raise Unsupported(f"{self.format_uri(uri)}: no version recorded, and a legal hold needs one")
        if not (await self.protection(uri.bucket)).holds:
            raise Unsupported(f"s3://{uri.bucket}: Object Lock is not on for this bucket, so it keeps no legal holds")
        return await protection.set_legal_hold(self.client, uri, on)

    # -- folders ---------------------------------------------------------------------------------------

    async def versioning(self, bucket: str) -> str:
        """The bucket's listing mode, asked once per bucket: "versioned", "unversioned" or "denied"
        (GetBucketVersioning refused: list with ListObjectsV2 and HEAD each object)."""
        state = self._buckets.setdefault(bucket, _BucketState())
        async with state.lock:
            if state.mode is not None:
                return state.mode
            try:
                resp = await self.client.request("GetBucketVersioning", f"s3://{bucket}", Bucket=bucket)
            except AccessDenied:
                state.mode = "denied"
            else:
                status = resp.get("Status")
                state.mode = "versioned" if status in ("Enabled", "Suspended") else "unversioned"
            logger().debug("s3.versioning", bucket=bucket, mode=state.mode)
            return state.mode

    async def page(
        self,
        bucket: str,
        prefix: str,
        *,
        cursor: Cursor | None,
        max_keys: int,
        versioned: bool,
        end: str | None = None,
    ) -> Page:
        """One ListObjectVersions (`versioned`) or ListObjectsV2 request, as a `Page` (the walk's source);
        objects past `end` are not built."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        target = f"s3://{bucket}/{prefix}"
        if versioned:
            if cursor is not None and cursor.key_marker is not None:
                params["KeyMarker"] = cursor.key_marker
                if cursor.version_marker:
                    params["VersionIdMarker"] = cursor.version_marker
            return parse_versions_page(await self.client.request("ListObjectVersions", target, **params), end)
        if cursor is not None:
            if cursor.token is not None:
                params["ContinuationToken"] = cursor.token
            elif cursor.start_after is not None:
                params["StartAfter"] = cursor.start_after
        return parse_v2_page(await self.client.request("ListObjectsV2", target, **params), end)

    async def list(self, folder: RefURI, limit: int) -> AsyncGenerator[builtins.list[ObjectMeta], None]:
        if limit <= 0:
            return
        started = time.perf_counter()
        mode = await self.versioning(folder.bucket)
        versioned = mode == "versioned"
        state = self._buckets[folder.bucket]
        walk = Walk(
            self,
            folder.bucket,
            versioned=versioned,
            limit=limit,
            split=self.options.s3.parallel_listing,
            markers_exact=state.markers_exact,
        )
        total = heads = 0
        async for found in walk.rounds(folder.key):
            objects = found
            if mode == "denied" and objects:
                heads += len(objects)
                objects = await self._head_all(folder, objects)
            objects.sort(key=lambda o: o.key)
            total += len(objects)
            for start in range(0, len(objects), BATCH):
                yield objects[start : start + BATCH]
        state.markers_exact = walk.markers_exact
        logger().debug(
            "s3.list",
            bucket=folder.bucket,
            prefix=folder.key,
            mode=mode,
            pages=walk.requests,
            splits=walk.splits,
            sequential=walk.fallback,
            heads=heads,
            objects=total,
            elapsed=round(time.perf_counter() - started, 4),
        )

    async def list_range(self, folder: RefURI, rng: KeyRange, limit: int, pages: int) -> RangeListing:
        mode = await self.versioning(folder.bucket)
        state = self._buckets[folder.bucket]
        listing, state.markers_exact = await ranges.list_range(
            self,
            folder.bucket,
            folder.key,
            rng,
            limit,
            pages,
            versioned=mode == "versioned",
            markers_exact=state.markers_exact,
        )
        if mode == "denied" and listing.objects:
            listing.objects = await self._head_all(folder, listing.objects)
        listing.splittable = listing.splittable and self.options.s3.parallel_listing
        return listing

    @classmethod
    def split_range(cls, folder: RefURI, rng: KeyRange, sample: Sequence[str], parts: int) -> builtins.list[KeyRange]:
        return ranges.split_range(folder.key, rng, sample, parts)

    async def _head_all(self, folder: RefURI, listed: builtins.list[ObjectMeta]) -> builtins.list[ObjectMeta]:
        """Fallback when GetBucketVersioning is denied: one HeadObject per object for its version id, in
        batches of concurrent requests (the first failure cancels the rest). Objects deleted since the listing
        are dropped."""

        async def one(meta: ObjectMeta) -> ObjectMeta | None:
            try:
                return await self._head(folder.child(meta.key))
            except NotFound:
                return None  # deleted since the listing

        kept: builtins.list[ObjectMeta] = []
        for start in range(0, len(listed), HEAD_FALLBACK_BATCH):
            found = await gather_map(one, listed[start : start + HEAD_FALLBACK_BATCH])
            kept.extend(meta for meta in found if meta is not None)
        return kept
