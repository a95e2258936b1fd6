"""The S3 client of one backend: its botocore session and configuration, the one request path, the one error
table, and what the response fields the backend records mean.

- One aiobotocore client per backend (so one per session), configured from `S3Options`, `Options.retry` and
  the environment (docs/behaviour.md, Configuration). Clients share the process's botocore data loader and
  keep timestamps as the server's text (`iso_time` normalises them).
- Every request goes through `S3Client.request`: it holds the limiter around that request only, logs one
  structured debug event with its timing, and turns every failure into the refscan error tree with
  `map_errors` / `translate_client_error`. Retries are botocore's (its retry mode and total attempts).
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, AsyncExitStack, contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio
from botocore import UNSIGNED, xform_name
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    InvalidDNSNameError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ...errors import AccessDenied, BackendError, InvalidURI, NotConfigured, NotFound, RefscanError, ResumeRefused
from ...events import logger
from ...options import Options
from ...uri import redact

if TYPE_CHECKING:  # aiobotocore, aiohttp and botocore's client parts are imported with the first client
    from aiobotocore.session import AioSession
    from botocore.config import Config
    from botocore.loaders import Loader

#: What each operation needs, for AccessDenied messages.
PERMISSIONS: dict[str, str] = {
    "HeadObject": "s3:GetObject (s3:GetObjectVersion for a pinned version), "
    "and s3:ListBucket to tell a missing object from a denied one",
    "GetObject": "s3:GetObject (s3:GetObjectVersion for a pinned version)",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "GetObjectTagging": "s3:GetObjectTagging (s3:GetObjectVersionTagging for a version)",
    "GetObjectLegalHold": "s3:GetObjectLegalHold",
    "PutObjectLegalHold": "s3:PutObjectLegalHold",
}

#: Operations that take RequestPayer (GetBucketVersioning does not).
PAYER_OPERATIONS = frozenset({"HeadObject", "GetObject", "ListObjectsV2", "ListObjectVersions"})

#: A bucket or object without that configuration (no lifecycle rules, no Object Lock, no legal hold set yet).
_UNCONFIGURED_CODES = frozenset(
    {"NoSuchLifecycleConfiguration", "ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})
_DENIED_CODES = frozenset({"403", "AccessDenied", "AllAccessDisabled", "AccountProblem", "Forbidden"})
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "RequestTimeTooSkewed",
        "InvalidSecurity",
    }
)
_REGION_CODES = frozenset(
    {"301", "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
_THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"})


# -- response fields ------------------------------------------------------------------------------


def strip_etag(etag: str | None) -> str:
    """An ETag without its surrounding double quotes; an unquoted (or half-quoted) ETag is kept whole."""
    if etag is None:
        return ""
    if len(etag) >= 2 and etag[0] == '"' and etag[-1] == '"':
        return etag[1:-1]
    return etag


def version_id(value: Any) -> str | None:
    """The S3 version id as refscan records it: None for missing, empty or "null" (unversioned)."""
    if not isinstance(value, str) or not value or value == "null":
        return None
    return value


#: The listings' time form (ISO 8601 UTC, milliseconds optional), which `iso_time` cuts to the second.
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d*)?Z"
_ISO_UTC = re.compile(ISO_UTC + r"\Z")


def iso_time(value: Any) -> str | None:
    """ISO-8601 UTC to the second (`2024-05-01T12:00:00Z`).

    The client keeps timestamps as the server's text (see `botocore_session`): ISO 8601 in listings
    (milliseconds), RFC 1123 in HeadObject headers (seconds). Truncating to the second makes both paths record
    the same string for the same object.
    """
    if isinstance(value, str):
        if _ISO_UTC.match(value):  # the listings' form: no parsing needed to cut it to the second
            return value[:19] + "Z"
        try:
            if value[:1].isdigit():
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            else:
                value = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    text: str = value.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    return text


def required_etag(key: str, etag: Any, source: str) -> str:
    """The unquoted ETag of `key` from `source` ("the listing", "HeadObject"); every object must have one."""
    digest = strip_etag(etag if isinstance(etag, str) else None)
    if not digest:
        raise BackendError(f"{source} gave no ETag for key {key!r}: the store is not S3-compatible enough")
    return digest


def size_of(value: Any) -> int | None:
    return int(value) if value is not None else None


#: A single-part upload's ETag: the hex MD5 of the bytes (unless the object is SSE-KMS/SSE-C encrypted).
HEX_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
#: A multipart upload's ETag: the hex MD5 of the parts' binary MD5s, "-", the part count.
MULTIPART_ETAG_RE = re.compile(r"^[0-9a-f]{32}-([0-9]+)$")


def multipart_parts(etag: str | None) -> int | None:
    """The part count a multipart ETag states; None for any other ETag."""
    if not etag or "-" not in etag:  # the common single-part case, without a regex
        return None
    found = MULTIPART_ETAG_RE.match(etag)
    return int(found.group(1)) if found else None


# -- error mapping (the one place) -----------------------------------------------------------------


def translate_client_error(
    exc: ClientError, op: str, target: str, *, bucket: str, version: str | None = None, requester_pays: bool = False
) -> RefscanError:
    """The refscan error for an S3 error response. `target` is the (redacted) URI the call was about."""
    error = exc.response.get("Error", {}) if isinstance(exc.response, Mapping) else {}
    meta = exc.response.get("ResponseMetadata", {}) if isinstance(exc.response, Mapping) else {}
    code = str(error.get("Code") or "")
    status = int(meta.get("HTTPStatusCode") or 0) or (int(code) if code.isdigit() else 0)
    headers = meta.get("HTTPHeaders") or {}
    message = scrub(str(error.get("Message") or ""), 200)
    detail = f"{code or status}" + (f": {message}" if message else "")

    if code == "NoSuchBucket":
        return NotFound(f"{target}: no such bucket {bucket!r}")
    if code in _UNCONFIGURED_CODES:
        return NotConfigured(f"{target}: {op}: {detail}")
    if code in _NOT_FOUND_CODES or status == 404:
        if version is not None:
            return NotFound(f"{target}: no such version {version!r} of this object")
        if str(headers.get("x-amz-delete-marker", "")).lower() == "true":
            return NotFound(f"{target}: no such object (its latest version is a delete marker)")
        return NotFound(f"{target}: no such object")
    if code == "MethodNotAllowed" or status == 405:
        # HEAD/GET of a delete marker's own version id.
        return NotFound(f"{target}: that version is a delete marker, not an object")
    if version is not None and status == 400 and code in ("400", "InvalidArgument"):
        return NotFound(f"{target}: no such version: {version!r} is not a valid version id for this object")
    if code == "PreconditionFailed" or status == 412:  # only resumed reads send If-Match
        return ResumeRefused(f"{target}: the object changed while it was being read (If-Match failed)")
    if code in _CREDENTIAL_CODES:
        return AccessDenied(
            f"{target}: {op} was rejected ({code}): check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, "
            f"S3Options) and the clock, or use S3Options(anonymous=True) for a public bucket"
        )
    if code in _DENIED_CODES or status == 403:
        hint = PERMISSIONS.get(op, "the matching s3: permission")
        payer = "" if requester_pays else "; if the bucket is requester-pays, set S3Options(requester_pays=True)"
        return AccessDenied(f"{target}: {op} was denied ({code or status}): need {hint}{payer}")
    if code in _REGION_CODES or status == 301:
        return BackendError(
            f"{target}: bucket {bucket!r} answered {detail}: it is probably in another region; "
            f"set AWS_REGION or S3Options(region=...)"
        )
    if code in _THROTTLE_CODES or status >= 500:
        return BackendError(f"{target}: {op} kept failing after retries ({detail})")
    return BackendError(f"{target}: {op} failed ({detail})")


_URL_RE = re.compile(r"""https?://[^\s"'<>]+""")


