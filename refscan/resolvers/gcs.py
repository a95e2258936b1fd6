"""`gs://` resolver: Google Cloud Storage JSON API on gcsfs's credentials, endpoint and session (SPEC §4 gs row).

Division of labour:
- gcsfs (`gcsfs.core.GCSFileSystem`, built once per resolver) owns authentication (application default
  credentials, service-account files, token refresh), endpoint selection (`STORAGE_EMULATOR_HOST`, universe
  domain, mTLS) and the aiohttp session.
- This module owns the API semantics: the exact JSON-API requests (objects.get with `generation`, objects.list
  with `maxResults`/`pageToken`/`startOffset`/`endOffset`, media downloads), retries, error mapping and the
  listing fan-out. It deliberately does not use gcsfs's `_call`: that helper's retry count is fixed at import
  time (so `GCSOptions.max_attempts` could not apply), it drops 404 bodies (bucket vs object), turns 400s into
  `ValueError` and 502s into `requests.ProxyError`, refreshes tokens with blocking I/O on the event loop and
  buffers whole bodies (no streaming reads).
- The plain `gcsfs.core.GCSFileSystem` is used, never the `ExtendedGcsFileSystem` that
  `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT` (default on in gcsfs 2026.10) substitutes: that class adds gRPC
  storage-control lookups (bucket layout, HNS folders, zonal reads) that refscan does not need, and against an
  emulator each lookup waits ~60 s. refscan therefore behaves the same whatever that variable says. The JSON
  API lists and reads objects in hierarchical-namespace buckets like in flat ones.

Retries: 408, 429, 5xx, connection/timeout errors and 2xx answers whose JSON is cut short, up to
`GCSOptions.max_attempts` attempts with capped, jittered exponential backoff (honouring `Retry-After`); one
immediate retry after a 401 once the token has been refreshed. `limiter` is held around single requests only
(never while backing off or streaming a body).
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import inspect
import itertools
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import aiohttp
import anyio
import gcsfs.core
import requests
from yarl import URL

from ..errors import AccessDenied, BackendError, NotFound, RefscanError
from ..events import logger
from ..uri import RefURI, redact
from .base import ObjectInfo, Resolver

CHUNK = 1 << 20
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: transport failures worth retrying (asyncio.TimeoutError is not TimeoutError before Python 3.11)
TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)
#: Object fields refscan reads; `fields=` trims real GCS responses (the emulator ignores it).
OBJECT_FIELDS = "name,size,etag,generation,metageneration,md5Hash,crc32c"
LIST_FIELDS = f"items({OBJECT_FIELDS}),nextPageToken"
#: Refresh credentials this many seconds before they expire (gcsfs uses the same buffer).
REFRESH_BUFFER = 300.0
#: split ranges grow by this factor: parts hold ~1, 4, 16, ... sample-widths of names (see `split_points`)
GROWTH = 4

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


def _translate(failure: _Failure, *, target: str, bucket: str, op: str) -> RefscanError:
    """THE mapping from a failed GCS request to the refscan error tree.

    `target` is what was asked for (a redacted gs:// URI), `op` one of "get", "list", "read".
    """
    status, message = failure.status, failure.message
    detail = f" ({message})" if message else ""
    if status == 404:
        if op == "list" or "bucket" in message.lower():
            return NotFound(f"gs://{bucket}: bucket does not exist{detail}")
        return NotFound(f"{target}: no such object{detail}")
    if status in (401, 403) or (status == 400 and "requester pays" in message.lower()):
        permission = "storage.objects.list" if op == "list" else "storage.objects.get"
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


def _object_info(item: Any) -> ObjectInfo:
    """An objects resource as refscan records it: digest = ETag, extra = versionID/md5/crc32c/metageneration.

    Composite objects have no md5Hash: they keep crc32c. A malformed resource raises `_Failure`."""
    try:
        name = item["name"]
        if not isinstance(name, str):
            raise TypeError("no object name")
        generation = item.get("generation")
        extra: dict[str, Any] = {}
        if generation is not None:
            extra["versionID"] = int(generation)
        md5 = item.get("md5Hash")
        if md5:
            extra["md5"] = str(md5)
        crc32c = item.get("crc32c")
        if crc32c:
            extra["crc32c"] = str(crc32c)
        metageneration = item.get("metageneration")
        if metageneration is not None:
            extra["metageneration"] = int(metageneration)
        size = item.get("size")
        digest = item.get("etag") or md5 or crc32c
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _Failure(None, f"the server returned a malformed object resource ({type(exc).__name__})") from None
    if not digest:
        raise _Failure(None, f"the server returned no etag, md5Hash or crc32c for {name!r}")
    try:
        size_value = int(size) if size is not None else None
    except (TypeError, ValueError):
        raise _Failure(None, f"the server returned a malformed size for {name!r}") from None
    return ObjectInfo(
        key=name,
        digest=str(digest),
        size=size_value,
        version=str(generation) if generation is not None else None,
        extra=extra,
    )


def _is_marker(item: Mapping[str, Any]) -> bool:
    """A folder placeholder: a name ending in `/` with no content (SPEC §3)."""
    return str(item.get("name", "")).endswith("/") and str(item.get("size") or "0") == "0"


# -- listing fan-out ------------------------------------------------------------------------------------------


@dataclass
class _Range:
    """A contiguous slice of a listing: names in [start, end) under the prefix, listed page by page.

    `skip` is a name already yielded that equals `start` (a split re-lists from the last name seen, because
    startOffset is inclusive): it is dropped when it comes back. `names` holds the last page's names, the
    sample the next split is computed from.
    """

    start: str | None = None
    end: str | None = None
    skip: str | None = None
    token: str | None = None
    names: builtins.list[str] = field(default_factory=builtins.list)
    done: bool = False


def split_points(prefix: str, sample: Sequence[str], end: str | None, parts: int) -> builtins.list[str]:
    """Up to `parts - 1` increasing boundaries strictly between `sample[-1]` (the last name listed) and `end`
    (exclusive; None = the end of the prefix), estimated from `sample`, the range's last page of names.

    Boundaries only shape the work: any increasing boundaries inside (sample[-1], end) partition the remaining
    names exactly, so a poor guess costs a few requests, never correctness. Three kinds of guesses are mixed:
    - density: names read as numbers in a radix made of the characters seen (digit 0 = end of name), so
      counting names (`img_000123.jpg`) and hash-like names map to a roughly linear scale; the parts are
      predicted to hold about 1, 4, 16, ... samples' worth of names (`GROWTH`);
    - scale: the smallest names past each character of the directory part of the last name, deepest first
      (`class000/0099.png` → `class001`, `class01`, `class1`, ...), which reach the next directory, month or
      magnitude when the sample saw a single directory;
    - even: with a known end, the span left split evenly on the numeric scale.
    """
    if parts < 2 or len(sample) < 2:
        return []
    after = sample[-1]
    cut = len(prefix)
    end_suffix = end[cut:] if end is not None and end.startswith(prefix) else None
    alphabet = sorted(set("".join(s[cut:] for s in sample)) | set(end_suffix or ""))
    radix = len(alphabet) + 1
    width = max(len(sample[0]), len(after), len(end or "")) - cut + 2

    def encode(text: str) -> int:
        value = 0
        for j in range(width):
            digit = bisect.bisect_right(alphabet, text[j]) if j < len(text) else 0
            value = value * radix + digit
        return value

    def decode(value: int) -> str:
        digits = []
        for _ in range(width):
            value, digit = divmod(value, radix)
            digits.append(digit)
        chars = []
        for digit in reversed(digits):
            if digit == 0:
                break
            chars.append(alphabet[digit - 1])
        return prefix + "".join(chars)

    low, first = encode(after[cut:]), encode(sample[0][cut:])
    high = encode(end_suffix) if end_suffix is not None else radix**width
    wanted = parts - 1
    step = max(1, low - first)
    density = [decode(low + step * GROWTH**t) for t in range(wanted) if low + step * GROWTH**t < high]
    # "scale": the smallest name past each character of the directory names in `after`, deepest first
    # (`class000/0099.png` → `class001`, `class01`, `class1`, ...): the next directory, month or magnitude
    last_slash = after.rfind("/")
    scale: builtins.list[str] = []
    for j in range(last_slash - 1, cut - 1, -1):
        code = ord(after[j]) + 1
        if after[j] != "/" and code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            scale.append(after[:j] + chr(code))
    even = [decode(low + (high - low) * t // parts) for t in range(1, parts)] if end_suffix is not None else []
    sources = [even, scale, density] if even else [scale, density]
    chosen: set[str] = set()
    for i in range(max(map(len, sources))):
        for source in sources:
            if i < len(source) and len(chosen) < wanted:
                point = source[i]
                if point > after and (end is None or point < end):
                    chosen.add(point)
    return sorted(chosen)


class GCSResolver(Resolver):
    schemes = ("gs",)

    #: objects per objects.list page (the JSON API maximum); tests lower it to force pagination.
    page_size: int = 1000
    #: how many key ranges of one folder are listed concurrently once the folder spans several pages.
    list_fanout: int = 16
    #: first retry delay in seconds; doubles per attempt (with jitter) up to `backoff_cap`.
    backoff_base: float = 0.5
    backoff_cap: float = 16.0

    _fs: Any = None
    _session: aiohttp.ClientSession | None = None
    _user_project: str | None = None
    _anonymous: bool = False

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def open(self) -> None:
        opts = self.options.gcs
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
                access="read_only",
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
        self._base: str = self._fs.base  # "<endpoint>/storage/v1/"
        self._session = await self._fs._set_session()
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=opts.timeout, sock_read=opts.timeout)
        anonymous = self._fs.credentials.credentials is None
        self._anonymous = anonymous and token is None  # credential discovery found nothing and fell back
        logger().debug("gcs.open", endpoint=redact(self._base.rsplit("/storage/", 1)[0]), anonymous=anonymous)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
        self._fs = None

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

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), 30.0)
        return min(self.backoff_cap, self.backoff_base * 2.0**attempt) * random.uniform(0.5, 1.0)

    async def _open_response(self, url: URL, headers: Mapping[str, str], *, media: bool) -> aiohttp.ClientResponse:
        assert self._session is not None, "GCSResolver used outside 'async with'"
        kwargs: dict[str, Any] = {}
        if media and _PER_REQUEST_DECOMPRESS:
            kwargs["auto_decompress"] = False  # the stored bytes (gzip objects are hashed compressed)
        return await self._session.get(url, headers=headers, timeout=self._timeout, allow_redirects=True, **kwargs)

    async def _get(self, url: URL, *, media: bool = False, extra_headers: Mapping[str, str] | None = None) -> Any:
        """One GET with retries. JSON requests return the decoded body; media requests the open response
        (the caller streams and releases it). Raises `_Failure` when the request fails for good."""
        attempts = max(1, self.options.gcs.max_attempts)
        attempt = 0
        refreshed = force_refresh = False
        while True:
            retry_after: str | None = None
            headers = await self._headers(force_refresh=force_refresh)
            force_refresh = False
            if extra_headers:
                headers.update(extra_headers)
            try:
                async with self.limiter:
                    resp = await self._open_response(url, headers, media=media)
                    if media and resp.status < 300:
                        return resp  # the body is streamed by the caller, outside the limiter
                    try:
                        body = await resp.read()
                    finally:
                        resp.release()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
            except TRANSIENT as exc:
                failure = _Failure(None, f"request failed: {_describe(exc)}")
            else:
                if status < 300:
                    try:
                        return json.loads(body)
                    except ValueError:  # e.g. a page cut short on the way: retried like a dropped connection
                        failure = _Failure(None, f"the server answered HTTP {status} with a body that is not JSON")
                else:
                    failure = _failure_from_body(status, body)
                    if status == 401 and not refreshed and self._fs.credentials.credentials is not None:
                        refreshed = force_refresh = True  # an expired token: refresh it and try again right away
                        continue
                    if status not in RETRY_STATUS:
                        raise failure
            attempt += 1
            if attempt >= attempts:
                failure.message = f"{failure.message}; gave up after {attempts} attempts"
                raise failure
            delay = self._backoff(attempt - 1, retry_after)
            logger().debug("gcs.retry", status=failure.status, attempt=attempt, delay=round(delay, 3))
            await anyio.sleep(delay)

    # -- resolver contract ------------------------------------------------------------------------------------

    async def stat(self, uri: RefURI) -> ObjectInfo:
        url = self._url(
            f"b/{_q(uri.bucket)}/o/{_q(uri.key)}",
            {"generation": uri.version, "fields": OBJECT_FIELDS},
        )
        started = time.perf_counter()
        try:
            item = await self._get(url)
            info = _object_info(item)
        except _Failure as failure:
            self._raise(failure, uri, "get")
        logger().debug(
            "gcs.stat", bucket=uri.bucket, generation=uri.version, elapsed=round(time.perf_counter() - started, 4)
        )
        return info

    def _raise(self, failure: _Failure, uri: RefURI, op: str) -> NoReturn:
        error = _translate(failure, target=str(uri), bucket=uri.bucket, op=op)
        if isinstance(error, AccessDenied) and self._anonymous and failure.status in (401, 403):
            error = AccessDenied(f"{error} (no Google credentials were found: the request was anonymous)")
        raise error from None

    async def _list_page(
        self, bucket: str, prefix: str, rng: _Range, max_results: int
    ) -> tuple[builtins.list[Mapping[str, Any]], str | None]:
        """One objects.list page of `rng`: (items, nextPageToken)."""
        url = self._url(
            f"b/{_q(bucket)}/o",
            {
                "prefix": prefix or None,
                "startOffset": rng.start,
                "endOffset": rng.end,
                "pageToken": rng.token,
                "maxResults": str(max_results),
                "fields": LIST_FIELDS,
            },
        )
        body = await self._get(url)
        if not isinstance(body, dict):
            raise _Failure(None, "objects.list answered with something that is not a JSON object")
        items = body.get("items") or []
        token = body.get("nextPageToken") or None
        return [i for i in items if isinstance(i, dict)], token

    async def _fetch(
        self,
        results: dict[int, tuple[builtins.list[Mapping[str, Any]], str | None]],
        failures: builtins.list[_Failure],
        scope: anyio.CancelScope,
        i: int,
        folder: RefURI,
        rng: _Range,
        max_results: int,
        log: Any,
    ) -> None:
        """One page of one range for a listing round; the first failure cancels the round."""
        t0 = time.perf_counter()
        try:
            results[i] = page = await self._list_page(folder.bucket, folder.key, rng, max_results)
        except _Failure as failure:
            failures.append(failure)
            scope.cancel()
            return
        log.debug(
            "gcs.list.page",
            start=rng.start,
            end=rng.end,
            objects=len(page[0]),
            more=page[1] is not None,
            elapsed=round(time.perf_counter() - t0, 4),
        )

    async def list(self, folder: RefURI, limit: int) -> AsyncGenerator[builtins.list[ObjectInfo], None]:
        """Objects under `folder` in rounds: every round lists one page of each active key range concurrently,
        then yields what it found. The first round is a single page, so a small folder costs one request. When
        a range has more pages and there is room for more ranges (`list_fanout`), it is split at boundaries
        estimated from its last page (`split_points`). The object budget (`limit`) is divided among the pages
        of a round before they are requested, so no more than `limit` objects are ever asked for."""
        bucket, prefix = folder.bucket, folder.key
        log = logger().bind(bucket=bucket, prefix=prefix)
        started = time.perf_counter()
        ranges = [_Range()]
        remaining = limit
        pages = rounds = found = 0
        fanout = max(1, min(self.list_fanout, int(min(self.limiter.total_tokens, 1 << 16))))
        while ranges and remaining > 0:
            rounds += 1
            plan = _allocate(ranges, remaining, self.page_size)
            results: dict[int, tuple[builtins.list[Mapping[str, Any]], str | None]] = {}
            failures: builtins.list[_Failure] = []
            async with anyio.create_task_group() as tg:
                for i, (rng, max_results) in enumerate(plan):
                    tg.start_soon(self._fetch, results, failures, tg.cancel_scope, i, folder, rng, max_results, log)
            if failures:
                self._raise(failures[0], folder, "list")
            pages += len(plan)

            batch: builtins.list[ObjectInfo] = []
            for i, (rng, _) in enumerate(plan):
                items, token = results[i]
                names = [str(item.get("name", "")) for item in items]
                for item in items:
                    name = item.get("name")
                    if name == rng.skip or _is_marker(item):
                        continue
                    if len(batch) < remaining:
                        try:
                            batch.append(_object_info(item))
                        except _Failure as failure:
                            self._raise(failure, folder, "list")
                if token is not None and token == rng.token:
                    self._raise(_Failure(None, "objects.list returned the same page token twice"), folder, "list")
                rng.skip = None
                rng.token = token
                rng.done = token is None
                if names:
                    rng.names = names
            remaining -= len(batch)
            found += len(batch)
            if batch:
                yield batch
            ranges = [r for r in ranges if not r.done]
            if remaining > 0:  # no more ranges than the budget has full pages for: short pages multiply requests
                ranges = _fan_out(ranges, prefix, min(fanout, max(1, remaining // self.page_size)))
        log.debug(
            "gcs.list",
            objects=found,
            pages=pages,
            rounds=rounds,
            truncated=remaining <= 0,
            elapsed=round(time.perf_counter() - started, 4),
        )

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        """Media download streamed in chunks; a dropped connection resumes with a Range request pinned to the
        generation first served, so the bytes always come from one generation."""
        generation = uri.version
        offset = 0
        resumes = 0
        attempts = max(1, self.options.gcs.max_attempts)
        started = time.perf_counter()
        while True:
            url = self._url(f"b/{_q(uri.bucket)}/o/{_q(uri.key)}", {"alt": "media", "generation": generation})
            extra = {"Accept-Encoding": "gzip"} if _PER_REQUEST_DECOMPRESS else {}
            if offset:
                extra["Range"] = f"bytes={offset}-"
            try:
                resp: aiohttp.ClientResponse = await self._get(url, media=True, extra_headers=extra)
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


def _fresh(credentials: Any) -> bool:
    """True while a google-auth credential is valid for more than REFRESH_BUFFER seconds."""
    if not credentials.valid:
        return False
    expiry = getattr(credentials, "expiry", None)
    if expiry is None:
        return True
    remaining = (expiry.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).total_seconds()
    return bool(remaining > REFRESH_BUFFER)


def _allocate(ranges: Sequence[_Range], remaining: int, page_size: int) -> builtins.list[tuple[_Range, int]]:
    """maxResults per range for one round, so the new objects asked for add up to at most `remaining`.

    A range that re-lists its `skip` name gets one extra slot for it. Ranges left without budget wait.
    """
    plan: builtins.list[tuple[_Range, int]] = []
    share = max(1, remaining // max(1, len(ranges)))
    left = remaining
    for rng in ranges:
        if left <= 0:
            break
        take = min(page_size, share, left)
        left -= take
        plan.append((rng, take + (1 if rng.skip is not None else 0)))
    return plan


def _fan_out(ranges: builtins.list[_Range], prefix: str, fanout: int) -> builtins.list[_Range]:
    """Split ranges that have more pages into new ranges while there is room for `fanout` ranges."""
    free = fanout - len(ranges)
    if free <= 0:
        return ranges
    busy = {id(r) for r in ranges if r.token is not None and len(r.names) >= 2}
    if not busy:
        return ranges
    out: builtins.list[_Range] = []
    per = max(1, free // len(busy))
    for rng in ranges:
        if free <= 0 or id(rng) not in busy:
            out.append(rng)
            continue
        points = split_points(prefix, rng.names, rng.end, min(per, free) + 1)
        if not points:
            out.append(rng)
            continue
        free -= len(points)
        after = rng.names[-1]
        bounds = [after, *points, rng.end]
        # startOffset is inclusive: the first part restarts at the last name seen and drops it when it returns.
        out.append(_Range(start=after, end=points[0], skip=after, names=rng.names))
        for lo, hi in itertools.pairwise(bounds[1:]):
            out.append(_Range(start=lo, end=hi))
    return out
