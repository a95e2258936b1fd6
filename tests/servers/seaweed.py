"""S3 test fixtures on SeaweedFS, a second S3 server (the launcher lives in `refscan.demo.servers`).

- ``seaweed_server`` (session): :class:`SeaweedFSServer` (``weed mini`` on 127.0.0.1, signed requests only, a
  random access key per session); does not touch the environment. Same helpers as the moto ``s3_server``
  (``client()``, ``create_bucket(versioned=...)``, ``put_objects``, ``env``, ``endpoint_url``).

SeaweedFS lists keys in its filer's directory order, not S3's byte order, and answers a delimited listing that
starts two or more levels down with nested prefixes (see /work/shared/TEST-SERVERS.md and
tests/integration/test_seaweedfs.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refscan.demo.servers import SeaweedFSServer, find_weed_binary, start_seaweedfs

from .util import start_or_unavailable

__all__ = ["SeaweedFSServer", "find_weed_binary", "seaweed_server", "start_seaweedfs"]


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedFSServer]:
    server = start_or_unavailable("SeaweedFS", start_seaweedfs)
    try:
        yield server
    finally:
        server.stop()
