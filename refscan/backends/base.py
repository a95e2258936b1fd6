"""The backend contract: everything a URI scheme means, in one class (docs/architecture.md, Backends).

A backend owns its scheme's URI details (parsing, version syntax, refs, file names, direct URLs), its one
request path (limiter, retries, error table), its codec (`ObjectMeta` ↔ manifest digest and W&B `extra`)
and its fingerprint kinds. It knows nothing about artifacts, naming rules, manifests' layout or the CLI.

Class-level parts (URIs, codec, capabilities) never do I/O and work without opening the backend. I/O happens
inside `async with Backend(options, limiter) as backend:`; `limiter` is held only around single requests.
"""

from __future__ import annotations

import abc
import builtins
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar

import anyio

from ..errors import InvalidURI, ResumeRefused, Unsupported
from ..events import logger
from ..fingerprint import ETAG, VERSION, WEAK_ETAG, DeepCheck, Fingerprint, Match
from ..meta import ObjectMeta
from ..options import Options
from ..protection import BucketProtection, ObjectState
from ..uri import RefURI, shown
from .keyspace import KeyRange, RangeListing

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,221}$")


def is_folder_marker(key: str, size: int | str | None) -> bool:
    """A key ending in `/` with no content: a console-created folder, not an object, so listings skip it
    (zero-byte files are kept; docs/behaviour.md, URIs). `size` as the store sends it (GCS: a string)."""
    return key.endswith("/") and str(size or 0) == "0"


