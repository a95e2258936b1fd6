"""`s3://` resolver on aioboto3: S3 and S3-compatible stores (MinIO, R2, Ceph, moto).

One aioboto3 client per resolver (so one per `Scanner`), configured from `S3Options` and the environment
(SPEC §2). Every backend exception goes through `map_errors`, the single place that turns botocore/aiohttp
failures into the refscan error tree.

Single objects cost one HeadObject. Folders never cost a request per object: the listing carries ETag, size
and (on versioned buckets, via ListObjectVersions) the version id. Versioning is decided once per bucket with
GetBucketVersioning; only when that call is denied does the resolver fall back to ListObjectsV2 plus one
concurrent HeadObject per object (the only way left to learn version ids).

Listing large folders (`Walk`) fans out by sub-folder so a big tree is not one chain of sequential pages:

1. Every folder starts with one plain (recursive, no delimiter) page. A folder that fits in one page
   costs exactly one request.
2. When a page is truncated, the walk looks at how many sub-folders that page touched. Many small
   sub-folders (more than `FANOUT_MAX_CHILDREN` in 1,000 keys) are cheapest listed by continuing the same
   chain, so it continues (and re-decides on the next page). Otherwise it fans out from the position after
   the page's last item:
   - the sub-folder holding that last item continues on its own, from just after that item;
   - a delimiter listing of the folder (from the same position) yields the remaining direct objects and
     sub-folders; each sub-folder is walked the same way, concurrently.
   Positions are always real items (StartAfter = last key; KeyMarker + VersionIdMarker = last version),
   never invented split keys: that is exact on S3 and on emulators alike.
3. Requests in flight are bounded by `self.limiter`, held only around each single request. A shared budget
   bounds the objects: the MaxKeys of all requests in flight plus the objects already kept never exceed
   `limit`, so at most `limit` live objects are ever requested and the walk stops as soon as `limit` are kept.
   On versioned buckets MaxKeys counts versions and delete markers while the budget counts live objects:
   each request asks for at most the remaining objects' worth of entries, so no more than `limit` live
   objects are listed, though noncurrent versions may add entries (and pages) on top.

Cost: a folder of N objects costs about N/1000 list requests plus, when it fans out, one extra request per
sub-folder holding more than ~100 objects on average; never a request per object (except in the denied
fallback). A flat folder (no sub-folders) is inherently one chain of N/1000 sequential pages: S3 has no
"end before" parameter, so key-range splitting would need guessed split keys and wasted reads.

Results stream in rounds (`Walk.rounds`): each round requests one page for each of up to `ROUND_WIDTH`
pending steps concurrently, then yields what it found, so memory stays bounded (about ROUND_WIDTH pages)
however large the folder. No task group stays open across a `yield` (the caller may abandon the iterator).
"""

from __future__ import annotations

import builtins
import email.utils
import re
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import AbstractContextManager, AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aioboto3
import aiohttp
import anyio
from aiobotocore.session import AioSession
from botocore import UNSIGNED
from botocore.config import Config
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
from botocore.loaders import Loader, create_loader

from ..errors import AccessDenied, BackendError, InvalidURI, NotFound, RefscanError
from ..events import logger
from ..options import Options, S3Options
from ..uri import RefURI, redact
from .base import ObjectInfo, Resolver

CHUNK = 1 << 20
PAGE = 1000  # S3's page cap; never rely on a server to cap MaxKeys for us (moto does not)
BATCH = 1000
#: A truncated page touching more sub-folders than this (in <= 1,000 keys, i.e. < ~100 keys each on average)
#: is continued sequentially: a request per small sub-folder would cost more than it saves.
FANOUT_MAX_CHILDREN = 10
HEAD_FALLBACK_BATCH = 256
#: Pending page requests issued together in one listing round (bounds memory to ~ROUND_WIDTH pages).
ROUND_WIDTH = 32

#: HeadObject response field -> manifest `extra` key (additional checksums, SPEC §4).
CHECKSUM_FIELDS: dict[str, str] = {
    "ChecksumCRC32": "checksumCRC32",
    "ChecksumCRC32C": "checksumCRC32C",
    "ChecksumCRC64NVME": "checksumCRC64NVME",
    "ChecksumSHA1": "checksumSHA1",
    "ChecksumSHA256": "checksumSHA256",
}

