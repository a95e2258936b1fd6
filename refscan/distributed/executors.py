"""Where units run: `LocalExecutor` (this process, concurrently) or `RayExecutor` (Ray actors, lazily).

An executor is entered once per job with the job's options and requests; `run(unit)` does one unit and
returns its `Outcome`, raising the same refscan errors the unit raised. `slots` is how many units it wants in
flight at once.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType

from ..options import Options
from ..scan import ScanRequest
from .units import Outcome, Unit, Worker


class Executor(abc.ABC):
    """Runs the units of one job; use `async with executor.job(options, requests):` around `run` calls."""

    slots: int

    @abc.abstractmethod
    async def start(self, options: Options, requests: Sequence[ScanRequest]) -> None:
        """Get ready for the units of a job over `requests`."""

    @abc.abstractmethod
    async def run(self, unit: Unit) -> Outcome:
        """Do `unit` (concurrent calls up to `slots`)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release what `start` took (also after errors and cancellation)."""

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class LocalExecutor(Executor):
    """Units in this process, `slots` at a time, with one shared set of clients."""

    def __init__(self, slots: int = 16) -> None:
        self.slots = slots
        self._worker: Worker | None = None

    async def start(self, options: Options, requests: Sequence[ScanRequest]) -> None:
        self._worker = await Worker(options, requests).__aenter__()

    async def run(self, unit: Unit) -> Outcome:
        if self._worker is None:
            raise RuntimeError("LocalExecutor.run before start")
        return await self._worker.run(unit)

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.__aexit__(None, None, None)
