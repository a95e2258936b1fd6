"""Shared fixtures: real servers (see tests/servers), anyio backend, the ``integration`` marker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.servers.apps import serve_app_fixture
from tests.servers.azure import azure_container, azure_options, azurite, no_azure_env
from tests.servers.gcs import gcs_bucket, gcs_env, gcs_server, gcs_versioned_bucket
from tests.servers.nginx import nginx_server
from tests.servers.s3 import s3_big, s3_bucket, s3_env, s3_server, s3_versioned_bucket
from tests.servers.seaweed import seaweed_server

__all__ = [
    "anyio_backend",
    "azure_container",
    "azure_options",
    "azurite",
    "bare_env",
    "gcs_bucket",
    "gcs_env",
    "gcs_server",
    "gcs_versioned_bucket",
    "nginx_server",
    "no_azure_env",
    "s3_big",
    "s3_bucket",
    "s3_env",
    "s3_server",
    "s3_versioned_bucket",
    "seaweed_server",
    "serve_app_fixture",
]


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; registering here keeps --strict-markers happy if run elsewhere.
    config.addinivalue_line("markers", "integration: needs a real server started by the fixtures")
    config.addinivalue_line("markers", "ray: runs on a local Ray (pytest -m ray runs them alone)")


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """In-process CLI runs (click's CliRunner) configure structlog for the console; put the defaults back so
    later tests' `structlog.testing.capture_logs` sees debug events again."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests use ``@pytest.mark.anyio`` (anyio's pytest plugin) on asyncio: aiohttp/aiobotocore need it."""
    return "asyncio"


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No proxy variables, no NETRC, and a HOME without .netrc: each test sets what it needs."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in ("NETRC", "REQUEST_METHOD"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch
