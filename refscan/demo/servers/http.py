"""HTTP on 127.0.0.1: an aiohttp app (static files or any custom app) in a background thread of this process."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..process import HOST, STARTUP_TIMEOUT


@contextlib.contextmanager
def serve_app(app: web.Application, *, host: str = HOST, timeout: float = STARTUP_TIMEOUT) -> Iterator[str]:
    """Serve ``app`` until the block exits; yields the base URL ``http://127.0.0.1:<port>`` (no slash).

    The app runs on a kernel-chosen port in a background thread with its own event loop, so it serves
    sync and async callers alike (the caller's loop never runs the server).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="refscan-aiohttp-app", daemon=True)
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


@dataclass(frozen=True)
class StaticServer:
    """Files under `root` served at `base_url` (ETag, Last-Modified, Content-Length, HEAD and Range)."""

    base_url: str
    root: Path

    def url(self, relpath: str) -> str:
        """URL of a file under ``root`` (path segments percent-encoded, '/' kept)."""
        return f"{self.base_url}/{urllib.parse.quote(relpath.lstrip('/'), safe='/')}"

    def write(self, relpath: str, data: bytes | str) -> str:
        """Write a file under ``root`` (parents created) and return its URL."""
        path = self.root / relpath.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return self.url(relpath)


@contextlib.contextmanager
def serve_static(root: Path) -> Iterator[StaticServer]:
    """Serve the files under `root` over HTTP until the block exits."""
    app = web.Application()
    app.router.add_static("/", root)
    with serve_app(app) as base_url:
        yield StaticServer(base_url, root)
