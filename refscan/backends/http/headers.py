"""Pure reading of HTTP response headers: validators, sizes, Retry-After, and the `ObjectMeta` they describe."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from datetime import timezone
from typing import Any

from multidict import CIMultiDictProxy

from ...fingerprint import MD5
from ...meta import ObjectMeta
from ...uri import RefURI, redact

#: Fingerprint kind of an RFC 9530 `Repr-Digest` header value.
REPR_DIGEST = "reprDigest"
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(?:\d+-\d+|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx other than 501 (Not Implemented) and 505 (HTTP Version Not Supported)."""
    return status in (408, 429) or (500 <= status <= 599 and status not in (501, 505))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_content_range_total(value: str | None) -> int | None:
    """The complete length N from `bytes a-b/N` or `bytes */N`; None when absent, `*` or malformed."""
    if value is None:
        return None
    m = _CONTENT_RANGE_RE.match(value)
    if m is None or m.group(1) == "*":
        return None
    return int(m.group(1))


def parse_content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def normalize_etag(etag: str | None) -> str | None:
    """A strong ETag without quotes, a weak one kept whole (`W/"x"`); None when absent or empty."""
    if etag is None:
        return None
    etag = etag.strip()
    if etag.startswith(("W/", "w/")):
        return etag if etag[2:].strip('"') else None
    stripped = etag[1:-1] if len(etag) >= 2 and etag.startswith('"') and etag.endswith('"') else etag
    return stripped or None


def object_meta(uri: RefURI, headers: CIMultiDictProxy[str] | Mapping[str, str], size: int | None) -> ObjectMeta:
    """The object a response's `headers` describe (see the module docstring for what is kept)."""
    raw_etag = headers.get("ETag")
    etag = normalize_etag(raw_etag)
    hashes: dict[str, str] = {}
    for header, kind in (("Content-MD5", MD5), ("Repr-Digest", REPR_DIGEST)):
        value = headers.get(header)
        if value:
            hashes[kind] = value
    attrs: dict[str, Any] = {}
    if etag is not None and raw_etag is not None:
        attrs["etag"] = raw_etag.strip()
    if isinstance(headers, CIMultiDictProxy):
        goog = headers.getall("x-goog-hash", [])
    else:
        goog = [headers["x-goog-hash"]] if headers.get("x-goog-hash") else []
    if goog:
        attrs["xGoogHash"] = ", ".join(goog)
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-amz-checksum-") and lower != "x-amz-checksum-type" and value:
            attrs["amzChecksum" + lower[len("x-amz-checksum-") :].upper()] = value
    encoding = headers.get("Content-Encoding")
    if encoding and encoding.strip().lower() != "identity":
        attrs["contentEncoding"] = encoding.strip()
    return ObjectMeta(
        key=redact(uri.url),  # the URL without credentials
        size=size,
        etag=etag,
        modified=headers.get("Last-Modified") or None,
        hashes=hashes,
        attrs=attrs,
    )
