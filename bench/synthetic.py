"""The synthetic S3 bucket: N generated keys, listed exactly as S3 lists them, without storing anything.

`python -m bench.servers synthetic --objects N [--page-ms MS]` serves it (`serve`); this module holds the pure
paging logic so the unit tests can check it without a server (tests/unit/test_bench_synthetic.py).

The bucket `synthetic` holds `data/obj-0000000.bin` ... `data/obj-{N-1:07d}.bin`. Fixed-width numbers make
index order byte order, so "the first key after X" is a binary search over a virtual key list, and a page is
a slice. What is answered as S3 does:

- ListObjectsV2 (`list-type=2`): keys strictly after `start-after` (any string, not only a key) or after the
  position an opaque `continuation-token` names (the token wins when both are given), in byte order;
  `max-keys` (default 1000) capped at 1000; `IsTruncated` only when something follows, then
  `NextContinuationToken`; `KeyCount` (keys + common prefixes); `Prefix`, `StartAfter`, `ContinuationToken`,
  `Delimiter` echoed; with a delimiter, keys that contain it after the prefix are rolled up into
  `CommonPrefixes`, each counting as one of the `max-keys`; `encoding-type=url`.
- ListObjects (v1, `marker`): the same, with `NextMarker` when a delimiter is given (S3 omits it otherwise).
- ListObjectVersions (`versions`): the bucket was never versioned, so every key has one version, `null`;
  `key-marker` (+ `version-id-marker=null`) starts strictly after the key; `NextKeyMarker` and
  `NextVersionIdMarker` when truncated.

A marker compares against rolled-up items, not against the keys under them: a common prefix is listed when
it sorts after the marker (moto's and MinIO's rule), so continuing after a common prefix never repeats it.

Pages are cheap to serve: the `<Contents>` fragment of every key is rendered once at start-up (the
`<Version>` ones on first use), in chunks of 1,000 by position, and kept; a page joins slices of at most two
chunks (~0.1 ms of CPU for 1,000 keys).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

BUCKET = "synthetic"
PREFIX = "data/"
WIDTH = 7  # digits in a key's number: data/obj-0000000.bin
PAGE_CAP = 1000  # S3 never returns more than 1,000 items a page
CHUNK = 1000  # keys per pre-rendered fragment chunk
LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
HTTP_DATE = "Mon, 01 Jan 2024 00:00:00 GMT"
NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


class S3Error(Exception):
    """An S3 error answer: HTTP status, Code, Message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    def xml(self) -> bytes:
        return f"{_XML_HEAD}<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message></Error>".encode()


def key(i: int) -> str:
    return f"{PREFIX}obj-{i:0{WIDTH}d}.bin"


def body(i: int) -> bytes:
    """The bytes of object `i`: 1 KiB of its own (what HEAD/GET serve, and what its ETag is the MD5 of)."""
    return hashlib.sha256(key(i).encode()).digest() * 32


def etag(i: int) -> str:
    return hashlib.md5(body(i)).hexdigest()


def size(i: int) -> int:
    return 1024


def _b(s: str) -> bytes:
    """Strings compare as S3 compares keys: by their UTF-8 bytes."""
    return s.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Item:
    """One listed item: a key (by index) or a common prefix."""

    index: int | None = None
    prefix: str | None = None

    @property
    def name(self) -> str:
        return self.prefix if self.prefix is not None else key(self.index or 0)


@dataclass(frozen=True)
class Page:
    """One page of a listing: the items in order and whether more follow. Keys on the fast path (no
    delimiter) are the index range `start`..`stop`, with `items` empty."""

    start: int
    stop: int
    items: tuple[Item, ...]
    truncated: bool
    delimited: bool

    @property
    def keys(self) -> list[int]:
        if not self.delimited:
            return list(range(self.start, self.stop))
        return [it.index for it in self.items if it.index is not None]

    @property
    def common_prefixes(self) -> list[str]:
        return [it.prefix for it in self.items if it.prefix is not None]

    @property
    def count(self) -> int:
        return len(self.items) if self.delimited else self.stop - self.start

    @property
    def last_is_prefix(self) -> bool:
        return self.delimited and bool(self.items) and self.items[-1].prefix is not None

    @property
    def last(self) -> str | None:
        """The name of the last item (what the next page starts after)."""
        if self.delimited:
            return self.items[-1].name if self.items else None
        return key(self.stop - 1) if self.stop > self.start else None


