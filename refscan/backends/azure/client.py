"""The Azure client of one backend: SDK clients per account, credentials, the one request path and the one
error table.

- One aiohttp session per backend, shared by an azure-storage-blob `BlobServiceClient` per account URL (a
  ref names its account). The SDK signs requests (Shared Key, SAS, bearer tokens) and builds and parses
  them; its own retries are off (`retry_total=0`) so that `refscan.retry.retrying` with the backend's
  `RetryPolicy` is the one retry loop, as for GCS and HTTP.
- Credentials (`config.configured`): the configured account gets the connection string's key or SAS, the
  account key or the SAS token; any other account (and the configured one when nothing else is set) gets
  `AzureOptions.credential` or azure-identity's `DefaultAzureCredential`, imported on first use;
  `anonymous` sends no credential.
- Every request goes through `AzureClient.call`: the limiter is held around the request only (never while
  backing off), 408/429/5xx and transport failures are retried, and every failure ends in `translate`,
  whose messages carry the reference (never a secret: refs hold no SAS) and what to do next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import anyio
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from ...errors import AccessDenied, BackendError, MissingDependency, NotFound, RefscanError
from ...events import logger
from ...options import Options, RetryPolicy
from ...retry import Retryable, retrying
from .config import Configured, configured

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: transport failures worth retrying (asyncio.TimeoutError is not TimeoutError before Python 3.11)
TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)
#: what a refused operation most likely lacks
_PERMISSION = {
    "list": "list permission on the container (SAS sp=l, or the Storage Blob Data Reader role)",
    "read": "read permission on the blob (SAS sp=r, or the Storage Blob Data Reader role)",
    "get": "read permission on the blob (SAS sp=r, or the Storage Blob Data Reader role)",
}


class Malformed(BackendError):
    """A 2xx answer whose body is not what was asked for (e.g. cut short on the way): retried."""


class StatusError(Exception):
    """A raw request (List Blobs) answered with an error status; `error_code` from `x-ms-error-code`."""

    def __init__(self, status: int, error_code: str) -> None:
        super().__init__(f"HTTP {status} {error_code}".strip())
        self.status_code = status
        self.error_code = error_code


class _Retry(Retryable):
    """A retryable failure; `error` is the exception the last attempt raised."""

    def __init__(self, error: Exception, status: int | None) -> None:
        super().__init__(_describe(error, status), status=status)
        self.error = error


def _describe(exc: BaseException, status: int | None = None) -> str:
    code = getattr(exc, "error_code", None)
    if status is not None:
        return f"HTTP {status}{f' {code}' if code else ''}"
    return type(exc).__name__


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    if code:
        return str(getattr(code, "value", code))  # the SDK's StorageErrorCode enum, or a string
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    return str(headers.get("x-ms-error-code") or "")


def translate(exc: BaseException, target: str, op: str, source: str, *, pinned: bool = False) -> RefscanError:
    """The refscan error for a failed request (`op`: get, list, read) on `target` (a redacted reference)."""
    if isinstance(exc, RefscanError):
        return exc
    status = _status(exc)
    code = _error_code(exc)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        if code == "ContainerNotFound":
            return NotFound(f"{target}: the container does not exist")
        if pinned:
            return NotFound(f"{target}: no such blob version")
        return NotFound(f"{target}: no such blob")
    if isinstance(exc, ResourceModifiedError) or status == 412:
        return BackendError(f"{target}: the blob changed while it was being read (HTTP 412); read it again")
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        if code == "AuthenticationFailed" or status == 401:
            why = f"the credential from {source} was rejected (wrong key, expired or malformed SAS)"
        else:
            why = (
                f"refused ({code or f'HTTP {status}'}) with the credential from {source}: it needs "
                f"{_PERMISSION.get(op, 'permission')}, or the credential is not valid for this account"
            )
        if source == "AzureOptions.anonymous":
            why += "; the request was anonymous"
        return AccessDenied(f"{target}: {why}")
    if isinstance(exc, (HttpResponseError, StatusError)) and status is not None:
        return BackendError(f"{target}: {op} failed with HTTP {status}{f' {code}' if code else ''}")
    if isinstance(exc, Malformed):
        return BackendError(f"{target}: {exc}")
    return BackendError(f"{target}: {op} failed: {_describe(exc)}")


def _retryable(exc: Exception) -> bool:
    status = _status(exc)
    if isinstance(exc, (HttpResponseError, StatusError)) and status is not None:
        return status in RETRY_STATUS or status < 300  # < 300: a body that could not be decoded (cut short)
    return isinstance(exc, (AzureError, Malformed, *TRANSIENT))


class AzureClient:
    """SDK clients for the accounts one backend touches, and the one request path."""

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        self.options = options
        self.limiter = limiter
        self.settings: Configured = configured(options.azure)
        self.policy: RetryPolicy = options.retry.with_overrides(max_attempts=options.azure.max_attempts)
        self._session: aiohttp.ClientSession | None = None
        self._services: dict[str, BlobServiceClient] = {}
        self._token: Any = None  # DefaultAzureCredential, created on first use, closed with the client

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=max(1, self.options.concurrency), enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def close(self) -> None:
        services, self._services = self._services, {}
        session, self._session = self._session, None
        token, self._token = self._token, None
        for service in services.values():
            await service.close()
        if token is not None:
            await token.close()
        if session is not None:
            await session.close()

    def source_for(self, account: str) -> str:
        """Where the credential for `account` comes from (for messages)."""
        if self.settings.anonymous:
            return self.settings.source
        return self.settings.source if self._owns(account) else "DefaultAzureCredential"

    def _owns(self, account: str) -> bool:
        """True when `account` is the configured account (or no account is configured)."""
        return self.settings.account_url in (None, account)

    def _credential(self, account: str) -> Any:
        s = self.settings
        if s.anonymous:
            return None
        if self._owns(account):
            if s.account_key:
                if not s.account_name:
                    raise AccessDenied(f"{account}: an account key needs the account name (AzureOptions.account_name)")
                return AzureNamedKeyCredential(s.account_name, s.account_key)
            if s.sas_token:
                return AzureSasCredential(s.sas_token.lstrip("?"))
        if s.credential is not None:
            return s.credential
        if self._token is None:
            try:
                from azure.identity.aio import DefaultAzureCredential
            except ImportError as exc:
                raise MissingDependency(
                    f"{account}: no Azure key, SAS or connection string is configured, and DefaultAzureCredential "
                    "needs the 'azure-identity' package: pip install 'refscan[azure]'"
                ) from exc
            self._token = DefaultAzureCredential()
        return self._token

    def service(self, account: str) -> BlobServiceClient:
        """The SDK client of `account` (created on first use)."""
        service = self._services.get(account)
        if service is None:
            if self._session is None:
                raise RuntimeError("AzureBackend used outside 'async with'")
            timeout = self.options.azure.timeout
            service = BlobServiceClient(
                account,
                credential=self._credential(account),
                transport=AioHttpTransport(session=self._session, session_owner=False),
                retry_total=0,
                connection_timeout=timeout,
                read_timeout=timeout,
                max_single_get_size=4 << 20,
                max_chunk_get_size=4 << 20,
            )
            self._services[account] = service
        return service

    def container(self, account: str, container: str) -> ContainerClient:
        return self.service(account).get_container_client(container)

    async def list_page(
        self,
        account: str,
        container: str,
        prefix: str,
        marker: str | None,
        max_results: int,
        include: str,
        start_from: str | None = None,
    ) -> bytes:
        """One List Blobs request (one attempt), signed and sent by the SDK's pipeline; the raw XML body.
        `start_from`: the `startFrom` parameter (the first name listed, inclusive).

        The SDK's own `list_blobs` would parse the page with its generic deserializer (see `listing.py`)."""
        client = self.container(account, container)
        params = {"restype": "container", "comp": "list", "maxresults": str(max_results), "include": include}
        if prefix:
            params["prefix"] = prefix
        if marker:
            params["marker"] = marker
        if start_from is not None:
            params["startFrom"] = start_from
        request = HttpRequest(
            "GET", f"{account}/{quote(container)}", params=params, headers={"x-ms-version": client.api_version}
        )
        # the pipeline's credential and transport policies; streamed, so its content policy does not parse the XML
        response = await client._client._send_request(request, stream=True)
        try:
            body = await response.read()
        finally:
            await response.close()
        if response.status_code >= 300:
            raise StatusError(response.status_code, str(response.headers.get("x-ms-error-code") or ""))
        return bytes(body)

    async def call(
        self, op: str, target: str, account: str, request: Callable[[], Awaitable[T]], *, pinned: bool = False
    ) -> T:
        """THE request path: `await request()` under the limiter, retried by the policy; failures become
        refscan errors (see the module docstring)."""
        started = time.perf_counter()

        async def attempt() -> T:
            try:
                async with self.limiter:
                    return await request()
            except Exception as exc:
                if _retryable(exc):
                    raise _Retry(exc, _status(exc)) from None
                raise

        try:
            result = await retrying(self.policy, attempt, event="azure.retry", op=op)
        except _Retry as exc:
            error = translate(exc.error, target, op, self.source_for(account), pinned=pinned)
            attempts = max(1, self.policy.max_attempts)
            raise type(error)(f"{error}; gave up after {attempts} attempts") from None
        except Exception as exc:
            raise translate(exc, target, op, self.source_for(account), pinned=pinned) from None
        logger().debug("azure.request", op=op, elapsed=round(time.perf_counter() - started, 4))
        return result
