"""`ManifestEntry` and `Manifest`: the W&B v1 manifest model, its JSON codec and digest (docs/behaviour.md,
Manifest JSON)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Union

from .errors import ManifestError
from .naming import check_same_path

STORAGE_POLICY = "wandb-storage-policy-v1"
MAX_SIZE = 1 << 62  # a sanity bound on `size` read from untrusted manifests


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One entry: `path` inside the artifact, `ref` to the external object (None for stored files),
    `digest` (its fingerprint), `size` in bytes when known, and backend `extra` (etag, versionID, ...)."""

    path: str
    digest: str
    ref: str | None = None
    size: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The W&B v1 `contents` value: None-valued fields and an empty extra are omitted."""
        out: dict[str, Any] = {"digest": self.digest}
        if self.ref is not None:
            out["ref"] = self.ref
        if self.size is not None:
            out["size"] = self.size
        extra = {k: v for k, v in self.extra.items() if v is not None}
        if extra:
            out["extra"] = extra
        return out

    @classmethod
    def from_dict(cls, path: str, data: Any, *, copy: bool = True) -> ManifestEntry:
        """Decode one `contents` value; raises `ManifestError` on wrong types. Unknown keys are ignored.
        `copy=False` keeps `data["extra"]` itself as the entry's extra (the caller hands it over)."""
        if not isinstance(path, str) or not path:
            raise ManifestError(f"manifest path {path!r} is not a non-empty string")
        if not isinstance(data, Mapping):
            raise ManifestError(f"manifest entry {path!r} is not an object")
        digest = data.get("digest")
        if not isinstance(digest, str):
            raise ManifestError(f"manifest entry {path!r}: digest must be a string")
        ref = data.get("ref")
        if ref is not None and not isinstance(ref, str):
            raise ManifestError(f"manifest entry {path!r}: ref must be a string")
        size = data.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE):
            raise ManifestError(f"manifest entry {path!r}: size must be a non-negative integer")
        extra = data.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise ManifestError(f"manifest entry {path!r}: extra must be an object")
        return cls(
            path=path,
            digest=digest,
            ref=ref,
            size=size,
            extra=dict(extra) if copy or type(extra) is not dict else extra,
        )


def jsonl_line(entry: ManifestEntry) -> str:
    """One JSON Lines row: the entry's manifest fields with its path first."""
    return json.dumps({"path": entry.path, **entry.to_dict()}, ensure_ascii=False) + "\n"


class EntryBatch(Protocol):
    """Entries found together (one listing page, one batch of inventory rows), however they are held."""

    def __len__(self) -> int: ...

    def entries(self) -> list[ManifestEntry]:
        """The entries as objects."""
        ...

    def jsonl(self) -> str:
        """The entries as JSON Lines, each line equal to `jsonl_line` of its entry."""
        ...

    def jsonl_bytes(self) -> bytes | memoryview:
        """`jsonl()` as UTF-8 bytes, for a binary sink (a view of the batch's own buffer where it has one)."""
        ...


@dataclass(frozen=True, slots=True)
class EntryList:
    """An `EntryBatch` of entry objects."""

    items: list[ManifestEntry]

    def __len__(self) -> int:
        return len(self.items)

    def entries(self) -> list[ManifestEntry]:
        return self.items

    def jsonl(self) -> str:
        return "".join(map(jsonl_line, self.items))

    def jsonl_bytes(self) -> bytes:
        return self.jsonl().encode()


def manifest_digest(entries: Iterable[ManifestEntry]) -> str:
    """md5 over `wandb-artifact-manifest-v1\\n` and `path:digest\\n` for each path in sorted order."""
    h = hashlib.md5(b"wandb-artifact-manifest-v1\n")
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.path}:{e.digest}\n".encode())
    return h.hexdigest()


class Manifest:
    """An ordered mapping path → entry. Iteration and `to_dict` are in path order."""

    def __init__(self, entries: Iterable[ManifestEntry] = ()) -> None:
        self._entries: dict[str, ManifestEntry] = {}
        for e in entries:
            self.add(e)

    def add(self, entry: ManifestEntry) -> None:
        """Add `entry`; an equal entry at the same path is a no-op, a different digest raises PathConflict."""
        old = self._entries.get(entry.path)
        if old is not None:
            check_same_path(
                entry.path, old.digest, entry.digest, where="in the manifest", hint="; pass a different name="
            )
        self._entries[entry.path] = entry

    @property
    def entries(self) -> dict[str, ManifestEntry]:
        return dict(sorted(self._entries.items()))

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Manifest({len(self)} entries, digest={self.digest})"

    @property
    def digest(self) -> str:
        return manifest_digest(self._entries.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "storagePolicy": STORAGE_POLICY,
            "storagePolicyConfig": {"storageLayout": "V2"},
            "contents": {path: e.to_dict() for path, e in sorted(self._entries.items())},
        }

    @classmethod
    def from_dict(cls, data: Any, *, consume: bool = False) -> Manifest:
        """Decode W&B v1 JSON (as written by W&B or refscan); raises `ManifestError` when invalid. `consume=True`
        empties `data["contents"]` as it goes and keeps its `extra` objects (less memory for a parsed file)."""
        if not isinstance(data, Mapping):
            raise ManifestError("manifest must be a JSON object")
        version = data.get("version", 1)
        if version != 1:
            raise ManifestError(f"unsupported manifest version {version!r} (expected 1)")
        contents = data.get("contents")
        if not isinstance(contents, Mapping):
            raise ManifestError("manifest has no 'contents' object")
        if consume and isinstance(contents, dict):  # popped as made, so the parsed values go as entries come
            return cls(ManifestEntry.from_dict(*contents.popitem(), copy=False) for _ in range(len(contents)))
        return cls(ManifestEntry.from_dict(path, value) for path, value in contents.items())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def dump(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON atomically (temp file + rename)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.to_json(), encoding="utf-8")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)  # only left when writing failed

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a manifest JSON file; raises `ManifestError` for unreadable or invalid files."""
        return cls.from_dict(_parse(_read(path), path), consume=True)  # the text is freed before entries are made


def _read(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {os.fspath(path)!r}: {exc}") from None


def _parse(text: str, path: str | os.PathLike[str]) -> Any:
    """The JSON `text` of the manifest file at `path`; raises `ManifestError`."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {os.fspath(path)!r} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ManifestError(f"manifest {os.fspath(path)!r} is nested too deeply to be a manifest") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ManifestError(f"manifest {os.fspath(path)!r} is not valid JSON: {exc}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; a key given twice (two entries at one path, say) is an error, not last-wins."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ManifestError(f"manifest JSON has the key {key!r} twice in one object")
        out[key] = value
    return out


class HasManifest(Protocol):
    """Anything that carries a manifest, such as a logged `ArtifactVersion` or an `Artifact`."""

    @property
    def manifest(self) -> Manifest: ...


ManifestSource = Union["Manifest", HasManifest, Iterable[ManifestEntry], str, "os.PathLike[str]"]


def as_manifest(source: ManifestSource) -> Manifest:
    """A Manifest from a Manifest, a store version (anything with `.manifest`), entries, or the path of a
    W&B v1 JSON file."""
    if isinstance(source, Manifest):
        return source
    if isinstance(source, str | os.PathLike):
        return Manifest.load(source)
    if isinstance(getattr(source, "manifest", None), Manifest):
        return source.manifest  # type: ignore[union-attr]
    return Manifest(source)  # type: ignore[arg-type]
