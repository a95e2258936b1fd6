"""Azure test fixtures on Azurite (the launcher and seeding helpers live in `refscan.demo.servers`).

- ``azurite`` (session): :class:`AzuriteServer`; does not touch the environment.
- ``azure_container`` (function): a fresh, uniquely named container.
- ``azure_options`` (function): `Options` reaching Azurite with its connection string, nothing from the
  environment (every AZURE_* variable is removed for the test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from refscan import AzureOptions, Options, RetryPolicy
from refscan.demo.servers import AzuriteServer, start_azurite

from .util import start_or_unavailable

__all__ = ["azure_container", "azure_options", "azurite", "no_azure_env"]


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    server = start_or_unavailable("azurite", start_azurite)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def no_azure_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AZURE_* variable for this test: each test sets what it needs."""
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def azure_container(azurite: AzuriteServer) -> str:
    return azurite.create_container()


@pytest.fixture
def azure_options(azurite: AzuriteServer, no_azure_env: pytest.MonkeyPatch) -> Options:
    return Options(
        retry=RetryPolicy(backoff=0.01, max_backoff=0.2),
        azure=AzureOptions(connection_string=azurite.connection_string),
    )
