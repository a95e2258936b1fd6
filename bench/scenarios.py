"""The scenarios: which dataset, which operation, and the request floor each is measured against."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .seed import DATASETS, Dataset

PAGE = 1000  # objects per list page on S3 and GCS
HTTP_CONNECTIONS = 16  # refscan's HTTPOptions.per_host_limit
VERIFY_CONCURRENCY = 64  # refscan's Options.concurrency


@dataclass(frozen=True)
class Scenario:
    """`op`: "scan" (a folder), "urls" (many single URLs), "verify" (a manifest of the dataset) or "stream"
    (a folder streamed to JSONL)."""

    name: str
    dataset_name: str
    op: str
    title: str

    @property
    def dataset(self) -> Dataset:
        return DATASETS[self.dataset_name]

    @property
    def objects(self) -> int:
        return self.dataset.objects

    def floor(self, rtt: float) -> tuple[int, float, str]:
        """(sequential round trips, seconds, what they are): the least time the requests can take at `rtt`."""
        d = self.dataset
        if self.op == "urls":
            trips = math.ceil(d.objects / HTTP_CONNECTIONS) + 1
            return trips, trips * rtt, f"{d.objects} HEADs over {HTTP_CONNECTIONS} connections + handshake"
        if self.op == "verify":
            trips = math.ceil(d.objects / VERIFY_CONCURRENCY)
            return trips, trips * rtt, f"{d.objects} HEADs, {VERIFY_CONCURRENCY} in flight"
        trips = math.ceil(d.versions / PAGE)
        what = "ListObjectVersions" if d.versioned else ("objects.list" if d.backend == "gs" else "ListObjectsV2")
        return trips, trips * rtt, f"{trips} sequential {what} pages"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("s3-1k", "s3-1k", "scan", "S3 folder, 1,000 objects"),
        Scenario("s3-10k", "s3-10k", "scan", "S3 folder, 10,000 objects"),
        Scenario("s3v-1k", "s3v-1k", "scan", "S3 versioned folder, 1,000 objects (3 versions on 10%)"),
        Scenario("s3v-10k", "s3v-10k", "scan", "S3 versioned folder, 10,000 objects (3 versions on 10%)"),
        Scenario("gcs-10k", "gcs-10k", "scan", "GCS folder, 10,000 objects"),
        Scenario("http-1k", "http-1k", "urls", "1,000 HTTP URLs (nginx)"),
        Scenario("verify-10k", "s3v-10k", "verify", "verify a 10,000-entry manifest (S3 versioned, pinned)"),
        Scenario("stream-1m", "synthetic-1m", "stream", "1,000,000 S3 objects streamed to JSONL (synthetic)"),
    )
}
