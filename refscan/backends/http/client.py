"""The HTTP client of one backend: its aiohttp session and the one request path (`HTTPClient.request`).

- One `aiohttp.ClientSession` per backend (so per `Session`): keep-alive connections are reused across URLs,
  at most `HTTPOptions.per_host_limit` per host and `Options.concurrency` in total. `HTTPOptions.headers`
  (which may hold `Authorization`) are sent on every request and never logged or put in errors. Every
  request asks for `Accept-Encoding: identity` (unless `HTTPOptions.headers` sets Accept-Encoding) and
  bodies are never decoded (`auto_decompress=False`).
- Credentials, first match wins: an `Authorization` header in `HTTPOptions.headers`; `user:pass@` in the URL
  (basic auth); with `HTTPOptions.trust_env`, the `~/.netrc` (or `$NETRC`) entry of the host (basic auth). An
  `Authorization` header beside netrc credentials for the same host is refused (`BackendError`), as aiohttp
  refuses it. With `trust_env`, `HTTP(S)_PROXY` / `NO_PROXY` choose the proxy. Both are looked up once per
  (scheme, host) and cached for the backend's life (`routing.py`); the session itself has `trust_env=False`.
- Redirects (301/302/303/307/308 with a Location) are followed here, at most 9, each hop with its own host's
  proxy and netrc credentials, as aiohttp's `trust_env` would; leaving the origin drops `Authorization`,
  `Cookie` and `Proxy-Authorization` (from `HTTPOptions.headers` too) and the credentials of the first URL.
  One `HTTPOptions.timeout` bounds the whole chain.
- The URL is sent as given (no re-quoting, so presigned signatures stay valid) unless it holds characters
  that must be percent-encoded (spaces, non-ASCII), in which case it is encoded.
- Errors: 404/410 → `NotFound`; 401/403 → `AccessDenied`; 408/429/5xx (except 501/505), timeouts and
  connection errors are retried up to `HTTPOptions.max_attempts` with exponential backoff and jitter,
  honouring `Retry-After` (seconds or HTTP-date, capped at `HTTPOptions.max_backoff`), then
  `BackendError`. Messages and log events carry the redacted URL only (`refscan.uri.redact`), never
  request headers, and never aiohttp's own exception text (which can embed the full URL).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from typing import NoReturn

import aiohttp
import anyio
from aiohttp import hdrs
from multidict import CIMultiDict
from yarl import URL

from ...errors import AccessDenied, BackendError, InvalidURI, NotFound, RefscanError
from ...events import logger
from ...options import Options, RetryPolicy
from ...retry import Retryable, retrying
from ...uri import RefURI, redact
from .headers import is_retryable_status, parse_content_length, parse_retry_after
from .routing import DIRECT, Route, Routes

#: Error bodies up to this size are read (and dropped) so the connection can be reused.
_DRAIN_LIMIT = 64 * 1024
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
#: The redirect that would be the 10th is an error, as with aiohttp's default `max_redirects=10`.
MAX_REDIRECTS = 10
#: Request headers that never follow a redirect to another origin.
_ORIGIN_BOUND = (hdrs.AUTHORIZATION, hdrs.COOKIE, hdrs.PROXY_AUTHORIZATION)
_SAFE_URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")


def request_url(url: str) -> URL:
    """`url` as a yarl URL sent byte-for-byte as given, unless it holds characters that must be encoded."""
    try:
        if all(c in _SAFE_URL_CHARS for c in url):
            return URL(url, encoded=True)
        return URL(url)
    except (ValueError, TypeError) as exc:
        raise InvalidURI(f"malformed URL {redact(url)!r}: {type(exc).__name__}") from None


def basic_authorization(login: str, password: str) -> str:
    """The `Authorization` value for basic auth, encoded as aiohttp encodes URL credentials (latin-1)."""
    return "Basic " + base64.b64encode(f"{login}:{password}".encode("latin1")).decode("ascii")


def redirect_target(url: URL, location: str) -> URL:
    """Where a redirect from `url` with this `Location` leads: re-quoted as aiohttp does, relative references
    resolved against `url`. Raises `InvalidURI` (which never quotes `location`) for anything but an http(s)
    URL with a host."""
    try:
        target = URL(location)
        if not target.scheme:
            target = url.join(target)
    except (ValueError, TypeError):
        target = None
    if target is None or target.scheme not in ("http", "https") or not target.raw_host:
        raise InvalidURI("invalid redirect target (not an http(s) URL with a host)")
    return target


def describe_exception(exc: BaseException, timeout: float | None) -> str:
    """A short, secret-free description of a client-side failure (never aiohttp's own text, which can hold
    the URL with its credentials)."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return f"the proxy answered HTTP {exc.status}"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to the proxy {exc.host}:{exc.port} ({reason})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _redirect_hint(uri: RefURI, resp: aiohttp.ClientResponse, redirected: bool) -> str:
    if not redirected:
        return ""
    target = resp.url.with_query(None).with_fragment(None).with_user(None)
    hint = f" (redirected to {target})"
    if target.path.endswith("/") and not uri.key.endswith("/"):
        hint += "; the URL names a directory — http(s) references name single files and are never expanded"
    return hint


