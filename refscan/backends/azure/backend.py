"""`az://` backend: Azure Blob Storage (and Azurite) on azure-storage-blob's async client.

URIs (`config.split`): `az://container/blob` in the configured account, `https://<account>.blob.core.windows.
net/container/blob` (W&B's form) and any URL under the configured endpoint (Azurite's
`http://127.0.0.1:10000/devstoreaccount1/container/blob`); `?versionId=V` at the end pins a version. Blob names
are taken as written. The canonical form, and the ref, is `<account URL>/<container>/<blob>`.

Single blobs cost one Get Blob Properties; folders List Blobs pages (`listing.py`), never a request per
blob: one chain, or key ranges listed at once where the service honours `startFrom` (`ranges.py`; probed once
per account, off with `AzureOptions(parallel_listing=False)`); the same ranges serve scale-out and
checkpoints (`list_range`, `split_range`). Directory stubs (`hdi_isfolder=true`) and folder markers are not
objects: `stat` says NotFound (so a stub named like the folder leads to the folder) and listings skip them.

Entries (docs/behaviour.md, Entries): `digest` = the ETag without quotes; `extra` = `etag` (the same),
`versionID` (when the account keeps versions), `contentMD5` (base64, when the blob has one: single-shot
uploads do, block uploads usually do not). `decode` also reads W&B's entries (`etag` and `versionID` only).

Fingerprint (the base rule): the Content-MD5, then the version id, then the ETag; an Azure ETag is not a hash
of the content, so a deep check can only recompute the MD5, and an entry without one is checked by its ETag.
"""

from __future__ import annotations

import builtins
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import anyio
from azure.core import MatchConditions
from azure.core.exceptions import AzureError

from ...errors import NotFound
from ...events import logger
from ...fingerprint import MD5
from ...meta import ObjectMeta
from ...options import Options
from ...uri import RefURI
from ..base import BucketBackend
from ..keyspace import KeyRange, RangeListing
from . import config, ranges
from .client import TRANSIENT, AzureClient, Malformed, translate
from .listing import MAX_PAGE, Page, parse_page, properties_meta

#: `extra` keys the codec reads into named fields; any other key is kept in `attrs` and written back
_CODEC_KEYS = frozenset({"etag", "versionID", "contentMD5"})


class _Pages:
    """The List Blobs pages of one container (the listing's `PageSource`): each page is fetched and parsed
    within one attempt, so a page cut short is asked again."""

    def __init__(self, backend: AzureBackend, folder: RefURI) -> None:
        self.client = backend.client
        self.account, self.container = config.parts(folder)
        self.target = str(folder)
        self.include = "metadata,versions" if backend.options.azure.versions else "metadata"

    async def page(self, prefix: str, marker: str | None, max_results: int, start_from: str | None = None) -> Page:
        async def request() -> Page:
            body = await self.client.list_page(
                self.account, self.container, prefix, marker, max_results, self.include, start_from
            )
            return parse_page(body)

        return await self.client.call("list", self.target, self.account, request)


