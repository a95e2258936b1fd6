"""Structured log events. Applications that configure structlog get refscan's events through it;
otherwise events go to the standard `logging` logger "refscan" (silent unless the application enables it).
Events carry counts, timings and redacted URIs only, never secrets."""

from __future__ import annotations

import logging
from typing import Any

import structlog

_stdlib_logger = structlog.wrap_logger(
    logging.getLogger("refscan"),
    processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
    wrapper_class=structlog.stdlib.BoundLogger,
)


def logger() -> Any:
    """The logger to emit refscan events on (structlog when configured, else stdlib logging)."""
    if structlog.is_configured():
        return structlog.get_logger("refscan")
    return _stdlib_logger
