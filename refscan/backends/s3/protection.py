"""What keeps S3 objects alive: versioning, lifecycle rules, Object Lock and legal holds, read and set through
the backend's one request path (`S3Client.request`).

Per bucket: GetBucketVersioning, GetBucketLifecycleConfiguration and GetObjectLockConfiguration (a bucket
without a lifecycle configuration or Object Lock answers with a `NotConfigured` error). Per object version,
only when a rule may act on it: HeadObject (creation time, storage class, Object Lock retention and legal hold
status), ListObjectVersions of its key (is it current, since when noncurrent, how many newer versions) and,
when a rule filters on tags, GetObjectTagging.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...errors import AccessDenied, NotConfigured, NotFound
from ...lifecycle import S3Rule
from ...protection import BucketProtection, ObjectState, Versioning
from ...uri import RefURI
from .client import PERMISSIONS, S3Client, iso_time, version_id

#: How many ListObjectVersions pages one key's versions may take before refscan stops looking.
MAX_VERSION_PAGES = 10


def parse_time(value: Any) -> datetime | None:
    """A timestamp as the client keeps it (ISO 8601 or RFC 1123 text, or a datetime) as an aware UTC datetime."""
    text = iso_time(value)
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _int(value: Any) -> int | None:
    return int(value) if value is not None and str(value).strip() != "" else None


def parse_rule(raw: Mapping[str, Any]) -> S3Rule:
    """One rule of a GetBucketLifecycleConfiguration response (also the legacy top-level `Prefix` form)."""
    filt: Mapping[str, Any] = raw.get("Filter") or {}
    both: Mapping[str, Any] = filt.get("And") or {}
    prefix = str(raw.get("Prefix") or filt.get("Prefix") or both.get("Prefix") or "")
    tags = [filt["Tag"]] if filt.get("Tag") else list(both.get("Tags") or [])
    expiration: Mapping[str, Any] = raw.get("Expiration") or {}
    noncurrent: Mapping[str, Any] = raw.get("NoncurrentVersionExpiration") or {}
    return S3Rule(
        id=str(raw.get("ID") or "(no id)"),
        enabled=raw.get("Status") == "Enabled",
        prefix=prefix,
        tags=tuple((str(t["Key"]), str(t.get("Value", ""))) for t in tags),
        size_gt=_int(filt.get("ObjectSizeGreaterThan", both.get("ObjectSizeGreaterThan"))),
        size_lt=_int(filt.get("ObjectSizeLessThan", both.get("ObjectSizeLessThan"))),
        expiration_days=_int(expiration.get("Days")),
        expiration_date=parse_time(expiration.get("Date")),
        noncurrent_days=_int(noncurrent.get("NoncurrentDays")),
        newer_noncurrent=_int(noncurrent.get("NewerNoncurrentVersions")),
    )


def parse_versioning(resp: Mapping[str, Any]) -> Versioning:
    status = resp.get("Status")
    return "enabled" if status == "Enabled" else "suspended" if status == "Suspended" else "off"


def describe_lock(resp: Mapping[str, Any]) -> str | None:
    """The Object Lock settings in words; None when Object Lock is off."""
    config: Mapping[str, Any] = resp.get("ObjectLockConfiguration") or {}
    if config.get("ObjectLockEnabled") != "Enabled":
        return None
    default: Mapping[str, Any] = (config.get("Rule") or {}).get("DefaultRetention") or {}
    if not default:
        return "Object Lock is on"
    span = f"{default['Days']} days" if default.get("Days") else f"{default.get('Years')} years"
    return f"Object Lock is on; new versions are retained {span} in {default.get('Mode')} mode"


async def read_protection(client: S3Client, bucket: str) -> BucketProtection:
    """The bucket's versioning, lifecycle rules and Object Lock; a refused read leaves its part None and names
    the permission in `missing`. A missing bucket raises `NotFound`."""
    target = f"s3://{bucket}"
    missing: list[str] = []
    versioning: Versioning | None = None
    rules: tuple[S3Rule, ...] | None = None
    lock: str | None = None
    try:
        versioning = parse_versioning(await client.request("GetBucketVersioning", target, Bucket=bucket))
    except AccessDenied:
        missing.append(PERMISSIONS["GetBucketVersioning"])
    try:
        resp = await client.request("GetBucketLifecycleConfiguration", target, Bucket=bucket)
        rules = tuple(parse_rule(r) for r in resp.get("Rules") or [])
    except NotConfigured:
        rules = ()
    except AccessDenied:
        missing.append(PERMISSIONS["GetBucketLifecycleConfiguration"])
    try:
        lock = describe_lock(await client.request("GetObjectLockConfiguration", target, Bucket=bucket))
    except NotConfigured:
        lock = None
    except AccessDenied:
        lock = f"Object Lock settings unreadable (need {PERMISSIONS['GetObjectLockConfiguration']})"
    holds = lock is not None and lock.startswith("Object Lock is on")
    return BucketProtection(versioning, rules, holds=holds, lock=lock, missing=tuple(missing))


async def _versions_of(client: S3Client, uri: RefURI) -> list[Mapping[str, Any]]:
    """Every version and delete marker of `uri.key`, newest first."""
    found: list[Mapping[str, Any]] = []
    params: dict[str, Any] = {"Bucket": uri.bucket, "Prefix": uri.key}
    for _ in range(MAX_VERSION_PAGES):
        resp = await client.request("ListObjectVersions", f"s3://{uri.bucket}/{uri.key}", **params)
        entries = [*(resp.get("Versions") or []), *({**m, "marker": True} for m in resp.get("DeleteMarkers") or [])]
        found += [e for e in entries if e.get("Key") == uri.key]
        past = any(str(e.get("Key")) > uri.key for e in entries)
        if past or not resp.get("IsTruncated") or not resp.get("NextKeyMarker"):
            break
        params.update(KeyMarker=resp["NextKeyMarker"], VersionIdMarker=resp.get("NextVersionIdMarker") or "")
    found.sort(key=lambda e: str(parse_time(e.get("LastModified")) or ""), reverse=True)
    found.sort(key=lambda e: not e.get("IsLatest"))  # stable: the latest entry first, then newest first
    return found


async def read_state(client: S3Client, uri: RefURI, size: int | None, *, tags: bool) -> ObjectState:
    """The object version `uri` names (the current object when unpinned), as the rules see it."""
    target = f"s3://{uri.bucket}/{uri.key}" + (f"?versionId={uri.version}" if uri.version else "")
    params: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key}
    if uri.version is not None:
        params["VersionId"] = uri.version
    try:
        head = await client.request("HeadObject", target, event="s3.guard", **params)
    except NotFound:
        return ObjectState(uri.key, uri.version, size, exists=False)
    missing: list[str] = []
    state: dict[str, Any] = {
        "created": parse_time(head.get("LastModified")),
        "storage_class": str(head.get("StorageClass") or "STANDARD"),
    }
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        state["hold"] = "legal hold"
    if head.get("ObjectLockMode") and head.get("ObjectLockRetainUntilDate"):
        state["retain_until"] = parse_time(head["ObjectLockRetainUntilDate"])
    if uri.version is not None:
        try:
            versions = await _versions_of(client, uri)
        except AccessDenied:
            missing.append(PERMISSIONS["ListObjectVersions"])
        else:
            ids = [version_id(e.get("VersionId")) for e in versions]
            if uri.version in ids:
                at = ids.index(uri.version)
                newer = versions[:at]
                state["live"] = at == 0 and bool(versions[0].get("IsLatest")) and not versions[0].get("marker")
                state["newer_versions"] = len(newer)
                state["newer_noncurrent"] = sum(1 for e in newer[1:] if not e.get("marker"))  # newer[0]: current
                if newer:
                    state["noncurrent_since"] = parse_time(newer[-1].get("LastModified"))
    if tags:
        try:
            resp = await client.request("GetObjectTagging", target, **params)
            state["tags"] = {str(t["Key"]): str(t.get("Value", "")) for t in resp.get("TagSet") or []}
        except AccessDenied:
            missing.append(PERMISSIONS["GetObjectTagging"])
    return ObjectState(uri.key, uri.version, size, missing=tuple(missing), **state)


async def set_legal_hold(client: S3Client, uri: RefURI, on: bool) -> bool:
    """Turn the legal hold of version `uri` on or off; False when it already was so."""
    target = f"s3://{uri.bucket}/{uri.key}?versionId={uri.version}"
    params: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key, "VersionId": uri.version}
    try:
        resp = await client.request("GetObjectLegalHold", target, **params)
        current = (resp.get("LegalHold") or {}).get("Status") == "ON"
    except NotConfigured:
        current = False
    if current == on:
        return False
    await client.request("PutObjectLegalHold", target, LegalHold={"Status": "ON" if on else "OFF"}, **params)
    return True
