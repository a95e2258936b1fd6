"""Synchronous twins of the async API, made by one mechanism: `synchronous(afunc)`."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import anyio

T = TypeVar("T")
P = ParamSpec("P")


def run_sync(func: Callable[[], Awaitable[T]]) -> T:
    """`func()` run on a fresh event loop: in this thread, or in a worker thread when this thread already
    runs a loop (Jupyter, async frameworks). Exceptions propagate unchanged."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False  # run outside this handler, or every error would chain "no running event loop"
    else:
        in_loop = True
    if not in_loop:
        return anyio.run(func)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refscan-sync") as pool:
        return pool.submit(anyio.run, func).result()


def synchronous(afunc: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """The blocking twin of coroutine function `afunc` (`ascan` → `scan`): same parameters, same result,
    safe to call while an event loop runs in this thread."""

    @functools.wraps(afunc)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(lambda: afunc(*args, **kwargs))

    name = afunc.__name__.removeprefix("a")
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = f"Blocking `{afunc.__name__}` (safe inside a running event loop).\n\n{afunc.__doc__ or ''}"
    return wrapper