def scrub(text: str, limit: int = 300) -> str:
    """A backend message fit for an error: URLs in it redacted (no user:pass, no signatures), shortened."""
    return _URL_RE.sub(lambda m: redact(m.group(0)), text)[:limit]


@contextmanager
def map_errors(
    op: str, target: str, *, bucket: str, version: str | None = None, requester_pays: bool = False
) -> Iterator[None]:
    """Translate every backend exception raised in the block into the refscan error tree."""
    import aiohttp

    try:
        yield
    except RefscanError:
        raise
    except ClientError as exc:
        raise translate_client_error(
            exc, op, target, bucket=bucket, version=version, requester_pays=requester_pays
        ) from None
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
        raise AccessDenied(
            f"{target}: no usable AWS credentials ({type(exc).__name__}): configure the AWS chain "
            f"(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ...) or use S3Options(anonymous=True) "
            f"for a public bucket"
        ) from None
    except ProfileNotFound as exc:
        raise AccessDenied(f"{target}: {exc}: check AWS_PROFILE or S3Options(profile=...)") from None
    except (ParamValidationError, InvalidDNSNameError) as exc:
        raise InvalidURI(f"{target}: rejected by the S3 client: {scrub(str(exc))}") from None
    except BotoCoreError as exc:
        raise BackendError(f"{target}: {op} failed: {type(exc).__name__}: {scrub(str(exc))}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise BackendError(f"{target}: {op} failed: {type(exc).__name__}: {scrub(str(exc))}") from None


# -- session and client ---------------------------------------------------------------------------


_LOADER_LOCK = threading.Lock()
_LOADER: Loader | None = None


def botocore_session() -> AioSession:
    """A botocore session for one backend: its own credentials and config, but a data loader shared by the
    process (loading the S3 service model costs ~150 ms per client otherwise), and timestamps kept as text
    (botocore's dateutil parsing costs ~0.3 ms per listed object, more than the rest of a page; `iso_time`
    normalises the text)."""
    from aiobotocore.session import AioSession
    from botocore.loaders import create_loader

    global _LOADER
    session = AioSession()
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = create_loader()
        session.register_component("data_loader", _LOADER)
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return session


def client_config(options: Options) -> Config:
    """The botocore configuration: `Options.retry` with `S3Options.retry_mode` / `max_attempts` winning when
    set, pool size, timeouts, addressing style, unsigned requests when anonymous."""
    from botocore.config import Config

    s3 = options.s3
    retry = options.retry.with_overrides(s3_mode=s3.retry_mode, max_attempts=s3.max_attempts)
    kwargs: dict[str, Any] = {
        # total_max_attempts counts the first try ("max_attempts" in botocore's dict counts retries only).
        "retries": {"mode": retry.s3_mode, "total_max_attempts": retry.max_attempts},
        "max_pool_connections": s3.max_pool_connections,
        "connect_timeout": s3.connect_timeout,
        "read_timeout": s3.read_timeout,
        "user_agent_extra": "refscan",
    }
    if s3.addressing_style:
        kwargs["s3"] = {"addressing_style": s3.addressing_style}
    if s3.anonymous:
        kwargs["signature_version"] = UNSIGNED
    return Config(**kwargs)


class S3Client:
    """The aiobotocore client of one backend, and its one request path. Open it once, close it once."""

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        self.options = options
        self.limiter = limiter
        self._stack: AsyncExitStack | None = None
        self._boto: Any = None

    @property
    def boto(self) -> Any:
        """The aiobotocore client (for its event hooks; requests go through `request`)."""
        if self._boto is None:
            raise RuntimeError("use the S3 backend inside 'async with S3Backend(...) as backend:'")
        return self._boto

    async def open(self) -> None:
        s3 = self.options.s3
        endpoint = s3.resolved_endpoint_url()
        stack = AsyncExitStack()
        with map_errors("open", "s3://", bucket=""):
            session = botocore_session()
            if s3.profile:
                session.set_config_variable("profile", s3.profile)
            self._boto = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    region_name=s3.region,
                    endpoint_url=endpoint,
                    aws_access_key_id=s3.aws_access_key_id,
                    aws_secret_access_key=s3.aws_secret_access_key,
                    aws_session_token=s3.aws_session_token,
                    config=client_config(self.options),
                )
            )
            from . import xmlpages

            xmlpages.register(self._boto.meta.events)
        self._stack = stack
        logger().debug(
            "s3.open",
            endpoint=redact(endpoint) if endpoint else None,
            region=self._boto.meta.region_name,
            anonymous=s3.anonymous,
            requester_pays=s3.requester_pays,
        )

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self._boto = None
        if stack is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()

    def errors(self, op: str, target: str, bucket: str, version: str | None = None) -> AbstractContextManager[None]:
        """`map_errors` for this client (knows whether requests are requester-pays)."""
        return map_errors(op, target, bucket=bucket, version=version, requester_pays=self.options.s3.requester_pays)

    async def request(self, op: str, target: str, *, event: str = "s3.request", **params: Any) -> dict[str, Any]:
        """Send operation `op` (e.g. "HeadObject") with `params` (Bucket, Key, VersionId, ...; RequestPayer is
        added when requester-pays) and return botocore's response.

        Holds the limiter for this request only; botocore retries inside it. Logs `event` at debug level with
        the operation, bucket, key or prefix, botocore's retry count and the elapsed seconds (the error class
        when it failed). `target` names the object or folder in errors.
        """
        bucket = str(params.get("Bucket", ""))
        version = params.get("VersionId")
        if self.options.s3.requester_pays and op in PAYER_OPERATIONS:
            params["RequestPayer"] = "requester"
        call = getattr(self.boto, xform_name(op))
        fields: dict[str, Any] = {"op": op, "bucket": bucket}
        if "Key" in params:
            fields.update(key=params["Key"], pinned=version is not None)
        if "Prefix" in params:
            fields["prefix"] = params["Prefix"]
        started = time.perf_counter()
        try:
            async with self.limiter:
                with self.errors(op, target, bucket, version):
                    resp: dict[str, Any] = await call(**params)
        except RefscanError as exc:
            logger().debug(event, **fields, error=type(exc).__name__, elapsed=round(time.perf_counter() - started, 4))
            raise
        retries = (resp.get("ResponseMetadata") or {}).get("RetryAttempts")
        logger().debug(event, **fields, retries=retries, elapsed=round(time.perf_counter() - started, 4))
        return resp
