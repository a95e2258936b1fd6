"""Throttling storms: the fault proxy throttles half the requests for `STORM` seconds — S3 `503 SlowDown`, GCS
`429` with Retry-After, HTTP `429` and `503` with and without Retry-After — and scans and verifies of 3,000
objects return exactly the fault-free result, with refscan's default retry policy. What the storm cost (time
beyond the fault-free run) is printed (`pytest -rP`) and recorded as a property.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

import refscan
from refscan import GCSOptions, Manifest, ManifestEntry, Options, S3Options
from refscan.backends.gcs import GCSBackend
from refscan.scan import Scanner
from tests.faults import FaultPlan, FaultProxy
from tests.servers import GCSServer, NginxServer, S3Server, unique_name
from tests.servers.s3 import ACCESS_KEY, REGION, SECRET_KEY

pytestmark = pytest.mark.integration

OBJECTS = 3_000
STORM = 6.0
#: botocore's own retries (refscan sets only their count) wait rand(0, 2**n) s: a storm much longer than a few
#: seconds can use up all six attempts of an unlucky request, so the S3 storm is shorter.
S3_STORM = 4.0
RATE = 0.5
GCS_PAGE = 100


def storm(status: int, *, retry_after: bool, window: float = STORM) -> FaultPlan:
    return FaultPlan(
        rate=RATE,
        kinds=(str(status),),
        window=window,
        retry_after="1",
        retry_after_statuses=(status,) if retry_after else (),
    )


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = run()
    return result, time.monotonic() - started


def weather(
    proxy: FaultProxy,
    plan: FaultPlan,
    run: Callable[[], Any],
    what: str,
    record_property: Callable[[str, object], None],
) -> None:
    """`run()` fault-free, then through the storm `plan`: the same result; print and record the cost."""
    proxy.configure(FaultPlan())
    want, calm = timed(run)
    proxy.configure(plan)
    got, stormy = timed(run)
    stats = proxy.configure(FaultPlan())
    assert got == want
    assert stats.total_faults > 0
    cost = f"+{stormy - calm:.2f} s; {stats}"
    line = f"{what}: {calm:.2f} s fault-free, {stormy:.2f} s through a {plan.window:g} s storm ({cost})"
    print(line)
    record_property(what, line)


def scan_all(uris: list[str], options: Options) -> Manifest:
    async def run() -> list[list[ManifestEntry]]:
        async with Scanner(options) as scanner:
            return await scanner.scan_many(uris)

    return Manifest(e for entries in anyio.run(run) for e in entries)


def scan_and_verify(uris: list[str], options: Options, op: str) -> Callable[[], Any]:
    """What to run in a storm: the scan of `uris` (its manifest), or a verify of that manifest (its report)."""
    manifest = scan_all(uris, options) if op == "verify" else None

    def run() -> Any:
        if manifest is None:
            return scan_all(uris, options).to_dict()
        report = refscan.verify(manifest, options=options)
        assert len(report.results) == OBJECTS
        assert report.counts["ok"] == OBJECTS
        return report.to_dict()

    return run


# -- S3 -------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    # moto renders a 500-key page in ~0.5 s of CPU: replay its answers (faults still apply to every delivery)
    with FaultProxy(s3_server.endpoint_url, flavor="s3", cache=lambda _: True) as proxy:
        yield proxy


@pytest.mark.parametrize("op", ["scan", "verify"])
def test_s3_slowdown_storm(
    op: str, s3_proxy: FaultProxy, s3_big: str, record_property: Callable[[str, object], None]
) -> None:
    options = Options(
        s3=S3Options(
            endpoint_url=s3_proxy.url,
            region=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            addressing_style="path",
        )
    )
    uris = [f"s3://{s3_big}/big/part-{j}/" for j in range(6)]  # 6 x 500 objects
    s3_proxy.configure(FaultPlan())
    run = scan_and_verify(uris, options, op)
    plan = storm(503, retry_after=False, window=S3_STORM)
    weather(s3_proxy, plan, run, f"S3 {op} of {OBJECTS:,} (503 SlowDown)", record_property)


# -- GCS ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_3000(gcs_server: GCSServer) -> str:
    bucket = gcs_server.create_bucket()
    gcs_server.upload_many(bucket, {f"ds/item-{i:04d}.json": f'{{"i": {i}}}'.encode() for i in range(OBJECTS)})
    return bucket


@pytest.mark.parametrize("op", ["scan", "verify"])
def test_gcs_429_storm(
    op: str,
    gcs_server: GCSServer,
    gcs_3000: str,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    monkeypatch.setattr(GCSBackend, "page_size", GCS_PAGE)  # 30 listing pages, not one
    with FaultProxy(gcs_server.endpoint_url, flavor="gcs") as proxy:
        options = Options(gcs=GCSOptions(endpoint_url=proxy.url, token="anon"))
        run = scan_and_verify([f"gs://{gcs_3000}/ds/"], options, op)
        weather(proxy, storm(429, retry_after=True), run, f"GCS {op} of {OBJECTS:,} (429)", record_property)


# -- HTTP -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_3000(nginx_server: NginxServer) -> list[str]:
    folder = unique_name("storm")
    return [nginx_server.write(f"{folder}/f{i:04d}.txt", f"file {i}\n").split("/", 3)[3] for i in range(OBJECTS)]


@pytest.fixture(scope="module")
def http_proxy(nginx_server: NginxServer) -> Iterator[FaultProxy]:
    with FaultProxy(nginx_server.base_url, flavor="http") as proxy:
        yield proxy


@pytest.mark.parametrize(
    ("op", "status", "retry_after"),
    [("scan", 429, False), ("verify", 503, True)],  # each status, with and without Retry-After
)
def test_http_throttling_storm(
    op: str,
    status: int,
    retry_after: bool,
    http_proxy: FaultProxy,
    http_3000: list[str],
    record_property: Callable[[str, object], None],
) -> None:
    http_proxy.configure(FaultPlan())
    run = scan_and_verify([f"{http_proxy.url}/{p}" for p in http_3000], Options(), op)
    header = "with" if retry_after else "without"
    what = f"HTTP {op} of {OBJECTS:,} ({status} {header} Retry-After)"
    weather(http_proxy, storm(status, retry_after=retry_after), run, what, record_property)