def raise_for_status(uri: RefURI, resp: aiohttp.ClientResponse, redirects: int = 0) -> NoReturn:
    """Map a final (non-retryable or retries exhausted) error status to the refscan error tree; `redirects`
    followed before `resp` adds where they led (without query or credentials)."""
    shown = redact(uri.url)
    status = f"HTTP {resp.status}{' ' + resp.reason if resp.reason else ''}"
    hint = _redirect_hint(uri, resp, redirects > 0)
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


class HTTPClient:
    """The requests of one backend: use between `await open()` and `await close()`; `limiter` is held per
    attempt, never while waiting."""

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        self.options = options
        self.limiter = limiter
        self._session: aiohttp.ClientSession | None = None
        #: HTTPOptions.headers plus `Accept-Encoding: identity`; shared, never mutated
        self._base_headers: CIMultiDict[str] = CIMultiDict()
        self._trust_env = False
        self._routes: Routes | None = None
        self._policy = RetryPolicy()

    async def open(self) -> None:
        """Create the session (needs a running asyncio loop) and read `HTTPOptions` once."""
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
            auto_decompress=False,
            trust_env=False,  # proxies and netrc are looked up once per host by `_routes` instead
        )
        base: CIMultiDict[str] = CIMultiDict(http.headers)
        if hdrs.ACCEPT_ENCODING not in base:
            base[hdrs.ACCEPT_ENCODING] = "identity"
        self._base_headers = base
        self._trust_env = http.trust_env
        self._routes = Routes()
        self._policy = self.options.retry.with_overrides(
            max_attempts=http.max_attempts, backoff=http.backoff, max_backoff=http.max_backoff
        )

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of this client (`Options.retry` with the `HTTPOptions` overrides)."""
        return self._policy

    async def close(self) -> None:
        """Close the session (safe to call twice)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _headers(self, extra: Mapping[str, str] | None = None) -> CIMultiDict[str]:
        """The headers of one request: `HTTPOptions.headers`, identity encoding, then `extra`. Not to be mutated
        (without `extra` it is the client's shared copy)."""
        if not extra:
            return self._base_headers
        headers = self._base_headers.copy()
        headers.update(extra)
        return headers

    async def _route(self, url: URL) -> Route:
        """The proxy and netrc credentials for `url`'s host (looked up once per host, see `routing.py`)."""
        routes = self._routes
        if not self._trust_env or routes is None:
            return DIRECT
        route = routes.cached(url)
        if route is not None:
            return route
        try:
            return await routes.get(url)
        except (ValueError, OSError) as exc:
            raise BackendError(
                f"{url.scheme}://{url.host}: the proxy or netrc settings of the environment are unusable "
                f"({type(exc).__name__}); fix HTTP(S)_PROXY / NO_PROXY / NETRC or set HTTPOptions(trust_env=False)"
            ) from None

    async def _follow(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        client_timeout: aiohttp.ClientTimeout,
        shown_url: str,
    ) -> tuple[aiohttp.ClientResponse, int]:
        """One attempt: send `method` and follow redirects (see the module docstring). Returns the final
        response (the caller releases it) and the number of redirects followed. Raises `BackendError` /
        `InvalidURI` for too many redirects, a bad redirect target or conflicting credentials, and aiohttp's
        exceptions for transport failures."""
        loop = asyncio.get_running_loop()
        deadline = None if client_timeout.total is None else loop.time() + client_timeout.total
        hop_timeout = client_timeout
        auth: str | None = None  # basic auth of the current origin: from the URL or from netrc
        redirects = 0
        while True:
            if url.raw_user is not None or url.raw_password is not None:
                if hdrs.AUTHORIZATION not in headers:  # an Authorization header wins over URL credentials
                    auth = basic_authorization(url.user or "", url.password or "")
                url = url.with_user(None)
            route = await self._route(url)
            if auth is None and route.netrc_authorization is not None:
                if hdrs.AUTHORIZATION in headers:
                    raise BackendError(
                        f"{shown_url}: HTTPOptions.headers has an Authorization header and ~/.netrc (or $NETRC) "
                        "also has credentials for this host; remove one or set HTTPOptions(trust_env=False)"
                    )
                auth = route.netrc_authorization
            send = headers
            proxy_headers: dict[str, str] | None = None
            if route.proxy_authorization is not None and url.scheme == "https":
                proxy_headers = {hdrs.PROXY_AUTHORIZATION: route.proxy_authorization}  # CONNECT only
            if auth is not None or (route.proxy_authorization is not None and proxy_headers is None):
                send = headers.copy()
                if auth is not None:
                    send[hdrs.AUTHORIZATION] = auth
                if route.proxy_authorization is not None and proxy_headers is None:
                    send[hdrs.PROXY_AUTHORIZATION] = route.proxy_authorization  # plain HTTP: the proxy reads it
            if redirects and deadline is not None:
                hop_timeout = aiohttp.ClientTimeout(
                    total=max(0.001, deadline - loop.time()),
                    connect=client_timeout.connect,
                    sock_read=client_timeout.sock_read,
                    sock_connect=client_timeout.sock_connect,
                )
            resp = await session.request(
                method,
                url,
                headers=send,
                proxy=route.proxy,
                proxy_headers=proxy_headers,
                allow_redirects=False,
                timeout=hop_timeout,
            )
            location = resp.headers.get(hdrs.LOCATION) or resp.headers.get(hdrs.URI)
            if resp.status not in _REDIRECT_STATUS or location is None:
                return resp, redirects
            redirects += 1
            if redirects >= MAX_REDIRECTS:
                resp.close()
                raise BackendError(f"{shown_url}: too many redirects")
            await _discard(resp)
            try:
                target = redirect_target(url, location)
            except InvalidURI as exc:
                raise InvalidURI(f"{shown_url}: {exc}") from None
            if target.origin() != url.origin():
                auth = None
                headers = headers.copy()
                for name in _ORIGIN_BOUND:
                    headers.popall(name, None)
            # 303 turns other methods into GET; refscan sends only HEAD (kept, as aiohttp keeps it) and GET
            url = target

    async def request(
        self,
        method: str,
        uri: RefURI,
        headers: Mapping[str, str] | None = None,
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> tuple[aiohttp.ClientResponse, int]:
        """Send `method` with `headers` on top of the defaults, following redirects, with retries; returns the
        first response whose status is not retryable (the caller releases it) and the number of redirects
        followed to it. Raises `BackendError` once `max_attempts` attempts failed (retryable status, timeout,
        connection error); the limiter is held per attempt, never while waiting."""
        session = self._session
        if session is None:
            raise RuntimeError("HTTPBackend used outside 'async with'")
        url = request_url(uri.url)
        sent = self._headers(headers)
        shown_url = redact(uri.url)
        log = logger()
        timeout = client_timeout or session.timeout
        effective_timeout = timeout.total or timeout.sock_read
        attempts = 0

        async def attempt() -> tuple[aiohttp.ClientResponse, int]:
            nonlocal attempts
            attempts += 1
            started = time.perf_counter()
            try:
                async with self.limiter:
                    resp, redirects = await self._follow(session, method, url, sent, timeout, shown_url)
            except RefscanError:
                raise
            except aiohttp.ClientSSLError as exc:
                raise BackendError(f"{shown_url}: TLS error ({describe_exception(exc, None)})") from None
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
                raise BackendError(f"{shown_url}: invalid request ({type(exc).__name__})") from None
            log.debug(
                "http.request",
                method=method,
                url=shown_url,
                status=resp.status,
                attempt=attempts,
                redirects=redirects,
                elapsed=round(time.perf_counter() - started, 4),
            )
            if not is_retryable_status(resp.status):
                return resp, redirects
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            await _discard(resp)
            raise Retryable(f"HTTP {resp.status}", retry_after=retry_after, status=resp.status)

        try:
            return await retrying(self._policy, attempt, event="http.retry", method=method, url=shown_url)
        except Retryable as exc:
            raise BackendError(f"{shown_url}: {method} failed after {attempts} attempts: {exc.failure}") from None
