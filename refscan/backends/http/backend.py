"""`http://` / `https://` backend on aiohttp. An HTTP reference is one object, never a folder.

Requests
- One `aiohttp.ClientSession` per backend (so per `Session`): keep-alive connections are reused across URLs,
  at most `HTTPOptions.per_host_limit` per host and `Options.concurrency` in total. `HTTPOptions.headers`
  (which may hold `Authorization`) are sent on every request and never logged or put in errors; aiohttp drops
  `Authorization` when a redirect leaves the origin. `user:pass@` in a URL is sent as basic auth, unless
  `HTTPOptions.headers` has an `Authorization` header, which then wins.
- The URL is sent as given (no re-quoting, so presigned signatures stay valid) unless it holds characters
  that must be percent-encoded (spaces, non-ASCII), in which case it is encoded.
- `stat`: one HEAD, following redirects. A HEAD refused with 405/501 — or 403, since presigned URLs are
  signed for GET only — is retried once as `GET` with `Range: bytes=0-0`; the total size comes from
  `Content-Range: bytes 0-0/N` (or `bytes */N` on a 416 for an empty file). The body is never downloaded:
  a server that ignores Range and answers 200 gets its connection closed unread, and its Content-Length
  is taken as the size.
- Errors: 404/410 → `NotFound`; 401/403 → `AccessDenied`; 408/429/5xx (except 501/505), timeouts and
  connection errors are retried up to `HTTPOptions.max_attempts` with exponential backoff and jitter,
  honouring `Retry-After` (seconds or HTTP-date, capped at `HTTPOptions.max_backoff`), then
  `BackendError`. Messages and log events carry the redacted URL only (`refscan.uri.redact`), never
  request headers, and never aiohttp's own exception text (which can embed the full URL).

Content-Encoding
- Every request asks for `Accept-Encoding: identity` (unless the caller set Accept-Encoding in
  `HTTPOptions.headers`) and aiohttp never decodes bodies (`auto_decompress=False`). So the recorded size is
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
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import aiohttp
from yarl import URL

from ...errors import AccessDenied, BackendError, InvalidURI, NotFound
from ...events import logger
from ...fingerprint import MD5
from ...meta import ObjectMeta
from ...retry import Retryable, retrying
from ...uri import RefURI, redact, shown
from ..base import Backend
from .headers import (
    AZURE_BLOB_SUFFIX,
    REPR_DIGEST,
    is_retryable_status,
    normalize_etag,
    object_meta,
    parse_content_length,
    parse_content_range_total,
    parse_retry_after,
)

CHUNK = 1 << 20
#: Error bodies up to this size are read (and dropped) so the connection can be reused.
_DRAIN_LIMIT = 64 * 1024
_HEAD_REFUSED = frozenset({403, 405, 501})
_SAFE_URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")


def request_url(url: str) -> URL:
    """`url` as a yarl URL sent byte-for-byte as given, unless it holds characters that must be encoded."""
    try:
        if all(c in _SAFE_URL_CHARS for c in url):
            return URL(url, encoded=True)
        return URL(url)
    except (ValueError, TypeError) as exc:
        raise InvalidURI(f"malformed URL {redact(url)!r}: {type(exc).__name__}") from None


def describe_exception(exc: BaseException, timeout: float | None) -> str:
    """A short, secret-free description of a client-side failure (never aiohttp's own text, which can hold
    the URL with its credentials)."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _redirect_hint(uri: RefURI, resp: aiohttp.ClientResponse) -> str:
    if not resp.history:
        return ""
    target = resp.url.with_query(None).with_fragment(None).with_user(None)
    hint = f" (redirected to {target})"
    if target.path.endswith("/") and not uri.key.endswith("/"):
        hint += "; the URL names a directory — http(s) references name single files and are never expanded"
    return hint


def raise_for_status(uri: RefURI, resp: aiohttp.ClientResponse) -> NoReturn:
    """Map a final (non-retryable or retries exhausted) error status to the refscan error tree."""
    shown = redact(uri.url)
    status = f"HTTP {resp.status}{' ' + resp.reason if resp.reason else ''}"
    hint = _redirect_hint(uri, resp)
    if resp.status in (404, 410):
        raise NotFound(f"{shown}: {status}{hint}")
    if resp.status in (401, 403):
        raise AccessDenied(
            f"{shown}: {status}{hint}; pass credentials with HTTPOptions(headers={{'Authorization': ...}}) "
            "or check that a presigned URL has not expired"
        )
    raise BackendError(f"{shown}: {status}{hint}")


async def _discard(resp: aiohttp.ClientResponse) -> None:
    """Drop a response we do not use; small bodies are drained so the connection can be reused."""
    try:
        length = parse_content_length(resp.headers)
        if resp.method != "HEAD" and (length is None or length > _DRAIN_LIMIT):
            resp.close()
            return
        if resp.method != "HEAD":
            await resp.read()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        resp.close()
    finally:
        resp.release()


