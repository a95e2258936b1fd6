"""Guard: will the bytes each entry pins still be there? (docs/behaviour.md, Guard).

For every bucket the entries live in, its backend reads once what keeps objects alive (versioning, lifecycle
rules, locks); an entry some rule may act on costs one or two more lookups of its version (is it current,
since when noncurrent, its holds). `lifecycle.assess` gives the verdict. `hold=True` first places a hold on
every pinned version (`release=True` removes them), each entry on its own: one failure never stops the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import anyio

from .backends import Backend
from .errors import InvalidURI, RefscanError, Unsupported
from .lifecycle import GuardStatus, Verdict, assess, needs_state
from .manifest import ManifestEntry, ManifestSource, as_manifest
from .options import Options
from .protection import ObjectState
from .references import is_unchecked, recorded
from .session import Session
from .sync import synchronous
from .uri import RefURI

GUARD_STATUSES: tuple[GuardStatus, ...] = ("protected", "at-risk", "unpinned", "unknown")

HoldStatus = Literal["held", "already-held", "released", "not-held", "skipped", "failed"]
HOLD_STATUSES: tuple[HoldStatus, ...] = ("held", "already-held", "released", "not-held", "skipped", "failed")


@dataclass(frozen=True)
class GuardResult:
    """One entry's verdict: `status`, `reason` (naming the rule), the `rule`, the `earliest` day (ISO date,
    UTC) it can act, and the pinned `version`."""

    path: str
    ref: str | None
    status: GuardStatus
    reason: str
    rule: str | None = None
    earliest: str | None = None
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ref": self.ref,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "rule": self.rule,
            "earliest": self.earliest,
        }


@dataclass(frozen=True)
class HoldResult:
    """What `hold` / `release` did to one entry."""

    path: str
    ref: str | None
    status: HoldStatus
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ref": self.ref, "status": self.status, "reason": self.reason}


def _tally(statuses: tuple[str, ...], found: Counter[str]) -> dict[str, int]:
    return {s: found.get(s, 0) for s in statuses}


@dataclass(frozen=True)
class GuardReport:
    """All verdicts in path order (and, after `hold` / `release`, what was done to each entry). `ok`: every
    entry is protected or unknown; `strict_ok()`: every entry is protected; `holds_ok`: no hold failed."""

    results: tuple[GuardResult, ...]
    holds: tuple[HoldResult, ...] | None = None
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", _tally(GUARD_STATUSES, Counter(r.status for r in self.results)))

    @property
    def ok(self) -> bool:
        return all(r.status in ("protected", "unknown") for r in self.results)

    def strict_ok(self) -> bool:
        return all(r.status == "protected" for r in self.results)

    @property
    def holds_ok(self) -> bool:
        return all(h.status != "failed" for h in self.holds or ())

    def hold_counts(self) -> dict[str, int]:
        return _tally(HOLD_STATUSES, Counter(h.status for h in self.holds or ()))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "counts": self.counts}
        if self.holds is not None:
            out["holds_ok"] = self.holds_ok
            out["hold_counts"] = self.hold_counts()
            out["holds"] = [h.to_dict() for h in self.holds]
        out["results"] = [r.to_dict() for r in self.results]
        return out


class _Guard:
    """Checks (and holds) entries one by one through one session's backends."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now

    async def _target(self, entry: ManifestEntry) -> tuple[Backend, RefURI] | str:
        """The entry's backend and pinned URI, or why there is none to look at."""
        try:
            rec = recorded(entry, self.session.options)
        except InvalidURI as exc:
            return str(exc)
        return await self.session.backend(rec.uri.scheme), rec.uri

    async def check(self, entry: ManifestEntry) -> GuardResult:
        def result(verdict: Verdict, version: str | None = None) -> GuardResult:
            earliest = verdict.earliest.astimezone(timezone.utc).date().isoformat() if verdict.earliest else None
            return GuardResult(entry.path, entry.ref, verdict.status, verdict.reason, verdict.rule, earliest, version)

        if entry.ref is None:
            return result(Verdict("protected", "a stored file, kept in the local store"))
        if is_unchecked(entry):
            return result(Verdict("unpinned", "recorded with checksum=False: no version recorded"))
        try:
            target = await self._target(entry)
            if isinstance(target, str):
                return result(Verdict("unknown", target))
            backend, uri = target
            bucket = await backend.protection(uri.bucket)
            obj = ObjectState(uri.key, uri.version, entry.size)
            if needs_state(bucket, obj):
                obj = await backend.object_state(uri, entry.size, tags=any(r.needs_tags for r in bucket.rules or ()))
            return result(assess(bucket, obj, self.now), uri.version)
        except RefscanError as exc:
            return result(Verdict("unknown", str(exc)))

    async def hold(self, entry: ManifestEntry, on: bool) -> HoldResult:
        kind = "hold"

        def result(status: HoldStatus, reason: str) -> HoldResult:
            return HoldResult(entry.path, entry.ref, status, reason)

        if entry.ref is None:
            return result("skipped", "a stored file, kept in the local store")
        try:
            target = await self._target(entry) if not is_unchecked(entry) else "recorded with checksum=False"
            if isinstance(target, str):
                raise Unsupported(f"{target}: no version to hold")
            backend, uri = target
            kind = backend.hold_kind
            changed = await backend.set_hold(uri, on)
        except Unsupported as exc:
            if not on:
                return result("not-held", f"nothing to release: {exc}")
            return result("failed", str(exc))
        except RefscanError as exc:
            return result("failed", str(exc))
        if on:
            return result("held" if changed else "already-held", f"{kind} on version {uri.version}")
        return result("released" if changed else "not-held", f"{kind} on version {uri.version}")


async def aguard(
    source: ManifestSource,
    *,
    options: Options | None = None,
    hold: bool = False,
    release: bool = False,
    now: datetime | None = None,
    on_result: Callable[[GuardResult], None] | None = None,
) -> GuardReport:
    """One verdict per entry of `source` (a Manifest, a store version, entries, or a manifest JSON path):
    `protected`, `at-risk`, `unpinned` or `unknown`, each with its reason, judged at `now` (default: the
    current time).

    `hold=True` first places a hold on each entry's pinned version (S3 Object Lock legal hold, GCS temporary
    hold); `release=True` removes them. Both are idempotent and done entry by entry (`GuardReport.holds`):
    an entry that cannot be held is reported with why and the others are still held. `on_result` is called
    with each verdict as it is known (progress).
    """
    if hold and release:
        raise ValueError("hold and release exclude each other")
    entries = list(as_manifest(source))
    verdicts: list[GuardResult | None] = [None] * len(entries)
    holds: list[HoldResult | None] = [None] * len(entries)
    async with Session(options) as session:
        guard = _Guard(session, now or datetime.now(timezone.utc))

        async def run(each: Callable[[int], Any]) -> None:
            todo = iter(range(len(entries)))

            async def worker() -> None:
                for i in todo:
                    await each(i)

            async with anyio.create_task_group() as tg:
                for _ in range(min(len(entries), 2 * session.options.concurrency)):
                    tg.start_soon(worker)

        if hold or release:

            async def one_hold(i: int) -> None:
                holds[i] = await guard.hold(entries[i], hold)

            await run(one_hold)

        async def one_check(i: int) -> None:
            verdicts[i] = outcome = await guard.check(entries[i])
            if on_result is not None:
                on_result(outcome)

        await run(one_check)
    done_holds = tuple(h for h in holds if h is not None) if hold or release else None
    return GuardReport(tuple(r for r in verdicts if r is not None), done_holds)


guard = synchronous(aguard)
