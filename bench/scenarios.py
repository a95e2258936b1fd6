"""The scenarios: which dataset, which operation, and the request floor each is measured against."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .seed import DATASETS, Dataset

PAGE = 1000  # objects per list page on S3 and GCS
AZURE_PAGE = 5000  # blobs per List Blobs page
HTTP_CONNECTIONS = 16  # refscan's HTTPOptions.per_host_limit
VERIFY_CONCURRENCY = 64  # refscan's Options.concurrency


@dataclass(frozen=True)
class Scenario:
    """`op`: "scan" (a folder), "urls" (many single URLs), "verify" (a manifest of the dataset) or "stream"
    (a folder streamed to JSONL).

    `skips`: contender -> why it sits this scenario out. `quick_sample`: with --quick, W&B lists only this many
    objects of the folder (`max_objects`; one list page and a HEAD each) and its time is scaled to the whole.
    """

    name: str
    dataset_name: str
    op: str
    title: str
    skips: Mapping[str, str] = field(default_factory=dict)
    quick_sample: int | None = None

    @property
    def dataset(self) -> Dataset:
        return DATASETS[self.dataset_name]

    @property
    def objects(self) -> int:
        return self.dataset.objects

    def floor(self, rtt: float, page_time: float = 0.0) -> tuple[int, float, str]:
        """(sequential round trips, seconds, what they are): the least time the requests can take at `rtt`, with
        `page_time` of server time per list page (the synthetic server's `--page-ms`)."""
        d = self.dataset
        if self.op == "urls":
            trips = math.ceil(d.objects / HTTP_CONNECTIONS) + 1
            return trips, trips * rtt, f"{d.objects} HEADs over {HTTP_CONNECTIONS} connections + handshake"
        if self.op == "verify":
            trips = math.ceil(d.objects / VERIFY_CONCURRENCY)
            return trips, trips * rtt, f"{d.objects} HEADs, {VERIFY_CONCURRENCY} in flight"
        trips = math.ceil(d.versions / (AZURE_PAGE if d.backend == "az" else PAGE))
        names = {"gs": "objects.list", "az": "List Blobs"}
        what = "ListObjectVersions" if d.versioned else names.get(d.backend, "ListObjectsV2")
        if page_time:
            return trips, trips * (rtt + page_time), f"{trips} sequential {what} pages, {page_time * 1000:g} ms each"
        return trips, trips * rtt, f"{trips} sequential {what} pages"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("s3-1k", "s3-1k", "scan", "S3 folder, 1,000 objects"),
        Scenario("s3-10k", "s3-10k", "scan", "S3 folder, 10,000 objects", quick_sample=1000),
        Scenario("s3v-1k", "s3v-1k", "scan", "S3 versioned folder, 1,000 objects (3 versions on 10%)"),
        Scenario(
            "s3v-10k", "s3v-10k", "scan", "S3 versioned folder, 10,000 objects (3 versions on 10%)", quick_sample=1000
        ),
        Scenario("gcs-10k", "gcs-10k", "scan", "GCS folder, 10,000 objects"),
        Scenario("http-1k", "http-1k", "urls", "1,000 HTTP URLs (nginx)"),
        Scenario("verify-10k", "s3v-10k", "verify", "verify a 10,000-entry manifest (S3 versioned, pinned)"),
        Scenario("stream-1m", "synthetic-1m", "stream", "1,000,000 S3 objects streamed to JSONL (synthetic)"),
        Scenario("sw-10k", "sw-10k", "scan", "SeaweedFS folder, 10,000 objects", quick_sample=1000),
        Scenario(
            "sw-10k-versioned",
            "sw-10k-versioned",
            "scan",
            "SeaweedFS versioned folder, 10,000 objects (3 versions on 10%)",
            quick_sample=1000,
        ),
        Scenario(
            "sw-100k",
            "sw-100k",
            "scan",
            "SeaweedFS folder, 100,000 objects",
            skips={
                "wandb": "one sequential HeadObject per object (~35 min at 20 ms RTT); sw-10k shows its per-object cost"
            },
        ),
        Scenario(
            "az-10k",
            "az-10k",
            "scan",
            "Azure folder, 10,000 blobs (Azurite)",
            skips={
                "wandb": "cannot be pointed at Azurite: W&B 0.31's Azure handler takes only "
                "https://<account>.blob.core.windows.net URLs and connects to that host"
            },
        ),
    )
}
