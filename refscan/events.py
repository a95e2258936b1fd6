"""Structured log events. Applications that configure structlog get refscan's events through it;
otherwise events go to the standard `logging` logger "refscan" (silent unless the application enables it).
Events carry counts, timings and redacted URIs only, never secrets.

Without structlog configured, an event below the "refscan" logger's level costs one level check: nothing is
bound or rendered (requests log an event each, so this is on the hot path).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

_LOGGER = logging.getLogger("refscan")
_stdlib_logger = structlog.wrap_logger(
    _LOGGER,
    processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
    wrapper_class=structlog.stdlib.BoundLogger,
)


class _Gated:
    """A structlog logger behind stdlib level checks, made before any binding or rendering."""

    def __init__(self, bound: Any) -> None:
        self._bound = bound

    def bind(self, **context: Any) -> _Gated:
        return _Gated(self._bound.bind(**context))

    def debug(self, event: str, **fields: Any) -> None:
        if _LOGGER.isEnabledFor(logging.DEBUG):
            self._bound.debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        if _LOGGER.isEnabledFor(logging.INFO):
            self._bound.info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        if _LOGGER.isEnabledFor(logging.WARNING):
            self._bound.warning(event, **fields)


_GATED = _Gated(_stdlib_logger)


def logger() -> Any:
    """The logger to emit refscan events on (structlog when configured, else stdlib logging)."""
    if structlog.is_configured():
        return structlog.get_logger("refscan")
    return _GATED
