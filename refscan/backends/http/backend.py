"""`http://` / `https://` backend on aiohttp. An HTTP reference is one object, never a folder. Requests (session,
credentials, proxies, redirects, retries, errors) go through `client.HTTPClient`.

- `stat`: one HEAD, following redirects. A HEAD refused with 405/501 — or 403, since presigned URLs are
  signed for GET only — is retried once as `GET` with `Range: bytes=0-0`; the total size comes from
  `Content-Range: bytes 0-0/N` (or `bytes */N` on a 416 for an empty file). The body is never downloaded:
  a server that ignores Range and answers 200 gets its connection closed unread, and its Content-Length
  is taken as the size.

Content-Encoding
- Requests ask for identity and bodies are never decoded (see `client.py`). So the recorded size is
  the byte count of the representation as served: for ordinary servers, the file size; for a resource that
  is *stored* encoded (e.g. an S3/GCS object uploaded with `Content-Encoding: gzip`, which is sent encoded
  even to identity requests), the encoded size — the same bytes the server's ETag / Content-MD5 /
  x-goog-hash describe, and the bytes `read()` yields. Such entries carry `extra["contentEncoding"]`.

Entries (`ObjectMeta` and its codec)
- `key` and `ref`: the URL as given, redacted (never the redirect target).
- `digest`: a strong ETag without its quotes; a weak ETag kept whole (`W/"…"`, a change signal only);
  without an ETag, the redacted URL. Such an entry has no `extra["etag"]`: that absence is the mark that
  the digest proves nothing and verification can only be `unverifiable` (or lean on `lastModified`/size).
- `size`: Content-Length (or the Content-Range total) when known, else None (chunked responses).
- `extra` (each only when the header is present): `etag` (raw header), `lastModified` (raw),
  `contentMD5` (Content-MD5), `xGoogHash` (x-goog-hash values joined by ", "),
  `amzChecksum<ALG>` (x-amz-checksum-<alg>, e.g. `amzChecksumSHA256`), `reprDigest` (Repr-Digest),
  `contentEncoding` (Content-Encoding other than identity).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import anyio

from ...errors import BackendError, InvalidURI, ResumeRefused
from ...events import logger
from ...fingerprint import MD5
from ...meta import ObjectMeta
from ...options import Options
from ...uri import RefURI, redact, shown
from ..base import Backend
from .client import HTTPClient, describe_exception, raise_for_status
from .headers import (
    REPR_DIGEST,
    normalize_etag,
    object_meta,
    parse_content_length,
    parse_content_range_total,
)

CHUNK = 1 << 20
_HEAD_REFUSED = frozenset({403, 405, 501})


class HTTPBackend(Backend):
    """An http(s) URL is one object, never a folder; its ref is the URL as given, redacted."""

    schemes = ("http", "https")
    folders = False

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        super().__init__(options, limiter)
        self._client = HTTPClient(options, limiter)

    @classmethod
    def parse_uri(cls, scheme: str, text: str) -> RefURI:
        try:
            parts = urlsplit(text)
            host = parts.hostname
            _ = parts.port  # validates the port
        except ValueError as exc:  # urllib's message may quote the netloc, user:password included
            detail = f": {exc}" if "@" not in text else ""
            raise InvalidURI(f"malformed URL {shown(text)}{detail}") from None
        if not host or not parts.netloc:
            raise InvalidURI(f"malformed URL {shown(text)}: no host")
        return RefURI(scheme, parts.netloc.rpartition("@")[2], parts.path or "/", None, text)

    @classmethod
    def object_ref(cls, uri: RefURI) -> str:
        return redact(uri.url)

    @classmethod
    def format_uri(cls, uri: RefURI) -> str:
        return redact(uri.url)

    @classmethod
    def file_name(cls, uri: RefURI) -> str:
        return unquote(uri.key.rsplit("/", 1)[-1])

    @classmethod
    def entry_ref(cls, uri: RefURI, meta: ObjectMeta) -> str:
        return redact(uri.url)  # the URL as given, never a redirect target

    @classmethod
    def encode(cls, meta: ObjectMeta) -> tuple[str, dict[str, Any]]:
        extra: dict[str, Any] = {}
        if "etag" in meta.attrs:
            extra["etag"] = meta.attrs["etag"]
        if meta.modified:
            extra["lastModified"] = meta.modified
        for kind, key in ((MD5, "contentMD5"), (REPR_DIGEST, "reprDigest")):
            if kind in meta.hashes:
                extra[key] = meta.hashes[kind]
        extra.update((k, v) for k, v in meta.attrs.items() if k != "etag")
        return meta.etag or meta.key, extra

    @classmethod
    def decode(cls, key: str, digest: str, size: int | None, extra: Mapping[str, Any]) -> ObjectMeta:
        raw = extra.get("etag")
        etag = normalize_etag(raw) if isinstance(raw, str) else None
        hashes = {kind: str(extra[k]) for kind, k in ((MD5, "contentMD5"), (REPR_DIGEST, "reprDigest")) if extra.get(k)}
        attrs = {k: v for k, v in extra.items() if k not in ("lastModified", "contentMD5", "reprDigest")}
        modified = extra.get("lastModified")
        return ObjectMeta(
            key=key, size=size, etag=etag, modified=str(modified) if modified else None, hashes=hashes, attrs=attrs
        )

    async def open(self) -> None:
        await self._client.open()

    async def close(self) -> None:
        await self._client.close()

    async def stat(self, uri: RefURI) -> ObjectMeta:
        resp, redirects = await self._client.request("HEAD", uri)
        try:
            if 200 <= resp.status < 300:
                return object_meta(uri, resp.headers, parse_content_length(resp.headers))
            if resp.status not in _HEAD_REFUSED:
                raise_for_status(uri, resp, redirects)
        finally:
            resp.release()
        logger().debug("http.head_refused", url=redact(uri.url), status=resp.status)
        return await self._stat_by_range(uri)

    async def _stat_by_range(self, uri: RefURI) -> ObjectMeta:
        """`GET` with `Range: bytes=0-0`: headers and total size without the body."""
        resp, redirects = await self._client.request("GET", uri, {"Range": "bytes=0-0"})
        try:
            if resp.status == 206:
                size = parse_content_range_total(resp.headers.get("Content-Range"))
                info = object_meta(uri, resp.headers, size)
                length = parse_content_length(resp.headers)
                if length is not None and length <= 1:
                    try:
                        await resp.read()  # the one byte asked for: keeps the connection reusable
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        resp.close()  # dropped mid-body: the headers are all we need
                return info
            if resp.status == 416:  # bytes=0-0 is unsatisfiable only for an empty representation
                total = parse_content_range_total(resp.headers.get("Content-Range"))
                return object_meta(uri, resp.headers, 0 if total is None else total)
            if 200 <= resp.status < 300:  # Range ignored: the whole body is on its way; do not read it
                info = object_meta(uri, resp.headers, parse_content_length(resp.headers))
                resp.close()
                return info
            raise_for_status(uri, resp, redirects)
        finally:
            resp.release()

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        """GET streamed in chunks. A connection dropped mid-body resumes from the last byte received with
        `Range` and `If-Range: <the strong ETag first served>`, up to the retry policy's attempts; the server
        answers 206 with the rest of the same representation, or 200 when it changed, which (like a first
        response without a strong ETag) raises `ResumeRefused`: the read must start again from zero."""
        http = self.options.http
        # Downloads may take longer than `timeout` in total: bound connecting and each read instead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=http.timeout, sock_read=http.timeout)
        shown_url = redact(uri.url)
        attempts = max(1, self._client.policy.max_attempts)
        headers: dict[str, str] = {}
        offset = resumes = 0
        while True:
            resp, redirects = await self._client.request("GET", uri, headers, timeout)
            try:
                if not 200 <= resp.status < 300:
                    raise_for_status(uri, resp, redirects)
                if offset and not _resumes_at(resp, offset):
                    raise ResumeRefused(f"{shown_url}: the resource changed while it was being read")
                etag = resp.headers.get("ETag")
                try:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        offset += len(chunk)
                        yield chunk
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    failure = f"{shown_url}: connection lost while reading ({describe_exception(exc, http.timeout)})"
                    if offset and not headers:
                        if etag is None or etag.startswith("W/"):
                            raise ResumeRefused(f"{failure}; no strong ETag to resume on") from None
                        headers["If-Range"] = etag
                    resumes += 1
                    if resumes >= attempts:
                        raise BackendError(failure) from None
                    logger().debug("http.read.resume", url=shown_url, offset=offset, attempt=resumes)
                    headers["Range"] = f"bytes={offset}-"
                    continue
            finally:
                resp.release()
            return


def _resumes_at(resp: aiohttp.ClientResponse, offset: int) -> bool:
    """True when `resp` is a 206 carrying the bytes from `offset` on (not a 200 with the whole, changed body)."""
    found = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return resp.status == 206 and found is not None and int(found.group(1)) == offset