#: What each operation needs, for AccessDenied messages.
PERMISSIONS: dict[str, str] = {
    "HeadObject": "s3:GetObject (s3:GetObjectVersion for a pinned version), "
    "and s3:ListBucket to tell a missing object from a denied one",
    "GetObject": "s3:GetObject (s3:GetObjectVersion for a pinned version)",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetBucketVersioning": "s3:GetBucketVersioning",
}

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


# -- pure helpers ---------------------------------------------------------------------------------


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


def iso_time(value: Any) -> str | None:
    """ISO-8601 UTC to the second (`2024-05-01T12:00:00Z`).

    The client keeps timestamps as the server's text (see `S3Resolver.open`): ISO 8601 in listings
    (milliseconds), RFC 1123 in HeadObject headers (seconds). Truncating to the second makes both paths record
    the same string for the same object.
    """
    if isinstance(value, str):
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


def is_folder_marker(key: str, size: int | None) -> bool:
    """A key ending in `/` with no content: a console-created folder, not an object (SPEC §3)."""
    return key.endswith("/") and not size


def child_of(prefix: str, key: str) -> str | None:
    """The immediate sub-folder of `prefix` that holds `key` (`prefix` + first component + `/`), or None
    when `key` is a direct object of `prefix`."""
    rest = key[len(prefix) :]
    slash = rest.find("/")
    if slash < 0:
        return None
    return prefix + rest[: slash + 1]


def _common(key: str, etag: Any, version: Any, modified: Any, source: str) -> tuple[str, str | None, dict[str, Any]]:
    """Digest, version id and the base `extra` shared by listed and HEAD'ed objects."""
    digest = strip_etag(etag)
    if not digest:
        raise BackendError(f"{source} gave no ETag for key {key!r}: the store is not S3-compatible enough")
    vid = version_id(version)
    extra: dict[str, Any] = {"etag": digest}
    if vid is not None:
        extra["versionID"] = vid
    text = iso_time(modified)
    if text is not None:
        extra["lastModified"] = text
    return digest, vid, extra


