"""The one rule for running work concurrently: results in order, the first failure cancels the rest."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar, cast

import anyio

T = TypeVar("T")
A = TypeVar("A")


async def gather(calls: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Await every call concurrently and return their results in call order.

    The first call to raise cancels the others, and its exception is raised as itself (not wrapped in an
    exception group) once they have stopped.
    """
    pending = list(calls)
    results: list[object] = [None] * len(pending)
    failures: list[Exception] = []

    async def one(i: int, call: Callable[[], Awaitable[T]], scope: anyio.CancelScope) -> None:
        try:
            results[i] = await call()
        except Exception as exc:
            failures.append(exc)
            scope.cancel()

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(pending):
            tg.start_soon(one, i, call, tg.cancel_scope)
    if failures:
        raise failures[0]
    return cast("list[T]", results)


async def gather_map(fn: Callable[[A], Awaitable[T]], items: Iterable[A]) -> list[T]:
    """`gather` of `fn(item)` for each item."""
    return await gather([functools.partial(fn, item) for item in items])
