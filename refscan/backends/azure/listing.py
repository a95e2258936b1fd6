"""Listing an Azure folder: List Blobs pages parsed in one pass, and what a blob records.

Pages come as one chain: the `marker` of List Blobs is opaque, and the documented List Blobs has no "start
after this name" to split a folder into key ranges listed concurrently. (Service version 2026-x adds a
`startFrom` query, which azure-storage-blob 12.31 sends and Azurite 3.37 honours; refscan does not fan out on
it yet, because whether the public service honours it on every account kind could not be checked here.) Pages
are large (up to 5,000 blobs), so a 10,000-blob folder is two or three requests.

Pages are parsed here (`parse_page`, ElementTree over the documented XML) rather than by the SDK's generic
model deserializer, which costs about 215 us of CPU per blob (a 10,000-blob folder: 2 s of CPU); this parser
costs a few microseconds. Each page asks for at most the objects still wanted, so no more than `limit`
listing items are requested. With versions listed (`include=versions`) only the current version of each blob
counts; older versions, directory stubs (`hdi_isfolder=true` metadata, or an HNS `ResourceType` of
`directory`) and folder markers (names ending in `/` with no content) are skipped.
"""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncGenerator
from typing import Any, Protocol, TypeAlias
from urllib.parse import unquote

from ...errors import BackendError
from ...events import logger
from ...fingerprint import MD5
from ...meta import ObjectMeta
from ..base import is_folder_marker
from .client import Malformed

#: The largest page List Blobs returns.
MAX_PAGE = 5000
#: One parsed List Blobs page: the objects that count (see the module docstring) and the next marker (None on
#: the last page).
Page: TypeAlias = tuple[list[ObjectMeta], str | None]


class PageSource(Protocol):
    """One parsed List Blobs page (`parse_page`) of blobs whose names start with `prefix`, from `marker`, at
    most `max_results` items."""

    async def page(self, prefix: str, marker: str | None, max_results: int) -> Page: ...


def normalise_etag(etag: str | None) -> str | None:
    """An ETag without its quotes (properties send `"0x…"`, listings `0x…`)."""
    if not etag:
        return None
    return etag.strip('"') or None


def _meta(name: str, size: int | None, etag: str | None, version: str | None, md5: str | None) -> ObjectMeta:
    """Last-Modified is not read: entries do not record it (W&B's do not either), and parsing its RFC 1123
    text would cost more than the rest of a listed blob."""
    return ObjectMeta(
        key=name, size=size, etag=normalise_etag(etag), version=version or None, hashes={MD5: md5} if md5 else {}
    )


def is_stub(name: str, size: int | None, metadata: Any, resource_type: str | None = None) -> bool:
    """A directory stub (`hdi_isfolder=true` metadata, as ADLS and Storage Explorer write; an HNS directory)
    or a folder marker."""
    if resource_type == "directory" or str((metadata or {}).get("hdi_isfolder", "")).lower() == "true":
        return True
    return is_folder_marker(name, size)


def properties_meta(props: Any) -> ObjectMeta | None:
    """The `ObjectMeta` of a Get Blob Properties answer (the SDK's `BlobProperties`); None for a stub."""
    size = int(props.size) if props.size is not None else None
    if is_stub(str(props.name), size, props.metadata):
        return None
    md5 = getattr(props.content_settings, "content_md5", None)
    encoded = base64.b64encode(bytes(md5)).decode() if md5 else None
    return _meta(str(props.name), size, props.etag, props.version_id, encoded)


def parse_page(body: bytes) -> Page:
    """A List Blobs response: the current, non-stub blobs and the next marker. Raises `Malformed` (worth
    another try) for a body that is not a List Blobs document, e.g. one cut short on the way."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise Malformed(f"List Blobs answered with malformed XML ({exc})") from None
    if root.tag != "EnumerationResults":
        raise Malformed(f"List Blobs answered with <{root.tag}>, not <EnumerationResults>")
    objects: list[ObjectMeta] = []
    blobs = root.find("Blobs")
    for blob in blobs.iterfind("Blob") if blobs is not None else ():
        name_el = blob.find("Name")
        name = (name_el.text or "") if name_el is not None else ""
        if name_el is not None and name_el.get("Encoded") == "true":
            name = unquote(name)
        version = blob.findtext("VersionId")
        if version and blob.findtext("IsCurrentVersion") != "true":
            continue
        props = blob.find("Properties")
        if props is None:
            raise Malformed(f"List Blobs answered without properties for {name!r}")
        length = props.findtext("Content-Length")
        size = int(length) if length else None
        metadata = blob.find("Metadata")
        folder = metadata.findtext("hdi_isfolder") if metadata is not None else None
        if is_stub(name, size, {"hdi_isfolder": folder} if folder else None, props.findtext("ResourceType")):
            continue
        objects.append(_meta(name, size, props.findtext("Etag"), version, props.findtext("Content-MD5") or None))
    return objects, root.findtext("NextMarker") or None


async def list_blobs(
    source: PageSource, prefix: str, limit: int, *, page_size: int = MAX_PAGE
) -> AsyncGenerator[list[ObjectMeta], None]:
    """The objects under `prefix`, one batch per page, at most `limit` in all; raises what `source.page`
    raises, and `BackendError` when the server hands out the same marker twice."""
    log = logger().bind(prefix=prefix)
    started = time.perf_counter()
    remaining = limit
    marker: str | None = None
    pages = found = 0
    while remaining > 0:
        objects, next_marker = await source.page(prefix, marker, max(1, min(page_size, MAX_PAGE, remaining)))
        pages += 1
        batch = objects[:remaining]
        remaining -= len(batch)
        found += len(batch)
        if batch:
            yield batch
        if not next_marker:
            break
        if next_marker == marker:
            raise BackendError(f"List Blobs under {prefix!r} returned the same marker twice")
        marker = next_marker
    log.debug(
        "azure.list",
        objects=found,
        pages=pages,
        truncated=remaining <= 0,
        elapsed=round(time.perf_counter() - started, 4),
    )
