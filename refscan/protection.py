"""What keeps referenced bytes alive, as backends report it (docs/behaviour.md, Guard).

Backends fill these from their own requests (`Backend.protection`, `Backend.object_state`); `lifecycle.py`
evaluates the rules against them and `guard.py` turns the verdicts into a report. Plain data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .lifecycle import Rule

#: A bucket's versioning: every write keeps the old version (`enabled`), new writes replace the current one
#: (`suspended`: versions made before are kept), or no versions at all (`off`).
Versioning = Literal["enabled", "suspended", "off"]


@dataclass(frozen=True)
class BucketProtection:
    """A bucket's settings that decide whether its objects survive, read once per bucket.

    `versioning` / `rules` are None when they could not be read; `missing` then names the permissions that
    were refused (`s3:GetLifecycleConfiguration`), `unsupported` says why a store cannot tell at all.
    `rules` is empty for a bucket without a lifecycle configuration. `holds`: holds can be placed on its
    objects (S3 Object Lock on; GCS always). `retention`: a bucket-wide minimum age before any delete (GCS
    retention policy, in days), described in `lock` with any object-lock default.
    """

    versioning: Versioning | None
    rules: tuple[Rule, ...] | None
    holds: bool = False
    lock: str | None = None
    retention_days: float | None = None
    missing: tuple[str, ...] = ()
    unsupported: str | None = None

    @classmethod
    def cannot_tell(cls, why: str) -> BucketProtection:
        """A store that has no such settings, or none that refscan can read."""
        return cls(None, None, unsupported=why)


@dataclass(frozen=True)
class ObjectState:
    """One object version as the rules see it (`version` None: the current object of an unpinned ref).

    Each field is None when unknown. `live`: the version is the current one. `noncurrent_since`: when a newer
    version (or a delete) made it noncurrent. `newer_noncurrent`: noncurrent versions newer than it (S3's
    NewerNoncurrentVersions); `newer_versions`: all versions newer than it (GCS numNewerVersions). `hold`
    names a hold that keeps it whatever the rules say; `retain_until`: no delete before then. `missing`:
    permissions refused while reading it (then `tags` may be None).
    """

    key: str
    version: str | None = None
    size: int | None = None
    exists: bool = True
    created: datetime | None = None
    live: bool | None = None
    noncurrent_since: datetime | None = None
    newer_noncurrent: int | None = None
    newer_versions: int | None = None
    tags: Mapping[str, str] | None = None
    storage_class: str | None = None
    custom_time: datetime | None = None
    hold: str | None = None
    retain_until: datetime | None = None
    missing: tuple[str, ...] = field(default=())


HoldKind = Literal["legal hold", "temporary hold"]
