"""`gs://` backend: Google Cloud Storage through its JSON API (`client.GCSClient`), with a fanned-out listing
(`listing.list_items`; key ranges for scale-out: `listing.list_range`).

URIs: `gs://bucket/key`, pinned to a generation with `gs://bucket/key#G` or `gs://bucket/key?generation=G`
(digits); the canonical form is `gs://bucket/key#G`.

Objects (`ObjectMeta` from an objects resource): `etag`, `version` = the generation, `hashes` = `md5`
(md5Hash) and `crc32c` when present (composite objects have no md5Hash), `attrs` = `metageneration`.

Codec (docs/behaviour.md, the gs row of the fields table):
- digest: the ETag; without one the md5Hash, then the crc32c.
- extra: `versionID` (the generation as an int), `md5`, `crc32c` (base64, when present), `metageneration`
  (int), in that order.
- Reading accepts entries written by W&B (digest = ETag, extra = `etag` and `versionID` only): the ETag is
  `extra["etag"]`, else the digest; other unknown keys are kept and written back unchanged.

Fingerprint: the content hashes (md5, crc32c), then the generation, then the ETag, so an ETag-only entry
verifies `ok` while its generation exists, and a metadata-only change (new metageneration and ETag, same
hashes) stays `ok`.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, ClassVar, NoReturn
from urllib.parse import quote, urlencode

import aiohttp
import anyio

from ...errors import AccessDenied, BackendError, Unsupported
from ...events import logger
from ...fingerprint import CRC32C, MD5
from ...meta import ObjectMeta
from ...options import Options
from ...protection import BucketProtection, ObjectState
from ...uri import RefURI
from ..base import BucketBackend
from ..keyspace import KeyRange, RangeListing
from . import listing, protection
from .client import PERMISSIONS, TRANSIENT, GCSClient, _describe, _Failure, _translate

CHUNK = 1 << 20
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
#: the `extra` keys the codec writes itself; any other key of a decoded entry is kept in `attrs`
_CODEC_KEYS = frozenset({"versionID", "md5", "crc32c", "metageneration"})
#: fingerprint kind -> `extra` key of the content hashes, strongest first
_HASH_KEYS = ((MD5, "md5"), (CRC32C, "crc32c"))


class MalformedResource(ValueError):
    """An objects resource (or a row shaped like one) refscan cannot record."""


def object_meta(item: Any) -> ObjectMeta:
    """An objects resource (the JSON API's, or an inventory report row with its fields) as an `ObjectMeta`
    (see the module docstring). One that is malformed, or has no ETag, md5Hash or crc32c to record, raises
    `MalformedResource`."""
    try:
        name = item["name"]
        if not isinstance(name, str):
            raise TypeError("no object name")
        generation = item.get("generation")
        version = str(int(generation)) if generation is not None else None
        etag = item.get("etag")
        hashes: dict[str, str] = {}
        md5 = item.get("md5Hash")
        if md5:
            hashes[MD5] = str(md5)
        crc32c = item.get("crc32c")
        if crc32c:
            hashes[CRC32C] = str(crc32c)
        metageneration = item.get("metageneration")
        attrs = {"metageneration": int(metageneration)} if metageneration is not None else {}
        size = item.get("size")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedResource(f"a malformed object resource ({type(exc).__name__})") from None
    if not (etag or hashes):
        raise MalformedResource(f"no etag, md5Hash or crc32c for {name!r}")
    try:
        size_value = int(size) if size is not None else None
    except (TypeError, ValueError):
        raise MalformedResource(f"a malformed size for {name!r}") from None
    return ObjectMeta(
        key=name, size=size_value, etag=str(etag) if etag else None, version=version, hashes=hashes, attrs=attrs
    )


def _served_meta(item: Any) -> ObjectMeta:
    """`object_meta` of a resource the server sent; a malformed one is the server's failure."""
    try:
        return object_meta(item)
    except MalformedResource as exc:
        raise _Failure(None, f"the server returned {exc}") from None


def _whole(value: Any) -> str | None:
    """A recorded whole number (`versionID`, `metageneration`) as digits; None when absent or not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isdigit():
        return str(int(value))
    return None


class GCSBackend(BucketBackend):
    """Google Cloud Storage buckets; versions are generations."""

    schemes = ("gs",)
    versioned = True
    listing_fingerprints = True
    ranged = True
    guarded = True
    hold_kind = "temporary hold"
    version_pattern = re.compile(r"(?:\?generation=|#)(\d+)$")

    #: objects per objects.list page (the JSON API maximum); tests lower it to force pagination.
    page_size: ClassVar[int] = 1000
    #: how many key ranges of one folder are listed concurrently once the folder spans several pages.
    list_fanout: ClassVar[int] = 16

    _client: GCSClient | None = None
    _writer: GCSClient | None = None  # opened for holds only, with write access

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        super().__init__(options, limiter)
        self._protection: dict[str, BucketProtection] = {}
        self._lock = anyio.Lock()

    # -- URIs and codec (no I/O) ------------------------------------------------------------------------------

    @classmethod
    def direct_url(cls, uri: RefURI, options: Options) -> str:
        """`<endpoint>/bucket/key` (the public endpoint unless one is configured), `?generation=G` when pinned."""
        endpoint = options.gcs.resolved_endpoint_url() or DEFAULT_ENDPOINT
        url = f"{endpoint.rstrip('/')}/{uri.bucket}/{quote(uri.key, safe='/')}"
        return f"{url}?{urlencode({'generation': uri.version})}" if uri.version is not None else url

    @classmethod
    def encode(cls, meta: ObjectMeta) -> tuple[str, dict[str, Any]]:
        digest = meta.etag or meta.hashes.get(MD5) or meta.hashes.get(CRC32C)
        if not digest:
            raise BackendError(f"gs object {meta.key!r} has no etag, md5Hash or crc32c to record")
        extra: dict[str, Any] = {}
        if meta.version is not None:
            extra["versionID"] = int(meta.version)
        for kind, name in _HASH_KEYS:
            if meta.hashes.get(kind):
                extra[name] = meta.hashes[kind]
        if "metageneration" in meta.attrs:
            extra["metageneration"] = meta.attrs["metageneration"]
        extra.update((k, v) for k, v in meta.attrs.items() if k not in _CODEC_KEYS)
        return digest, extra

    @classmethod
    def decode(cls, key: str, digest: str, size: int | None, extra: Mapping[str, Any]) -> ObjectMeta:
        hashes = {kind: extra[name] for kind, name in _HASH_KEYS if isinstance(extra.get(name), str) and extra[name]}
        etag = extra.get("etag")
        attrs = {k: v for k, v in extra.items() if k not in _CODEC_KEYS}
        metageneration = _whole(extra.get("metageneration"))
        if metageneration is not None:
            attrs["metageneration"] = int(metageneration)
        return ObjectMeta(
            key=key,
            size=size,
            etag=etag if isinstance(etag, str) and etag else digest,
            version=_whole(extra.get("versionID")),
            hashes=hashes,
            attrs=attrs,
        )

    # -- I/O --------------------------------------------------------------------------------------------------

    def _new_client(self, access: str = "read_only") -> GCSClient:
        policy = self.options.retry.with_overrides(max_attempts=self.options.gcs.max_attempts)
        return GCSClient(self.options.gcs, policy, self.limiter, access=access)

    async def open(self) -> None:
        client = self._new_client()
        await client.open()
        self._client = client

    async def close(self) -> None:
        for client in (self._client, self._writer):
            if client is not None:
                await client.close()
        self._client = self._writer = None

    @property
    def client(self) -> GCSClient:
        if self._client is None:
            raise RuntimeError("GCSBackend used outside 'async with'")
        return self._client

    def _raise(self, failure: _Failure, uri: RefURI, op: str) -> NoReturn:
        error = _translate(failure, target=str(uri), bucket=uri.bucket, op=op)
        if isinstance(error, AccessDenied) and self.client.anonymous and failure.status in (401, 403):
            error = AccessDenied(f"{error} (no Google credentials were found: the request was anonymous)")
        raise error from None

    async def stat(self, uri: RefURI) -> ObjectMeta:
        started = time.perf_counter()
        try:
            meta = _served_meta(await self.client.object(uri.bucket, uri.key, uri.version))
        except _Failure as failure:
            self._raise(failure, uri, "get")
        logger().debug(
            "gcs.stat", bucket=uri.bucket, generation=uri.version, elapsed=round(time.perf_counter() - started, 4)
        )
        return meta

    # -- protection (protection.py) ----------------------------------------------------------------------------

    async def protection(self, bucket: str) -> BucketProtection:
        """Read once per bucket and backend; a refused buckets.get leaves versioning and rules unknown."""
        async with self._lock:
            found = self._protection.get(bucket)
            if found is None:
                try:
                    found = protection.parse_bucket(await self.client.bucket(bucket))
                except _Failure as failure:
                    if failure.status not in (401, 403):
                        self._raise(failure, RefURI("gs", bucket, ""), "bucket")
                    found = BucketProtection(None, None, missing=(PERMISSIONS["bucket"],))
                self._protection[bucket] = found
            return found

    async def object_state(self, uri: RefURI, size: int | None, *, tags: bool) -> ObjectState:
        try:
            return await protection.read_state(self.client, uri, size)
        except _Failure as failure:
            self._raise(failure, uri, "list" if uri.version is not None else "get")

    async def set_hold(self, uri: RefURI, on: bool) -> bool:
        """A temporary hold on the generation (objects.patch; the credentials need write access)."""
        if uri.version is None:
            raise Unsupported(f"{uri}: no generation recorded, and a hold on the current object would not pin it")
        async with self._lock:
            if self._writer is None:
                writer = self._new_client("read_write")
                await writer.open()
                self._writer = writer
        try:
            return await protection.set_temporary_hold(self._writer, uri, on)
        except _Failure as failure:
            self._raise(failure, uri, "hold")

    async def list(self, folder: RefURI, limit: int) -> AsyncGenerator[list[ObjectMeta], None]:
        """Objects under `folder`, one batch per listing round (see `listing.list_items`)."""
        fanout = max(1, min(self.list_fanout, int(min(self.limiter.total_tokens, 1 << 16))))
        items = listing.list_items(
            self.client, folder.bucket, folder.key, limit, page_size=self.page_size, fanout=fanout
        )
        async with aclosing(items) as rounds:
            try:
                async for batch in rounds:
                    yield [_served_meta(item) for item in batch]
            except _Failure as failure:
                self._raise(failure, folder, "list")

    async def list_range(self, folder: RefURI, rng: KeyRange, limit: int, pages: int) -> RangeListing:
        try:
            items, rest, names = await listing.list_range(
                self.client, folder.bucket, folder.key, rng, limit, pages, page_size=self.page_size
            )
            return RangeListing(builtins.list(map(_served_meta, items)), rest, names)
        except _Failure as failure:
            self._raise(failure, folder, "list")

    @classmethod
    def split_range(cls, folder: RefURI, rng: KeyRange, sample: Sequence[str], parts: int) -> builtins.list[KeyRange]:
        return listing.split_range(folder.key, rng, sample, parts)

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        """Media download streamed in chunks; a dropped connection resumes with a Range request pinned to the
        generation first served, so the bytes always come from one generation."""
        generation = uri.version
        offset = 0
        resumes = 0
        client = self.client
        attempts = max(1, client.policy.max_attempts)
        started = time.perf_counter()
        while True:
            try:
                resp: aiohttp.ClientResponse = await client.media(uri.bucket, uri.key, generation, offset)
            except _Failure as failure:
                self._raise(failure, uri, "read")
            try:
                if generation is None:
                    generation = resp.headers.get("x-goog-generation") or None
                if offset and resp.status != 206:
                    self._raise(_Failure(None, "the server ignored a Range request while resuming"), uri, "read")
                try:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        offset += len(chunk)
                        yield chunk
                except TRANSIENT as exc:
                    resumes += 1
                    if resumes >= attempts or generation is None:
                        self._raise(_Failure(None, f"download interrupted: {_describe(exc)}"), uri, "read")
                    logger().debug("gcs.read.resume", bucket=uri.bucket, offset=offset, attempt=resumes)
                    continue
            finally:
                resp.release()
            logger().debug("gcs.read", bucket=uri.bucket, bytes=offset, elapsed=round(time.perf_counter() - started, 4))
            return
