"""Reliability under faults (issue 10): the real S3, GCS and HTTP servers behind `tests.faults.FaultProxy`.

- With 10% of requests failing as 503 / 500 / connection reset, scans of a 5,000-object S3 folder, a GCS folder
  listed in pages of 20, and 200 HTTP URLs return exactly the fault-free result, 20 runs in a row (a different,
  seeded fault pattern each run); the faults absorbed are printed (`pytest -rP`) and recorded as properties.
- At 100% failure (503, 500, resets, stalls, 429) scans raise `BackendError` within a deadline set by small
  `max_attempts` / timeouts; Retry-After is honoured; a few stalled requests time out and are retried.
- Consistency: truncated listing pages (XML/JSON cut short with a matching Content-Length) never make a shorter
  result: the scan retries to the full result or raises.
- Cancellation: `anyio.fail_after` / task cancel stop a scan promptly, with no task left and no request sent
  afterwards; an interrupted download leaves no `.part` file; SIGINT, SIGTERM or SIGHUP to the CLI leaves no
  partial `-o` file, no `.part` file and the store as it was; `refscan --timeout` does the same at its deadline.

There is no whole-operation deadline in `Options`: callers bound a call with `anyio.fail_after` (or
`asyncio.timeout`), which these tests show to be prompt and clean; each request is bounded by its timeouts and
`max_attempts`. The CLI's `--timeout` is that deadline for a whole command. The S3 proxy replays moto's answers
after the first run (see `FaultProxy.cache`): faults are still injected on every delivery, but twenty
5,000-object scans no longer wait on moto's ~1 s per listing page.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from botocore.retries.standard import ExponentialBackoff

import refscan
from refscan import BackendError, GCSOptions, HTTPOptions, Manifest, ManifestEntry, Options, RefscanError, S3Options
from refscan.backends.gcs import GCSBackend
from refscan.options import RetryPolicy
from refscan.scan import Scanner
from tests.faults import FaultPlan, FaultProxy, ProxyStats, is_listing
from tests.servers import GCSServer, NginxServer, S3Server, unique_name
from tests.servers.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.servers.s3 import S3_BIG_OBJECTS as S3_OBJECTS

pytestmark = pytest.mark.integration

RUNS = 20
RATE = 0.10
MIX = ("503", "500", "reset")
GCS_OBJECTS = 300
GCS_PAGE = 20
HTTP_URLS = 200


def everything(_: object) -> bool:
    return True


def report(record_property: Callable[[str, object], None], scenario: str, runs: Sequence[ProxyStats]) -> None:
    """Print and record the faults absorbed by each run of `scenario`."""
    per_run = [s.total_faults for s in runs]
    kinds: Counter[str] = Counter()
    for s in runs:
        kinds.update(s.faults)
    requests = sum(s.requests for s in runs)
    line = (
        f"[faults] {scenario}: {len(runs)} runs, {requests} requests, {sum(per_run)} faults absorbed "
        f"({', '.join(f'{k}={v}' for k, v in sorted(kinds.items()))}); per run: {per_run}"
    )
    print(line)
    record_property(f"faults_{scenario.split()[0].lower()}", line)


def assert_mix_exercised(runs: Sequence[ProxyStats]) -> None:
    kinds: Counter[str] = Counter()
    for s in runs:
        kinds.update(s.faults)
    assert set(kinds) == set(MIX), f"not every kind of fault was injected: {kinds}"


def runs_under_faults(proxy: FaultProxy, scan: Callable[[], object], baseline: object) -> list[ProxyStats]:
    """RUNS scans at RATE faults (seeded per run), each asserted equal to the fault-free `baseline`."""
    runs: list[ProxyStats] = []
    for run in range(RUNS):
        proxy.configure(FaultPlan(rate=RATE, kinds=MIX, seed=run))
        result = scan()
        stats = proxy.stats()
        assert result == baseline, f"run {run} ({stats}) differs from the fault-free scan"
        runs.append(stats)
    return runs


# -- servers behind proxies -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    # moto renders a 1,000-key page in ~1 s of CPU: replay its answers so 20 runs test refscan, not moto.
    with FaultProxy(s3_server.endpoint_url, flavor="s3", cache=everything) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def gcs_proxy(gcs_server: GCSServer) -> Iterator[FaultProxy]:
    with FaultProxy(gcs_server.endpoint_url, flavor="gcs") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def http_proxy(nginx_server: NginxServer) -> Iterator[FaultProxy]:
    with FaultProxy(nginx_server.base_url, flavor="http") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def gcs_folder(gcs_server: GCSServer) -> str:
    bucket = gcs_server.create_bucket()
    objects = {f"ds/shard-{i % 4}/item-{i:04d}.json": f'{{"i": {i}}}'.encode() for i in range(GCS_OBJECTS)}
    gcs_server.upload_many(bucket, objects)
    return bucket


@pytest.fixture(scope="module")
def http_paths(nginx_server: NginxServer) -> list[str]:
    folder = unique_name("faults")
    return [
        nginx_server.write(f"{folder}/f{i:03d}.txt", f"file {i}\n" * (i + 1)).split("/", 3)[3] for i in range(HTTP_URLS)
    ]


@pytest.fixture
def fast_botocore_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore waits rand(0, 1) s before its first retry (2**n after that) and has no setting for it: scale its
    waits down to 5% so twenty runs stay quick. The retry decisions (what, how often) are botocore's own."""
    original = ExponentialBackoff.delay_amount

    def quick(self: ExponentialBackoff, context: Any) -> float:
        return float(original(self, context)) * 0.05

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", quick)


