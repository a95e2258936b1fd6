"""Real test servers (moto S3 under waitress, SeaweedFS, fake-gcs-server, nginx, aiohttp apps) for integration
tests.

The S3 (moto, SeaweedFS), GCS and aiohttp launchers live in `refscan.demo.servers` (shared with `refscan demo`);
nginx is test-only.

Session-scoped fixtures start each server once, on 127.0.0.1 and a free port, and stop its process group at
the end. A server that cannot start skips its tests locally and fails them under ``CI=true``.
"""

from __future__ import annotations

from .apps import serve_app
from .gcs import GCSHTTPError, GCSServer, start_gcs_server
from .nginx import NginxServer, start_nginx
from .s3 import S3Server, start_s3_server
from .seaweed import SeaweedFSServer, start_seaweedfs
from .util import ServerStartError, free_port, in_ci, unavailable, unique_name

__all__ = [
    "GCSHTTPError",
    "GCSServer",
    "NginxServer",
    "S3Server",
    "SeaweedFSServer",
    "ServerStartError",
    "free_port",
    "in_ci",
    "serve_app",
    "start_gcs_server",
    "start_nginx",
    "start_s3_server",
    "start_seaweedfs",
    "unavailable",
    "unique_name",
]
