"""Options: one retry policy and per-backend settings with environment defaults (docs/behaviour.md,
Configuration). Every field is optional.

Secrets (keys, tokens, headers) are excluded from `repr` so an `Options` can be logged safely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

RetryMode = Literal["standard", "adaptive"]


@dataclass(frozen=True)
class RetryPolicy:
    """How every backend retries throttling, 5xx, timeouts and dropped connections.

    `max_attempts` counts the first try. Waits start at `backoff` seconds and double per attempt, with jitter
    (50-100 %); a server's Retry-After makes a wait longer, never shorter; no wait exceeds `max_backoff`. S3 hands
    `max_attempts` to botocore's retry mode `s3_mode` ("adaptive" also rate-limits the client when throttled).
    """

    max_attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 20.0
    s3_mode: RetryMode = "adaptive"

    def with_overrides(self, **fields: Any) -> RetryPolicy:
        """This policy with the non-None `fields` replaced (a backend's own settings win)."""
        return replace(self, **{k: v for k, v in fields.items() if v is not None})


@dataclass(frozen=True)
class S3Options:
    """S3 and S3-compatible stores (MinIO, R2, Ceph, moto).

    `endpoint_url` falls back to AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS_S3_ENDPOINT_URL;
    `region` to the AWS chain (AWS_REGION / AWS_DEFAULT_REGION / profile). `anonymous` sends unsigned
    requests. `requester_pays` adds RequestPayer=requester. `checksums` asks HeadObject for additional
    checksums (ChecksumMode=ENABLED) on single objects. `retry_mode` / `max_attempts` override
    `Options.retry`. `parallel_listing=False` lists each folder as one chain of pages, for stores whose
    listing order is not S3's (refscan also falls back by itself when a page shows it).
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    anonymous: bool = False
    requester_pays: bool = False
    addressing_style: Literal["auto", "path", "virtual"] | str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    retry_mode: RetryMode | None = None
    max_attempts: int | None = None
    max_pool_connections: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    checksums: bool = False
    parallel_listing: bool = True

    def resolved_endpoint_url(self) -> str | None:
        """The endpoint to use: the option, else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS_S3_ENDPOINT_URL,
        else AWS's own."""
        if self.endpoint_url:
            return self.endpoint_url
        for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_S3_ENDPOINT_URL"):
            value = os.environ.get(var)
            if value:
                return value
        return None


@dataclass(frozen=True)
class GCSOptions:
    """Google Cloud Storage.

    Without options: application default credentials, or anonymous access to STORAGE_EMULATOR_HOST
    when that variable is set. `token` is anything gcsfs accepts ("anon", "google_default", a path to a
    service-account JSON, a credentials object). `requester_pays` bills `project` (userProject).
    """

    project: str | None = None
    token: Any = field(default=None, repr=False)
    endpoint_url: str | None = None
    requester_pays: bool = False
    max_attempts: int | None = None
    timeout: float = 60.0

    def resolved_endpoint_url(self) -> str | None:
        if self.endpoint_url:
            return self.endpoint_url
        host = os.environ.get("STORAGE_EMULATOR_HOST")
        if host:
            return host if "://" in host else f"http://{host}"
        return None

    def resolved_token(self) -> Any:
        if self.token is not None:
            return self.token
        if self.endpoint_url is None and os.environ.get("STORAGE_EMULATOR_HOST"):
            return "anon"
        return None

    def resolved_project(self) -> str | None:
        return self.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")


@dataclass(frozen=True)
class AzureOptions:
    """Azure Blob Storage (and Azurite).

    Credentials, first that applies: `connection_string`, `account_key` (with `account_name`, else the name in
    the account URL), `sas_token`, `credential` (any azure-core credential object, e.g. a TokenCredential),
    `anonymous`; then AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_NAME + AZURE_STORAGE_ACCOUNT_KEY,
    AZURE_STORAGE_SAS_TOKEN; else DefaultAzureCredential (azure-identity). Keys, SAS tokens and connection
    strings belong to the configured account; URLs of other accounts use `credential` or
    DefaultAzureCredential.

    `parallel_listing` lists a folder of several pages as key ranges at once, where the service honours List
    Blobs `startFrom` (service version 2026-02-06; checked with one small request per account, else one chain
    of pages); False: always one chain.

    `account_url` is the account `az://container/path` names (default: the connection string's BlobEndpoint or
    AccountName, else AZURE_STORAGE_ACCOUNT_NAME). `endpoint_url` is an endpoint other than
    `<account>.blob.core.windows.net` (Azurite, a private endpoint), with the account in its path as in a
    BlobEndpoint (`http://127.0.0.1:10000/devstoreaccount1`): URLs under it are Azure blobs, and it is the
    `az://` account when nothing else names one. `versions=False` lists current blobs only (folders then
    record no versionID). `max_attempts` overrides `Options.retry`; `timeout` bounds each request.
    """

    account_url: str | None = None
    endpoint_url: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    account_name: str | None = None
    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    credential: Any = field(default=None, repr=False)
    anonymous: bool = False
    versions: bool = True
    parallel_listing: bool = True
    max_attempts: int | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class HTTPOptions:
    """HTTP(S) references: extra request headers (e.g. Authorization — never logged or recorded),
    a per-request timeout in seconds and a per-host connection limit (64, as many as `Options.concurrency`
    lets be in flight: at 20 ms RTT, 1,000 HEADs take 0.46 s over 64 connections, 1.6 s over 16).
    `max_attempts`, `backoff` and `max_backoff` override `Options.retry`. `trust_env` honours HTTP(S)_PROXY /
    NO_PROXY and ~/.netrc (or $NETRC) credentials, read once per host per session."""

    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 30.0
    per_host_limit: int = 64
    max_attempts: int | None = None
    trust_env: bool = True
    backoff: float | None = None
    max_backoff: float | None = None


@dataclass(frozen=True)
class Options:
    """All settings. `concurrency` bounds the requests in flight across a session; `retry` is the retry
    policy of every backend.

    Deadlines: each request is bounded by its scheme's timeouts and `max_attempts` (with backoff in between).
    There is no whole-operation deadline here: bound a call with `anyio.fail_after` / `asyncio.timeout` (a
    cancelled scan, verify or download stops its requests promptly and leaves no task, `.part` file or
    half-written manifest behind), and the CLI with `timeout(1)` (SIGINT/SIGTERM likewise leave nothing behind).
    """

    concurrency: int = 64
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    s3: S3Options = field(default_factory=S3Options)
    gcs: GCSOptions = field(default_factory=GCSOptions)
    http: HTTPOptions = field(default_factory=HTTPOptions)
    azure: AzureOptions = field(default_factory=AzureOptions)