@pytest.fixture
def small_gcs_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many listing requests (pages of 20)."""
    monkeypatch.setattr(GCSBackend, "page_size", GCS_PAGE)


def s3_options(proxy: FaultProxy, **kwargs: Any) -> Options:
    s3 = S3Options(
        endpoint_url=proxy.url,
        region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        addressing_style="path",
        **kwargs,
    )
    return Options(s3=s3)


def gcs_options(proxy: FaultProxy, *, backoff: float = 0.01, **kwargs: Any) -> Options:
    """GCS through `proxy`; retry waits from ~`backoff` s (short by default, so twenty runs stay quick)."""
    return Options(retry=RetryPolicy(backoff=backoff), gcs=GCSOptions(endpoint_url=proxy.url, token="anon", **kwargs))


def http_options(**kwargs: Any) -> Options:
    settings: dict[str, Any] = {"max_attempts": 8, "backoff": 0.01, "max_backoff": 0.2, "timeout": 10.0}
    settings.update(kwargs)
    return Options(http=HTTPOptions(**settings))


def scan_urls(urls: Sequence[str], options: Options) -> list[list[ManifestEntry]]:
    async def run() -> list[list[ManifestEntry]]:
        async with Scanner(options) as scanner:
            return await scanner.scan_many(urls)

    return anyio.run(run)


# -- 10% faults, 20 runs, exactly the fault-free result ---------------------------------------------------------


def test_s3_folder_of_5000_under_10_percent_faults(
    s3_proxy: FaultProxy,
    s3_big: str,
    s3_env: dict[str, str],
    fast_botocore_backoff: None,
    record_property: Callable[[str, object], None],
) -> None:
    uri = f"s3://{s3_big}/big"
    options = s3_options(s3_proxy)
    s3_proxy.configure(FaultPlan())
    baseline = refscan.scan(uri, options=options)
    assert len(baseline) == S3_OBJECTS
    assert {e.path for e in baseline} == {f"part-{i % 10}/obj-{i:05d}.bin" for i in range(S3_OBJECTS)}
    assert s3_proxy.stats().total_faults == 0

    runs = runs_under_faults(s3_proxy, lambda: refscan.scan(uri, options=options), baseline)
    report(record_property, f"S3 folder of {S3_OBJECTS} objects", runs)
    assert_mix_exercised(runs)


def test_gcs_folder_under_10_percent_faults(
    gcs_proxy: FaultProxy,
    gcs_folder: str,
    small_gcs_pages: None,
    record_property: Callable[[str, object], None],
) -> None:
    uri = f"gs://{gcs_folder}/ds"
    options = gcs_options(gcs_proxy, max_attempts=8)
    gcs_proxy.configure(FaultPlan())
    baseline = refscan.scan(uri, options=options)
    assert len(baseline) == GCS_OBJECTS
    assert gcs_proxy.stats().requests >= GCS_OBJECTS // GCS_PAGE  # really paged

    runs = runs_under_faults(gcs_proxy, lambda: refscan.scan(uri, options=options), baseline)
    report(record_property, f"GCS folder of {GCS_OBJECTS} objects (pages of {GCS_PAGE})", runs)
    assert_mix_exercised(runs)


def test_200_http_urls_under_10_percent_faults(
    http_proxy: FaultProxy, http_paths: list[str], record_property: Callable[[str, object], None]
) -> None:
    urls = [f"{http_proxy.url}/{p}" for p in http_paths]
    options = http_options()
    http_proxy.configure(FaultPlan())
    baseline = scan_urls(urls, options)
    assert [len(r) for r in baseline] == [1] * HTTP_URLS
    assert all(r[0].extra.get("etag") and r[0].size for r in baseline)

    runs = runs_under_faults(http_proxy, lambda: scan_urls(urls, options), baseline)
    report(record_property, f"HTTP {HTTP_URLS} URLs", runs)
    assert_mix_exercised(runs)


def test_http_range_fallback_under_faults(serve_app: Callable[[web.Application], str]) -> None:
    """Servers that refuse HEAD are asked `GET Range: bytes=0-0`: a reset in that 1-byte body is absorbed too."""

    async def handler(request: web.Request) -> web.Response:
        if request.method == "HEAD":
            return web.Response(status=405)
        size = 1000 + int(request.path.rsplit("f", 1)[-1])
        headers = {"Content-Range": f"bytes 0-0/{size}", "ETag": f'"etag-{size}"'}
        return web.Response(status=206, body=b"x", headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    with FaultProxy(serve_app(app)) as proxy:
        urls = [f"{proxy.url}/data/f{i}" for i in range(40)]
        baseline = scan_urls(urls, http_options())
        assert [r[0].size for r in baseline] == [1000 + i for i in range(40)]
        resets = 0
        for seed in range(5):
            proxy.configure(FaultPlan(rate=0.3, kinds=("reset", "503"), seed=seed, match=lambda r: r.method == "GET"))
            assert scan_urls(urls, http_options()) == baseline
            resets += proxy.stats().faults["reset"]
        assert resets > 0


# -- 100% failure: raise within the deadline ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["503", "500", "reset", "stall"])
def test_s3_gives_up_within_the_deadline(kind: str, s3_proxy: FaultProxy, s3_big: str, s3_env: dict[str, str]) -> None:
    options = s3_options(s3_proxy, max_attempts=3, retry_mode="standard", read_timeout=0.5, connect_timeout=0.5)
    s3_proxy.configure(FaultPlan(rate=1.0, kinds=(kind,), stall=30, match=is_listing))
    started = time.monotonic()
    with pytest.raises(BackendError, match="ListObjectsV2") as info:
        refscan.scan(f"s3://{s3_big}/big/part-1/", options=options)
    elapsed = time.monotonic() - started
    stats = s3_proxy.stats()
    print(f"[faults] S3 100% {kind}: {type(info.value).__name__} after {elapsed:.2f} s, {stats}")
    assert elapsed < 8.0  # 3 attempts: botocore waits < 1 s, then < 2 s; stalls cost read_timeout each
    assert 3 <= stats.total_faults <= 6  # botocore's 3 attempts (a reset may be retried once by the pool)


@pytest.mark.parametrize("kind", ["503", "500", "reset", "stall", "429"])
def test_gcs_gives_up_within_the_deadline(kind: str, gcs_proxy: FaultProxy, gcs_folder: str) -> None:
    options = gcs_options(gcs_proxy, backoff=RetryPolicy().backoff, max_attempts=3, timeout=0.5)
    gcs_proxy.configure(FaultPlan(rate=1.0, kinds=(kind,), stall=30, retry_after="1"))
    started = time.monotonic()
    with pytest.raises(BackendError, match="gave up after 3 attempts"):
        refscan.scan(f"gs://{gcs_folder}/ds/", options=options)
    elapsed = time.monotonic() - started
    stats = gcs_proxy.stats()
    print(f"[faults] GCS 100% {kind}: BackendError after {elapsed:.2f} s, {stats}")
    assert stats.total_faults == 3
    # default backoff: waits of 0.25-0.5 s then 0.5-1 s; Retry-After: 1 replaces them (2 s in all)
    assert (2.0 <= elapsed < 4.0) if kind == "429" else elapsed < 4.0


@pytest.mark.parametrize("kind", ["503", "500", "reset", "stall", "429"])
def test_http_gives_up_within_the_deadline(kind: str, http_proxy: FaultProxy, http_paths: list[str]) -> None:
    options = http_options(max_attempts=3, backoff=0.05, max_backoff=5.0, timeout=0.5)
    http_proxy.configure(FaultPlan(rate=1.0, kinds=(kind,), stall=30, retry_after="1"))
    started = time.monotonic()
    with pytest.raises(BackendError, match="failed after 3 attempts"):
        refscan.scan(f"{http_proxy.url}/{http_paths[0]}", options=options)
    elapsed = time.monotonic() - started
    stats = http_proxy.stats()
    print(f"[faults] HTTP 100% {kind}: BackendError after {elapsed:.2f} s, {stats}")
    # aiohttp resends a request once by itself when a reused keep-alive connection is reset
    assert (3 <= stats.total_faults <= 6) if kind == "reset" else stats.total_faults == 3
    assert (2.0 <= elapsed < 3.5) if kind == "429" else elapsed < 2.5


def test_retry_after_is_honoured_then_the_scan_succeeds(
    http_proxy: FaultProxy, gcs_proxy: FaultProxy, http_paths: list[str], gcs_folder: str
) -> None:
    url = f"{http_proxy.url}/{http_paths[1]}"
    options = http_options(max_backoff=5.0)
    http_proxy.configure(FaultPlan())
    want = refscan.scan(url, options=options)
    http_proxy.configure(FaultPlan(rate=1.0, kinds=("429",), retry_after="1", max_faults=1))
    started = time.monotonic()
    assert refscan.scan(url, options=options) == want
    assert 1.0 <= time.monotonic() - started < 3.0
    assert http_proxy.stats().faults == Counter({"429": 1})

    uri = f"gs://{gcs_folder}/ds/shard-0/item-0000.json"
    gcs_proxy.configure(FaultPlan())
    want = refscan.scan(uri, options=gcs_options(gcs_proxy))
    gcs_proxy.configure(FaultPlan(rate=1.0, kinds=("429",), retry_after="1", max_faults=1))
    started = time.monotonic()
    assert refscan.scan(uri, options=gcs_options(gcs_proxy)) == want
    assert 1.0 <= time.monotonic() - started < 3.0


def test_stalled_requests_time_out_and_are_retried(
    s3_proxy: FaultProxy,
    s3_big: str,
    s3_env: dict[str, str],
    gcs_proxy: FaultProxy,
    gcs_folder: str,
    small_gcs_pages: None,
    http_proxy: FaultProxy,
    http_paths: list[str],
) -> None:
    """A few stalled requests among many: each times out after the per-request timeout and is retried."""
    uri = f"s3://{s3_big}/big/part-3/"
    options = s3_options(s3_proxy, read_timeout=1.0)
    s3_proxy.configure(FaultPlan())
    want = refscan.scan(uri, options=options)
    s3_proxy.configure(FaultPlan(rate=1.0, kinds=("stall",), match=is_listing, max_faults=1, stall=30))
    assert refscan.scan(uri, options=options) == want
    assert s3_proxy.stats().faults == Counter({"stall": 1})

    uri = f"gs://{gcs_folder}/ds/"
    gcs_proxy.configure(FaultPlan())
    want = refscan.scan(uri, options=gcs_options(gcs_proxy))
    gcs_proxy.configure(FaultPlan(rate=0.2, kinds=("stall",), max_faults=3, stall=30))
    assert refscan.scan(uri, options=gcs_options(gcs_proxy, timeout=0.5)) == want
    assert gcs_proxy.stats().faults == Counter({"stall": 3})

    urls = [f"{http_proxy.url}/{p}" for p in http_paths[:50]]
    http_proxy.configure(FaultPlan())
    want_urls = scan_urls(urls, http_options())
    http_proxy.configure(FaultPlan(rate=0.2, kinds=("stall",), max_faults=5, stall=30))
    assert scan_urls(urls, http_options(timeout=0.5)) == want_urls
    assert http_proxy.stats().faults == Counter({"stall": 5})


# -- consistency: a truncated listing page never becomes a shorter manifest --------------------------------------


def outcome(scan: Callable[[int], list[ManifestEntry]], full: list[ManifestEntry]) -> str:
    """ "full" or "raised <error>" for a scan with 8 attempts; fails the test on any other result."""
    try:
        entries = scan(8)
    except RefscanError as exc:
        return f"raised {type(exc).__name__}"
    assert entries == full, f"a truncated page changed the result: {len(entries)} entries instead of {len(full)}"
    return "full"


def test_truncated_listing_pages_never_shorten_a_scan(
    s3_proxy: FaultProxy,
    s3_big: str,
    s3_env: dict[str, str],
    gcs_proxy: FaultProxy,
    gcs_folder: str,
    small_gcs_pages: None,
    fast_botocore_backoff: None,
    record_property: Callable[[str, object], None],
) -> None:
    s3_uri, gcs_uri = f"s3://{s3_big}/big", f"gs://{gcs_folder}/ds"
    scans: dict[str, tuple[FaultProxy, Callable[[int], list[ManifestEntry]]]] = {
        "S3": (s3_proxy, lambda n: refscan.scan(s3_uri, options=s3_options(s3_proxy, max_attempts=n))),
        "GCS": (gcs_proxy, lambda n: refscan.scan(gcs_uri, options=gcs_options(gcs_proxy, max_attempts=n))),
    }
    for name, (proxy, scan) in scans.items():
        proxy.configure(FaultPlan())
        full = scan(8)
        outcomes: Counter[str] = Counter()
        truncated = 0
        for seed in range(3):
            proxy.configure(FaultPlan(rate=0.3, kinds=("truncate",), match=is_listing, seed=seed))
            outcomes[outcome(scan, full)] += 1
            truncated += proxy.stats().faults["truncate"]
        proxy.configure(FaultPlan(rate=1.0, kinds=("truncate",), match=is_listing))
        with pytest.raises(BackendError):
            scan(3)
        assert proxy.stats().faults["truncate"] == 3  # every attempt at the first page was cut
        line = f"[faults] {name} truncated listing pages: {truncated} truncated in 3 runs -> {dict(outcomes)}"
        print(line)
        record_property(f"truncation_{name.lower()}", line)
        assert truncated > 0


# -- cancellation ------------------------------------------------------------------------------------------------


async def settle_and_list_tasks() -> list[asyncio.Task[Any]]:
    for _ in range(20):
        await asyncio.sleep(0)
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["s3", "gcs", "http"])
async def test_deadline_cancels_a_scan_promptly_and_cleanly(
    backend: str,
    request: pytest.FixtureRequest,
    s3_env: dict[str, str],
    small_gcs_pages: None,
) -> None:
    if backend == "s3":
        proxy: FaultProxy = request.getfixturevalue("s3_proxy")
        target: Any = f"s3://{request.getfixturevalue('s3_big')}/big"
        options = s3_options(proxy)
    elif backend == "gcs":
        proxy = request.getfixturevalue("gcs_proxy")
        target = f"gs://{request.getfixturevalue('gcs_folder')}/ds"
        options = gcs_options(proxy)
    else:
        proxy = request.getfixturevalue("http_proxy")
        target = [f"{proxy.url}/{p}" for p in request.getfixturevalue("http_paths")]
        options = http_options()
    proxy.configure(FaultPlan(latency=0.4))
    before = await settle_and_list_tasks()

    async def scan() -> object:
        if isinstance(target, list):
            async with Scanner(options) as scanner:
                return await scanner.scan_many(target)
        return await refscan.ascan(target, options=options)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.6):
            await scan()
    stopped = time.monotonic() - started
    assert stopped < 1.5, f"the scan took {stopped:.2f} s to stop after its deadline of 0.6 s"
    assert await settle_and_list_tasks() == before
    seen = proxy.stats().requests
    assert seen >= 1
    await anyio.sleep(0.6)
    assert proxy.stats().requests == seen, "requests kept arriving after the scan was cancelled"

    # a task cancelled mid-listing (after its first requests went out) stops promptly as well
    proxy.configure(FaultPlan(latency=0.4))
    task = asyncio.get_running_loop().create_task(scan())
    with anyio.fail_after(10):
        while proxy.stats().requests < 2:  # noqa: ASYNC110 (a counter in the proxy's thread, no event to await)
            await anyio.sleep(0.02)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    assert await settle_and_list_tasks() == before


@pytest.fixture(scope="module")
def s3_downloads(s3_server: S3Server) -> tuple[str, dict[str, bytes]]:
    bucket = s3_server.create_bucket()
    objects = {f"blobs/{i}.bin": os.urandom(512 * 1024) for i in range(4)}
    s3_server.put_objects(bucket, objects)
    return bucket, objects


def part_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".part") or p.name.endswith(".tmp"))


@pytest.mark.anyio
async def test_cancelled_download_leaves_no_part_files(
    s3_proxy: FaultProxy, s3_downloads: tuple[str, dict[str, bytes]], s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket, objects = s3_downloads
    options = s3_options(s3_proxy)
    s3_proxy.configure(FaultPlan())
    manifest = Manifest(await refscan.ascan(f"s3://{bucket}/blobs/", options=options))
    s3_proxy.configure(FaultPlan(chunk_size=16 * 1024, chunk_delay=0.05))  # ~1.6 s per object
    out = tmp_path / "out"
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.8):
            await refscan.adownload(manifest, out, options=options)
    assert out.is_dir()
    assert part_files(out) == []
    assert [p for p in out.rglob("*") if p.is_file()] == []  # nothing half-written under a final name

    s3_proxy.configure(FaultPlan())
    paths = await refscan.adownload(manifest, out, options=options)
    assert {p.name: p.read_bytes() for p in paths} == {k.split("/")[-1]: v for k, v in objects.items()}


# -- SIGINT / SIGTERM to the CLI ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def cli_process(args: Sequence[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "refscan", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def cli_env(s3_proxy: FaultProxy, s3_server: S3Server, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "STORAGE_EMULATOR", "REFSCAN"))}
    return (
        base
        | s3_server.env
        | {
            "AWS_ENDPOINT_URL_S3": s3_proxy.url,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "REFSCAN_HOME": str(tmp_path / "home"),
        }
    )


SIGNALS = [pytest.param(sig, id=sig.name) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
EXIT = {
    signal.SIGINT: (130, "refscan: error: interrupted"),
    signal.SIGTERM: (143, "refscan: error: terminated"),
    signal.SIGHUP: (129, "refscan: error: hung up"),
}


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_interrupted_cli_scan_leaves_no_output_file(
    fmt: str, sig: signal.Signals, s3_proxy: FaultProxy, s3_big: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    s3_proxy.configure(FaultPlan(latency=0.5, match=is_listing))
    with cli_process(["scan", f"s3://{s3_big}/big", "--format", fmt, "-o", "out.json"], cli_env, work) as proc:
        wait_for(lambda: s3_proxy.stats().requests >= 3, 30, "the listing to start")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=10)
    assert (proc.returncode, stderr.strip()) == EXIT[sig], stderr
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("sig", SIGNALS)
def test_interrupted_cli_download_leaves_no_part_files(
    sig: signal.Signals,
    s3_proxy: FaultProxy,
    s3_downloads: tuple[str, dict[str, bytes]],
    s3_env: dict[str, str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    bucket, _ = s3_downloads
    s3_proxy.configure(FaultPlan())
    manifest = tmp_path / "manifest.json"
    Manifest(refscan.scan(f"s3://{bucket}/blobs/", options=s3_options(s3_proxy))).dump(manifest)
    out = tmp_path / "out"
    s3_proxy.configure(FaultPlan(chunk_size=16 * 1024, chunk_delay=0.05))
    with cli_process(["download", str(manifest), str(out)], cli_env, tmp_path) as proc:
        wait_for(lambda: bool(part_files(out)), 30, "a .part file")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=10)
    assert (proc.returncode, stderr.strip()) == EXIT[sig], stderr
    assert part_files(out) == []
    assert [p for p in out.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("sig", SIGNALS)
def test_interrupted_cli_log_leaves_the_store_as_it_was(
    sig: signal.Signals, s3_proxy: FaultProxy, s3_big: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    s3_proxy.configure(FaultPlan())
    subprocess.run(
        [sys.executable, "-m", "refscan", "log", "ds", "--type", "dataset", f"s3://{s3_big}/big/part-0/"],
        env=cli_env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    s3_proxy.configure(FaultPlan(latency=0.5, match=is_listing))
    with cli_process(["log", "ds", "--type", "dataset", f"s3://{s3_big}/big"], cli_env, tmp_path) as proc:
        wait_for(lambda: s3_proxy.stats().requests >= 3, 30, "the listing to start")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=10)
    assert (proc.returncode, stderr.strip()) == EXIT[sig], stderr
    store = refscan.Store(Path(cli_env["REFSCAN_HOME"]))
    assert [v.ref for v in store.versions("ds")] == ["ds:v0"]
    assert len(store.get("ds:latest").manifest) == S3_OBJECTS // 10


# -- --timeout -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["scan", "download", "log"])
def test_timeout_cancels_the_command_and_writes_nothing(
    command: str,
    s3_proxy: FaultProxy,
    s3_big: str,
    s3_downloads: tuple[str, dict[str, bytes]],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    s3_proxy.configure(FaultPlan())
    if command == "download":
        bucket, _ = s3_downloads
        manifest = tmp_path / "manifest.json"
        Manifest(refscan.scan(f"s3://{bucket}/blobs/", options=s3_options(s3_proxy))).dump(manifest)
        args = ["download", str(manifest), "out"]
        s3_proxy.configure(FaultPlan(chunk_size=16 * 1024, chunk_delay=0.05))
    else:
        scan_args = ["scan", f"s3://{s3_big}/big", "-o", "out.json"]
        args = scan_args if command == "scan" else ["log", "ds", "--type", "t", f"s3://{s3_big}/big"]
        s3_proxy.configure(FaultPlan(latency=0.5, match=is_listing))
    started = time.monotonic()
    with cli_process(["--timeout", "1.5", *args], cli_env, work) as proc:
        _, stderr = proc.communicate(timeout=30)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, stderr
    assert stderr.strip() == "refscan: error: the --timeout deadline of 1.5 s passed before the command finished"
    assert elapsed < 6
    assert part_files(work) == []
    assert [p for p in work.rglob("*") if p.is_file()] == []
    assert not Path(cli_env["REFSCAN_HOME"]).exists() or not refscan.Store(Path(cli_env["REFSCAN_HOME"])).lineage()
