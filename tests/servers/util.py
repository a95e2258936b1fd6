"""CI policy for the real-server fixtures (skip locally, fail under CI), plus the launch plumbing re-exported
from `refscan.demo.process` (where it lives, shared with `refscan demo`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from refscan.demo.process import (
    HOST,
    STARTUP_TIMEOUT,
    ManagedProcess,
    ServerStartError,
    free_port,
    http_status,
    unique_name,
)

__all__ = [
    "HOST",
    "STARTUP_TIMEOUT",
    "ManagedProcess",
    "ServerStartError",
    "find_executable",
    "free_port",
    "http_status",
    "in_ci",
    "start_or_unavailable",
    "unavailable",
    "unique_name",
]

T = TypeVar("T")


def in_ci() -> bool:
    """True when running under CI (``CI=true``, also accepts ``1``/``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> NoReturn:
    """A server cannot run: fail under CI, skip (with the reason) on a developer machine."""
    if in_ci():
        pytest.fail(f"[CI=true] test server unavailable: {reason}", pytrace=False)
    pytest.skip(f"test server unavailable: {reason}")


def start_or_unavailable(what: str, start: Callable[[], T]) -> T:
    """Run a server's start function; on ServerStartError/ImportError, fail (CI) or skip (local)."""
    try:
        return start()
    except (ServerStartError, ImportError) as e:
        reason = f"{what}: {e}"
    unavailable(reason)  # outside the except block: no chained traceback in the report


def find_executable(name: str, *fallbacks: str) -> str | None:
    """`name` on PATH, else the first executable fallback path."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def isolated_env(home: Path) -> dict[str, str]:
    """Environment for a refscan subprocess: none of the developer's cloud settings, a private store at `home`."""
    drop = ("AWS_", "GOOGLE_", "STORAGE_EMULATOR", "REFSCAN")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | {
        "REFSCAN_HOME": str(home),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
