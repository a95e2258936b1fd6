"""`Session`: the open backends that scan, verify and download share (one client per backend class).

Requests in flight are bounded by `options.concurrency` across everything done through one session.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType

import anyio

from .backends import Backend, backend_class
from .options import Options


class Session:
    """Use as `async with Session(options) as session:`; backends open on first use, close with it."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self.limiter = anyio.CapacityLimiter(self.options.concurrency)
        self._stack: AsyncExitStack | None = None
        self._open: dict[type[Backend], Backend] = {}
        self._lock = anyio.Lock()

    async def __aenter__(self) -> Session:
        self._stack = AsyncExitStack()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        self._open.clear()
        if stack is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()

    async def backend(self, scheme: str) -> Backend:
        """The open backend for `scheme`, created on first use and closed with the session."""
        if self._stack is None:
            raise RuntimeError("use the session inside 'async with Session(...) as session:'")
        cls = backend_class(scheme)
        async with self._lock:
            backend = self._open.get(cls)
            if backend is None:
                backend = await self._stack.enter_async_context(cls(self.options, self.limiter))
                self._open[cls] = backend
        return backend