class AzureBackend(BucketBackend):
    """Azure blobs; versions are blob version ids."""

    schemes = ("az",)
    versioned = True
    listing_fingerprints = True
    ranged = True
    version_pattern = config.VERSION_RE
    #: List Blobs page size (the service maximum); tests lower it to force pagination.
    page_size: ClassVar[int] = MAX_PAGE
    #: how many key ranges of one folder are listed at once once it spans several pages.
    list_fanout: ClassVar[int] = 16

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        super().__init__(options, limiter)
        self.client = AzureClient(options, limiter)
        self._start_from: dict[str, bool] = {}  # account URL -> whether List Blobs honours startFrom (probed)

    # -- URIs (no I/O) ---------------------------------------------------------------------------------

    @classmethod
    def parse_uri(cls, scheme: str, text: str) -> RefURI:
        return config.split(text, Options().azure)

    @classmethod
    def parse_configured(cls, scheme: str, text: str, options: Options) -> RefURI:
        return config.split(text, options.azure)

    @classmethod
    def object_ref(cls, uri: RefURI) -> str:
        return f"{uri.bucket}/{uri.key}"

    @classmethod
    def format_uri(cls, uri: RefURI) -> str:
        ref = f"{uri.bucket}/{uri.key}"
        return ref if uri.version is None else f"{ref}?versionId={uri.version}"

    @classmethod
    def file_name(cls, uri: RefURI) -> str:
        stripped = uri.key.rstrip("/")
        return stripped.rsplit("/", 1)[-1] if stripped else config.parts(uri)[1]

    @classmethod
    def entry_ref(cls, uri: RefURI, meta: ObjectMeta) -> str:
        return f"{uri.bucket}/{meta.key}"

    @classmethod
    def direct_url(cls, uri: RefURI, options: Options) -> str:
        """`<account URL>/<container>/<blob>` percent-encoded, with `?versionid=` when pinned."""
        url = f"{uri.bucket}/{quote(uri.key, safe='/')}"
        return f"{url}?{urlencode({'versionid': uri.version})}" if uri.version is not None else url

    # -- codec (no I/O) --------------------------------------------------------------------------------

    @classmethod
    def encode(cls, meta: ObjectMeta) -> tuple[str, dict[str, Any]]:
        if not meta.etag:
            raise ValueError(f"{meta.key!r}: an Azure blob without an ETag has no manifest digest")
        extra: dict[str, Any] = {"etag": meta.etag}
        if meta.version is not None:
            extra["versionID"] = meta.version
        if meta.hashes.get(MD5):
            extra["contentMD5"] = meta.hashes[MD5]
        extra.update((k, v) for k, v in meta.attrs.items() if k not in extra)
        return meta.etag, extra

    @classmethod
    def decode(cls, key: str, digest: str, size: int | None, extra: Mapping[str, Any]) -> ObjectMeta:
        etag = extra.get("etag")
        version = extra.get("versionID")
        md5 = extra.get("contentMD5")
        return ObjectMeta(
            key=key,
            size=size,
            etag=str(etag).strip('"') if etag else digest,
            version=str(version) if version else None,
            hashes={MD5: md5} if isinstance(md5, str) and md5 else {},
            attrs={k: v for k, v in extra.items() if k not in _CODEC_KEYS},
        )

    # -- I/O -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    async def stat(self, uri: RefURI) -> ObjectMeta:
        if not uri.key or uri.key.endswith("/"):
            raise NotFound(f"{uri}: a container or folder is not a blob")
        account, container = config.parts(uri)
        blob = self.client.service(account).get_blob_client(container, uri.key)
        pinned = uri.version is not None
        started = time.perf_counter()
        props = await self.client.call(
            "get", str(uri), account, lambda: blob.get_blob_properties(version_id=uri.version), pinned=pinned
        )
        meta = properties_meta(props)
        if meta is None:
            raise NotFound(f"{uri}: a directory stub (hdi_isfolder), not a blob")
        logger().debug("azure.stat", pinned=pinned, elapsed=round(time.perf_counter() - started, 4))
        return meta

    def _probe(self, source: _Pages, prefix: str) -> ranges.Probe | None:
        """Whether `source`'s account honours `startFrom`, asked once per account; None when key ranges are off."""
        if not self.options.azure.parallel_listing:
            return None

        async def probe(name: str) -> bool:
            if source.account not in self._start_from:
                honoured = await ranges.honours_start_from(source, prefix, name)
                self._start_from[source.account] = honoured
                logger().debug("azure.start_from", honoured=honoured)
            return self._start_from[source.account]

        return probe

    async def list(self, folder: RefURI, limit: int) -> AsyncGenerator[builtins.list[ObjectMeta], None]:
        source = _Pages(self, folder)
        fanout = max(1, min(self.list_fanout, int(min(self.limiter.total_tokens, 1 << 16))))
        batches = ranges.list_blobs(
            source, folder.key, limit, page_size=self.page_size, fanout=fanout, probe=self._probe(source, folder.key)
        )
        async with aclosing(batches) as pages:
            async for batch in pages:
                yield batch

    async def list_range(self, folder: RefURI, rng: KeyRange, limit: int, pages: int) -> RangeListing:
        source = _Pages(self, folder)
        listing = await ranges.list_range(source, folder.key, rng, limit, pages, page_size=self.page_size)
        if listing.rest is not None and listing.splittable:
            probe = self._probe(source, folder.key)
            names = listing.sample
            listing.splittable = probe is not None and len(names) >= 2 and await probe(names[-1])
        return listing

    @classmethod
    def split_range(cls, folder: RefURI, rng: KeyRange, sample: Sequence[str], parts: int) -> builtins.list[KeyRange]:
        return ranges.split_range(folder.key, rng, sample, parts)

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        """Ranged reads in 4 MiB chunks; a dropped connection or a body shorter than the blob resumes from the
        last byte received, pinned to the version, else to the ETag first served (If-Match), so the bytes
        always come from one blob and are all of it."""
        account, container = config.parts(uri)
        blob = self.client.service(account).get_blob_client(container, uri.key)
        target = str(uri)
        pinned = uri.version is not None
        offset = resumes = 0
        size: int | None = None
        etag: str | None = None
        attempts = max(1, self.client.policy.max_attempts)
        started = time.perf_counter()
        while size is None or offset < size:
            kwargs: dict[str, Any] = {"offset": offset or None, "version_id": uri.version}
            if etag is not None and not pinned:
                kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
            downloader = await self.client.call(
                "read", target, account, functools.partial(blob.download_blob, **kwargs), pinned=pinned
            )
            if size is None:
                size = offset + int(downloader.size or 0)
                etag = downloader.properties.etag
            try:
                async for chunk in downloader.chunks():
                    offset += len(chunk)
                    yield chunk
            except (AzureError, *TRANSIENT) as exc:
                failure: Exception = exc
            else:
                if offset >= size:
                    break
                failure = Malformed(f"{target}: read cut short: the body ended at byte {offset} of {size}")
            resumes += 1
            if resumes >= attempts:
                raise translate(failure, target, "read", self.client.source_for(account), pinned=pinned) from None
            logger().debug("azure.read.resume", offset=offset, attempt=resumes)
        logger().debug("azure.read", bytes=offset, elapsed=round(time.perf_counter() - started, 4))
