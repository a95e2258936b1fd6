"""The one retry loop of the backends that do their own requests (HTTP, GCS), on tenacity.

A request attempt raises `Retryable` for a failure worth another try (throttling, 5xx, timeout, reset);
`retrying` waits by the `RetryPolicy` (exponential backoff with jitter, at least the server's Retry-After, capped)
and tries again, up to `max_attempts` in all, then re-raises the last `Retryable` for the backend to map.
The caller holds its concurrency limiter inside an attempt only, never while waiting.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import tenacity

from .events import logger
from .options import RetryPolicy

T = TypeVar("T")


class Retryable(Exception):
    """A failed attempt that may succeed when tried again; `failure` says what happened (no secrets)."""

    def __init__(self, failure: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(failure)
        self.failure = failure
        self.retry_after = retry_after
        self.status = status


def backoff_delay(policy: RetryPolicy, attempt: int, retry_after: float | None = None) -> float:
    """The wait after failed attempt number `attempt` (1-based): the exponential backoff, but never shorter
    than the server's Retry-After (a server asking for 1 s again and again must not use up every attempt
    within a few seconds of a storm), capped at `max_backoff`."""
    delay = min(policy.max_backoff, policy.backoff * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(policy.max_backoff, retry_after))
    return max(0.0, delay)


async def retrying(policy: RetryPolicy, attempt: Callable[[], Awaitable[T]], *, event: str, **context: object) -> T:
    """`await attempt()` until it returns or raises something other than `Retryable`; after
    `policy.max_attempts` failed attempts the last `Retryable` is raised. Each wait is logged as `event`.

    The first attempt runs before tenacity is set up (that costs ~70 µs, more than a request's own CPU);
    a retryable failure of it is replayed to tenacity as its attempt 1, so attempts and waits are the same."""
    try:
        return await attempt()
    except Retryable as exc:
        first = [exc]

    async def replay_then_attempt() -> T:
        if first:
            raise first.pop()
        return await attempt()

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = exc.retry_after if isinstance(exc, Retryable) else None
        return backoff_delay(policy, state.attempt_number, retry_after)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger().debug(event, attempt=state.attempt_number, reason=str(exc), delay=round(delay, 3), **context)

    retryer = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max(1, policy.max_attempts)),
        wait=wait,
        retry=tenacity.retry_if_exception_type(Retryable),
        before_sleep=before_sleep,
        sleep=anyio.sleep,
        reraise=True,
    )
    return await retryer(replay_then_attempt)
