"""S3 test server: moto's WSGI app under waitress (keep-alive) in a subprocess.

See ``s3_main.py`` for the two waitress fixes. Fixtures:

- ``s3_server`` (session): :class:`S3Server`; does not touch the environment.
- ``s3_env`` (function): sets AWS_* variables (monkeypatch) so library code finds the server.
- ``s3_bucket`` / ``s3_versioned_bucket`` (function): a fresh, uniquely named bucket.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .util import HOST, STARTUP_TIMEOUT, ManagedProcess, http_status, start_or_unavailable, unique_name

S3_MAIN = Path(__file__).with_name("s3_main.py")
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str
    process: ManagedProcess | None = None
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
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

        cfg = Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
            **config,
        )
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


def start_s3_server(timeout: float = STARTUP_TIMEOUT) -> S3Server:
    """Start moto+waitress on a kernel-chosen port (no port race) and wait until it answers."""
    proc = ManagedProcess(
        [sys.executable, str(S3_MAIN), "--host", HOST, "--port", "0"],
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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_or_unavailable("moto S3 server", start_s3_server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the standard AWS environment at the test server for one test; returns the variables set."""
    env = s3_server.env
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # Variables that would otherwise redirect or override the chain.
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_S3_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return env


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty, unversioned bucket (unique name, never cleaned: the server dies with the session)."""
    return s3_server.create_bucket()


@pytest.fixture
def s3_versioned_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket with versioning Enabled."""
    return s3_server.create_bucket(versioned=True)
