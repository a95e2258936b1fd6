"""Guard's rule evaluation (refscan.lifecycle) and the parsing of S3 / GCS settings into rules: pure, no I/O."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refscan.backends.gcs.protection import parse_bucket
from refscan.backends.gcs.protection import parse_rule as gcs_rule
from refscan.backends.s3.protection import describe_lock, parse_rule, parse_versioning
from refscan.lifecycle import GCSRule, S3Rule, assess, needs_state, next_midnight
from refscan.protection import BucketProtection, ObjectState

UTC = timezone.utc
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CREATED = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)


def bucket(*rules: S3Rule | GCSRule, versioning: str = "enabled", **kw: object) -> BucketProtection:
    return BucketProtection(versioning, tuple(rules), **kw)  # type: ignore[arg-type]


def pinned(key: str = "data/a.csv", **kw: object) -> ObjectState:
    fields: dict[str, object] = {"version": "v1", "size": 100, "created": CREATED, "live": True}
    return ObjectState(key, **(fields | kw))  # type: ignore[arg-type]


def noncurrent(key: str = "data/a.csv", since: datetime = datetime(2026, 6, 10, 15, 0, tzinfo=UTC), **kw: object):
    return pinned(key, live=False, noncurrent_since=since, **kw)


NVE30 = S3Rule("expire-old", prefix="data/", noncurrent_days=30)


# -- S3 ----------------------------------------------------------------------------------------------------


def test_noncurrent_version_under_a_matching_rule_is_at_risk_with_the_date_rounded_to_midnight() -> None:
    verdict = assess(bucket(NVE30), noncurrent(), NOW)
    assert verdict.status == "at-risk"
    assert verdict.rule == "expire-old"
    assert verdict.earliest == datetime(2026, 7, 11, tzinfo=UTC)  # 2026-06-10 15:00 + 30 days, next midnight
    assert "'expire-old'" in verdict.reason
    assert "2026-07-11" in verdict.reason


def test_a_rule_for_another_prefix_leaves_the_version_protected() -> None:
    verdict = assess(bucket(NVE30), noncurrent("models/m.bin"), NOW)
    assert verdict.status == "protected"
    assert "no lifecycle rule deletes version v1" in verdict.reason


def test_disabled_rules_do_nothing() -> None:
    rule = S3Rule("off", enabled=False, noncurrent_days=1)
    assert assess(bucket(rule), noncurrent(), NOW).status == "protected"


def test_current_pinned_version_is_at_risk_from_the_next_overwrite_without_a_date() -> None:
    verdict = assess(bucket(NVE30), pinned(), NOW)
    assert verdict.status == "at-risk"
    assert verdict.earliest is None
    assert "is current" in verdict.reason
    assert "no date yet" in verdict.reason


def test_current_pinned_version_with_an_expiration_gets_a_date() -> None:
    rule = S3Rule("both", prefix="data/", expiration_days=10, noncurrent_days=5)
    verdict = assess(bucket(rule), pinned(), NOW)
    # expires (becomes noncurrent) at midnight after 2026-06-11 08:30 -> 06-12; deleted 5 days later
    assert verdict.earliest == datetime(2026, 6, 17, tzinfo=UTC)
    assert "expires it" in verdict.reason


def test_expiration_alone_never_deletes_a_pinned_version_of_a_versioned_bucket() -> None:
    rule = S3Rule("exp", expiration_days=1)
    assert assess(bucket(rule), pinned(), NOW).status == "protected"
    assert assess(bucket(rule), noncurrent(), NOW).status == "protected"


def test_unpinned_entry_under_an_expiration_is_at_risk_and_otherwise_unpinned() -> None:
    current = ObjectState("data/a.csv", None, 100, created=CREATED)
    verdict = assess(bucket(S3Rule("exp", expiration_days=1)), current, NOW)
    assert verdict.status == "at-risk"
    assert verdict.earliest == datetime(2026, 6, 3, tzinfo=UTC)
    assert "no version recorded" in verdict.reason
    assert "it can act now" in verdict.reason
    assert assess(bucket(NVE30), current, NOW).status == "unpinned"


def test_expiration_date_rules_name_their_date() -> None:
    rule = S3Rule("sunset", expiration_date=datetime(2027, 1, 1, tzinfo=UTC))
    verdict = assess(bucket(rule, versioning="off"), pinned(), NOW)
    assert verdict.status == "at-risk"
    assert verdict.earliest == datetime(2027, 1, 1, tzinfo=UTC)
    assert "versioning is off" in verdict.reason


@pytest.mark.parametrize("versioning", ["suspended", "off"])
def test_pins_in_buckets_that_keep_no_versions_are_unpinned(versioning: str) -> None:
    verdict = assess(bucket(versioning=versioning), pinned(), NOW)
    assert verdict.status == "unpinned"
    assert f"versioning is {versioning}" in verdict.reason


@pytest.mark.parametrize(
    ("size", "rule", "at_risk"),
    [
        (100, S3Rule("gt", size_gt=99, noncurrent_days=1), True),
        (100, S3Rule("gt", size_gt=100, noncurrent_days=1), False),
        (100, S3Rule("lt", size_lt=101, noncurrent_days=1), True),
        (100, S3Rule("lt", size_lt=100, noncurrent_days=1), False),
        (100, S3Rule("both", size_gt=10, size_lt=50, noncurrent_days=1), False),
        (None, S3Rule("unknown size", size_gt=10**9, noncurrent_days=1), True),
    ],
)
def test_size_filters(size: int | None, rule: S3Rule, at_risk: bool) -> None:
    assert (assess(bucket(rule), noncurrent(size=size), NOW).status == "at-risk") is at_risk


@pytest.mark.parametrize(
    ("tags", "at_risk"),
    [({"tier": "scratch", "x": "1"}, True), ({"tier": "gold"}, False), ({}, False), (None, True)],
)
def test_tag_filters_need_every_tag(tags: dict[str, str] | None, at_risk: bool) -> None:
    rule = S3Rule("scratch", tags=(("tier", "scratch"),), noncurrent_days=7)
    assert rule.needs_tags
    assert (assess(bucket(rule), noncurrent(tags=tags), NOW).status == "at-risk") is at_risk


def test_unreadable_tags_make_a_tag_filtered_bucket_unknown() -> None:
    rule = S3Rule("scratch", tags=(("tier", "scratch"),), noncurrent_days=7)
    verdict = assess(bucket(rule), noncurrent(missing=("s3:GetObjectTagging",)), NOW)
    assert verdict.status == "unknown"
    assert "s3:GetObjectTagging" in verdict.reason


def test_newer_noncurrent_versions_keep_the_newest_ones_without_a_date() -> None:
    rule = S3Rule("keep3", noncurrent_days=1, newer_noncurrent=3)
    few = assess(bucket(rule), noncurrent(newer_noncurrent=1), NOW)
    assert few.status == "at-risk"
    assert few.earliest is None
    assert "keeping the newest 3" in few.reason
    many = assess(bucket(rule), noncurrent(newer_noncurrent=3), NOW)
    assert many.earliest == datetime(2026, 6, 12, tzinfo=UTC)


def test_a_legal_hold_protects_whatever_the_rules_say() -> None:
    verdict = assess(bucket(NVE30), noncurrent(hold="legal hold"), NOW)
    assert verdict.status == "protected"
    assert "legal hold" in verdict.reason


def test_retention_is_a_floor_under_the_date() -> None:
    until = datetime(2026, 9, 1, tzinfo=UTC)
    verdict = assess(bucket(NVE30), noncurrent(retain_until=until), NOW)
    assert verdict.status == "at-risk"
    assert verdict.earliest == until
    assert "retained until then" in verdict.reason


def test_unreadable_settings_are_unknown_and_name_the_permission() -> None:
    no_rules = BucketProtection("enabled", None, missing=("s3:GetLifecycleConfiguration",))
    verdict = assess(no_rules, pinned(), NOW)
    assert verdict.status == "unknown"
    assert "s3:GetLifecycleConfiguration" in verdict.reason
    assert assess(no_rules, pinned(hold="legal hold"), NOW).status == "protected"
    no_versioning = BucketProtection(None, (), missing=("s3:GetBucketVersioning",))
    assert "s3:GetBucketVersioning" in assess(no_versioning, pinned(), NOW).reason
    cannot = BucketProtection.cannot_tell("refscan cannot read what protects https:// objects")
    assert assess(cannot, pinned(), NOW).status == "unknown"


def test_a_version_already_gone_is_at_risk() -> None:
    assert assess(bucket(NVE30), pinned(exists=False), NOW).status == "at-risk"


def test_needs_state_only_when_some_rule_may_act() -> None:
    assert needs_state(bucket(NVE30), pinned())
    assert not needs_state(bucket(NVE30), pinned("models/m.bin"))
    assert not needs_state(bucket(), pinned())
    assert not needs_state(bucket(NVE30), ObjectState("data/a.csv"))  # unpinned: only expirations matter
    assert needs_state(bucket(S3Rule("e", expiration_days=1)), ObjectState("data/a.csv"))
    assert needs_state(BucketProtection("enabled", None), pinned())  # a hold could still protect it


@given(st.datetimes(timezones=st.just(UTC)))
def test_next_midnight_rounds_up_to_a_midnight_within_a_day(when: datetime) -> None:
    try:
        rounded = next_midnight(when)
    except OverflowError:
        return
    assert rounded >= when
    assert rounded - when < timedelta(days=1)
    assert (rounded.hour, rounded.minute, rounded.second, rounded.microsecond) == (0, 0, 0, 0)


keys = st.text(alphabet="ab/", max_size=6)


@given(prefix=keys, key=keys, days=st.integers(1, 400), live=st.booleans())
def test_s3_prefix_rule_puts_exactly_the_keys_under_it_at_risk(prefix: str, key: str, days: int, live: bool) -> None:
    rule = S3Rule("r", prefix=prefix, noncurrent_days=days)
    obj = pinned(key) if live else noncurrent(key)
    verdict = assess(bucket(rule), obj, NOW)
    assert verdict.status == ("at-risk" if key.startswith(prefix) else "protected")
    if verdict.earliest is not None:
        assert verdict.earliest >= obj.noncurrent_since + timedelta(days=days)  # type: ignore[operator]


# -- GCS ---------------------------------------------------------------------------------------------------


def test_gcs_age_rule_deletes_the_current_object_of_an_unversioned_bucket() -> None:
    rule = gcs_rule(1, {"action": {"type": "Delete"}, "condition": {"age": 30}})
    verdict = assess(bucket(rule, versioning="off"), ObjectState("a.csv", None, created=CREATED), NOW)
    assert verdict.status == "at-risk"
    assert verdict.rule == "#1"
    assert verdict.earliest == CREATED + timedelta(days=30)
    assert "lifecycle rule #1 (Delete: age=30)" in verdict.reason


def test_gcs_num_newer_versions_on_a_noncurrent_generation() -> None:
    rule = gcs_rule(2, {"action": {"type": "Delete"}, "condition": {"numNewerVersions": 2, "isLive": False}})
    since = datetime(2026, 6, 10, tzinfo=UTC)
    enough = assess(bucket(rule), noncurrent(since=since, newer_versions=2), NOW)
    assert enough.status == "at-risk"
    assert enough.earliest == since
    fewer = assess(bucket(rule), noncurrent(since=since, newer_versions=1), NOW)
    assert fewer.status == "at-risk"
    assert fewer.earliest is None


def test_gcs_days_since_noncurrent_time() -> None:
    rule = gcs_rule(1, {"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 7}})
    since = datetime(2026, 6, 10, 15, tzinfo=UTC)
    assert assess(bucket(rule), noncurrent(since=since), NOW).earliest == since + timedelta(days=7)


def test_gcs_noncurrent_time_before_only_hits_versions_noncurrent_before_that_day() -> None:
    rule = gcs_rule(1, {"action": {"type": "Delete"}, "condition": {"noncurrentTimeBefore": "2026-06-12"}})
    assert assess(bucket(rule), noncurrent(since=datetime(2026, 6, 10, tzinfo=UTC)), NOW).status == "at-risk"
    assert assess(bucket(rule), noncurrent(since=datetime(2026, 6, 13, tzinfo=UTC)), NOW).status == "protected"
    assert assess(bucket(rule), pinned(), NOW).status == "protected"  # it will become noncurrent after the day


def test_gcs_is_live_true_never_deletes_a_pinned_generation() -> None:
    rule = gcs_rule(1, {"action": {"type": "Delete"}, "condition": {"age": 1, "isLive": True}})
    assert assess(bucket(rule), pinned(), NOW).status == "protected"
    assert assess(bucket(rule), noncurrent(), NOW).status == "protected"


def test_gcs_age_alone_deletes_a_live_pinned_generation_twice_over() -> None:
    rule = gcs_rule(1, {"action": {"type": "Delete"}, "condition": {"age": 30}})
    verdict = assess(bucket(rule), pinned(), NOW)  # makes it noncurrent at 30 days, then deletes it
    assert verdict.status == "at-risk"
    assert verdict.earliest == CREATED + timedelta(days=30)


@pytest.mark.parametrize(
    ("condition", "key", "at_risk"),
    [
        ({"matchesPrefix": ["logs/", "data/"]}, "data/a.csv", True),
        ({"matchesPrefix": ["logs/"]}, "data/a.csv", False),
        ({"matchesSuffix": [".tmp", ".csv"]}, "data/a.csv", True),
        ({"matchesSuffix": [".tmp"]}, "data/a.csv", False),
        ({"matchesPrefix": ["data/"], "matchesSuffix": [".tmp"]}, "data/a.csv", False),
        ({"createdBefore": "2026-06-02"}, "data/a.csv", True),
        ({"createdBefore": "2026-06-01"}, "data/a.csv", False),
        ({"matchesStorageClass": ["NEARLINE"]}, "data/a.csv", False),
        ({"matchesStorageClass": ["STANDARD"]}, "data/a.csv", True),
        ({"daysSinceCustomTime": 1}, "data/a.csv", False),  # no custom time: never
    ],
)
def test_gcs_name_and_time_conditions(condition: dict[str, object], key: str, at_risk: bool) -> None:
    rule = gcs_rule(1, {"action": {"type": "Delete"}, "condition": condition})
    verdict = assess(bucket(rule), noncurrent(key, storage_class="STANDARD"), NOW)
    assert (verdict.status == "at-risk") is at_risk


def test_gcs_rules_that_do_not_delete_are_ignored() -> None:
    rule = gcs_rule(1, {"action": {"type": "SetStorageClass", "storageClass": "COLDLINE"}, "condition": {"age": 1}})
    assert assess(bucket(rule), noncurrent(), NOW).status == "protected"


def test_gcs_temporary_hold_and_retention_policy() -> None:
    rule = gcs_rule(1, {"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 1}})
    assert assess(bucket(rule), noncurrent(hold="temporary hold"), NOW).status == "protected"
    retained = bucket(rule, retention_days=90.0)
    assert assess(retained, noncurrent(), NOW).earliest == CREATED + timedelta(days=90)


# -- parsing -----------------------------------------------------------------------------------------------


def test_s3_rule_shapes() -> None:
    both = parse_rule(
        {
            "ID": "r1",
            "Status": "Enabled",
            "Filter": {
                "And": {
                    "Prefix": "a/",
                    "Tags": [{"Key": "t", "Value": "1"}],
                    "ObjectSizeGreaterThan": 10,
                    "ObjectSizeLessThan": "99",
                }
            },
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30, "NewerNoncurrentVersions": 2},
        }
    )
    assert both == S3Rule("r1", True, "a/", (("t", "1"),), 10, 99, None, None, 30, 2)
    legacy = parse_rule({"ID": "old", "Status": "Enabled", "Prefix": "logs/", "Expiration": {"Days": 1}})
    assert (legacy.prefix, legacy.expiration_days) == ("logs/", 1)
    tagged = parse_rule(
        {
            "Status": "Disabled",
            "Filter": {"Tag": {"Key": "x", "Value": "y"}},
            "Expiration": {"Date": "2030-01-01T00:00:00Z"},
        }
    )
    assert (tagged.id, tagged.enabled, tagged.tags) == ("(no id)", False, (("x", "y"),))
    assert tagged.expiration_date == datetime(2030, 1, 1, tzinfo=UTC)
    marker = parse_rule(
        {"ID": "m", "Status": "Enabled", "Filter": {}, "Expiration": {"ExpiredObjectDeleteMarker": True}}
    )
    assert marker.on_current(ObjectState("k")) is None  # removes delete markers only


def test_s3_versioning_and_lock_shapes() -> None:
    assert [parse_versioning(r) for r in ({"Status": "Enabled"}, {"Status": "Suspended"}, {})] == [
        "enabled",
        "suspended",
        "off",
    ]
    assert describe_lock({}) is None
    assert describe_lock({"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}}) == "Object Lock is on"
    rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}
    text = describe_lock({"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled", "Rule": rule}})
    assert text == "Object Lock is on; new versions are retained 30 days in GOVERNANCE mode"


def test_gcs_bucket_shape() -> None:
    found = parse_bucket(
        {
            "versioning": {"enabled": True},
            "lifecycle": {"rule": [{"action": {"type": "Delete"}, "condition": {"age": 3, "isLive": False}}]},
            "retentionPolicy": {"retentionPeriod": "172800", "isLocked": True},
        }
    )
    assert found.versioning == "enabled"
    assert found.holds
    assert found.retention_days == 2
    assert found.rules == (GCSRule(1, age=3, is_live=False),)
    assert found.lock == "a retention policy keeps every object 2 days after it is written (locked)"
    assert parse_bucket({}).versioning == "off"
    assert parse_bucket({}).rules == ()
    assert gcs_rule(1, {"action": {"type": "Delete"}, "condition": {"createdBefore": "2026-01-02"}}).created_before == (
        date(2026, 1, 2)
    )
