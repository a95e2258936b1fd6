"""What keeps GCS objects alive: bucket versioning, lifecycle rules and retention policy, object holds and
retention, read and set through the backend's `GCSClient` (docs/behaviour.md, Guard).

Per bucket: buckets.get (`versioning`, `lifecycle.rule`, `retentionPolicy`). Per object, only when a rule may
act on it: objects.get of the current object (unpinned refs) or one objects.list of the key's generations
(pinned refs: whether the generation is live, `timeDeleted`, how many newer generations, its holds).
Temporary holds are set with objects.patch on the recorded generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from ...lifecycle import GCSRule
from ...protection import BucketProtection, ObjectState, Versioning
from ...uri import RefURI
from .client import GCSClient

#: How many objects.list pages one key's generations may take before refscan stops looking.
MAX_VERSION_PAGES = 10
#: Lifecycle conditions refscan evaluates (any other makes the rule match conservatively).
_CONDITIONS = (
    "age",
    "createdBefore",
    "isLive",
    "numNewerVersions",
    "daysSinceNoncurrentTime",
    "noncurrentTimeBefore",
    "matchesPrefix",
    "matchesSuffix",
    "matchesStorageClass",
    "daysSinceCustomTime",
    "customTimeBefore",
)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of a resource as an aware datetime; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def parse_rule(position: int, raw: Mapping[str, Any]) -> GCSRule:
    """One `lifecycle.rule` item of a bucket resource."""
    condition: Mapping[str, Any] = raw.get("condition") or {}
    is_live = condition.get("isLive")
    return GCSRule(
        position=position,
        action=str((raw.get("action") or {}).get("type") or ""),
        age=_int(condition.get("age")),
        created_before=_date(condition.get("createdBefore")),
        is_live=is_live if isinstance(is_live, bool) else None,
        num_newer_versions=_int(condition.get("numNewerVersions")),
        days_since_noncurrent=_int(condition.get("daysSinceNoncurrentTime")),
        noncurrent_time_before=_date(condition.get("noncurrentTimeBefore")),
        matches_prefix=_names(condition.get("matchesPrefix")),
        matches_suffix=_names(condition.get("matchesSuffix")),
        matches_storage_class=_names(condition.get("matchesStorageClass")),
        days_since_custom_time=_int(condition.get("daysSinceCustomTime")),
        custom_time_before=_date(condition.get("customTimeBefore")),
        conditions={k: condition[k] for k in _CONDITIONS if k in condition},
    )


def parse_bucket(resource: Mapping[str, Any]) -> BucketProtection:
    """A buckets.get resource as the bucket's protection."""
    versioning: Versioning = "enabled" if (resource.get("versioning") or {}).get("enabled") else "off"
    rules = tuple(parse_rule(i, r) for i, r in enumerate((resource.get("lifecycle") or {}).get("rule") or [], 1))
    policy: Mapping[str, Any] = resource.get("retentionPolicy") or {}
    seconds = _int(policy.get("retentionPeriod"))
    days = seconds / 86400 if seconds else None
    lock = None
    if days is not None:
        locked = " (locked)" if policy.get("isLocked") else ""
        lock = f"a retention policy keeps every object {days:g} days after it is written{locked}"
    return BucketProtection(versioning, rules, holds=True, lock=lock, retention_days=days)


def object_state(item: Mapping[str, Any], size: int | None, **found: Any) -> ObjectState:
    """An object resource as the rules see it (`found`: what the generations listing added)."""
    hold = "temporary hold" if item.get("temporaryHold") else "event-based hold" if item.get("eventBasedHold") else None
    retention: Mapping[str, Any] = item.get("retention") or {}
    until = (parse_time(item.get("retentionExpirationTime")), parse_time(retention.get("retainUntilTime")))
    kept = [t for t in until if t is not None]
    return ObjectState(
        key=str(item.get("name")),
        version=str(item["generation"]) if item.get("generation") is not None else None,
        size=size,
        created=parse_time(item.get("timeCreated")),
        storage_class=str(item.get("storageClass") or "") or None,
        custom_time=parse_time(item.get("customTime")),
        hold=hold,
        retain_until=max(kept) if kept else None,
        **found,
    )


async def generations(client: GCSClient, uri: RefURI) -> list[Mapping[str, Any]]:
    """Every generation of `uri.key` (noncurrent ones included), newest first."""
    found: list[Mapping[str, Any]] = []
    token: str | None = None
    for _ in range(MAX_VERSION_PAGES):
        body = await client.versions(uri.bucket, uri.key, token)
        items = [i for i in (body.get("items") or []) if isinstance(i, dict)]
        found += [i for i in items if i.get("name") == uri.key]
        token = body.get("nextPageToken") or None
        if token is None or any(str(i.get("name")) > uri.key for i in items):
            break
    return sorted(found, key=lambda i: int(i.get("generation") or 0), reverse=True)


async def read_state(client: GCSClient, uri: RefURI, size: int | None) -> ObjectState:
    """The generation `uri` pins (the current object when unpinned), as the rules see it. Raises `_Failure`."""
    if uri.version is None:
        return object_state(await client.object(uri.bucket, uri.key, None, fields=None), size)
    listed = await generations(client, uri)
    ours = next((i for i in listed if str(i.get("generation")) == uri.version), None)
    if ours is None:
        return ObjectState(uri.key, uri.version, size, exists=False)
    newer = [i for i in listed if int(i.get("generation") or 0) > int(uri.version)]
    live = not newer and not ours.get("timeDeleted")
    since = parse_time(ours.get("timeDeleted")) or (parse_time(newer[-1].get("timeCreated")) if newer else None)
    return object_state(ours, size, live=live, noncurrent_since=None if live else since, newer_versions=len(newer))


async def set_temporary_hold(client: GCSClient, uri: RefURI, on: bool) -> bool:
    """Turn the temporary hold of generation `uri` on or off; False when it already was so."""
    assert uri.version is not None
    current = await client.object(uri.bucket, uri.key, uri.version, fields="temporaryHold")
    if bool(current.get("temporaryHold")) == on:
        return False
    await client.patch(uri.bucket, uri.key, uri.version, {"temporaryHold": on})
    return True