class Backend(abc.ABC):
    """One storage backend for the URI schemes in `schemes`.

    Capabilities (class attributes):
    - `folders`: a URI may name a folder (bucket root or a key ending in `/`) that `list` expands; without
      it every URI is one object, named before any request.
    - `versioned`: `ObjectMeta.version` pins immutable bytes (S3 version ids, GCS generations).
    - `listing_fingerprints`: a listing carries each object's fingerprint, so verify lists a busy folder once
      instead of a lookup per entry.
    - `ranged`: a folder can be listed as `KeyRange`s planned on one machine and listed on others
      (`list_range`, `split_range`): scale-out and checkpoints.
    - `guarded`: it reads what keeps objects alive (`protection`, `object_state`) and places holds
      (`set_hold`, naming them `hold_kind`); without it guard reports its entries as unknown.
    """

    schemes: ClassVar[tuple[str, ...]]
    folders: ClassVar[bool] = True
    versioned: ClassVar[bool] = False
    listing_fingerprints: ClassVar[bool] = False
    ranged: ClassVar[bool] = False
    guarded: ClassVar[bool] = False
    hold_kind: ClassVar[str] = "hold"

    def __init__(self, options: Options, limiter: anyio.CapacityLimiter) -> None:
        self.options = options
        self.limiter = limiter

    # -- URIs (no I/O) ---------------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def parse_uri(cls, scheme: str, text: str) -> RefURI:
        """`text` (whose scheme is `scheme`, lower-cased) as a RefURI; raises `InvalidURI`."""

    @classmethod
    def parse_configured(cls, scheme: str, text: str, options: Options) -> RefURI:
        """`parse_uri` for URIs whose meaning depends on `options` (an account, an endpoint); backends without
        such URIs leave it as it is."""
        return cls.parse_uri(scheme, text)

    @classmethod
    def object_ref(cls, uri: RefURI) -> str:
        """The manifest `ref` of the object `uri` names: no version, no secrets."""
        return f"{uri.scheme}://{uri.bucket}/{uri.key}"

    @classmethod
    def format_uri(cls, uri: RefURI) -> str:
        """`uri` in canonical form, version included (for messages and logs; never secrets)."""
        return cls.object_ref(uri) if uri.version is None else f"{cls.object_ref(uri)}#{uri.version}"

    @classmethod
    def file_name(cls, uri: RefURI) -> str:
        """The last path component of `uri` (of a folder too; the bucket for a bucket root)."""
        stripped = uri.key.rstrip("/") if cls.folders else uri.key
        if not stripped:
            return uri.bucket
        return stripped.rsplit("/", 1)[-1]

    @classmethod
    def entry_ref(cls, uri: RefURI, meta: ObjectMeta) -> str:
        """The `ref` of object `meta` found by looking up (or listing) `uri`."""
        return cls.object_ref(uri.child(meta.key))

    @classmethod
    def pin(cls, uri: RefURI, version: str | None) -> RefURI:
        """`uri` pinned to `version` when this backend's versions pin bytes; else `uri` unchanged."""
        if cls.versioned and version is not None:
            return uri.child(uri.key, version)
        return uri

    @classmethod
    def direct_url(cls, uri: RefURI, options: Options) -> str:
        """A URL other tools can fetch the (pinned) object from; the ref itself by default."""
        return cls.object_ref(uri)

    @classmethod
    def delegated_to_wandb(cls, uri: str) -> bool:
        """True when the W&B drop-in should hand `uri` to W&B's own handler instead of reading it here."""
        return False

    # -- codec (no I/O) --------------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def encode(cls, meta: ObjectMeta) -> tuple[str, dict[str, Any]]:
        """The manifest `digest` and W&B `extra` for `meta`."""

    @classmethod
    @abc.abstractmethod
    def decode(cls, key: str, digest: str, size: int | None, extra: Mapping[str, Any]) -> ObjectMeta:
        """The `ObjectMeta` a manifest entry records (inverse of `encode`; tolerant of W&B-written entries)."""

    @classmethod
    def fingerprint(cls, meta: ObjectMeta) -> Fingerprint:
        """Evidence of `meta`'s content, strongest first: its content hashes, its version when versions pin
        bytes, then its ETag."""
        hashes = list(meta.hashes.items())
        if cls.versioned and meta.version is not None:
            hashes.append((VERSION, meta.version))
        if meta.etag:
            hashes.append((WEAK_ETAG if meta.etag.startswith("W/") else ETAG, meta.etag))
        return Fingerprint(tuple(hashes), meta.size)

    # -- I/O -------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Backend:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the backend client (called once)."""

    async def close(self) -> None:
        """Release the backend client (called once, also after errors)."""

    @abc.abstractmethod
    async def stat(self, uri: RefURI) -> ObjectMeta:
        """The single object `uri` names, at `uri.version` when pinned.

        Raises `NotFound` when there is no such object (or version), `AccessDenied`, `BackendError`.
        Never expands folders: `s3://b/data` is looked up as the object `data` only.
        """

    def list(self, folder: RefURI, limit: int) -> AsyncGenerator[list[ObjectMeta], None]:
        """The objects under `folder` (bucket root, or a key ending in `/`), in batches.

        Folder semantics are by path component (`data/` never matches `data2/x`). Folder markers (keys
        ending in `/` with size 0) are skipped; zero-byte files are kept. Objects carry their fingerprints
        (no request per object where the listing has them). At most `limit` objects are requested in
        total; the iterator ends after yielding `limit`. An empty or absent folder yields nothing; a missing
        bucket raises `NotFound`. Only backends with `folders` implement it.
        """
        raise InvalidURI(f"{folder}: {folder.scheme} references name a single object and are never expanded")

    async def list_range(self, folder: RefURI, rng: KeyRange, limit: int, pages: int) -> RangeListing:
        """One step through `rng` of `folder`: at most `pages` listing pages in one chain, at most `limit`
        objects, what is left as `RangeListing.rest` (same folder semantics and markers as `list`; a store
        breaking the key order is reported in `RangeListing.disorder`). Only `ranged` backends implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not list key ranges")

    @classmethod
    def split_range(cls, folder: RefURI, rng: KeyRange, sample: Sequence[str], parts: int) -> builtins.list[KeyRange]:
        """Up to `parts` ranges that together cover exactly `rng` (the rest of a range whose last page had the
        keys `sample`); `[rng]` when no useful split is seen. No I/O."""
        return [rng]

    @abc.abstractmethod
    def read(self, uri: RefURI) -> AsyncIterator[bytes]:
        """The bytes of the object `uri` (at `uri.version` when pinned), streamed in chunks, all from one version:
        a connection dropped mid-body resumes from the last byte received, pinned to what was first served;
        `ResumeRefused` when it cannot (the object changed), for the caller to read again from the start
        (`read_checked`)."""

    async def protection(self, bucket: str) -> BucketProtection:
        """What keeps the objects of `bucket` alive: versioning, lifecycle rules, locks and retention (read once
        per bucket by guard; a refused read is reported in the result, not raised). Backends that are not
        `guarded` cannot tell."""
        return BucketProtection.cannot_tell(f"refscan cannot read what protects {self.schemes[0]}:// objects")

    async def object_state(self, uri: RefURI, size: int | None, *, tags: bool) -> ObjectState:
        """The version `uri` names (the current object when unpinned; `size` as recorded) as lifecycle rules
        see it, with its tags when `tags`. Only `guarded` backends implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not read object protection")

    async def set_hold(self, uri: RefURI, on: bool) -> bool:
        """Place (`on`) or remove the hold on the pinned version `uri`; False when it already was so. Raises
        `Unsupported` where the store keeps no holds for it."""
        raise Unsupported(f"{self.format_uri(uri)}: {self.schemes[0]}:// objects cannot be held")

    async def part_size(self, uri: RefURI) -> int | None:
        """The part size of a multipart upload (to recompute its ETag from the bytes); None when the backend
        has no such notion or the object is a single part."""
        return None