class HTTPBackend(Backend):
    """An http(s) URL is one object, never a folder; its ref is the URL as given, redacted."""

    schemes = ("http", "https")
    folders = False

    _session: aiohttp.ClientSession | None = None
    _identity: bool = True
    _auth_header: bool = False

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

    @classmethod
    def delegated_to_wandb(cls, uri: str) -> bool:
        """True for Azure Blob URLs, which W&B's own handler lists as folders (refscan would read one object)."""
        return (urlsplit(uri).hostname or "").lower().endswith(AZURE_BLOB_SUFFIX)

    async def open(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise BackendError(
                "http(s):// references need an asyncio event loop (aiohttp); trio is not supported"
            ) from None
        http = self.options.http
        connector = aiohttp.TCPConnector(
            limit=max(1, self.options.concurrency, http.per_host_limit),
            limit_per_host=max(1, http.per_host_limit),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=http.timeout),
            headers=dict(http.headers),
            auto_decompress=False,
            trust_env=http.trust_env,
        )
        self._identity = not any(k.lower() == "accept-encoding" for k in http.headers)
        self._auth_header = any(k.lower() == "authorization" for k in http.headers)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"} if self._identity else {}
        headers.update(extra or {})
        return headers

    async def _request(
        self,
        method: str,
        uri: RefURI,
        headers: Mapping[str, str],
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        """Send `method`, following redirects, with retries; returns the first response whose status is not
        retryable (the caller releases it). Raises `BackendError` once `max_attempts` attempts failed
        (retryable status, timeout, connection error); the limiter is held per attempt, never while waiting."""
        session = self._session
        if session is None:
            raise RuntimeError("HTTPBackend used outside 'async with'")
        http = self.options.http
        policy = self.options.retry.with_overrides(
            max_attempts=http.max_attempts, backoff=http.backoff, max_backoff=http.max_backoff
        )
        url = request_url(uri.url)
        if self._auth_header and url.raw_user is not None:
            url = url.with_user(None)  # an Authorization header in HTTPOptions wins over URL credentials
        shown_url = redact(uri.url)
        log = logger()
        effective_timeout = (
            (client_timeout.total or client_timeout.sock_read) if client_timeout is not None else http.timeout
        )
        attempts = 0

        async def attempt() -> aiohttp.ClientResponse:
            nonlocal attempts
            attempts += 1
            started = time.perf_counter()
            try:
                async with self.limiter:
                    resp = await session.request(
                        method, url, headers=headers, allow_redirects=True, timeout=client_timeout or session.timeout
                    )
            except aiohttp.ClientSSLError as exc:
                raise BackendError(f"{shown_url}: TLS error ({describe_exception(exc, None)})") from None
            except aiohttp.TooManyRedirects:
                raise BackendError(f"{shown_url}: too many redirects") from None
            except aiohttp.InvalidURL as exc:
                raise InvalidURI(f"{shown_url}: invalid URL or redirect target ({type(exc).__name__})") from None
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                failure = describe_exception(exc, effective_timeout)
                log.debug(
                    "http.request",
                    method=method,
                    url=shown_url,
                    error=failure,
                    attempt=attempts,
                    elapsed=round(time.perf_counter() - started, 4),
                )
                raise Retryable(failure) from None
            except aiohttp.ClientError as exc:
                raise BackendError(f"{shown_url}: {method} failed ({describe_exception(exc, None)})") from None
            except ValueError as exc:
                if self._auth_header:  # aiohttp refuses an Authorization header beside ~/.netrc credentials
                    raise BackendError(
                        f"{shown_url}: HTTPOptions.headers has an Authorization header and ~/.netrc (or $NETRC) "
                        "also has credentials for this host; remove one or set HTTPOptions(trust_env=False)"
                    ) from None
                raise BackendError(f"{shown_url}: invalid request ({type(exc).__name__})") from None
            log.debug(
                "http.request",
                method=method,
                url=shown_url,
                status=resp.status,
                attempt=attempts,
                redirects=len(resp.history),
                elapsed=round(time.perf_counter() - started, 4),
            )
            if not is_retryable_status(resp.status):
                return resp
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            await _discard(resp)
            raise Retryable(f"HTTP {resp.status}", retry_after=retry_after, status=resp.status)

        try:
            return await retrying(policy, attempt, event="http.retry", method=method, url=shown_url)
        except Retryable as exc:
            raise BackendError(f"{shown_url}: {method} failed after {attempts} attempts: {exc.failure}") from None

    async def stat(self, uri: RefURI) -> ObjectMeta:
        resp = await self._request("HEAD", uri, self._headers())
        try:
            if 200 <= resp.status < 300:
                return object_meta(uri, resp.headers, parse_content_length(resp.headers))
            if resp.status not in _HEAD_REFUSED:
                raise_for_status(uri, resp)
        finally:
            resp.release()
        logger().debug("http.head_refused", url=redact(uri.url), status=resp.status)
        return await self._stat_by_range(uri)

    async def _stat_by_range(self, uri: RefURI) -> ObjectMeta:
        """`GET` with `Range: bytes=0-0`: headers and total size without the body."""
        resp = await self._request("GET", uri, self._headers({"Range": "bytes=0-0"}))
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
            raise_for_status(uri, resp)
        finally:
            resp.release()

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        http = self.options.http
        # Downloads may take longer than `timeout` in total: bound connecting and each read instead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=http.timeout, sock_read=http.timeout)
        resp = await self._request("GET", uri, self._headers(), timeout)
        try:
            if not 200 <= resp.status < 300:
                raise_for_status(uri, resp)
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    yield chunk
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise BackendError(
                    f"{redact(uri.url)}: connection lost while reading ({describe_exception(exc, http.timeout)})"
                ) from None
        finally:
            resp.release()
