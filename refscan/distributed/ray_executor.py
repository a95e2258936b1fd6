"""`RayExecutor`: units done by Ray actors, one `Worker` (and one set of clients) per actor.

Ray is the extra `refscan[ray]`, imported only here and only when a job starts. The cluster is the one at
`address` (or Ray's own `RAY_ADDRESS`); without one, a local Ray is started for the job on 127.0.0.1 and
shut down after it. Each actor runs up to `per_worker` units at once (listing is I/O-bound); errors raised in
a unit come back as themselves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import anyio

from ..errors import BackendError, MissingDependency, RefscanError
from ..options import Options
from ..scan import ScanRequest
from .executors import Executor
from .units import Outcome, Unit, Worker


class _RayWorker:
    """The actor: a `Worker` opened on the actor's own event loop at its first unit."""

    def __init__(self, options: Options, requests: Sequence[ScanRequest]) -> None:
        self.options = options
        self.requests = list(requests)
        self.worker: Worker | None = None
        self.opening: anyio.Lock | None = None

    async def run(self, unit: Unit) -> Outcome:
        if self.opening is None:
            self.opening = anyio.Lock()
        async with self.opening:
            if self.worker is None:
                self.worker = await Worker(self.options, self.requests).__aenter__()
        return await self.worker.run(unit)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency(
            f"running on Ray needs the 'ray' package ({exc.name or exc}): pip install 'refscan[ray]'"
        ) from exc
    return ray


class RayExecutor(Executor):
    """Units on Ray: `workers` actors (default: one per CPU of the cluster), `per_worker` units each."""

    def __init__(self, address: str | None = None, *, workers: int | None = None, per_worker: int = 8) -> None:
        self.address = address
        self.workers = workers
        self.per_worker = per_worker
        self.slots = per_worker
        self._actors: list[Any] = []
        self._busy: list[int] = []
        self._started = False

    async def start(self, options: Options, requests: Sequence[ScanRequest]) -> None:
        ray = _ray()
        await anyio.to_thread.run_sync(self._connect, ray)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = self.workers or max(1, cpus)
        actor = ray.remote(num_cpus=0)(_RayWorker).options(max_concurrency=self.per_worker)
        self._actors = [actor.remote(options, requests) for _ in range(count)]
        self._busy = [0] * count
        self.slots = count * self.per_worker

    def _connect(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        settings: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if address is None:  # a local Ray for this job, kept on loopback
            settings |= {"include_dashboard": False, "num_cpus": self.workers or os.cpu_count() or 1}
            settings["_node_ip_address"] = "127.0.0.1"
        try:
            ray.init(address=address, **settings)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
            raise BackendError(f"could not start or join Ray ({type(exc).__name__}: {exc})") from None
        self._started = True

    async def run(self, unit: Unit) -> Outcome:
        ray = _ray()
        i = self._busy.index(min(self._busy))
        self._busy[i] += 1
        try:
            outcome: Outcome = await self._actors[i].run.remote(unit)
            return outcome
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, (RefscanError, ValueError)):
                raise cause from None
            raise BackendError(f"a Ray task failed: {type(cause).__name__}: {cause}") from None
        except ray.exceptions.RayError as exc:
            raise BackendError(f"Ray failed: {type(exc).__name__}: {exc}") from None
        finally:
            self._busy[i] -= 1

    async def stop(self) -> None:
        actors, self._actors = self._actors, []
        if not actors and not self._started:
            return
        ray = _ray()
        for actor in actors:
            ray.kill(actor)
        if self._started:
            self._started = False
            await anyio.to_thread.run_sync(ray.shutdown)
