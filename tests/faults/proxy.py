"""A fault-injecting HTTP reverse proxy for tests (aiohttp on 127.0.0.1, in a thread of its own).

Put it in front of a real server (moto S3, fake-gcs-server, nginx, an aiohttp app) and point the client at
`proxy.url`. A `FaultPlan` says what goes wrong; `proxy.configure(plan)` swaps it in between runs and zeroes
the counters, `proxy.stats()` says how many requests arrived and how many faults of each kind were injected.

Faults (`FaultPlan.kinds`), injected in a `rate` fraction of the requests `FaultPlan.match` selects:
- "503": 503 SlowDown (S3 XML / GCS JSON / plain text error body, by `flavor`); the server is not asked.
- "500": 500 InternalError, likewise.
- "429": 429 Too Many Requests with `Retry-After: <plan.retry_after>`.
  `retry_after_statuses` says which of these error answers carry Retry-After (429 only, by default).
- "reset": the request is forwarded; the response headers (with the full Content-Length) and half the body are
  sent, then the connection is reset (RST). A response without a body is reset before anything is sent.
- "stall": nothing is sent for `plan.stall` seconds (or until the client gives up), then the request is
  forwarded normally.
- "truncate": the response body is cut in half and sent with a Content-Length that matches the cut body, so
  the response looks complete at the HTTP level (a truncated XML/JSON listing page). Requests whose
  response has no body are forwarded untouched (and not counted as faults).
`window` (seconds, optional) limits faults to that long after `configure` (a storm that passes); `on_fault`
is called (in the proxy's thread) with each faulted request, once its upstream answer is in hand and before
anything reaches the client (a test can change the object between a cut and the client's retry); with
`record` the stats keep every request seen (with its headers). `ProxyStats.bytes_sent` counts the body bytes
sent to clients.
Independently of faults, `latency` delays every response and `chunk_delay` paces forwarded bodies (slow
downloads).

`cache` (a predicate on requests, optional): GET/HEAD answers of matching requests are fetched from upstream
once and replayed from then on; faults still apply to every delivery. Only for upstreams whose data does not
change while the proxy runs: moto renders a 1,000-key listing page in ~1 s of CPU, so twenty scans of a
5,000-object folder would otherwise spend minutes in the server rather than in the code under test.

Determinism: whether the n-th arrival of a request (method + raw path + raw query) is faulted, and how, is a
function of (`seed`, request, n) only, not of arrival order or timing: concurrent clients get the same faults
run after run, and different seeds give different (but reproducible) fault patterns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web
from yarl import URL

HOST = "127.0.0.1"
FAULT_KINDS = ("503", "500", "429", "reset", "stall", "truncate")
Flavor = Literal["s3", "gcs", "http"]

#: Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), plus the ones we recompute.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
_VERSIONS_QUERY = re.compile(r"(?:^|&)versions(?:=[^&]*)?(?:&|$)")


@dataclass(frozen=True)
class ProxyRequest:
    """What a `FaultPlan.match` predicate sees: the method and the raw (still percent-encoded) path and query,
    and the request headers (ignored by the fault decision)."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}?{self.query}"


def is_listing(req: ProxyRequest) -> bool:
    """S3 ListObjectsV2 / ListObjectVersions, or GCS objects.list."""
    if req.method != "GET":
        return False
    if "list-type=2" in req.query or _VERSIONS_QUERY.search(req.query):
        return True
    return req.path.startswith("/storage/v1/b/") and req.path.endswith("/o")


