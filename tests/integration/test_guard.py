"""guard and guard --hold/--release against real servers (docs/behaviour.md, Guard).

moto keeps lifecycle rules (prefix, tags, And), versioning, Object Lock buckets and legal holds per version;
a second moto with IAM on refuses one permission. fake-gcs-server keeps versioning and noncurrent generations
but drops bucket `lifecycle`/`retentionPolicy` and object `temporaryHold` (and ignores `?generation` on
objects.patch), so those cases run against a small aiohttp origin serving the documented JSON resources.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web

import refscan
from refscan import GCSOptions, Manifest, Options, S3Options
from refscan.backends.s3.protection import parse_time
from refscan.demo.servers import start_s3_server
from tests.servers import GCSServer, S3Server
from tests.servers.util import isolated_env

pytestmark = pytest.mark.integration


def s3_options(server: S3Server, key: str | None = None, secret: str | None = None) -> Options:
    return Options(
        s3=S3Options(
            endpoint_url=server.endpoint_url,
            region=server.region,
            aws_access_key_id=key or server.access_key,
            aws_secret_access_key=secret or server.secret_key,
        )
    )


def by_path(report: refscan.GuardReport) -> dict[str, refscan.GuardResult]:
    return {r.path: r for r in report.results}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refscan", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


NONCURRENT_30 = {
    "Rules": [
        {
            "ID": "expire-old-data",
            "Status": "Enabled",
            "Filter": {"Prefix": "data/"},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
        }
    ]
}


@pytest.fixture
def at_risk_bucket(s3_server: S3Server) -> tuple[str, Manifest, dict[str, Any]]:
    """A versioned bucket whose `data/` rule expires noncurrent versions; the manifest pins data/a.csv's first
    version (since overwritten), data/b.csv (current) and keep/c.csv (no rule)."""
    client = s3_server.client()
    bucket = s3_server.create_bucket(versioned=True)
    for key in ("data/a.csv", "data/b.csv", "keep/c.csv"):
        client.put_object(Bucket=bucket, Key=key, Body=b"first")
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=NONCURRENT_30)
    options = s3_options(s3_server)
    manifest = Manifest(refscan.scan(f"s3://{bucket}", options=options))
    newer = client.put_object(Bucket=bucket, Key="data/a.csv", Body=b"second")
    head = client.head_object(Bucket=bucket, Key="data/a.csv", VersionId=newer["VersionId"])
    return bucket, manifest, {"options": options, "overwritten": head["LastModified"]}


def test_s3_lifecycle_rules_decide_each_pinned_version(at_risk_bucket: tuple[str, Manifest, dict[str, Any]]) -> None:
    _bucket, manifest, seen = at_risk_bucket
    report = refscan.guard(manifest, options=seen["options"])
    results = by_path(report)
    old, current, kept = results["data/a.csv"], results["data/b.csv"], results["keep/c.csv"]
    assert old.status == "at-risk"
    assert old.rule == "expire-old-data"
    overwritten: datetime = seen["overwritten"]
    expected = (overwritten + timedelta(days=31)).astimezone(timezone.utc).date().isoformat()  # next midnight
    assert old.earliest == expected
    assert "noncurrent" in old.reason
    assert expected in old.reason
    assert current.status == "at-risk"
    assert current.earliest is None
    assert "is current" in current.reason
    assert kept.status == "protected"
    assert report.counts == {"protected": 1, "at-risk": 2, "unpinned": 0, "unknown": 0}
    assert not report.ok


def test_s3_tag_filters_read_the_version_tags(s3_server: S3Server) -> None:
    client = s3_server.client()
    bucket = s3_server.create_bucket(versioned=True)
    client.put_object(Bucket=bucket, Key="x/scratch.bin", Body=b"1", Tagging="tier=scratch")
    client.put_object(Bucket=bucket, Key="x/gold.bin", Body=b"1", Tagging="tier=gold")
    rule = {
        "ID": "scratch",
        "Status": "Enabled",
        "Filter": {"And": {"Prefix": "x/", "Tags": [{"Key": "tier", "Value": "scratch"}]}},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
    }
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [rule]})
    options = s3_options(s3_server)
    results = by_path(refscan.guard(refscan.scan(f"s3://{bucket}", options=options), options=options))
    assert results["x/scratch.bin"].status == "at-risk"
    assert results["x/scratch.bin"].rule == "scratch"
    assert results["x/gold.bin"].status == "protected"


def test_s3_unversioned_and_suspended_buckets_are_unpinned(s3_server: S3Server) -> None:
    client = s3_server.client()
    plain = s3_server.create_bucket()
    client.put_object(Bucket=plain, Key="k", Body=b"1")
    suspended = s3_server.create_bucket(versioned=True)
    client.put_object(Bucket=suspended, Key="k", Body=b"1")
    options = s3_options(s3_server)
    entries = refscan.scan(f"s3://{plain}/k", name="plain", options=options)
    entries += refscan.scan(f"s3://{suspended}/k", name="suspended", options=options)
    client.put_bucket_versioning(Bucket=suspended, VersioningConfiguration={"Status": "Suspended"})
    expiring = {"Rules": [{"ID": "tmp", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 7}}]}
    client.put_bucket_lifecycle_configuration(Bucket=plain, LifecycleConfiguration=expiring)
    results = by_path(refscan.guard(entries, options=options))
    assert results["suspended"].status == "unpinned"
    assert "versioning is suspended" in results["suspended"].reason
    assert results["plain"].status == "at-risk"
    assert results["plain"].rule == "tmp"
    assert results["plain"].earliest is not None


@pytest.fixture
def locked(s3_server: S3Server) -> tuple[str, list[refscan.ManifestEntry], Options]:
    """An Object Lock bucket whose only rule expires every noncurrent version after a day."""
    client = s3_server.client()
    bucket = s3_server.create_bucket(None)
    client.delete_bucket(Bucket=bucket)
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    for key in ("m/one.bin", "m/two.bin"):
        client.put_object(Bucket=bucket, Key=key, Body=b"weights")
    rules = {
        "Rules": [
            {"ID": "tidy", "Status": "Enabled", "Filter": {}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}
        ]
    }
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules)
    options = s3_options(s3_server)
    return bucket, refscan.scan(f"s3://{bucket}/m", options=options), options


def test_s3_legal_holds_are_placed_idempotently_and_protect(
    s3_server: S3Server, locked: tuple[str, list[refscan.ManifestEntry], Options]
) -> None:
    bucket, entries, options = locked
    assert refscan.guard(entries, options=options).counts["at-risk"] == 2
    held = refscan.guard(entries, options=options, hold=True)
    assert [h.status for h in held.holds or ()] == ["held", "held"]
    assert held.holds_ok
    assert all(r.status == "protected" and "legal hold" in r.reason for r in held.results)
    for entry in entries:
        status = s3_server.client().get_object_legal_hold(
            Bucket=bucket, Key=entry.ref.split("/", 3)[3], VersionId=entry.extra["versionID"]
        )
        assert status["LegalHold"]["Status"] == "ON"
    again = refscan.guard(entries, options=options, hold=True)
    assert [h.status for h in again.holds or ()] == ["already-held", "already-held"]
    released = refscan.guard(entries, options=options, release=True)
    assert [h.status for h in released.holds or ()] == ["released", "released"]
    assert released.counts["at-risk"] == 2
    assert [h.status for h in refscan.guard(entries, options=options, release=True).holds or ()] == ["not-held"] * 2


def test_s3_hold_partial_failure_holds_the_rest_and_the_cli_exits_1(
    s3_server: S3Server, locked: tuple[str, list[refscan.ManifestEntry], Options], tmp_path: Path
) -> None:
    _bucket, entries, options = locked
    plain = s3_server.create_bucket(versioned=True)
    s3_server.client().put_object(Bucket=plain, Key="elsewhere.bin", Body=b"1")
    entries += refscan.scan(f"s3://{plain}/elsewhere.bin", options=options)
    path = tmp_path / "m.json"
    Manifest(entries).dump(path)
    env = isolated_env(tmp_path / "home") | s3_server.env
    done = cli("guard", str(path), "--hold", "--json", env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    holds = {h["path"]: h for h in report["holds"]}
    assert holds["elsewhere.bin"]["status"] == "failed"
    assert "Object Lock is not on" in holds["elsewhere.bin"]["reason"]
    assert holds["one.bin"]["status"] == holds["two.bin"]["status"] == "held"
    table = cli("guard", str(path), "--release", env=env)
    assert table.returncode == 0, table.stdout + table.stderr  # nothing to release there is no failure
    assert "released" in table.stdout
    assert "at-risk" in table.stdout
    assert cli("guard", str(path), "--hold", "--release", env=env).returncode == 2


def test_cli_guard_table_json_strict_and_log_warning(
    s3_server: S3Server, at_risk_bucket: tuple[str, Manifest, dict[str, Any]], tmp_path: Path
) -> None:
    bucket, manifest, _ = at_risk_bucket
    env = isolated_env(tmp_path / "home") | s3_server.env
    path = tmp_path / "m.json"
    manifest.dump(path)
    table = cli("guard", str(path), env=env)
    assert table.returncode == 1
    assert "2 at-risk" in table.stdout
    assert "expire-old-data" in table.stdout
    assert "keep/c.csv" not in table.stdout
    assert json.loads(cli("guard", str(path), "--json", env=env).stdout)["counts"]["at-risk"] == 2
    safe = tmp_path / "safe.json"
    Manifest([e for e in manifest if e.path.startswith("keep/")]).dump(safe)
    assert cli("guard", str(safe), env=env).returncode == 0
    with_http = tmp_path / "http.json"
    extra = refscan.ManifestEntry("page.html", "etag1", "https://example.invalid/p.html", 3, {"etag": '"etag1"'})
    Manifest([*Manifest.load(safe), extra]).dump(with_http)
    assert cli("guard", str(with_http), env=env).returncode == 0  # unknown passes...
    assert cli("guard", str(with_http), "--strict", env=env).returncode == 1  # ...except with --strict
    logged = cli("log", "pets", "--type", "dataset", f"s3://{bucket}/data", env=env)
    assert logged.returncode == 0
    assert logged.stdout.strip() == "pets:v0"
    assert "at risk" in logged.stderr
    assert "refscan guard pets:v0" in logged.stderr
    assert len(logged.stderr.strip().splitlines()) == 1
    quiet = cli("log", "safe", "--type", "dataset", f"s3://{bucket}/keep", env=env)
    assert quiet.returncode == 0
    assert "at risk" not in quiet.stderr
    assert cli("guard", "pets:v0", env=env).returncode == 1


@pytest.fixture(scope="module")
def iam_moto() -> Any:
    """A second moto whose IAM is on, with a user allowed everything on S3 but s3:GetLifecycleConfiguration."""
    server = start_s3_server()
    try:
        admin = {"endpoint_url": server.endpoint_url, "region_name": server.region}
        iam = boto3.client("iam", aws_access_key_id="a", aws_secret_access_key="b", **admin)
        iam.create_user(UserName="guarded")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:GetLifecycleConfiguration", "Resource": "*"},
            ],
        }
        iam.put_user_policy(UserName="guarded", PolicyName="no-lifecycle", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="guarded")["AccessKey"]
        bucket = server.create_bucket(versioned=True)
        server.client().put_object(Bucket=bucket, Key="k.bin", Body=b"1")
        reset = urllib.request.Request(
            server.endpoint_url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )  # from now on every request is authenticated and authorised
        urllib.request.urlopen(reset, timeout=10).close()
        yield server, bucket, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        server.stop()


def test_s3_denied_lifecycle_read_is_unknown_naming_the_permission(iam_moto: Any) -> None:
    server, bucket, key, secret = iam_moto
    options = s3_options(server, key, secret)
    entries = refscan.scan(f"s3://{bucket}/k.bin", options=options)
    assert entries[0].extra.get("versionID")
    report = refscan.guard(entries, options=options)
    assert report.results[0].status == "unknown", report.results[0]
    assert "s3:GetLifecycleConfiguration" in report.results[0].reason
    assert report.ok
    assert not report.strict_ok()


# -- GCS ---------------------------------------------------------------------------------------------------


def test_gcs_emulator_versioning_decides_pinned_or_unpinned(gcs_server: GCSServer) -> None:
    options = Options(gcs=GCSOptions(endpoint_url=gcs_server.endpoint_url, token="anon"))
    versioned = gcs_server.create_bucket(versioning=True)
    plain = gcs_server.create_bucket()
    first = gcs_server.upload(versioned, "a.csv", b"1")
    gcs_server.upload(versioned, "a.csv", b"22")
    gcs_server.upload(plain, "b.csv", b"1")
    entries = refscan.scan(f"gs://{versioned}/a.csv#{first['generation']}", name="old", options=options)
    entries += refscan.scan(f"gs://{plain}/b.csv", name="plain", options=options)
    results = by_path(refscan.guard(entries, options=options))
    assert results["old"].status == "protected"
    assert results["old"].version == str(first["generation"])
    assert results["plain"].status == "unpinned"
    assert "versioning is off" in results["plain"].reason


class GCSOrigin:
    """The documented buckets.get / objects.list(versions) / objects.get / objects.patch resources of one
    versioned bucket, with lifecycle rules and temporary holds kept per generation (what fake-gcs-server drops)."""

    def __init__(self, bucket: dict[str, Any], objects: list[dict[str, Any]], deny_bucket: bool = False) -> None:
        self.bucket, self.objects, self.deny_bucket = bucket, objects, deny_bucket
        self.patches: list[str] = []

    def find(self, name: str, generation: str | None) -> dict[str, Any] | None:
        live = [o for o in self.objects if o["name"] == name and (generation or "") in ("", o["generation"])]
        return max(live, key=lambda o: int(o["generation"])) if live else None

    def app(self) -> web.Application:
        async def bucket(request: web.Request) -> web.Response:
            if self.deny_bucket:
                body = {
                    "error": {"code": 403, "message": "no storage.buckets.get", "errors": [{"reason": "forbidden"}]}
                }
                return web.json_response(body, status=403)
            return web.json_response(self.bucket)

        async def listing(request: web.Request) -> web.Response:
            prefix = request.query.get("prefix", "")
            return web.json_response({"items": [o for o in self.objects if o["name"].startswith(prefix)]})

        async def obj(request: web.Request) -> web.Response:
            found = self.find(request.match_info["name"], request.query.get("generation"))
            if found is None:
                return web.json_response({"error": {"code": 404, "message": "No such object"}}, status=404)
            if request.method == "PATCH":
                self.patches.append(found["generation"])
                found.update(await request.json())
            return web.json_response(found)

        app = web.Application()
        app.router.add_get("/storage/v1/b/{bucket}", bucket)
        app.router.add_get("/storage/v1/b/{bucket}/o", listing)
        app.router.add_route("*", "/storage/v1/b/{bucket}/o/{name:.+}", obj)
        return app


def generation(name: str, gen: int, created: str, deleted: str | None = None) -> dict[str, Any]:
    item = {
        "name": name,
        "generation": str(gen),
        "size": "2",
        "etag": f"e{gen}",
        "md5Hash": "bWQ1",
        "crc32c": "AAAAAA==",
    }
    item |= {"timeCreated": created, "storageClass": "STANDARD", "metageneration": "1"}
    return item | ({"timeDeleted": deleted} if deleted else {})


def origin_with_rules() -> GCSOrigin:
    rules = [
        {"action": {"type": "SetStorageClass", "storageClass": "COLDLINE"}, "condition": {"age": 1}},
        {"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 10, "matchesPrefix": ["data/"]}},
    ]
    objects = [
        generation("data/a.csv", 1, "2026-01-01T00:00:00Z", "2026-02-01T06:00:00Z"),
        generation("data/a.csv", 2, "2026-02-01T06:00:00Z"),
        generation("keep/b.csv", 3, "2026-01-01T00:00:00Z"),
    ]
    return GCSOrigin({"versioning": {"enabled": True}, "lifecycle": {"rule": rules}}, objects)


def origin_entries(url: str) -> tuple[list[refscan.ManifestEntry], Options]:
    options = Options(gcs=GCSOptions(endpoint_url=url, token="anon"))
    entries = [
        refscan.ManifestEntry("old.csv", "e1", "gs://bkt/data/a.csv", 2, {"versionID": 1}),
        refscan.ManifestEntry("b.csv", "e3", "gs://bkt/keep/b.csv", 2, {"versionID": 3}),
    ]
    return entries, options


def test_gcs_origin_lifecycle_rules_and_noncurrent_dates(serve_app: Any) -> None:
    origin = origin_with_rules()
    entries, options = origin_entries(serve_app(origin.app()))
    results = by_path(refscan.guard(entries, options=options))
    assert results["old.csv"].status == "at-risk"
    assert results["old.csv"].rule == "#2"
    assert results["old.csv"].earliest == "2026-02-11"
    assert "lifecycle rule #2 (Delete: daysSinceNoncurrentTime=10" in results["old.csv"].reason
    assert results["b.csv"].status == "protected"


def test_gcs_origin_temporary_holds_on_the_recorded_generation(serve_app: Any) -> None:
    origin = origin_with_rules()
    entries, options = origin_entries(serve_app(origin.app()))
    held = refscan.guard(entries, options=options, hold=True)
    assert [h.status for h in held.holds or ()] == ["held", "held"]
    assert sorted(origin.patches) == ["1", "3"]  # the recorded generations, not the live one
    assert by_path(held)["old.csv"].status == "protected"
    assert "temporary hold" in by_path(held)["old.csv"].reason
    again = refscan.guard(entries, options=options, hold=True)
    assert [h.status for h in again.holds or ()] == ["already-held"] * 2
    assert len(origin.patches) == 2
    released = refscan.guard(entries, options=options, release=True)
    assert [h.status for h in released.holds or ()] == ["released"] * 2
    assert by_path(released)["old.csv"].status == "at-risk"


def test_gcs_origin_refused_bucket_read_is_unknown_naming_the_permission(serve_app: Any) -> None:
    origin = origin_with_rules()
    origin.deny_bucket = True
    entries, options = origin_entries(serve_app(origin.app()))
    result = refscan.guard(entries, options=options).results[0]
    assert result.status == "unknown"
    assert "storage.buckets.get" in result.reason


def test_parse_time_reads_both_s3_forms() -> None:
    assert parse_time("Tue, 01 Dec 2026 23:47:37 GMT") == parse_time("2026-12-01T23:47:37.123Z")