class KeySpace:
    """The `objects` keys of the synthetic bucket, as a sorted virtual list."""

    def __init__(self, objects: int) -> None:
        self.objects = objects
        self._all = range(objects)

    def after(self, marker: str) -> int:
        """Index of the first key strictly after `marker` (byte order)."""
        return bisect.bisect_right(self._all, _b(marker), key=lambda i: _b(key(i)))

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        """The indices [lo, hi) of the keys that start with `prefix` (they are contiguous)."""
        p = _b(prefix)
        n = len(p)
        lo = bisect.bisect_left(self._all, p, key=lambda i: _b(key(i))[:n])
        hi = bisect.bisect_right(self._all, p, key=lambda i: _b(key(i))[:n])
        return lo, hi

    def page(self, prefix: str = "", delimiter: str | None = None, after: str | None = None,
             max_keys: int = PAGE_CAP) -> Page:  # fmt: skip
        """The items under `prefix` strictly after `after`, at most `max_keys` (capped at 1,000) of them."""
        max_keys = min(max_keys, PAGE_CAP)
        lo, hi = self.prefix_range(prefix)
        start = max(lo, self.after(after)) if after else lo
        if not delimiter:
            stop = min(hi, start + max(max_keys, 0))
            return Page(start, stop, (), stop < hi and max_keys > 0, False)
        marker = _b(after) if after else None
        items: list[Item] = []
        truncated = False
        i = start
        while i < hi:
            name = key(i)
            cut = name.find(delimiter, len(prefix))
            if cut >= 0:
                common = name[: cut + len(delimiter)]
                nxt = self.prefix_range(common)[1]
                if marker is None or _b(common) > marker:
                    if len(items) >= max_keys:
                        truncated = max_keys > 0
                        break
                    items.append(Item(prefix=common))
                i = nxt
                continue
            if len(items) >= max_keys:
                truncated = max_keys > 0
                break
            items.append(Item(index=i))
            i += 1
        return Page(start, i, tuple(items), truncated, True)


# -- tokens -------------------------------------------------------------------------------------------------


def make_token(after: str) -> str:
    """An opaque continuation token for "strictly after `after`" (clients must pass it back unchanged)."""
    return base64.urlsafe_b64encode(b"syn1:" + _b(after)).decode()


def read_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if not raw.startswith(b"syn1:"):
        raise S3Error(400, "InvalidArgument", "The continuation token provided is incorrect")
    return raw[5:].decode("utf-8", "surrogatepass")


# -- rendering ----------------------------------------------------------------------------------------------


#: The listing element of each key, by listing kind (`Contents` for ListObjectsV2, `Version` for versions).
_ITEM = {
    False: "<Contents><Key>{key}</Key><LastModified>{modified}</LastModified>"
    "<ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>",
    True: "<Version><Key>{key}</Key><VersionId>null</VersionId><IsLatest>true</IsLatest>"
    "<LastModified>{modified}</LastModified><ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size>"
    "<StorageClass>STANDARD</StorageClass></Version>",
}


@cache
def _chunk(chunk: int, objects: int, versions: bool) -> tuple[bytes, ...]:
    """The listing fragments of the keys in chunk `chunk` (CHUNK keys by position), rendered once."""
    template = _ITEM[versions]
    return tuple(
        template.format(key=key(i), modified=LAST_MODIFIED, etag=etag(i), size=size(i)).encode()
        for i in range(chunk * CHUNK, min(objects, (chunk + 1) * CHUNK))
    )


