"""Datasets, the servers that hold them, and the delay proxies in front: the benchmark's `Lab`.

Servers: moto and fake-gcs-server through `bench.servers` (on the project's launch plumbing in
`refscan.demo`), SeaweedFS and nginx from the project's launchers. Every dataset is seeded once per run,
straight into its server (moto in-process, fake-gcs-server from files at startup, SeaweedFS by concurrent
signed PUTs, nginx's docroot), never through a proxy; contenders then reach the servers only through the
proxies.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from refscan.demo.process import ManagedProcess
from refscan.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, S3Server, start_azurite

from .contenders import S3_REGION
from .proxy import DelayProxy, gcs_page_cap
from .servers import azurite_sas, launch_gcs_preloaded, start_nginx, start_seaweedfs, wait_gcs, wait_listening
from .synthetic import BUCKET as SYNTHETIC_BUCKET
from .synthetic import PREFIX as SYNTHETIC_PREFIX

#: every EXTRA_EVERY-th key of a versioned dataset gets EXTRA_VERSIONS more versions (3 in all)
EXTRA_EVERY = 10
EXTRA_VERSIONS = 2


@dataclass(frozen=True)
class Dataset:
    """Objects `prefix`obj-NNNNN.bin in `bucket` on one backend ("s3": moto, "sw": SeaweedFS, "gs", "http",
    "az": Azurite (the bucket is a container) or "synthetic")."""

    name: str
    backend: str
    bucket: str
    objects: int
    versioned: bool = False
    prefix: str = "data/"

    @property
    def versions(self) -> int:
        """Every version the listing has to walk (noncurrent ones included)."""
        extra = EXTRA_VERSIONS * len(range(0, self.objects, EXTRA_EVERY)) if self.versioned else 0
        return self.objects + extra

    def key(self, i: int) -> str:
        return f"{self.prefix}obj-{i:05d}.bin"

    def bodies(self, version: int = 0) -> dict[str, bytes]:
        """The keys to write in seeding round `version` (0: every key; then every EXTRA_EVERY-th), each with a
        small body of its own."""
        step = 1 if version == 0 else EXTRA_EVERY
        return {self.key(i): _body(self.key(i), version) for i in range(0, self.objects, step)}


def _body(key: str, version: int) -> bytes:
    seed = hashlib.sha256(f"{key}#{version}".encode()).digest()
    return seed * (1 + seed[0] % 32)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("s3-1k", "s3", "bench-s3-1k", 1_000),
        Dataset("s3-10k", "s3", "bench-s3-10k", 10_000),
        Dataset("s3v-1k", "s3", "bench-s3v-1k", 1_000, versioned=True),
        Dataset("s3v-10k", "s3", "bench-s3v-10k", 10_000, versioned=True),
        Dataset("gcs-10k", "gs", "bench-gcs-10k", 10_000),
        Dataset("http-1k", "http", "files", 1_000),
        Dataset("synthetic-1m", "synthetic", SYNTHETIC_BUCKET, 1_000_000, prefix=SYNTHETIC_PREFIX),
        Dataset("sw-10k", "sw", "bench-sw-10k", 10_000),
        Dataset("sw-10k-versioned", "sw", "bench-sw-10k-versioned", 10_000, versioned=True),
        Dataset("sw-100k", "sw", "bench-sw-100k", 100_000),
        Dataset("az-10k", "az", "bench-az-10k", 10_000),
    )
}


class Lab:
    """The servers and proxies for a set of datasets, seeded; a context manager that stops everything.

    `endpoint(backend)` is the proxy URL contenders use; `proxy(backend)` counts their requests.
    """

    def __init__(self, datasets: Iterable[Dataset], rtt: float, log: Any = print, page_ms: float = 0.0) -> None:
        self.datasets = {d.name: d for d in datasets}
        self.rtt = rtt
        self.page_ms = page_ms  # the synthetic server's time per list page
        self.log = log
        self.tmp = Path(tempfile.mkdtemp(prefix="refscan-bench-"))
        self.s3: S3Server | None = None
        self.sw: Any = None  # refscan.demo.servers.SeaweedFSServer
        self.gcs: Any = None
        self.nginx: Any = None
        self.azure: AzuriteServer | None = None
        self.seconds_seeding = 0.0
        self._proxies: dict[str, DelayProxy] = {}
        self._stack = ExitStack()
        self._stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)

    def __enter__(self) -> Lab:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def proxy(self, backend: str) -> DelayProxy:
        return self._proxies[backend]

    def endpoint(self, backend: str) -> str:
        """The proxy URL of `backend` (Azure: its account URL, the account in the path as Azurite has it)."""
        url = self._proxies[backend].url
        return f"{url}/{AZURITE_ACCOUNT}" if backend == "az" else url

    def credentials(self, backend: str) -> tuple[str, str]:
        """(access key, secret) for an S3 backend: SeaweedFS's are made up at its start, moto takes any; for
        Azure, Azurite's development account and its published key."""
        if backend == "sw" and self.sw is not None:
            return self.sw.access_key, self.sw.secret_key
        if backend == "az":
            return AZURITE_ACCOUNT, AZURITE_KEY
        return "testing", "testing"

    def uri(self, dataset: Dataset) -> str:
        """The folder URI of `dataset` (http: the file listing the URLs, one a line)."""
        if dataset.backend == "http":
            return str(self.tmp / "urls.txt")
        scheme = dataset.backend if dataset.backend in ("gs", "az") else "s3"
        return f"{scheme}://{dataset.bucket}/{dataset.prefix}"

    # -- starting and seeding -----------------------------------------------------------------------------

    def _serve(self, backend: str, port: int, rewrite: Any = None) -> None:
        """Put a delay proxy in front of the server on 127.0.0.1:`port`."""
        self._proxies[backend] = self._stack.enter_context(DelayProxy("127.0.0.1", port, self.rtt, rewrite=rewrite))

    def _start(self) -> None:
        """Launch every server first (from this thread: children die with the thread that started them), then
        wait for each, so moto's seeding and fake-gcs-server's loading overlap."""
        backends = {d.backend for d in self.datasets.values()}
        started = time.perf_counter()
        gcs: tuple[ManagedProcess, str] | None = None
        if "gs" in backends:
            gcs = launch_gcs_preloaded(self._gcs_files())
            self._stack.callback(gcs[0].stop)
        moto: ManagedProcess | None = None
        if "s3" in backends:  # seeds itself while SeaweedFS is seeded from here
            names = [d.name for d in self._of("s3")]
            moto = ManagedProcess([sys.executable, "-m", "bench.servers", "moto", "--seed", *names], name="bench-moto")
            self._stack.callback(moto.stop)
        if "sw" in backends:
            self.sw = start_seaweedfs(timeout=120)
            self._stack.callback(self.sw.stop)
            self._serve("sw", int(self.sw.endpoint_url.rsplit(":", 1)[1]))
            self._seed_sw()
            self.log(f"  SeaweedFS seeded with {', '.join(d.name for d in self._of('sw'))} "
                     f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
        if moto is not None:
            proc = moto
            port = wait_listening(proc, timeout=900)
            self.s3 = S3Server(endpoint_url=f"http://127.0.0.1:{port}", process=proc)
            self._serve("s3", port)
            self.log(f"  S3 (moto) seeded with {', '.join(names)} in {time.perf_counter() - started:.0f} s")
        if "synthetic" in backends:
            objects = max(d.objects for d in self._of("synthetic"))
            argv = [sys.executable, "-m", "bench.servers", "synthetic", "--objects", str(objects),
                    "--page-ms", str(self.page_ms)]  # fmt: skip
            proc = ManagedProcess(argv, name="bench-synthetic-s3")
            self._stack.callback(proc.stop)
            self._serve("synthetic", wait_listening(proc, timeout=300))  # it renders every page first
        if "http" in backends:
            self.nginx = start_nginx()
            self._stack.callback(self.nginx.stop)
            self._serve("http", int(self.nginx.base_url.rsplit(":", 1)[1]))
            self._seed_http()
        if "az" in backends:
            self.azure = start_azurite()
            self._stack.callback(self.azure.stop)
            self._serve("az", self.azure.port)
            for d in self._of("az"):
                self.azure.create_container(d.bucket)
                self.azure.upload_many(d.bucket, d.bodies(), workers=32)
            self.log(f"  Azure (Azurite) seeded with {', '.join(d.name for d in self._of('az'))} "
                     f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
        if gcs is not None:
            self.gcs = wait_gcs(*gcs)
            self._serve("gs", int(self.gcs.endpoint_url.rsplit(":", 1)[1]), rewrite=gcs_page_cap)
            self.log(f"  GCS (fake-gcs-server) loaded in {time.perf_counter() - started:.0f} s")
        self.seconds_seeding = time.perf_counter() - started
        self.log(f"servers up and seeded in {self.seconds_seeding:.0f} s")

    def _gcs_files(self) -> Path:
        """The GCS datasets as files, a folder per bucket, for fake-gcs-server's `-data`."""
        data = self.tmp / "gcs"
        for d in self._of("gs"):
            for key, body in d.bodies().items():
                path = data / d.bucket / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
        return data

    def _of(self, backend: str) -> list[Dataset]:
        return [d for d in self.datasets.values() if d.backend == backend]

    def _seed_http(self) -> None:
        urls: list[str] = []
        for d in self._of("http"):
            for key, body in d.bodies().items():
                self.nginx.write(f"{d.bucket}/{key}", body)
                urls.append(f"{self.endpoint('http')}/{d.bucket}/{key}")
        (self.tmp / "urls.txt").write_text("\n".join(urls) + "\n")

    def _seed_sw(self) -> None:
        """Every SeaweedFS dataset by concurrent signed PUTs (versioned: round after round, so the last round's
        bodies are the current versions)."""
        assert self.sw is not None
        for d in self._of("sw"):
            self.sw.create_bucket(d.bucket, versioned=d.versioned)
            for version in range(1 + (EXTRA_VERSIONS if d.versioned else 0)):
                asyncio.run(put_objects(self.sw.endpoint_url, self.credentials("sw"), d.bucket, d.bodies(version)))

    def env(self, backend: str | None = None) -> Mapping[str, str]:
        """Environment for the contenders: every SDK pointed at the proxies, never at the servers; the AWS
        variables at SeaweedFS for `backend` "sw", else at moto."""
        env: dict[str, str] = {}
        s3 = self.sw if backend == "sw" else self.s3
        proxy = "sw" if backend == "sw" else "s3"
        if proxy in self._proxies and s3 is not None:
            url = self.endpoint(proxy)
            env.update(s3.env)
            env.update({"AWS_ENDPOINT_URL_S3": url, "AWS_S3_ENDPOINT_URL": url})
        if "gs" in self._proxies:
            env.update(self.gcs.env)
            env["STORAGE_EMULATOR_HOST"] = self.endpoint("gs")
        return env

    def raw_listing(self, dataset: Dataset) -> tuple[int, float]:
        """Fetch every list page of `dataset` one after another through its proxy, on one keep-alive connection
        and without parsing: the least a sequential listing costs here (RTT plus the server's own time).
        Returns (pages, seconds)."""
        backend = dataset.backend
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy(backend).port, timeout=300)
        params: dict[str, str] = {"prefix": dataset.prefix}
        if backend == "gs":
            path = f"/storage/v1/b/{quote(dataset.bucket, safe='')}/o"
            params["maxResults"] = "1000"
        elif backend == "az":  # the request refscan sends, signed by an account SAS instead of Shared Key
            path = f"/{AZURITE_ACCOUNT}/{quote(dataset.bucket)}"
            params.update({"restype": "container", "comp": "list", "include": "metadata,versions"})
            params.update(dict(parse_qsl(azurite_sas(*self.credentials("az")))))
        else:
            path = f"/{dataset.bucket}"
            params.update({"versions": ""} if dataset.versioned else {"list-type": "2"})
            params["max-keys"] = "1000"
        pages = 0
        started = time.perf_counter()
        try:
            while True:
                url = f"{path}?{urlencode(params, quote_via=quote)}"
                headers = {}
                if backend == "sw":  # SeaweedFS answers signed requests only
                    headers = sign(
                        "GET", f"http://127.0.0.1:{self.proxy(backend).port}{url}", self.credentials(backend)
                    )
                conn.request("GET", url, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                pages += 1
                if resp.status != 200:
                    raise RuntimeError(f"raw listing of {dataset.name}: HTTP {resp.status}: {body[:200]!r}")
                more = _next_page(backend, dataset.versioned, body)
                if not more:
                    break
                params.update(more)
        finally:
            conn.close()
        return pages, time.perf_counter() - started


def _xml_field(body: bytes, name: str) -> str | None:
    m = re.search(rb"<%s>([^<]*)</%s>" % (name.encode(), name.encode()), body)
    return m.group(1).decode() if m else None


def _next_page(backend: str, versioned: bool, body: bytes) -> dict[str, str]:
    """The query parameters of the next page, or {} after the last one."""
    if backend == "az":
        next_marker = _xml_field(body, "NextMarker")
        return {"marker": next_marker} if next_marker else {}
    if backend == "gs":
        token = json.loads(body).get("nextPageToken")
        return {"pageToken": token} if token else {}
    if _xml_field(body, "IsTruncated") != "true":
        return {}
    if versioned:
        marker = {"key-marker": _xml_field(body, "NextKeyMarker") or ""}
        return {**marker, "version-id-marker": _xml_field(body, "NextVersionIdMarker") or ""}
    return {"continuation-token": _xml_field(body, "NextContinuationToken") or ""}


# -- signed S3 requests without boto3 (SeaweedFS) ------------------------------------------------------------


def sign(method: str, url: str, credentials: tuple[str, str], body: bytes = b"") -> dict[str, str]:
    """SigV4 headers for one S3 request (botocore's signer, so none of boto3's per-call machinery)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(*credentials), "s3", S3_REGION).add_auth(request)
    return dict(request.headers.items())


async def put_objects(
    endpoint: str, credentials: tuple[str, str], bucket: str, objects: Mapping[str, bytes], *, concurrency: int = 32
) -> None:
    """PUT every object, `concurrency` at a time, on keep-alive connections; 5xx and resets are retried."""
    import aiohttp

    items: Iterator[tuple[str, bytes]] = iter(objects.items())

    async def worker(session: aiohttp.ClientSession) -> None:
        for key, body in items:  # one shared iterator: each item goes to one worker
            url = f"{endpoint}/{bucket}/{quote(key)}"
            for attempt in range(6):
                try:
                    headers = sign("PUT", url, credentials, body)
                    async with session.put(url, data=body, headers=headers) as resp:
                        text = await resp.read()
                        if resp.status == 200:
                            break
                        if resp.status < 500 or attempt == 5:
                            raise RuntimeError(f"PUT {bucket}/{key}: HTTP {resp.status}: {text[:200]!r}")
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    if attempt == 5:
                        raise
                await asyncio.sleep(0.1 * 2**attempt)

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
