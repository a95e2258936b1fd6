"""GCS test fixtures on fake-gcs-server (the launcher and seeding helpers live in `refscan.demo.servers`).

- ``gcs_server`` (session): :class:`GCSServer`; does not touch the environment.
- ``gcs_env`` (function): STORAGE_EMULATOR_HOST etc. via monkeypatch.
- ``gcs_bucket`` / ``gcs_versioned_bucket`` (function): a fresh, uniquely named bucket.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refscan.demo.servers import GCS_PROJECT as PROJECT
from refscan.demo.servers import GCSHTTPError, GCSServer, find_fake_gcs_binary, start_gcs_server

from .util import start_or_unavailable

__all__ = [
    "PROJECT",
    "GCSHTTPError",
    "GCSServer",
    "find_fake_gcs_binary",
    "gcs_bucket",
    "gcs_env",
    "gcs_server",
    "gcs_versioned_bucket",
    "start_gcs_server",
]


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    server = start_or_unavailable("fake-gcs-server", start_gcs_server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gcs_env(gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point google-cloud-storage / gcsfs (and refscan defaults) at the emulator for one test."""
    env = gcs_server.env
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return env


@pytest.fixture
def gcs_bucket(gcs_server: GCSServer) -> str:
    """A fresh, empty, unversioned bucket."""
    return gcs_server.create_bucket()


@pytest.fixture
def gcs_versioned_bucket(gcs_server: GCSServer) -> str:
    """A fresh, empty bucket with object versioning enabled."""
    return gcs_server.create_bucket(versioning=True)
