"""`ObjectMeta`: one object as a backend reports it, the same shape whatever the store.

Backends fill it from a listing page, a HEAD response or a file's bytes; their codec turns it into a manifest
entry and back (see `refscan.backends.base.Backend.encode` / `decode`). Engines read only these fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: An immutable empty mapping, shared by every record that has no hashes or attributes.
EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """One object.

    - `key`: the object key (bucket stores), the absolute path (files) or the redacted URL (http).
    - `size`: bytes, None when the store does not say.
    - `etag`: the store's ETag without surrounding quotes (a weak ETag keeps its `W/"..."` form); None if none.
    - `version`: the version that pins this object's bytes (S3 version id, GCS generation), None when
      unversioned.
    - `modified`: last-modified time as text (ISO 8601 UTC when the backend can normalise it).
    - `hashes`: content hashes by kind (`refscan.fingerprint` names the kinds), strongest first.
    - `encryption`: the server-side encryption when it makes the ETag something other than an MD5.
    - `parts`: the part count of a multipart upload, when known.
    - `attrs`: other details the backend's codec records (e.g. GCS metageneration); engines never read them.
    """

    key: str
    size: int | None
    etag: str | None = None
    version: str | None = None
    modified: str | None = None
    hashes: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    encryption: str | None = None
    parts: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
