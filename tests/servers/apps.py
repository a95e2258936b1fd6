"""Run small aiohttp apps (custom HTTP behaviour: 405 on HEAD, redirects, flaky servers...) for tests.

The app runs on 127.0.0.1 (kernel-chosen port) in a background thread with its own event loop, so it works
from sync tests and from async tests alike (the test's loop never runs the server).

    with serve_app(app) as base_url: ...            # context manager
    def test_x(serve_app): url = serve_app(app)      # fixture: factory, stopped after the test
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web

from .util import HOST, STARTUP_TIMEOUT


@contextlib.contextmanager
def serve_app(app: web.Application, *, host: str = HOST, timeout: float = STARTUP_TIMEOUT) -> Iterator[str]:
    """Serve ``app`` until the block exits; yields the base URL ``http://127.0.0.1:<port>`` (no slash)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="aiohttp-test-app", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = int(runner.addresses[0][1])
        return runner, port

    runner: web.AppRunner | None = None
    try:
        runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout)
        yield f"http://{host}:{port}"
    finally:
        try:
            if runner is not None:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()


@pytest.fixture(name="serve_app")
def serve_app_fixture() -> Iterator[Callable[[web.Application], str]]:
    """Factory: ``serve_app(app) -> base_url``; every app started in the test is stopped after it."""
    with contextlib.ExitStack() as stack:

        def start(app: web.Application) -> str:
            return stack.enter_context(serve_app(app))

        yield start
