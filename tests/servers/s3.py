"""S3 test fixtures on moto under waitress (the launcher lives in `refscan.demo.servers`).

- ``s3_server`` (session): :class:`S3Server`; does not touch the environment.
- ``s3_env`` (function): sets AWS_* variables (monkeypatch) so library code finds the server.
- ``s3_bucket`` / ``s3_versioned_bucket`` (function): a fresh, uniquely named bucket.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refscan.demo.servers import S3_ACCESS_KEY as ACCESS_KEY
from refscan.demo.servers import S3_REGION as REGION
from refscan.demo.servers import S3_SECRET_KEY as SECRET_KEY
from refscan.demo.servers import S3Server, start_s3_server

from .util import start_or_unavailable

__all__ = [
    "ACCESS_KEY",
    "REGION",
    "S3_BIG_OBJECTS",
    "SECRET_KEY",
    "S3Server",
    "s3_big",
    "s3_bucket",
    "s3_env",
    "s3_server",
    "s3_versioned_bucket",
    "start_s3_server",
]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_or_unavailable("moto S3 server", start_s3_server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the standard AWS environment at the test server for one test; returns the variables set."""
    env = s3_server.env
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # Variables that would otherwise redirect or override the chain.
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_S3_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return env


S3_BIG_OBJECTS = 5_000


@pytest.fixture(scope="session")
def s3_big(s3_server: S3Server) -> str:
    """A bucket holding `big/part-<j>/obj-<i>.bin`: 5,000 objects in 10 sub-folders of 500 (seeded once)."""
    bucket = s3_server.create_bucket()
    objects = {f"big/part-{i % 10}/obj-{i:05d}.bin": f"object {i}".encode() for i in range(S3_BIG_OBJECTS)}
    s3_server.put_objects(bucket, objects, workers=24)
    return bucket


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty, unversioned bucket (unique name, never cleaned: the server dies with the session)."""
    return s3_server.create_bucket()


@pytest.fixture
def s3_versioned_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket with versioning Enabled."""
    return s3_server.create_bucket(versioned=True)