def _sized(key: str, digest: str, size: Any, vid: str | None, extra: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(key=key, digest=digest, size=int(size) if size is not None else None, version=vid, extra=extra)


def listed_info(entry: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from a ListObjectsV2 `Contents` or ListObjectVersions `Versions` entry."""
    key: str = entry["Key"]
    digest, vid, extra = _common(
        key, entry.get("ETag"), entry.get("VersionId"), entry.get("LastModified"), "the listing"
    )
    algorithms = entry.get("ChecksumAlgorithm")
    if algorithms:
        extra["checksumAlgorithm"] = [str(a) for a in algorithms]
        if entry.get("ChecksumType"):
            extra["checksumType"] = str(entry["ChecksumType"])
    return _sized(key, digest, entry.get("Size"), vid, extra)


def head_info(key: str, resp: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from a HeadObject (or GetObject) response."""
    digest, vid, extra = _common(key, resp.get("ETag"), resp.get("VersionId"), resp.get("LastModified"), "HeadObject")
    sse = str(resp.get("ServerSideEncryption") or "")
    if sse.startswith("aws:kms") or resp.get("SSECustomerAlgorithm"):
        extra["sse"] = sse or "sse-c"  # the ETag of such an object is not the MD5 of its content
    checksums = {name: resp[f] for f, name in CHECKSUM_FIELDS.items() if resp.get(f)}
    if checksums:
        extra.update(checksums)
        if resp.get("ChecksumType"):
            extra["checksumType"] = str(resp["ChecksumType"])
    return _sized(key, digest, resp.get("ContentLength"), vid, extra)


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


# -- listing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a listing continues.

    `token`/`key_marker`+`version_marker` are the server's own continuation; `start_after` is a real key.
    A cursor from a plain page's last item (`Page.after_last`) may be used with a narrower Prefix.
    """

    token: str | None = None
    start_after: str | None = None
    key_marker: str | None = None
    version_marker: str | None = None


@dataclass
class Page:
    objects: list[ObjectInfo]  # live objects: latest versions, no delete markers, no folder markers
    prefixes: list[str]  # CommonPrefixes (delimiter listings only)
    keys: list[str]  # every key seen (objects, markers, noncurrent versions)
    last_key: str | None  # the key of the page's last item (plain listings)
    next: Cursor | None  # continuation of this same request, when truncated
    after_last: Cursor | None  # "after the last item", usable with another Prefix


class Budget:
    """Shared object budget across concurrent page requests (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.found = 0
        self.reserved = 0
        self.in_flight = 0
        self._changed = anyio.Event()

    @property
    def full(self) -> bool:
        return self.found >= self.limit

    async def reserve(self) -> int:
        """MaxKeys for the next request, or 0 when `limit` objects are already kept.

        A short page (less than PAGE) is only issued when nothing else is in flight: requests in flight may
        give their reservation back, and tiny pages would multiply requests.
        """
        while True:
            if self.full:
                return 0
            remaining = self.limit - self.found - self.reserved
            if remaining >= PAGE or (remaining > 0 and self.in_flight == 0):
                size = min(PAGE, remaining)
                self.reserved += size
                self.in_flight += 1
                return size
            await self._changed.wait()

    def settle(self, size: int, kept: int) -> None:
        self.reserved -= size
        self.in_flight -= 1
        self.found += kept
        changed, self._changed = self._changed, anyio.Event()
        changed.set()


@dataclass(frozen=True)
class Step:
    """One pending page request of a walk: a plain (recursive) page of `prefix`, or, when `delimited`, a page
    of its direct objects and sub-folders (`skip`: the sub-folder already continued by its own step)."""

    prefix: str
    cursor: Cursor | None = None
    delimited: bool = False
    skip: str | None = None


class Walk:
    """One folder listing: concurrent, budgeted, complete, streamed in rounds (see the module docstring)."""

    def __init__(self, resolver: S3Resolver, bucket: str, *, versioned: bool, limit: int) -> None:
        self.resolver = resolver
        self.bucket = bucket
        self.versioned = versioned
        self.budget = Budget(limit)
        self.requests = 0
        self.fanouts = 0
        self.error: RefscanError | None = None
        self.pending: deque[Step] = deque()

    async def rounds(self, prefix: str) -> AsyncIterator[builtins.list[ObjectInfo]]:
        """The live objects under `prefix`, one batch per round. A round requests one page for each of up to
        ROUND_WIDTH pending steps concurrently; its task group is closed before the batch is yielded."""
        if self.budget.limit <= 0:
            return
        self.pending.append(Step(prefix))
        while self.pending and not self.budget.full:
            steps = [self.pending.popleft() for _ in range(min(ROUND_WIDTH, len(self.pending)))]
            found: builtins.list[ObjectInfo] = []
            async with anyio.create_task_group() as tg:
                for step in steps:
                    tg.start_soon(self._guarded, step, found, tg.cancel_scope)
            if self.error is not None:
                raise self.error
            yield found

    async def _guarded(self, step: Step, found: builtins.list[ObjectInfo], scope: anyio.CancelScope) -> None:
        """Run `step`; the first refscan error ends the round and is raised by `rounds` as itself."""
        try:
            if not await self._step(step, found):
                scope.cancel()
        except RefscanError as exc:
            if self.error is None:
                self.error = exc
            scope.cancel()

    async def _fetch(self, step: Step) -> Page | None:
        size = await self.budget.reserve()
        if size == 0:
            return None
        kept = 0
        try:
            page = await self.resolver._list_page(
                self.bucket,
                step.prefix,
                cursor=step.cursor,
                delimiter="/" if step.delimited else None,
                max_keys=size,
                versioned=self.versioned,
            )
            self.requests += 1
            kept = len(page.objects)
        finally:
            self.budget.settle(size, kept)
        return page

    async def _step(self, step: Step, found: builtins.list[ObjectInfo]) -> bool:
        """Request one page for `step`, keep its objects and queue what follows. False once the budget is full."""
        page = await self._fetch(step)
        if page is None:
            return False
        found.extend(page.objects)
        if step.delimited:
            self.pending.extend(Step(sub) for sub in page.prefixes if sub != step.skip)
            if page.next is not None:
                self.pending.append(Step(step.prefix, page.next, delimited=True, skip=step.skip))
        elif page.next is not None:
            self._continue(step.prefix, page)
        return not self.budget.full

    def _continue(self, prefix: str, page: Page) -> None:
        """After a truncated plain page: continue the chain, or fan out when it pays."""
        children = {c for c in (child_of(prefix, k) for k in page.keys) if c is not None}
        if len(children) > FANOUT_MAX_CHILDREN or page.last_key is None or page.after_last is None:
            self.pending.append(Step(prefix, page.next))  # many small sub-folders: one chain is cheapest
            return
        self.fanouts += 1
        current = child_of(prefix, page.last_key)
        if current is not None:
            self.pending.append(Step(current, page.after_last))
        self.pending.append(Step(prefix, page.after_last, delimited=True, skip=current))


def _truncated(resp: Mapping[str, Any], marker: Any) -> bool:
    """Whether a listing page continues; a truncated page without a continuation marker is an error (ending
    there would silently shorten the listing)."""
    if not resp.get("IsTruncated"):
        return False
    if not marker:
        raise BackendError("the store said the listing continues but gave no continuation marker")
    return True


# -- the resolver ---------------------------------------------------------------------------------


_LOADER_LOCK = threading.Lock()
_LOADER: Loader | None = None


def _botocore_session() -> AioSession:
    """A botocore session for one resolver: its own credentials and config, but a data loader shared by the
    process (loading the S3 service model costs ~150 ms per client otherwise), and timestamps kept as text
    (botocore's dateutil parsing costs ~0.3 ms per listed object, more than the rest of a page; `iso_time`
    normalises the text)."""
    global _LOADER
    session = AioSession()
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = create_loader()
        session.register_component("data_loader", _LOADER)
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return session


def _dedupe_search_paths() -> None:
    """boto3 appends its data folder to the loader's search paths for every Session: keep one of each."""
    with _LOADER_LOCK:
        if _LOADER is not None:
            _LOADER.search_paths[:] = list(dict.fromkeys(_LOADER.search_paths))


@dataclass
class _BucketState:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    mode: str | None = None  # "versioned" | "unversioned" | "denied"


class S3Resolver(Resolver):
    schemes = ("s3",)

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        super().__init__(options, limiter)
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._buckets: dict[str, _BucketState] = {}

    @property
    def s3(self) -> S3Options:
        return self.options.s3

    # -- lifecycle --------------------------------------------------------------------------------

    def client_config(self) -> Config:
        s3 = self.s3
        kwargs: dict[str, Any] = {
            # total_max_attempts counts the first try ("max_attempts" in botocore's dict counts retries only).
            "retries": {"mode": s3.retry_mode, "total_max_attempts": s3.max_attempts},
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

    async def open(self) -> None:
        s3 = self.s3
        endpoint = s3.resolved_endpoint_url()
        stack = AsyncExitStack()
        with map_errors("open", "s3://", bucket=""):
            session = aioboto3.Session(
                botocore_session=_botocore_session(),
                aws_access_key_id=s3.aws_access_key_id,
                aws_secret_access_key=s3.aws_secret_access_key,
                aws_session_token=s3.aws_session_token,
                region_name=s3.region,
                profile_name=s3.profile,
            )
            _dedupe_search_paths()
            self._client = await stack.enter_async_context(
                session.client("s3", endpoint_url=endpoint, config=self.client_config())
            )
        self._stack = stack
        logger().debug(
            "s3.open",
            endpoint=redact(endpoint) if endpoint else None,
            region=self._client.meta.region_name,
            anonymous=s3.anonymous,
            requester_pays=s3.requester_pays,
        )

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self._client = None
        if stack is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("use the S3 resolver inside 'async with S3Resolver(...) as resolver:'")
        return self._client

    def _errors(self, op: str, target: str, bucket: str, version: str | None = None) -> AbstractContextManager[None]:
        return map_errors(op, target, bucket=bucket, version=version, requester_pays=self.s3.requester_pays)

    def _payer(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.s3.requester_pays:
            params["RequestPayer"] = "requester"
        return params

    # -- single objects ---------------------------------------------------------------------------

    async def _head(self, bucket: str, key: str, version: str | None, target: str) -> ObjectInfo:
        params = self._payer({"Bucket": bucket, "Key": key})
        if version is not None:
            params["VersionId"] = version
        if self.s3.checksums:
            params["ChecksumMode"] = "ENABLED"
        async with self.limiter:
            with self._errors("HeadObject", target, bucket, version):
                resp = await self.client.head_object(**params)
        return head_info(key, resp)

    async def stat(self, uri: RefURI) -> ObjectInfo:
        if not uri.key or uri.key.endswith("/"):
            raise NotFound(f"{uri}: a bucket or folder is not an object")
        started = time.perf_counter()
        info = await self._head(uri.bucket, uri.key, uri.version, str(uri))
        logger().debug(
            "s3.head",
            bucket=uri.bucket,
            key=uri.key,
            pinned=uri.version is not None,
            elapsed=round(time.perf_counter() - started, 4),
        )
        return info

    async def part_size(self, uri: RefURI) -> int | None:
        """The size of part 1 of a multipart object (HeadObject PartNumber=1), None for a single-part one."""
        params = self._payer({"Bucket": uri.bucket, "Key": uri.key, "PartNumber": 1})
        if uri.version is not None:
            params["VersionId"] = uri.version
        async with self.limiter:
            with self._errors("HeadObject", str(uri), uri.bucket, uri.version):
                resp = await self.client.head_object(**params)
        if not resp.get("PartsCount"):
            return None
        return int(resp["ContentLength"])

    async def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        target = str(uri)
        params = self._payer({"Bucket": uri.bucket, "Key": uri.key})
        if uri.version is not None:
            params["VersionId"] = uri.version
        started = time.perf_counter()
        async with self.limiter:
            with self._errors("GetObject", target, uri.bucket, uri.version):
                resp = await self.client.get_object(**params)
        body = resp["Body"]
        total = 0
        async with body:
            while True:
                with self._errors("GetObject", target, uri.bucket, uri.version):
                    chunk = await body.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                yield chunk
        logger().debug(
            "s3.get", bucket=uri.bucket, key=uri.key, bytes=total, elapsed=round(time.perf_counter() - started, 4)
        )

    # -- folders ----------------------------------------------------------------------------------

    async def versioning(self, bucket: str) -> str:
        """The bucket's listing mode, asked once per bucket: "versioned", "unversioned" or "denied"
        (GetBucketVersioning refused: list with ListObjectsV2 and HEAD each object)."""
        state = self._buckets.setdefault(bucket, _BucketState())
        async with state.lock:
            if state.mode is not None:
                return state.mode
            target = f"s3://{bucket}"
            try:
                async with self.limiter:
                    with self._errors("GetBucketVersioning", target, bucket):
                        resp = await self.client.get_bucket_versioning(Bucket=bucket)
            except AccessDenied:
                state.mode = "denied"
            else:
                status = resp.get("Status")
                state.mode = "versioned" if status in ("Enabled", "Suspended") else "unversioned"
            logger().debug("s3.versioning", bucket=bucket, mode=state.mode)
            return state.mode

    async def _list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        cursor: Cursor | None,
        delimiter: str | None,
        max_keys: int,
        versioned: bool,
    ) -> Page:
        """One ListObjectsV2 / ListObjectVersions request, normalised."""
        params = self._payer({"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys})
        if delimiter:
            params["Delimiter"] = delimiter
        target = f"s3://{bucket}/{prefix}"
        if versioned:
            if cursor is not None and cursor.key_marker is not None:
                params["KeyMarker"] = cursor.key_marker
                if cursor.version_marker:
                    params["VersionIdMarker"] = cursor.version_marker
            async with self.limiter:
                with self._errors("ListObjectVersions", target, bucket):
                    resp = await self.client.list_object_versions(**params)
            return self._versions_page(resp)
        if cursor is not None:
            if cursor.token is not None:
                params["ContinuationToken"] = cursor.token
            elif cursor.start_after is not None:
                params["StartAfter"] = cursor.start_after
        async with self.limiter:
            with self._errors("ListObjectsV2", target, bucket):
                resp = await self.client.list_objects_v2(**params)
        return self._v2_page(resp)

    @staticmethod
    def _v2_page(resp: Mapping[str, Any]) -> Page:
        contents = resp.get("Contents") or []
        objects = [listed_info(c) for c in contents if not is_folder_marker(c["Key"], c.get("Size"))]
        keys = [c["Key"] for c in contents]
        prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes") or []]
        token = resp.get("NextContinuationToken")
        truncated = _truncated(resp, token)
        last = keys[-1] if keys else None
        return Page(
            objects=objects,
            prefixes=prefixes,
            keys=keys,
            last_key=last,
            next=Cursor(token=token) if truncated else None,
            after_last=Cursor(start_after=last) if last is not None else None,
        )

    @staticmethod
    def _versions_page(resp: Mapping[str, Any]) -> Page:
        versions = resp.get("Versions") or []
        markers = resp.get("DeleteMarkers") or []
        # The latest entry of each key comes first in S3's order; a key whose latest entry is a delete marker
        # has no IsLatest version, so it is gone and skipped. Noncurrent versions are skipped too.
        objects = [
            listed_info(v) for v in versions if v.get("IsLatest") and not is_folder_marker(v["Key"], v.get("Size"))
        ]
        keys = [v["Key"] for v in versions] + [m["Key"] for m in markers]
        prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes") or []]
        key_marker = resp.get("NextKeyMarker")
        version_marker = resp.get("NextVersionIdMarker")
        truncated = _truncated(resp, key_marker)
        cursor = Cursor(key_marker=key_marker, version_marker=version_marker) if truncated else None
        # The continuation markers name the page's last item exactly (key + version), so they also serve as
        # "after the last item" for a narrower prefix. Without a version marker (a page ending on a common
        # prefix) there is no exact item to resume from.
        exact = cursor if cursor is not None and version_marker else None
        return Page(
            objects=objects,
            prefixes=prefixes,
            keys=keys,
            last_key=key_marker if exact is not None else None,
            next=cursor,
            after_last=exact,
        )

    async def list(self, folder: RefURI, limit: int) -> AsyncGenerator[builtins.list[ObjectInfo], None]:
        if limit <= 0:
            return
        started = time.perf_counter()
        mode = await self.versioning(folder.bucket)
        walk = Walk(self, folder.bucket, versioned=mode == "versioned", limit=limit)
        total = heads = 0
        async for found in walk.rounds(folder.key):
            objects = found
            if mode == "denied" and objects:
                heads += len(objects)
                objects = await self._head_all(folder, objects)
            objects.sort(key=lambda o: o.key)
            total += len(objects)
            for start in range(0, len(objects), BATCH):
                yield objects[start : start + BATCH]
        logger().debug(
            "s3.list",
            bucket=folder.bucket,
            prefix=folder.key,
            mode=mode,
            pages=walk.requests,
            fanouts=walk.fanouts,
            heads=heads,
            objects=total,
            elapsed=round(time.perf_counter() - started, 4),
        )

    async def _head_all(self, folder: RefURI, listed: builtins.list[ObjectInfo]) -> builtins.list[ObjectInfo]:
        """Fallback when GetBucketVersioning is denied: one HeadObject per object for its version id.
        Objects deleted since the listing are dropped."""
        results: dict[int, ObjectInfo] = {}
        errors: builtins.list[RefscanError] = []

        async def one(i: int, scope: anyio.CancelScope) -> None:
            key = listed[i].key
            try:
                results[i] = await self._head(folder.bucket, key, None, f"s3://{folder.bucket}/{key}")
            except NotFound:
                pass  # deleted since the listing
            except RefscanError as exc:
                errors.append(exc)
                scope.cancel()

        for start in range(0, len(listed), HEAD_FALLBACK_BATCH):
            async with anyio.create_task_group() as tg:
                for i in range(start, min(start + HEAD_FALLBACK_BATCH, len(listed))):
                    tg.start_soon(one, i, tg.cancel_scope)
            if errors:
                raise errors[0]
        return [results[i] for i in sorted(results)]
