"""A keep-alive TCP proxy on 127.0.0.1 that emulates a round-trip time and counts HTTP requests.

This kernel has no `tc netem`, so latency is added in user space: every chunk is forwarded `rtt / 2` after it
arrived, in each direction (order kept), and a new connection waits one `rtt` before its first byte moves (a
TCP handshake's worth). Connections stay open as long as both ends keep them open, so connection reuse is
measured as on a real network.

Requests are counted as client "turns": the first bytes a client sends after the server last spoke (HTTP/1.1
clients here do not pipeline, and seeding traffic bypasses the proxy, so `Expect: 100-continue` never
splits a request). An optional `rewrite` hook may edit the first chunk of each request (see `gcs_page_cap`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

HOST = "127.0.0.1"
READ_SIZE = 1 << 18

Rewrite = Callable[[bytes], bytes]


@dataclass
class Counts:
    """Traffic through a proxy since its last `reset`."""

    requests: int = 0
    connections: int = 0


class DelayProxy:
    """Forward 127.0.0.1:`port` to `upstream` with `rtt` seconds of round trip; run it in its own thread.

    Use as a context manager (`with DelayProxy(...) as proxy: proxy.url`); `reset()` returns and clears the
    counts, so one proxy can measure many contenders in turn.
    """

    def __init__(self, upstream_host: str, upstream_port: int, rtt: float, *, rewrite: Rewrite | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.half = rtt / 2
        self.rtt = rtt
        self.rewrite = rewrite
        self.port = 0
        self._counts = Counts()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> DelayProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, HOST, 0), self._loop).result(
            10
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread."""

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> Counts:
        """The counts since the last reset, and start counting afresh."""
        with self._lock:
            counts, self._counts = self._counts, Counts()
        return counts

    def _count(self, *, request: bool = False, connection: bool = False) -> None:
        with self._lock:
            self._counts.requests += request
            self._counts.connections += connection

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # asyncio keeps only weak references to tasks: once a connection closes, the waits of its tasks form an
        # unreachable cycle that the garbage collector may destroy mid-flight
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(client_r, client_w)
        finally:
            self._tasks.discard(task)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._count(connection=True)
        try:
            await asyncio.sleep(self.rtt)  # the handshake's round trip
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        # True while the client may start a new request (the server spoke last, or nobody spoke yet)
        turn = [True]
        with contextlib.suppress(asyncio.CancelledError):  # stop(): asyncio would log a cancelled handler
            await asyncio.gather(
                self._pipe(client_r, server_w, turn, upstream=True),
                self._pipe(server_r, client_w, turn, upstream=False),
                return_exceptions=True,
            )
        for w in (client_w, server_w):
            w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, turn: list[bool], *, upstream: bool
    ) -> None:
        """Copy `reader` to `writer`, each chunk `rtt / 2` after it arrived."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def send() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()

        sender = asyncio.create_task(send())
        self._tasks.add(sender)
        sender.add_done_callback(self._tasks.discard)
        try:
            while data := await reader.read(READ_SIZE):
                if upstream and turn[0]:
                    turn[0] = False
                    self._count(request=True)
                    if self.rewrite is not None:
                        data = self.rewrite(data)
                elif not upstream:
                    turn[0] = True
                queue.put_nowait((loop.time() + self.half, data))
        except OSError:
            pass
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(OSError):
                await sender


_GCS_LIST = re.compile(rb"^GET (/storage/v1/b/[^/?\s]+/o)(\?[^\s]*)? HTTP/")
_MAX_RESULTS = re.compile(rb"([?&])maxResults=(\d+)")


def gcs_page_cap(data: bytes, cap: int = 1000) -> bytes:
    """Give fake-gcs-server GCS's page cap: objects.list answers at most `cap` items per page on real GCS,
    while the emulator returns everything in one page when `maxResults` is absent or large. The request line
    of a list request gets `maxResults` set to at most `cap`; everything else passes unchanged."""
    m = _GCS_LIST.match(data)
    if m is None:
        return data
    query = m.group(2) or b""
    if _MAX_RESULTS.search(query):
        query = _MAX_RESULTS.sub(lambda q: q.group(1) + b"maxResults=%d" % min(int(q.group(2)), cap), query)
    else:
        query = (query + b"&" if query else b"?") + b"maxResults=%d" % cap
    return data[: m.start(1)] + m.group(1) + query + data[m.end(2) if m.group(2) else m.end(1) :]
