"""Differences between two manifests: paths added, removed, and changed (same path, other digest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .manifest import Manifest


@dataclass(frozen=True)
class ManifestDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {"added": list(self.added), "removed": list(self.removed), "changed": list(self.changed)}


def diff_manifests(a: Manifest, b: Manifest) -> ManifestDiff:
    """What changed from `a` to `b`, each list in path order."""
    old, new = a.entries, b.entries
    return ManifestDiff(
        added=tuple(p for p in new if p not in old),
        removed=tuple(p for p in old if p not in new),
        changed=tuple(p for p in new if p in old and old[p].digest != new[p].digest),
    )
