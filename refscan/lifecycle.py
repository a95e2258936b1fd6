"""Lifecycle rules and what they do to one object version: pure evaluation, no I/O (docs/behaviour.md, Guard).

A rule answers two questions about an `ObjectState`: when it removes the object while the object is the
current one (`on_current`: S3 `Expiration`, a GCS `Delete` that can match live objects) and when it deletes
the object for good once it is noncurrent (`on_noncurrent`: S3 `NoncurrentVersionExpiration`, GCS `Delete`
with noncurrent conditions). `assess` combines a bucket's rules, versioning and holds into one verdict.

Times are UTC. S3 rounds an action's time up to the next midnight UTC; GCS acts once a condition holds
(both act asynchronously after that, so the dates are the earliest an action can happen).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal, Protocol

from .protection import BucketProtection, ObjectState

DAY = timedelta(days=1)

GuardStatus = Literal["protected", "at-risk", "unpinned", "unknown"]


def next_midnight(when: datetime) -> datetime:
    """`when` rounded up to the next midnight UTC (S3's rounding of lifecycle action times)."""
    when = when.astimezone(timezone.utc)
    midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == when else midnight + DAY


def start_of(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time(), timezone.utc)


def _latest(bounds: Iterable[datetime | None]) -> datetime | None:
    """The time every bound has passed: the latest of them; None when any is unknown."""
    out: datetime | None = None
    for bound in bounds:
        if bound is None:
            return None
        out = bound if out is None or bound > out else out
    return out


@dataclass(frozen=True)
class Effect:
    """A rule acting on an object: from `when` (None: not computable from what is known); `rule` is the rule's
    id, `name` how reasons name it, `how` says what it does, for people."""

    rule: str
    name: str
    when: datetime | None
    how: str


class Rule(Protocol):
    """One lifecycle rule of a bucket, as its backend read it."""

    @property
    def id(self) -> str:
        """The rule's id (S3), or `#<position>` in the bucket's list (GCS rules have no ids)."""

    @property
    def name(self) -> str:
        """How reasons name the rule (its id on S3, its position and conditions on GCS)."""

    @property
    def needs_tags(self) -> bool:
        """True when matching needs the object's tags."""

    def on_current(self, obj: ObjectState) -> Effect | None:
        """When the rule removes `obj` while it is the current object (deletes it, or on a versioned bucket
        turns it noncurrent); None when it never does."""

    def on_noncurrent(self, obj: ObjectState, since: datetime | None, now: datetime) -> Effect | None:
        """When the rule deletes `obj` for good as a noncurrent version that became noncurrent at `since`
        (None: not known, e.g. at the key's next overwrite, after `now`); None when it never does."""


def _effect(rule: Rule, when: datetime | None, how: str) -> Effect:
    return Effect(rule.id, rule.name, when, how)


# -- S3 ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Rule:
    """An S3 lifecycle rule: its filter (prefix, tags, object size bounds, all of which must hold) and the
    actions that remove objects. Transitions and incomplete-upload aborts remove nothing and are not kept;
    `ExpiredObjectDeleteMarker` only removes delete markers whose versions are gone, so no bytes either."""

    id: str
    enabled: bool = True
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_gt: int | None = None
    size_lt: int | None = None
    expiration_days: int | None = None
    expiration_date: datetime | None = None
    noncurrent_days: int | None = None
    newer_noncurrent: int | None = None

    @property
    def name(self) -> str:
        return f"lifecycle rule {self.id!r}"

    @property
    def needs_tags(self) -> bool:
        return bool(self.tags)

    def matches(self, obj: ObjectState) -> bool:
        """The filter holds for `obj` (unknown size or tags count as matching: the rule may act)."""
        if not self.enabled or not obj.key.startswith(self.prefix):
            return False
        if obj.size is not None:
            if self.size_gt is not None and not obj.size > self.size_gt:
                return False
            if self.size_lt is not None and not obj.size < self.size_lt:
                return False
        if self.tags and obj.tags is not None:
            return all(obj.tags.get(k) == v for k, v in self.tags)
        return True

    def on_current(self, obj: ObjectState) -> Effect | None:
        if not self.matches(obj):
            return None
        if self.expiration_date is not None:
            return _effect(self, self.expiration_date, f"expires current objects on {_day(self.expiration_date)}")
        if self.expiration_days is None:
            return None
        when = next_midnight(obj.created + self.expiration_days * DAY) if obj.created else None
        return _effect(self, when, f"expires current objects {self.expiration_days} days after they are written")

    def on_noncurrent(self, obj: ObjectState, since: datetime | None, now: datetime) -> Effect | None:
        if self.noncurrent_days is None or not self.matches(obj):
            return None
        how = f"deletes noncurrent versions {self.noncurrent_days} days after they become noncurrent"
        when = next_midnight(since + self.noncurrent_days * DAY) if since else None
        keep = self.newer_noncurrent
        if keep:
            how += f", keeping the newest {keep}"
            if obj.newer_noncurrent is None or obj.newer_noncurrent < keep:
                when = None  # only once `keep` newer noncurrent versions exist
        return _effect(self, when, how)


# -- GCS ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GCSRule:
    """A GCS lifecycle rule: its action and conditions (all of which must hold; a list condition holds when
    any item does). Only `Delete` removes objects. `position` is its place in the bucket's list (from 1)."""

    position: int
    action: str = "Delete"
    age: int | None = None
    created_before: date | None = None
    is_live: bool | None = None
    num_newer_versions: int | None = None
    days_since_noncurrent: int | None = None
    noncurrent_time_before: date | None = None
    matches_prefix: tuple[str, ...] = ()
    matches_suffix: tuple[str, ...] = ()
    matches_storage_class: tuple[str, ...] = ()
    days_since_custom_time: int | None = None
    custom_time_before: date | None = None
    conditions: Mapping[str, object] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return f"#{self.position}"

    @property
    def name(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.conditions.items())
        return f"lifecycle rule #{self.position} ({self.action}{': ' + shown if shown else ''})"

    @property
    def needs_tags(self) -> bool:
        return False

    def _names_match(self, obj: ObjectState) -> bool:
        if self.action != "Delete":
            return False
        if self.matches_prefix and not any(obj.key.startswith(p) for p in self.matches_prefix):
            return False
        if self.matches_suffix and not any(obj.key.endswith(s) for s in self.matches_suffix):
            return False
        return not (
            self.matches_storage_class
            and obj.storage_class is not None
            and obj.storage_class not in self.matches_storage_class
        )

    def _time_bounds(self, obj: ObjectState) -> list[datetime | None] | None:
        """Lower bounds on when the age, creation and custom-time conditions hold; None when they never do."""
        bounds: list[datetime | None] = []
        if self.age is not None:
            bounds.append(obj.created + self.age * DAY if obj.created else None)
        if self.created_before is not None and obj.created is not None and obj.created >= start_of(self.created_before):
            return None
        if self.days_since_custom_time is not None or self.custom_time_before is not None:
            if obj.custom_time is None:
                return None  # an object without a custom time never meets these conditions
            if self.custom_time_before is not None and obj.custom_time >= start_of(self.custom_time_before):
                return None
            if self.days_since_custom_time is not None:
                bounds.append(obj.custom_time + self.days_since_custom_time * DAY)
        return bounds

    def on_current(self, obj: ObjectState) -> Effect | None:
        if not self._names_match(obj) or self.is_live is False:
            return None
        if self.num_newer_versions or self.days_since_noncurrent is not None or self.noncurrent_time_before:
            return None  # conditions only noncurrent objects meet
        bounds = self._time_bounds(obj)
        if bounds is None:
            return None
        when = _latest(bounds) if bounds else obj.created
        return _effect(self, when, "deletes live objects" if self.is_live else "deletes objects")

    def on_noncurrent(self, obj: ObjectState, since: datetime | None, now: datetime) -> Effect | None:
        if not self._names_match(obj) or self.is_live is True:
            return None
        bounds = self._time_bounds(obj)
        if bounds is None:
            return None
        bounds.append(since)  # it has to be noncurrent first
        if self.noncurrent_time_before is not None:
            cutoff = start_of(self.noncurrent_time_before)
            if (since or now) >= cutoff:
                return None  # noncurrent too late (or, not yet noncurrent, it will be)
        if self.days_since_noncurrent is not None:
            bounds.append(since + self.days_since_noncurrent * DAY if since else None)
        if self.num_newer_versions and (obj.newer_versions is None or obj.newer_versions < self.num_newer_versions):
            bounds.append(None)  # only once that many newer versions exist
        return _effect(self, _latest(bounds), "deletes noncurrent versions")


# -- verdicts ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The guard status of one object, why (`reason`, naming the rule), the rule (`rule`) and the earliest
    time it can act (`earliest`) when one is at risk."""

    status: GuardStatus
    reason: str
    rule: str | None = None
    earliest: datetime | None = None


def _day(when: datetime) -> str:
    return when.astimezone(timezone.utc).date().isoformat()


def _first(effects: Iterable[Effect]) -> Effect | None:
    """The effect that can act soonest (a known date before an unknown one)."""
    found = list(effects)
    if not found:
        return None
    return min(found, key=lambda e: (e.when is None, e.when or datetime.min.replace(tzinfo=timezone.utc)))


def _risk(effect: Effect, now: datetime, context: str = "", pending: bool = False) -> Verdict:
    if effect.when is None and pending:
        when = "; no date yet: the clock starts then"
    elif effect.when is None:
        when = "; the date cannot be computed from what the store reports"
    elif effect.when <= now:
        when = f"; it can act now (since {_day(effect.when)})"
    else:
        when = f"; it can act from {_day(effect.when)}"
    return Verdict("at-risk", f"{context}{effect.name} {effect.how}{when}", effect.rule, effect.when)


def _floor(effect: Effect, floors: Iterable[datetime | None]) -> Effect:
    """`effect` no earlier than any retention floor."""
    known = [f for f in floors if f is not None]
    if effect.when is None or not known:
        return effect
    floor = max(known)
    if effect.when >= floor:
        return effect
    return Effect(effect.rule, effect.name, floor, f"{effect.how} (retained until then)")


def needs_state(bucket: BucketProtection, obj: ObjectState) -> bool:
    """Whether the verdict for `obj` (key, version and size known) depends on more of its state: some rule
    may act on it, or the rules are unknown while a hold could still protect a pinned version."""
    if bucket.unsupported is not None or bucket.versioning is None:
        return False
    pinned = obj.version is not None and bucket.versioning == "enabled"
    if bucket.rules is None:
        return pinned
    if pinned:
        return any(r.on_noncurrent(obj, None, _EPOCH) for r in bucket.rules)
    return any(r.on_current(obj) for r in bucket.rules)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def assess(bucket: BucketProtection, obj: ObjectState, now: datetime) -> Verdict:
    """The verdict for `obj` in `bucket` at `now` (see the module docstring)."""
    if bucket.unsupported is not None:
        return Verdict("unknown", bucket.unsupported)
    missing = ", ".join(bucket.missing + obj.missing) or "read access to the bucket's settings"
    if bucket.versioning is None:
        return Verdict("unknown", f"the bucket's versioning could not be read: need {missing}")
    pinned = obj.version is not None and bucket.versioning == "enabled"
    if pinned and obj.hold:
        return Verdict("protected", f"version {obj.version} is under a {obj.hold}")
    if bucket.rules is None:
        return Verdict("unknown", f"the bucket's lifecycle rules could not be read: need {missing}")
    if not obj.exists:
        what = f"version {obj.version}" if obj.version is not None else "the object"
        return Verdict("at-risk", f"{what} no longer exists (refscan verify reports it)")
    if obj.missing and any(r.needs_tags for r in bucket.rules):
        return Verdict("unknown", f"rules filter on tags and the object's tags could not be read: need {missing}")
    floors = [obj.retain_until]
    if bucket.retention_days is not None and obj.created is not None:
        floors.append(obj.created + bucket.retention_days * DAY)
    if not pinned:
        why = "no version recorded" if obj.version is None else f"versioning is {bucket.versioning}"
        effect = _first(e for r in bucket.rules if (e := r.on_current(obj)) is not None)
        if effect is not None:
            return _risk(_floor(effect, floors), now, f"{why}; the entry follows the current object, and ")
        return Verdict("unpinned", f"{why}: the next write of the key replaces what the entry records")
    if obj.live is False:
        since, context = obj.noncurrent_since, f"version {obj.version} is noncurrent; "
    else:
        turned = _first(e for r in bucket.rules if (e := r.on_current(obj)) is not None)
        since = turned.when if obj.live and turned is not None else None
        if obj.live:
            context = f"version {obj.version} is current; once the key is overwritten or deleted"
            context += f" (at the latest when {turned.name} expires it)" if turned is not None else ""
            context += ", "
        else:
            context = f"version {obj.version}: "
    effect = _first(e for r in bucket.rules if (e := r.on_noncurrent(obj, since, now)) is not None)
    if effect is not None:
        return _risk(_floor(effect, floors), now, context, pending=bool(obj.live) and since is None)
    held = f" ({bucket.lock})" if bucket.lock else ""
    return Verdict("protected", f"versioning is on and no lifecycle rule deletes version {obj.version}{held}")