async def read_checked(
    backend: Backend,
    uri: RefURI,
    check: Callable[[AsyncIterator[bytes]], Awaitable[DeepCheck]],
    *,
    size_vouched: bool,
) -> DeepCheck:
    """`await check(backend.read(uri))`, which must start afresh on each call. Read again from the first byte,
    once: when the read dropped and could not resume on the same bytes (`ResumeRefused`: the object changed),
    and, with `size_vouched` (the store stands by the recorded size: a pinned version, or a lookup just
    made), when bytes of another size came from a read that was not restarted, taking it for a body cut on
    the way behind a matching Content-Length, which HTTP cannot tell."""
    try:
        outcome = await check(backend.read(uri))
    except ResumeRefused as exc:
        logger().debug("read.restart", reason=str(exc))
        return await check(backend.read(uri))
    if size_vouched and outcome.match is Match.DIFFERENT and outcome.kind == "size":
        logger().debug("read.again", reason=outcome.detail)
        outcome = await check(backend.read(uri))
    return outcome


class BucketBackend(Backend):
    """A store of buckets and keys: `scheme://bucket/key`, a version after the key in `version_pattern`.

    Keys are taken as written (no percent-decoding); the bucket root and keys ending in `/` are folders.
    Refs are `scheme://bucket/key`.
    """

    #: Matches a version at the end of the text; group 1 is the version.
    version_pattern: ClassVar[re.Pattern[str]]

    @classmethod
    def parse_uri(cls, scheme: str, text: str) -> RefURI:
        prefix = f"{scheme}://"
        where = shown(text)
        if text[: len(prefix)].lower() != prefix:
            raise InvalidURI(f"malformed {scheme} URI {where}: expected {prefix}bucket/key")
        bucket, _, key = text[len(prefix) :].partition("/")
        version: str | None = None
        found = cls.version_pattern.search(key) if key else cls.version_pattern.search(bucket)
        if found is not None:
            version = found.group(1)
            if key:
                key = key[: found.start()]
            else:
                bucket = bucket[: found.start()]
        if not _BUCKET_RE.match(bucket):
            if "@" in text:  # s3://KEY:SECRET@bucket/... (a secret may hold '/'): never echo any part of it
                raise InvalidURI(
                    f"malformed {scheme} URI {where}: no valid bucket name; credentials do not belong in the URI "
                    "(use the standard credential chain or Options)"
                )
            raise InvalidURI(f"malformed {scheme} URI {where}: {bucket!r} is not a valid bucket name")
        if version is not None and (not key or key.endswith("/")):
            raise InvalidURI(f"{where}: a version can only pin an object, not a bucket or folder")
        return RefURI(scheme, bucket, key, version)

    @classmethod
    def entry_ref(cls, uri: RefURI, meta: ObjectMeta) -> str:
        return f"{uri.scheme}://{uri.bucket}/{meta.key}"  # object_ref of the child, without building it
