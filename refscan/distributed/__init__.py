"""Scale-out and resumable jobs: the work of a scan or verify planned as units (`units`), run by an executor
(`LocalExecutor` here, `RayExecutor` on Ray), merged by the driver (`driver`), optionally recorded in a
checkpoint folder (`checkpoint`) so a killed job resumes where it stopped."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..manifest import ManifestEntry
from ..options import Options
from ..scan import ScanRequest
from ..verify import VerifyResult
from .driver import ScanJob, Sink, verify_shards
from .executors import Executor, LocalExecutor
from .ray_executor import RayExecutor

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "run_scan", "scan_all", "verify_all"]


async def run_scan(
    requests: Sequence[ScanRequest],
    sink: Sink,
    *,
    options: Options | None = None,
    executor: Executor | None = None,
    checkpoint: str | None = None,
    on_units: Callable[[int, int], None] | None = None,
) -> None:
    """Scan `requests` as planned units on `executor` (default: this process), passing `(request index,
    entries)` to `sink` as units finish (any order); with `checkpoint`, resumable from that folder."""
    job = ScanJob(
        requests, options or Options(), executor or LocalExecutor(), sink, checkpoint=checkpoint, on_units=on_units
    )
    await job.run()


async def scan_all(
    requests: Sequence[ScanRequest],
    *,
    options: Options | None = None,
    executor: Executor | None = None,
    checkpoint: str | None = None,
) -> list[list[ManifestEntry]]:
    """`run_scan`, collected: each request's entries sorted by path, in request order."""
    found: list[list[ManifestEntry]] = [[] for _ in requests]
    await run_scan(
        requests, lambda i, entries: found[i].extend(entries), options=options, executor=executor, checkpoint=checkpoint
    )
    for entries in found:
        entries.sort(key=lambda e: e.path)
    return found


async def verify_all(
    entries: Sequence[ManifestEntry],
    *,
    deep: bool = False,
    options: Options | None = None,
    executor: Executor | None = None,
    on_results: Callable[[list[VerifyResult]], None] | None = None,
) -> list[VerifyResult]:
    """Verify `entries` in shards on `executor` (default: this process); results in the entries' order."""
    return await verify_shards(
        entries, options or Options(), executor or LocalExecutor(), deep=deep, on_results=on_results
    )
