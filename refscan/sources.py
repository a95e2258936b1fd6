"""Where a manifest comes from: a manifest JSON file, or a version in the local store.

Commands and scripts that take "a manifest" accept either form, so that `verify images.json` and
`verify pets:golden` read the same way. `open_source` decides which one a piece of text names:

- text naming an existing file is a W&B v1 manifest JSON file;
- otherwise text with a `:` and no `/` is a store version, `NAME:vN`, `NAME:latest` or `NAME:<alias>`,
  looked up in an existing store (one is never created by a lookup);
- anything else is refused with `InvalidSource`, before any network or store access.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidSource
from .manifest import Manifest, ManifestEntry
from .options import Options
from .store import Store

__all__ = ["StoredVersion", "is_version_spec", "open_source"]


@dataclass(frozen=True)
class StoredVersion:
    """Version `spec` of `store`, read when used: iterated, its entries (the version loaded then); by
    `verify --inventory`, its rows a chunk at a time (`Store.read_entries`), never an object per entry."""

    store: Store
    spec: str

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self.store.get(self.spec).manifest)


def is_version_spec(text: str) -> bool:
    """Whether `text` has the shape of a store version, `NAME:VER` (a `:` and no `/`). Says nothing about
    whether that version exists or whether `NAME` is a valid artifact name."""
    return ":" in text and "/" not in text


def open_source(
    source: str | os.PathLike[str],
    *,
    options: Options | None = None,
    home: str | os.PathLike[str] | None = None,
) -> tuple[Manifest, Store | None]:
    """The manifest `source` names, and the store it came from (`None` for a manifest file).

    `source` is a manifest JSON path (a path-like object is always taken as one) or a store version such
    as `pets:v3`, `pets:latest` or `pets:golden`. An existing file wins over the version reading of the
    same text. A version is looked up in the store at `home` (default `$REFSCAN_HOME`, else `./.refscan`),
    opened with `options`; keep the returned store to download the files stored in it.

    Raises `InvalidSource` when `source` is neither, `ManifestError` for an unreadable or invalid manifest
    file, `NotFound` when there is no store at `home` or no such version, and `InvalidName` when `NAME`
    breaks the naming rules.
    """
    if not isinstance(source, str):
        return Manifest.load(source), None
    if Path(source).is_file():
        return Manifest.load(source), None
    if is_version_spec(source):
        store = Store.existing(home, options=options)
        return store.get(source).manifest, store
    raise InvalidSource(f"{source!r} is neither a manifest file nor a NAME:VERSION in the local store")
