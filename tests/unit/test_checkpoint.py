"""Checkpoint files (refscan/distributed/checkpoint.py): which work a file belongs to, what it never holds,
and records that come back as they went in."""

from __future__ import annotations

from pathlib import Path

import pytest

from refscan import ManifestEntry, Options, S3Options
from refscan.backends.keyspace import KeyRange
from refscan.distributed.checkpoint import Checkpoint, work_fingerprint
from refscan.distributed.units import LOOKUP, RANGE, Unit
from refscan.errors import CheckpointError
from refscan.scan import ScanRequest

REQUESTS = [ScanRequest("s3://bucket/data/"), ScanRequest("gs://other/x", name="n", max_objects=5)]
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_the_fingerprint_names_the_work_not_the_defaults_or_the_secrets() -> None:
    base = work_fingerprint("scan", REQUESTS, Options())
    assert work_fingerprint("scan", REQUESTS, Options(s3=S3Options(parallel_listing=True))) == base  # a default
    keyed = Options(s3=S3Options(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key=SECRET))
    assert work_fingerprint("scan", REQUESTS, keyed) == base  # secrets are not part of it, not even hashed
    assert work_fingerprint("scan", REQUESTS, Options(s3=S3Options(endpoint_url="http://127.0.0.1:9"))) != base
    assert work_fingerprint("scan", REQUESTS[:1], Options()) != base
    assert work_fingerprint("scan", [ScanRequest("s3://bucket/data/", max_objects=7), REQUESTS[1]], Options()) != base


def test_records_come_back_and_other_work_is_refused(tmp_path: Path) -> None:
    fingerprint = work_fingerprint("scan", REQUESTS, Options())
    cp = Checkpoint(tmp_path, fingerprint, [f"https://h.example/d/f.csv?X-Amz-Signature={SECRET}"])
    assert cp.empty()
    [lookup] = cp.plan([Unit(LOOKUP, 0)])
    entry = ManifestEntry("a b#1.txt", "etag", "s3://bucket/data/a b#1.txt", 3, {"etag": "etag", "versionID": "v"})
    rest = KeyRange(start="data/a", end=None, resume='{"token": "t"}')
    [ranged] = cp.record(lookup, 0, [entry], [Unit(RANGE, 0, rest, pages=10)], {"folder": True, "epoch": 0})
    cp.close()

    again = Checkpoint(tmp_path, fingerprint, [])
    assert [(uid, u.kind, u.rng, u.pages) for uid, u in again.pending()] == [(ranged, RANGE, rest, 10)]
    assert list(again.entries()) == [(0, [entry])]
    assert again.states() == {0: {"folder": True, "epoch": 0}}
    again.close()
    assert SECRET.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())

    with pytest.raises(CheckpointError, match="belongs to other work"):
        Checkpoint(tmp_path, work_fingerprint("scan", REQUESTS[:1], Options()), [])


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.sqlite").write_bytes(b"\x00garbage" * 512)
    with pytest.raises(CheckpointError, match="not a usable refscan checkpoint"):
        Checkpoint(tmp_path, "f", [])