@dataclass(frozen=True)
class FaultPlan:
    """What the proxy does to the traffic of one run (see the module docstring)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("503", "500", "reset")
    seed: int = 0
    match: Callable[[ProxyRequest], bool] | None = None
    latency: float = 0.0
    stall: float = 30.0
    retry_after: str = "1"
    retry_after_statuses: tuple[int, ...] = (429,)
    chunk_size: int = 64 * 1024
    chunk_delay: float = 0.0
    max_faults: int | None = None
    window: float | None = None
    on_fault: Callable[[ProxyRequest], None] | None = None
    record: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {FAULT_KINDS}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {self.rate}")


@dataclass
class ProxyStats:
    """Traffic since the last `configure`: requests seen (faulted ones included) and faults by kind."""

    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    bytes_sent: int = 0
    seen: list[ProxyRequest] = field(default_factory=list)

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())

    def __str__(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.faults.items())) or "none"
        return f"{self.requests} requests, {self.total_faults} faults ({kinds})"


def _error_body(flavor: Flavor, status: int) -> tuple[bytes, str]:
    code, message = {
        503: ("SlowDown", "Please reduce your request rate."),
        500: ("InternalError", "We encountered an internal error. Please try again."),
        429: ("TooManyRequests", "Rate limit exceeded."),
    }[status]
    if flavor == "s3":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>"
        )
        return xml.encode(), "application/xml"
    if flavor == "gcs":
        body = {"error": {"code": status, "message": message, "errors": [{"reason": code, "message": message}]}}
        return json.dumps(body).encode(), "application/json"
    return message.encode(), "text/plain"


def _abort(request: web.Request) -> None:
    """Reset the client connection (RST, not FIN)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultProxy:
    """Reverse proxy from `url` to `upstream` with injected faults. Use as a context manager."""

    def __init__(
        self,
        upstream: str,
        *,
        flavor: Flavor = "http",
        plan: FaultPlan | None = None,
        cache: Callable[[ProxyRequest], bool] | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.flavor: Flavor = flavor
        self.cache = cache
        self._cache: dict[str, _Answer] = {}
        self.port = 0
        self._plan = plan or FaultPlan()
        self._lock = threading.Lock()
        self._stats = ProxyStats()
        self._seen: Counter[str] = Counter()
        self._started = time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- control (any thread) -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def configure(self, plan: FaultPlan) -> ProxyStats:
        """Use `plan` from now on; returns the stats of the previous plan and starts counting afresh."""
        with self._lock:
            old, self._stats = self._stats, ProxyStats()
            self._seen = Counter()
            self._plan = plan
            self._started = time.monotonic()
        return old

    def stats(self) -> ProxyStats:
        with self._lock:
            stats = self._stats
            return ProxyStats(
                stats.requests, Counter(stats.faults), stats.cache_hits, stats.bytes_sent, list(stats.seen)
            )

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            if not self._thread.is_alive():
                self._loop.close()

    # -- the server (proxy thread) ------------------------------------------------------------------------------

    async def _start(self) -> None:
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # resets are on purpose
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
            connector=aiohttp.TCPConnector(limit=256),
        )
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _decide(self, req: ProxyRequest) -> tuple[FaultPlan, str | None]:
        """Count the request and pick its fault (or None), deterministically (see the module docstring)."""
        with self._lock:
            plan = self._plan
            self._stats.requests += 1
            if plan.record:
                self._stats.seen.append(req)
            if plan.rate <= 0.0 or (plan.match is not None and not plan.match(req)):
                return plan, None
            if plan.window is not None and time.monotonic() - self._started > plan.window:
                return plan, None
            n = self._seen[req.key]
            self._seen[req.key] += 1
            if plan.max_faults is not None and self._stats.total_faults >= plan.max_faults:
                return plan, None
            digest = hashlib.sha256(f"{plan.seed}\0{req.key}\0{n}".encode()).digest()
            if int.from_bytes(digest[:8], "big") / 2.0**64 >= plan.rate:
                return plan, None
            kind = plan.kinds[int.from_bytes(digest[8:12], "big") % len(plan.kinds)]
            if kind != "truncate":  # counted once it is known to apply (a body to cut)
                self._stats.faults[kind] += 1
            return plan, kind

    def _count(self, kind: str) -> None:
        with self._lock:
            self._stats.faults[kind] += 1

    async def _send(self, response: web.StreamResponse, data: bytes) -> None:
        """Write body bytes to the client, counting them."""
        with self._lock:
            self._stats.bytes_sent += len(data)
        await response.write(data)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        req = ProxyRequest(request.method, path, query, tuple(request.headers.items()))
        plan, fault = self._decide(req)
        body = await request.read()
        if plan.latency:
            await asyncio.sleep(plan.latency)
        if fault in ("503", "500", "429"):
            if plan.on_fault is not None:
                plan.on_fault(req)
            status = int(fault)
            payload, content_type = _error_body(self.flavor, status)
            headers = {"Retry-After": plan.retry_after} if status in plan.retry_after_statuses else {}
            return web.Response(status=status, body=payload, content_type=content_type, headers=headers)
        if fault == "stall":
            await asyncio.sleep(plan.stall)  # cancelled when the client hangs up (handler_cancellation)

        cacheable = self.cache is not None and request.method in ("GET", "HEAD") and self.cache(req)
        if cacheable:
            cached = self._cache.get(req.key)
            if cached is None:
                async with self._forward(request, body) as upstream:
                    cached = self._cache[req.key] = await _Answer.read(upstream)
            else:
                with self._lock:
                    self._stats.cache_hits += 1
            return await self._answer(request, plan, fault, cached)
        async with self._forward(request, body) as upstream:
            if fault is not None:
                return await self._answer(request, plan, fault, await _Answer.read(upstream))
            response = _start_response(upstream.status, upstream.reason, upstream.headers.items())
            await response.prepare(request)
            if request.method != "HEAD" and upstream.status not in (204, 304):
                async for chunk in upstream.content.iter_chunked(plan.chunk_size):
                    await self._send(response, chunk)
                    if plan.chunk_delay:
                        await asyncio.sleep(plan.chunk_delay)
            await response.write_eof()
            return response

    def _forward(self, request: web.Request, body: bytes) -> Any:
        """The upstream request (an async context manager giving the aiohttp response)."""
        assert self._session is not None
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        if "Accept-Encoding" not in request.headers:
            headers.append(("Accept-Encoding", "identity"))  # or aiohttp asks for gzip on the client's behalf
        url = URL(self.upstream + request.raw_path, encoded=True)
        return self._session.request(request.method, url, headers=headers, data=body or None, allow_redirects=False)

    async def _answer(
        self, request: web.Request, plan: FaultPlan, fault: str | None, answer: _Answer
    ) -> web.StreamResponse:
        """Send a fully read upstream answer, applying a "reset" or "truncate" fault."""
        if fault is not None and plan.on_fault is not None:
            path, _, query = request.raw_path.partition("?")
            plan.on_fault(ProxyRequest(request.method, path, query, tuple(request.headers.items())))
        response = _start_response(answer.status, answer.reason, answer.headers)
        payload = answer.body if request.method != "HEAD" and answer.status not in (204, 304) else b""
        if fault == "reset":
            if not payload:
                _abort(request)
                return response
            response.content_length = len(payload)
            await response.prepare(request)
            await self._send(response, payload[: len(payload) // 2])
            _abort(request)
            return response
        if fault == "truncate" and payload:
            self._count("truncate")
            payload = payload[: len(payload) // 2]
            response.content_length = len(payload)
        await response.prepare(request)
        for start in range(0, len(payload), plan.chunk_size):
            await self._send(response, payload[start : start + plan.chunk_size])
            if plan.chunk_delay:
                await asyncio.sleep(plan.chunk_delay)
        await response.write_eof()
        return response


@dataclass(frozen=True)
class _Answer:
    """An upstream response read whole."""

    status: int
    reason: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    async def read(cls, upstream: aiohttp.ClientResponse) -> _Answer:
        body = await upstream.read() if upstream.method != "HEAD" else b""
        return cls(upstream.status, upstream.reason, tuple(upstream.headers.items()), body)


def _start_response(status: int, reason: str | None, headers: Iterable[tuple[str, str]]) -> web.StreamResponse:
    """A response carrying the upstream status and end-to-end headers (Content-Length kept, even for HEAD)."""
    response = web.StreamResponse(status=status, reason=reason)
    for name, value in headers:
        lower = name.lower()
        if lower == "content-length" and value.isdigit():
            response.content_length = int(value)
        elif lower not in _HOP_BY_HOP and lower not in ("date", "server"):
            response.headers.add(name, value)
    return response


@contextlib.contextmanager
def fault_proxy(
    upstream: str,
    *,
    flavor: Flavor = "http",
    plan: FaultPlan | None = None,
    cache: Callable[[ProxyRequest], bool] | None = None,
) -> Iterator[FaultProxy]:
    """`with fault_proxy(url, flavor="s3") as proxy:` — the proxy runs until the block exits."""
    with FaultProxy(upstream, flavor=flavor, plan=plan, cache=cache) as proxy:
        yield proxy
