"""Run a coroutine function to completion from synchronous code, even inside a running event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import anyio

T = TypeVar("T")


def run_sync(func: Callable[[], Awaitable[T]]) -> T:
    """`func()` run on a fresh event loop: in this thread, or in a worker thread when this thread already
    runs a loop (Jupyter, async frameworks). Exceptions propagate unchanged."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(func)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refscan-sync") as pool:
        return pool.submit(anyio.run, func).result()
