"""HTTP test server: a private nginx (own config, pid, logs and docroot in a temp dir; system config untouched).

Fixture ``nginx_server`` (session): :class:`NginxServer` with ``base_url`` and ``root`` (write files there).
nginx's ETag is ``"<mtime hex>-<size hex>"``: a change signal, not a content hash.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from refscan.demo.servers import StaticServer

from .util import (
    HOST,
    STARTUP_TIMEOUT,
    ManagedProcess,
    ServerStartError,
    find_executable,
    free_port,
    http_status,
    start_or_unavailable,
)

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    types {{
        text/html html htm;
        text/plain txt;
        text/csv csv;
        application/json json;
        application/octet-stream bin;
        image/png png;
        image/jpeg jpg jpeg;
    }}
    default_type application/octet-stream;

    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    sendfile on;
    etag on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    server_tokens off;

    server {{
        listen {host}:{port};
        server_name localhost;
        root {root};
        autoindex off;
        location / {{
        }}
    }}
}}
"""


@dataclass(frozen=True)
class NginxServer(StaticServer):
    """nginx serving `root` (see `StaticServer` for `url`); `prefix` holds its config, logs and temp files."""

    prefix: Path = Path()
    process: ManagedProcess | None = None

    def write(self, relpath: str, data: bytes | str) -> str:
        """Write a file under ``root`` (parents created, world-readable: nginx workers read it) and return its URL."""
        url = super().write(relpath, data)
        (self.root / relpath.lstrip("/")).chmod(0o644)
        return url

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)


def find_nginx() -> str:
    exe = find_executable("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
    if exe is None:
        raise ServerStartError("nginx not found on PATH nor in /usr/sbin")
    return exe


def start_nginx(timeout: float = STARTUP_TIMEOUT, attempts: int = 3) -> NginxServer:
    exe = find_nginx()
    prefix = Path(tempfile.mkdtemp(prefix="refscan-nginx-")).resolve()
    prefix.chmod(0o755)  # in case workers run as another user: they must reach the docroot
    root = prefix / "www"
    for d in (root, prefix / "logs", prefix / "tmp"):
        d.mkdir(mode=0o755)
    # Running as root, nginx would switch workers to "nobody"; keep them as the current user instead.
    user = "user root;" if os.geteuid() == 0 else ""
    last: ServerStartError | None = None
    try:
        for _ in range(attempts):  # retry: the free port can be taken between probe and bind
            port = free_port()
            conf = prefix / "nginx.conf"
            conf.write_text(NGINX_CONF.format(prefix=prefix, root=root, host=HOST, port=port, user=user))
            base_url = f"http://{HOST}:{port}"
            proc = ManagedProcess(
                [exe, "-c", str(conf), "-p", f"{prefix}/", "-e", str(prefix / "logs" / "error.log")],
                name="nginx",
            )
            try:
                proc.wait_until(
                    lambda base_url=base_url: http_status(base_url + "/") is not None,  # type: ignore[misc]
                    timeout=timeout,
                    what="answering HTTP",
                )
            except ServerStartError as e:
                proc.stop()
                log = prefix / "logs" / "error.log"
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                last = ServerStartError(f"{e}\nerror.log:\n{detail}")
                continue
            return NginxServer(base_url=base_url, root=root, prefix=prefix, process=proc)
        assert last is not None
        raise last
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def nginx_server() -> Iterator[NginxServer]:
    server = start_or_unavailable("nginx", start_nginx)
    try:
        yield server
    finally:
        server.stop()