def _fragments(start: int, stop: int, objects: int, versions: bool) -> list[bytes]:
    out: list[bytes] = []
    i = start
    while i < stop:
        chunk = i // CHUNK
        frags = _chunk(chunk, objects, versions)
        end = min(stop, (chunk + 1) * CHUNK)
        out.extend(frags[i - chunk * CHUNK : end - chunk * CHUNK])
        i = end
    return out


class _Text:
    """XML text of echoed strings, URL-encoded first under `encoding-type=url` (as S3 encodes them)."""

    def __init__(self, url: bool) -> None:
        self.url = url

    def __call__(self, s: str) -> str:
        return escape(quote_plus(s, safe="/") if self.url else s)


def _max_keys(query: Mapping[str, str]) -> int:
    raw = query.get("max-keys", str(PAGE_CAP))
    try:
        n = int(raw)
    except ValueError:
        raise S3Error(400, "InvalidArgument", "Provided max-keys not an integer or within integer range") from None
    if n < 0:
        raise S3Error(400, "InvalidArgument", "Argument maxKeys must be an integer between 0 and 2147483647")
    return n


def listing(space: KeySpace, query: Mapping[str, str]) -> bytes:
    """The XML body answering a bucket GET with `query`: ListObjectsV2, ListObjects or ListObjectVersions."""
    if "versions" in query:
        return _list_versions(space, query)
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter") or None
    requested = _max_keys(query)
    encoding = query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error(400, "InvalidArgument", "Invalid Encoding Method specified in Request")
    text = _Text(encoding == "url")
    v2 = query.get("list-type") == "2"
    token = start_after = None
    if v2:
        token = query.get("continuation-token")
        start_after = query.get("start-after")
        after = read_token(token) if token is not None else start_after
    else:
        after = query.get("marker") or None
    page = space.page(prefix, delimiter, after, requested)
    head = [f'{_XML_HEAD}<ListBucketResult xmlns="{NS}"><Name>{BUCKET}</Name><Prefix>{text(prefix)}</Prefix>']
    if v2:
        if token is not None:
            head.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if start_after is not None:
            head.append(f"<StartAfter>{text(start_after)}</StartAfter>")
        head.append(f"<KeyCount>{page.count}</KeyCount>")
    else:
        head.append(f"<Marker>{text(query.get('marker', ''))}</Marker>")
    head.append(f"<MaxKeys>{requested}</MaxKeys>")
    if delimiter:
        head.append(f"<Delimiter>{text(delimiter)}</Delimiter>")
    if encoding:
        head.append("<EncodingType>url</EncodingType>")
    head.append(f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>")
    if page.truncated and page.last is not None:
        if v2:
            head.append(f"<NextContinuationToken>{make_token(page.last)}</NextContinuationToken>")
        elif delimiter:
            head.append(f"<NextMarker>{text(page.last)}</NextMarker>")
    return b"".join([*(s.encode() for s in head), *_items(space, page, text, False), b"</ListBucketResult>"])


def _items(space: KeySpace, page: Page, text: _Text, versions: bool) -> list[bytes]:
    """The page's `<Contents>`/`<Version>` fragments (key order), then its `<CommonPrefixes>`."""
    if not page.delimited:
        return _fragments(page.start, page.stop, space.objects, versions)
    out: list[bytes] = []
    for i in page.keys:
        out.extend(_fragments(i, i + 1, space.objects, versions))
    out.extend(f"<CommonPrefixes><Prefix>{text(p)}</Prefix></CommonPrefixes>".encode() for p in page.common_prefixes)
    return out


def _list_versions(space: KeySpace, query: Mapping[str, str]) -> bytes:
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter") or None
    requested = _max_keys(query)
    encoding = query.get("encoding-type")
    text = _Text(encoding == "url")
    key_marker = query.get("key-marker", "")
    version_marker = query.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise S3Error(400, "InvalidArgument", "A version-id marker cannot be specified without a key marker.")
    if version_marker not in ("", "null"):
        raise S3Error(400, "InvalidArgument", "Invalid version id specified")
    # one version per key: after (key-marker, null) and after key-marker alone both mean "keys after it"
    page = space.page(prefix, delimiter, key_marker or None, requested)
    head = [
        f'{_XML_HEAD}<ListVersionsResult xmlns="{NS}"><Name>{BUCKET}</Name><Prefix>{text(prefix)}</Prefix>',
        f"<KeyMarker>{text(key_marker)}</KeyMarker><VersionIdMarker>{escape(version_marker)}</VersionIdMarker>",
        f"<MaxKeys>{requested}</MaxKeys>",
    ]
    if delimiter:
        head.append(f"<Delimiter>{text(delimiter)}</Delimiter>")
    if encoding:
        head.append("<EncodingType>url</EncodingType>")
    head.append(f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>")
    if page.truncated and page.last is not None:
        head.append(f"<NextKeyMarker>{text(page.last)}</NextKeyMarker>")
        if not page.last_is_prefix:  # a common prefix has no version to point at
            head.append("<NextVersionIdMarker>null</NextVersionIdMarker>")
    return b"".join([*(s.encode() for s in head), *_items(space, page, text, True), b"</ListVersionsResult>"])


def object_index(space: KeySpace, name: str) -> int | None:
    """The index of the key `name`, or None when the bucket has no such key."""
    i = space.after(name) - 1
    return i if 0 <= i < space.objects and key(i) == name else None


# -- the server ---------------------------------------------------------------------------------------------


def serve(objects: int, port: int, page_ms: float = 0.0, host: str = "127.0.0.1") -> None:
    """Serve the bucket until killed: aiohttp on one event loop, so requests overlap (the per-page time is a
    sleep, not CPU); every key's `<Contents>` is rendered before it listens, so no page pays for rendering;
    prints `LISTENING <port>` once bound."""
    import asyncio

    from aiohttp import web

    space = KeySpace(objects)
    delay = page_ms / 1000
    for chunk in range(-(-objects // CHUNK)):  # every page's fragments before the first request (~4 s at 1M)
        _chunk(chunk, objects, False)

    def xml(data: bytes, status: int = 200) -> web.Response:
        return web.Response(status=status, body=data, content_type="application/xml")

    async def bucket(request: web.Request) -> web.Response:
        if request.match_info["bucket"] != BUCKET:
            return xml(S3Error(404, "NoSuchBucket", "The specified bucket does not exist").xml(), 404)
        q = request.query
        if "versioning" in q:  # never enabled
            return xml(f'{_XML_HEAD}<VersioningConfiguration xmlns="{NS}"/>'.encode())
        if "location" in q:
            return xml(f'{_XML_HEAD}<LocationConstraint xmlns="{NS}"/>'.encode())
        if request.method == "HEAD":
            return web.Response()
        if request.method != "GET":
            return xml(S3Error(405, "MethodNotAllowed", "read-only bucket").xml(), 405)
        try:
            data = listing(space, q)
        except S3Error as e:
            return xml(e.xml(), e.status)
        if delay:
            await asyncio.sleep(delay)
        return xml(data)

    async def obj(request: web.Request) -> web.StreamResponse:
        if request.match_info["bucket"] != BUCKET:
            return xml(S3Error(404, "NoSuchBucket", "The specified bucket does not exist").xml(), 404)
        i = object_index(space, request.match_info["key"])
        version = request.query.get("versionId")
        if i is None or version not in (None, "null"):
            if request.method == "HEAD":
                return web.Response(status=404)
            return xml(S3Error(404, "NoSuchKey", "The specified key does not exist.").xml(), 404)
        headers = {"ETag": f'"{etag(i)}"', "Last-Modified": HTTP_DATE, "Accept-Ranges": "bytes"}
        if version is not None:
            headers["x-amz-version-id"] = "null"
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(size(i))})
        return web.Response(body=body(i), headers=headers, content_type="binary/octet-stream")

    app = web.Application()
    app.router.add_route("*", "/{bucket}", bucket)
    app.router.add_route("*", "/{bucket}/", bucket)
    app.router.add_route("*", "/{bucket}/{key:.+}", obj)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, backlog=1024).start()
        print(f"LISTENING {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())
