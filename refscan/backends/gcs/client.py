"""The GCS JSON-API client of the `gs://` backend: credentials, session, URLs and the one request path.

Division of labour:
- gcsfs (`gcsfs.core.GCSFileSystem`, built once per client) owns authentication (application default
  credentials, service-account files, token refresh), endpoint selection (`STORAGE_EMULATOR_HOST`, universe
  domain, mTLS) and the aiohttp session.
- This module owns the API semantics: the exact JSON-API requests (objects.get with `generation`, objects.list
  with `maxResults`/`pageToken`/`startOffset`/`endOffset`, media downloads), retries and error mapping. It
  deliberately does not use gcsfs's `_call`: that helper's retry count is fixed at import time (so
  `max_attempts` could not apply), it drops 404 bodies (bucket vs object), turns 400s into `ValueError` and
  502s into `requests.ProxyError`, refreshes tokens with blocking I/O on the event loop and buffers whole
  bodies (no streaming reads).
- The plain `gcsfs.core.GCSFileSystem` is used, never the `ExtendedGcsFileSystem` that
  `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT` (default on in gcsfs 2026.10) substitutes: that class adds gRPC
  storage-control lookups (bucket layout, HNS folders, zonal reads) that refscan does not need, and against an
  emulator each lookup waits ~60 s. refscan therefore behaves the same whatever that variable says. The JSON
  API lists and reads objects in hierarchical-namespace buckets like in flat ones.

Retries (`refscan.retry.retrying` with the client's `RetryPolicy`): 408, 429, 5xx, connection/timeout errors
and 2xx answers whose JSON is cut short, honouring a `Retry-After` in seconds; a 401 refreshes the token once
and is sent again right away, within the same attempt. `limiter` is held around single requests only (never
while backing off, refreshing a token or streaming a body). Every failure ends in `_translate`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp
import anyio
import gcsfs.core
import requests
from yarl import URL

from ...errors import AccessDenied, BackendError, NotFound, RefscanError
from ...events import logger
from ...options import GCSOptions, RetryPolicy
from ...retry import Retryable, retrying
from ...uri import redact

if TYPE_CHECKING:
    from .listing import Page, _Range

#: The permission each kind of request needs ("get" and "read": storage.objects.get), for AccessDenied messages.
PERMISSIONS = {"list": "storage.objects.list", "bucket": "storage.buckets.get", "hold": "storage.objects.update"}
#: Bucket fields guard reads.
BUCKET_FIELDS = "versioning,lifecycle,retentionPolicy"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: transport failures worth retrying (asyncio.TimeoutError is not TimeoutError before Python 3.11)
TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)
#: Object fields refscan reads; `fields=` trims real GCS responses (the emulator ignores it).
OBJECT_FIELDS = "name,size,etag,generation,metageneration,md5Hash,crc32c"
LIST_FIELDS = f"items({OBJECT_FIELDS}),nextPageToken"
#: JSON-API requests also ask for compact JSON (`prettyPrint=false`: ~20 % fewer bytes than GCS's indented
#: default); the emulator ignores it. They carry aiohttp's default `Accept-Encoding: gzip, deflate` (decoded by
#: aiohttp); no explicit header: measured at 20 ms RTT, a gzipped 10,000-object listing was no faster on loopback
#: or at 1 Gbit/s and 4 % faster at 100 Mbit/s.
PRETTY_PRINT = "false"
#: Refresh credentials this many seconds before they expire (gcsfs uses the same buffer).
REFRESH_BUFFER = 300.0

try:  # aiohttp >= 3.10 can turn off body decoding per request (media downloads must be the stored bytes)
    _PER_REQUEST_DECOMPRESS = "auto_decompress" in inspect.signature(aiohttp.ClientSession._request).parameters
except (TypeError, ValueError):  # pragma: no cover
    _PER_REQUEST_DECOMPRESS = False


def _q(text: str) -> str:
    """Percent-encode a path segment completely (object names may hold `/`, `#`, `?`, spaces, unicode)."""
    return quote(text, safe="")


class _Failure(Exception):
    """A request that failed for good (after retries); turned into a refscan error by `_translate`."""

    def __init__(self, status: int | None, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


class _Retry(Retryable):
    """A failed attempt worth another try; `last` is what is reported when it was the last attempt."""

    def __init__(self, last: _Failure, *, retry_after: float | None = None) -> None:
        super().__init__(last.message, retry_after=retry_after, status=last.status)
        self.last = last


def _failure_from_body(status: int, body: bytes) -> _Failure:
    """Parse a GCS JSON error body (`{"error": {"code", "message", "errors": [{"reason"}]}}`) defensively."""
    message, reason = "", ""
    try:
        error = json.loads(body)["error"]
        if isinstance(error, str):
            message = error
        elif isinstance(error, dict):
            message = str(error.get("message") or "")
            errors = error.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                reason = str(errors[0].get("reason") or "")
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode("utf-8", errors="replace").strip()
    return _Failure(status, message or f"HTTP {status}", reason)


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a transport failure (class name; aiohttp texts can hold URLs)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    return type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    """The wait a `Retry-After` header asks for, when it is a number of seconds."""
    return float(value) if value and value.isdigit() else None


def _translate(failure: _Failure, *, target: str, bucket: str, op: str) -> RefscanError:
    """THE mapping from a failed GCS request to the refscan error tree.

    `target` is what was asked for (a redacted gs:// URI), `op` one of `PERMISSIONS` or "get", "read".
    """
    status, message = failure.status, failure.message
    detail = f" ({message})" if message else ""
    if status == 404:
        if op in ("list", "bucket") or "bucket" in message.lower():
            return NotFound(f"gs://{bucket}: bucket does not exist{detail}")
        return NotFound(f"{target}: no such object{detail}")
    if status in (401, 403) or (status == 400 and "requester pays" in message.lower()):
        permission = PERMISSIONS.get(op, "storage.objects.get")
        if status == 400 or "requester pays" in message.lower() or failure.reason == "UserProjectMissing":
            hint = "the bucket is requester-pays: pass GCSOptions(requester_pays=True, project=<project to bill>)"
        elif status == 401:
            hint = (
                "not authenticated: run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, "
                "or pass GCSOptions(token=...)"
            )
        else:
            hint = f"the credentials lack {permission} on gs://{bucket}"
        return AccessDenied(f"{target}: access denied (HTTP {status}){detail}: {hint}")
    if status is None:
        return BackendError(f"{target}: {message}")
    return BackendError(f"{target}: HTTP {status}{detail}")


def _fresh(credentials: Any) -> bool:
    """True while a google-auth credential is valid for more than REFRESH_BUFFER seconds."""
    if not credentials.valid:
        return False
    expiry = getattr(credentials, "expiry", None)
    if expiry is None:
        return True
    remaining = (expiry.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).total_seconds()
    return bool(remaining > REFRESH_BUFFER)


class GCSClient:
    """The JSON-API requests of one backend: use between `await open()` and `await close()`.

    Also the listing's `PageSource` (`page`). Every request method raises `_Failure` when it fails for good.
    """

    def __init__(
        self, options: GCSOptions, policy: RetryPolicy, limiter: anyio.CapacityLimiter, *, access: str = "read_only"
    ) -> None:
        self.options = options
        self.access = access
        self.policy = policy
        self.limiter = limiter
        self._fs: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._base = ""  # "<endpoint>/storage/v1/"
        self._user_project: str | None = None
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=options.timeout, sock_read=options.timeout)
        #: True when credential discovery found nothing and the client fell back to anonymous requests.
        self.anonymous = False

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def open(self) -> None:
        opts = self.options
        token = opts.resolved_token()
        endpoint = opts.resolved_endpoint_url()

        def build() -> Any:
            # Credential discovery does blocking I/O (metadata server, token files): keep it off the loop.
            # project="" lets gcsfs take the project from the credentials instead of rejecting a mismatch
            # (it would then silently fall back to anonymous access); refscan bills its own project below.
            return gcsfs.core.GCSFileSystem(
                project="",
                token=token,
                endpoint_url=endpoint,
                asynchronous=True,
                skip_instance_cache=True,
                access=self.access,
            )

        try:
            self._fs = await anyio.to_thread.run_sync(build)
        except Exception as exc:
            text = str(exc)[:300]
            if isinstance(token, str) and token:
                text = text.replace(token, "<token>")
            if isinstance(exc, requests.exceptions.RequestException):
                raise BackendError(f"gs://: cannot reach Google to load credentials ({type(exc).__name__})") from None
            raise AccessDenied(
                f"gs://: cannot load Google credentials ({type(exc).__name__}: {text}); "
                "check GOOGLE_APPLICATION_CREDENTIALS or GCSOptions(token=...)"
            ) from None
        self._user_project = None
        if opts.requester_pays:
            self._user_project = opts.resolved_project() or self._fs.project or None
            if not self._user_project:
                raise AccessDenied(
                    "GCSOptions(requester_pays=True) needs a project to bill: set GCSOptions(project=...) "
                    "or GOOGLE_CLOUD_PROJECT"
                )
        self._base = self._fs.base
        self._session = await self._fs._set_session()
        anonymous = self._fs.credentials.credentials is None
        self.anonymous = anonymous and token is None
        logger().debug("gcs.open", endpoint=redact(self._base.rsplit("/storage/", 1)[0]), anonymous=anonymous)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
        self._fs = None

    # -- the API ----------------------------------------------------------------------------------------------

    async def object(self, bucket: str, key: str, generation: str | None, fields: str | None = OBJECT_FIELDS) -> Any:
        """objects.get: the object resource of `key` (at `generation` when given), as decoded JSON; only
        `fields` (default the `OBJECT_FIELDS`; None: all), compact."""
        return await self._get(
            self._url(
                f"b/{_q(bucket)}/o/{_q(key)}",
                {"generation": generation, "fields": fields, "prettyPrint": PRETTY_PRINT},
            )
        )

    async def bucket(self, bucket: str) -> Any:
        """buckets.get: the bucket resource's `BUCKET_FIELDS`."""
        return await self._get(self._url(f"b/{_q(bucket)}", {"fields": BUCKET_FIELDS, "prettyPrint": PRETTY_PRINT}))

    async def versions(self, bucket: str, key: str, token: str | None) -> Any:
        """One objects.list page of every generation whose name starts with `key` (full resources)."""
        params = {"prefix": key, "versions": "true", "pageToken": token, "prettyPrint": PRETTY_PRINT}
        return await self._get(self._url(f"b/{_q(bucket)}/o", params))

    async def patch(self, bucket: str, key: str, generation: str, body: Mapping[str, Any]) -> Any:
        """objects.patch of generation `generation` with the JSON `body`; returns the updated resource."""
        url = self._url(f"b/{_q(bucket)}/o/{_q(key)}", {"generation": generation, "prettyPrint": PRETTY_PRINT})
        return await self._get(url, method="PATCH", payload=json.dumps(body).encode())

    async def page(self, bucket: str, prefix: str, rng: _Range, max_results: int) -> Page:
        """One objects.list page of `rng`: (items, nextPageToken); only the `LIST_FIELDS`, compact."""
        url = self._url(
            f"b/{_q(bucket)}/o",
            {
                "prefix": prefix or None,
                "startOffset": rng.start,
                "endOffset": rng.end,
                "pageToken": rng.token,
                "maxResults": str(max_results),
                "fields": LIST_FIELDS,
                "prettyPrint": PRETTY_PRINT,
            },
        )
        body = await self._get(url)
        if not isinstance(body, dict):
            raise _Failure(None, "objects.list answered with something that is not a JSON object")
        items = body.get("items") or []
        token = body.get("nextPageToken") or None
        return [i for i in items if isinstance(i, dict)], token

    async def media(self, bucket: str, key: str, generation: str | None, offset: int) -> aiohttp.ClientResponse:
        """The open media download of `key` from byte `offset` on (the caller streams and releases it)."""
        url = self._url(f"b/{_q(bucket)}/o/{_q(key)}", {"alt": "media", "generation": generation})
        extra = {"Accept-Encoding": "gzip"} if _PER_REQUEST_DECOMPRESS else {}
        if offset:
            extra["Range"] = f"bytes={offset}-"
        resp: aiohttp.ClientResponse = await self._get(url, media=True, extra_headers=extra)
        return resp

    # -- requests ---------------------------------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, str | None]) -> URL:
        query = {k: v for k, v in params.items() if v is not None}
        if self._user_project:
            query["userProject"] = self._user_project
        url = self._base + path
        if query:
            url += "?" + urlencode(query, quote_via=quote)
        return URL(url, encoded=True)

    async def _headers(self, *, force_refresh: bool = False) -> dict[str, str]:
        """Request headers with a current access token; refreshes run in a worker thread (blocking I/O)."""
        creds = self._fs.credentials
        headers = {"User-Agent": f"refscan gcsfs/{gcsfs.__version__}"}
        inner = creds.credentials
        if inner is None:
            return headers
        if force_refresh or not _fresh(inner):
            buffer = float("inf") if force_refresh else REFRESH_BUFFER

            def refresh() -> None:
                try:
                    creds.maybe_refresh(refresh_buffer=buffer)
                except TypeError:  # gcsfs releases without the refresh_buffer parameter
                    creds.maybe_refresh()

            try:
                await anyio.to_thread.run_sync(refresh)
            except Exception as exc:
                raise _Failure(401, f"could not refresh Google credentials ({type(exc).__name__})") from None
            inner = creds.credentials
        inner.apply(headers)
        return headers

    async def _open_response(
        self, url: URL, headers: Mapping[str, str], *, media: bool, method: str, body: bytes | None
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            raise RuntimeError("GCSBackend used outside 'async with'")
        kwargs: dict[str, Any] = {}
        if media and _PER_REQUEST_DECOMPRESS:
            kwargs["auto_decompress"] = False  # the stored bytes (gzip objects are hashed compressed)
        if body is not None:
            kwargs["data"] = body
        return await self._session.request(
            method, url, headers=headers, timeout=self._timeout, allow_redirects=True, **kwargs
        )

    async def _get(
        self,
        url: URL,
        *,
        media: bool = False,
        extra_headers: Mapping[str, str] | None = None,
        method: str = "GET",
        payload: bytes | None = None,
    ) -> Any:
        """THE request path: one request (a GET unless `method` says otherwise; `payload` is sent as JSON) with
        retries. JSON requests return the decoded body; media requests the open response (the caller streams
        and releases it). Raises `_Failure` when the request fails for good."""
        refreshed = False

        async def attempt() -> Any:
            nonlocal refreshed
            force_refresh = False
            while True:
                headers = await self._headers(force_refresh=force_refresh)
                if extra_headers:
                    headers.update(extra_headers)
                if payload is not None:
                    headers["Content-Type"] = "application/json"
                try:
                    async with self.limiter:
                        resp = await self._open_response(url, headers, media=media, method=method, body=payload)
                        if media and resp.status < 300:
                            return resp  # the body is streamed by the caller, outside the limiter
                        try:
                            body = await resp.read()
                        finally:
                            resp.release()
                except TRANSIENT as exc:
                    raise _Retry(_Failure(None, f"request failed: {_describe(exc)}")) from None
                status = resp.status
                if status < 300:
                    try:
                        return json.loads(body)
                    except ValueError:  # e.g. a page cut short on the way: retried like a dropped connection
                        text = f"the server answered HTTP {status} with a body that is not JSON"
                        raise _Retry(_Failure(None, text)) from None
                failure = _failure_from_body(status, body)
                if status == 401 and not refreshed and self._fs.credentials.credentials is not None:
                    refreshed = force_refresh = True  # an expired token: refresh it and send again right away
                    continue
                if status in RETRY_STATUS:
                    raise _Retry(failure, retry_after=_retry_after(resp.headers.get("Retry-After")))
                raise failure

        try:
            return await retrying(self.policy, attempt, event="gcs.retry")
        except _Retry as exc:
            last = exc.last
            attempts = max(1, self.policy.max_attempts)
            raise _Failure(last.status, f"{last.message}; gave up after {attempts} attempts", last.reason) from None
