"""`http://` / `https://` resolver on aiohttp (SPEC §4 http row). An HTTP reference is one object, never a folder.

Requests
- One `aiohttp.ClientSession` per resolver (so per `Scanner`): keep-alive connections are reused across URLs,
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

Entries (`ObjectInfo`)
- `key`: the URL as given, redacted; the engine writes `ref = uri.object_ref()` (redacted URL as given, never the
  redirect target).
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
import builtins
import email.utils
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from datetime import timezone
from typing import Any, NoReturn

import aiohttp
import anyio
from multidict import CIMultiDictProxy
from yarl import URL

from ..errors import AccessDenied, BackendError, InvalidURI, NotFound
from ..events import logger
from ..uri import RefURI, redact
from .base import ObjectInfo, Resolver

CHUNK = 1 << 20
#: Error bodies up to this size are read (and dropped) so the connection can be reused.
_DRAIN_LIMIT = 64 * 1024
_HEAD_REFUSED = frozenset({403, 405, 501})
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(?:\d+-\d+|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)
_SAFE_URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx other than 501 (Not Implemented) and 505 (HTTP Version Not Supported)."""
    return status in (408, 429) or (500 <= status <= 599 and status not in (501, 505))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Wait before attempt `attempt + 1`: Retry-After when the server gave one, else `base * 2**(attempt-1)`
    with jitter (50–100 %); never more than `cap`."""
    if retry_after is not None:
        return max(0.0, min(cap, retry_after))
    delay = min(cap, base * 2.0 ** (attempt - 1))
    return max(0.0, delay * random.uniform(0.5, 1.0))


def parse_content_range_total(value: str | None) -> int | None:
    """The complete length N from `bytes a-b/N` or `bytes */N`; None when absent, `*` or malformed."""
    if value is None:
        return None
    m = _CONTENT_RANGE_RE.match(value)
    if m is None or m.group(1) == "*":
        return None
    return int(m.group(1))


def parse_content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def digest_from_etag(etag: str | None, fallback: str) -> str:
    """Strong ETag without quotes, weak ETag kept whole (`W/"x"`), else `fallback` (the redacted URL)."""
    if etag is None:
        return fallback
    etag = etag.strip()
    if etag.startswith(("W/", "w/")):
        return etag if etag[2:].strip('"') else fallback
    stripped = etag[1:-1] if len(etag) >= 2 and etag.startswith('"') and etag.endswith('"') else etag
    return stripped or fallback


def extra_from_headers(headers: CIMultiDictProxy[str] | Mapping[str, str]) -> dict[str, Any]:
    """The manifest `extra` fields found in response `headers` (see the module docstring)."""
    extra: dict[str, Any] = {}
    etag = headers.get("ETag")
    if etag is not None and etag.strip() and digest_from_etag(etag, "") != "":
        extra["etag"] = etag.strip()
    for header, key in (
        ("Last-Modified", "lastModified"),
        ("Content-MD5", "contentMD5"),
        ("Repr-Digest", "reprDigest"),
    ):
        value = headers.get(header)
        if value:
            extra[key] = value
    if isinstance(headers, CIMultiDictProxy):
        goog = headers.getall("x-goog-hash", [])
    else:
        goog = [headers["x-goog-hash"]] if headers.get("x-goog-hash") else []
    if goog:
        extra["xGoogHash"] = ", ".join(goog)
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-amz-checksum-") and lower != "x-amz-checksum-type" and value:
            extra["amzChecksum" + lower[len("x-amz-checksum-") :].upper()] = value
    encoding = headers.get("Content-Encoding")
    if encoding and encoding.strip().lower() != "identity":
        extra["contentEncoding"] = encoding.strip()
    return extra


def object_info(uri: RefURI, headers: CIMultiDictProxy[str] | Mapping[str, str], size: int | None) -> ObjectInfo:
    etag = headers.get("ETag")
    return ObjectInfo(
        key=redact(uri.url),  # the URL without credentials (see ObjectInfo)
        digest=digest_from_etag(etag, redact(uri.url)),
        size=size,
        extra=extra_from_headers(headers),
    )


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


class HTTPResolver(Resolver):
    schemes = ("http", "https")

    _session: aiohttp.ClientSession | None = None
    _identity: bool = True
    _auth_header: bool = False

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
            raise RuntimeError("HTTPResolver used outside 'async with'")
        http = self.options.http
        attempts = max(1, http.max_attempts)
        url = request_url(uri.url)
        if self._auth_header and url.raw_user is not None:
            url = url.with_user(None)  # an Authorization header in HTTPOptions wins over URL credentials
        shown = redact(uri.url)
        log = logger()
        effective_timeout = (
            (client_timeout.total or client_timeout.sock_read) if client_timeout is not None else http.timeout
        )
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            retry_after: float | None = None
            try:
                async with self.limiter:
                    resp = await session.request(
                        method, url, headers=headers, allow_redirects=True, timeout=client_timeout or session.timeout
                    )
            except aiohttp.ClientSSLError as exc:
                raise BackendError(f"{shown}: TLS error ({describe_exception(exc, None)})") from None
            except aiohttp.TooManyRedirects:
                raise BackendError(f"{shown}: too many redirects") from None
            except aiohttp.InvalidURL as exc:
                raise InvalidURI(f"{shown}: invalid URL or redirect target ({type(exc).__name__})") from None
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                failure = describe_exception(exc, effective_timeout)
                log.debug(
                    "http.request",
                    method=method,
                    url=shown,
                    error=failure,
                    attempt=attempt,
                    elapsed=round(time.perf_counter() - started, 4),
                )
            except aiohttp.ClientError as exc:
                raise BackendError(f"{shown}: {method} failed ({describe_exception(exc, None)})") from None
            except ValueError as exc:
                if self._auth_header:  # aiohttp refuses an Authorization header beside ~/.netrc credentials
                    raise BackendError(
                        f"{shown}: HTTPOptions.headers has an Authorization header and ~/.netrc (or $NETRC) also "
                        "has credentials for this host; remove one or set HTTPOptions(trust_env=False)"
                    ) from None
                raise BackendError(f"{shown}: invalid request ({type(exc).__name__})") from None
            else:
                log.debug(
                    "http.request",
                    method=method,
                    url=shown,
                    status=resp.status,
                    attempt=attempt,
                    redirects=len(resp.history),
                    elapsed=round(time.perf_counter() - started, 4),
                )
                if not is_retryable_status(resp.status):
                    return resp
                failure = f"HTTP {resp.status}"
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                await _discard(resp)
            if attempt == attempts:
                raise BackendError(f"{shown}: {method} failed after {attempts} attempts: {failure}")
            delay = backoff_delay(attempt, http.backoff, http.max_backoff, retry_after)
            log.debug("http.retry", method=method, url=shown, attempt=attempt, reason=failure, delay=round(delay, 3))
            await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stat(self, uri: RefURI) -> ObjectInfo:
        resp = await self._request("HEAD", uri, self._headers())
        try:
            if 200 <= resp.status < 300:
                return object_info(uri, resp.headers, parse_content_length(resp.headers))
            if resp.status not in _HEAD_REFUSED:
                raise_for_status(uri, resp)
        finally:
            resp.release()
        logger().debug("http.head_refused", url=redact(uri.url), status=resp.status)
        return await self._stat_by_range(uri)

    async def _stat_by_range(self, uri: RefURI) -> ObjectInfo:
        """`GET` with `Range: bytes=0-0`: headers and total size without the body."""
        resp = await self._request("GET", uri, self._headers({"Range": "bytes=0-0"}))
        try:
            if resp.status == 206:
                size = parse_content_range_total(resp.headers.get("Content-Range"))
                info = object_info(uri, resp.headers, size)
                length = parse_content_length(resp.headers)
                if length is not None and length <= 1:
                    try:
                        await resp.read()  # the one byte asked for: keeps the connection reusable
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        resp.close()  # dropped mid-body: the headers are all we need
                return info
            if resp.status == 416:  # bytes=0-0 is unsatisfiable only for an empty representation
                total = parse_content_range_total(resp.headers.get("Content-Range"))
                return object_info(uri, resp.headers, 0 if total is None else total)
            if 200 <= resp.status < 300:  # Range ignored: the whole body is on its way; do not read it
                info = object_info(uri, resp.headers, parse_content_length(resp.headers))
                resp.close()
                return info
            raise_for_status(uri, resp)
        finally:
            resp.release()

    def list(self, folder: RefURI, limit: int) -> AsyncGenerator[builtins.list[ObjectInfo], None]:
        raise InvalidURI(f"{folder}: http(s) references name a single object and are never expanded")

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
