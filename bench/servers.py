"""The benchmark's servers, on the project's launch plumbing (`refscan.demo`).

- `moto` (`python -m bench.servers moto [--seed NAME ...]`): refscan's moto + waitress server with moto's
  ListObjectVersions fixed to cost what S3's does, seeded in-process (moto's own PutObject, the same call its
  HTTP handler makes, without ~8 ms of request handling per object) before it listens. moto 5.2 deep-copies
  and sorts every version in the bucket on every request (~1 s per page at a few thousand versions); the
  patch hands it only the keys the page can contain (those at or after the marker, under the prefix), so a
  page costs about as much as a ListObjectsV2 page. Its answers are unchanged: the original function runs on
  that window.
- `synthetic` (`python -m bench.servers synthetic --objects N`): an S3-compatible ListObjects(V2) server whose
  bucket `synthetic` holds `data/obj-0000000.bin` ... generated on the fly (no storage), for the
  million-object streaming scenario that moto cannot be seeded with in time.

Both print `LISTENING <port>` once bound, like `refscan.demo.moto_main`. `start_gcs_preloaded` starts
fake-gcs-server with `-data`, which loads a folder tree as buckets at startup (far faster than uploads).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import threading
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from refscan.demo.process import HOST, STARTUP_TIMEOUT, ManagedProcess, ServerStartError, free_port, http_status
from refscan.demo.servers import GCSServer, find_fake_gcs_binary

SYNTHETIC_BUCKET = "synthetic"
SYNTHETIC_PREFIX = "data/"


def wait_listening(proc: ManagedProcess, timeout: float = STARTUP_TIMEOUT) -> int:
    """The port a child prints as `LISTENING <port>` once bound (the child is stopped if it never does)."""
    found: list[int] = []

    def listening() -> bool:
        m = re.search(r"LISTENING (\d+)", proc.output())
        if m:
            found.append(int(m.group(1)))
        return bool(m)

    try:
        proc.wait_until(listening, timeout=timeout, what="listening")
    except BaseException:
        proc.stop()
        raise
    return found[0]


def launch_gcs_preloaded(data: Path) -> tuple[ManagedProcess, str]:
    """Start fake-gcs-server (memory backend) loading the buckets under `data` (a folder per bucket); returns
    it and its endpoint at once: `wait_gcs` waits until it has loaded them."""
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    argv = [str(find_fake_gcs_binary()), "-scheme", "http", "-backend", "memory", "-host", HOST,
            "-port", str(port), "-external-url", endpoint, "-public-host", f"{HOST}:{port}",
            "-log-level", "warn", "-data", str(data)]  # fmt: skip
    return ManagedProcess(argv, name="bench-fake-gcs"), endpoint


def wait_gcs(proc: ManagedProcess, endpoint: str, timeout: float = 600.0) -> GCSServer:
    try:
        proc.wait_until(lambda: http_status(f"{endpoint}/_internal/healthcheck") == 200, timeout=timeout, what="up")
    except BaseException:
        proc.stop()
        raise
    return GCSServer(endpoint_url=endpoint, process=proc)


def start_nginx() -> Any:
    """nginx from wherever the project keeps its launcher (`refscan.demo.servers`, else the tests')."""
    try:
        from refscan.demo.servers import start_nginx as start  # type: ignore[attr-defined]
    except ImportError:
        try:
            from tests.servers.nginx import start_nginx as start
        except ImportError as e:
            raise ServerStartError(
                f"the nginx launcher (tests/servers/nginx.py) cannot be imported ({e}): run from the repository "
                "root with pytest installed, or leave out http-1k (--scenarios)"
            ) from e
    return start()


# -- moto with a fixed ListObjectVersions ---------------------------------------------------------------------


def seed_moto(names: list[str]) -> None:
    """Create the buckets of the named datasets (`bench.seed.DATASETS`) in this process's moto backend."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from .seed import DATASETS, EXTRA_VERSIONS

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for name in names:
        d = DATASETS[name]
        backend.create_bucket(d.bucket, "us-east-1")
        if d.versioned:
            backend.put_bucket_versioning(d.bucket, "Enabled")
        for version in range(1 + (EXTRA_VERSIONS if d.versioned else 0)):
            for key, body in d.bodies(version).items():
                backend.put_object(d.bucket, key, body)


def _page_window(names: list[str], prefix: str, delimiter: str | None, max_keys: int | None) -> list[str]:
    """The first of the sorted `names` that can appear in one page: up to `max_keys` + 2 items, where an item
    is a key or, with a delimiter, a common prefix (the names it collapses all stay in)."""
    if max_keys is None:
        return names
    window: list[str] = []
    items, last = 0, None
    for name in names:
        rest = name[len(prefix) :]
        item = prefix + rest[: rest.index(delimiter) + len(delimiter)] if delimiter and delimiter in rest else name
        if item != last:
            items, last = items + 1, item
            if items > max_keys + 2:  # + the marker's own item and one to know the page is truncated
                break
        window.append(name)
    return window


def patch_moto_version_listing() -> None:
    """Make moto's `list_object_versions` look only at the keys the requested page can hold."""
    from moto.s3.models import S3Backend
    from moto.s3.utils import _VersionedKeyStore

    original = S3Backend.list_object_versions
    lock = threading.Lock()  # the window is swapped into the bucket for the duration of one call

    def list_object_versions(
        self: Any,
        bucket_name: str,
        delimiter: str | None = None,
        key_marker: str | None = None,
        max_keys: int | None = 1000,
        prefix: str = "",
        version_id_marker: str | None = None,
    ) -> Any:
        bucket = self.get_bucket(bucket_name)
        prefix = prefix or ""
        with lock:
            store = bucket.keys
            names = sorted(n for n in store if n.startswith(prefix) and (not key_marker or n >= key_marker))
            window = _VersionedKeyStore()
            for name in _page_window(names, prefix, delimiter, max_keys):
                window.setlist(name, store.getlist(name))
            bucket.keys = window
            try:
                return original(self, bucket_name, delimiter, key_marker, max_keys, prefix, version_id_marker)
            finally:
                bucket.keys = store

    S3Backend.list_object_versions = list_object_versions  # type: ignore[method-assign]


# -- synthetic S3 listing -------------------------------------------------------------------------------------

_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def synthetic_key(i: int) -> str:
    return f"{SYNTHETIC_PREFIX}obj-{i:07d}.bin"


def _listing(objects: int, query: Any) -> str:
    """One ListObjectsV2 (`list-type=2`) or ListObjects (v1, `marker`) page of the synthetic bucket: flat keys
    under `data/`."""
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter")
    max_keys = min(int(query.get("max-keys", 1000)), 1000)
    v2 = query.get("list-type") == "2"
    after = (query.get("continuation-token") or query.get("start-after") or "") if v2 else query.get("marker", "")
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_NS}">']
    parts.append(f"<Name>{SYNTHETIC_BUCKET}</Name><Prefix>{escape(prefix)}</Prefix><MaxKeys>{max_keys}</MaxKeys>")
    keys: list[str] = []
    common: list[str] = []
    if SYNTHETIC_PREFIX.startswith(prefix) and delimiter and len(prefix) < len(SYNTHETIC_PREFIX):
        if after < SYNTHETIC_PREFIX:
            common.append(SYNTHETIC_PREFIX)
        start = objects
    elif prefix.startswith(SYNTHETIC_PREFIX) or SYNTHETIC_PREFIX.startswith(prefix):
        start = 0
        if after.startswith(SYNTHETIC_PREFIX + "obj-"):
            digits = after[len(SYNTHETIC_PREFIX) + 4 : len(SYNTHETIC_PREFIX) + 11]
            start = int(digits) + 1 if digits.isdigit() else 0
        elif after > SYNTHETIC_PREFIX + "obj-":
            start = objects
    else:
        start = objects
    i = start
    while i < objects and len(keys) < max_keys:
        key = synthetic_key(i)
        if key.startswith(prefix):
            keys.append(key)
        i += 1
    truncated = i < objects and bool(keys)
    parts.append(f"<KeyCount>{len(keys) + len(common)}</KeyCount><IsTruncated>{str(truncated).lower()}</IsTruncated>")
    if truncated:
        parts.append(
            f"<NextContinuationToken>{keys[-1]}</NextContinuationToken>"
            if v2
            else f"<NextMarker>{keys[-1]}</NextMarker>"
        )
    for key in keys:
        etag = hashlib.md5(key.encode()).hexdigest()
        parts.append(
            f"<Contents><Key>{key}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
            f"<ETag>&quot;{etag}&quot;</ETag><Size>{1024 + len(key)}</Size><StorageClass>STANDARD</StorageClass>"
            "</Contents>"
        )
    parts.extend(f"<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>" for p in common)
    parts.append("</ListBucketResult>")
    return "".join(parts)


def serve_synthetic(objects: int, port: int) -> None:
    """Serve the synthetic bucket until killed."""
    import asyncio

    from aiohttp import web

    async def bucket(request: web.Request) -> web.Response:
        if request.match_info["bucket"] != SYNTHETIC_BUCKET:
            body = "<Error><Code>NoSuchBucket</Code><Message>no such bucket</Message></Error>"
            return web.Response(status=404, text=body, content_type="application/xml")
        if "versioning" in request.query:  # never enabled
            return web.Response(text=f'<VersioningConfiguration xmlns="{_NS}"/>', content_type="application/xml")
        if "location" in request.query:
            return web.Response(text=f'<LocationConstraint xmlns="{_NS}"/>', content_type="application/xml")
        if request.method == "HEAD":
            return web.Response()
        return web.Response(text=_listing(objects, request.query), content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{bucket}", bucket)
    app.router.add_route("*", "/{bucket}/", bucket)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        print(f"LISTENING {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.servers")
    sub = ap.add_subparsers(dest="server", required=True)
    moto = sub.add_parser("moto", help="moto + waitress with a fixed ListObjectVersions")
    moto.add_argument("--seed", nargs="*", default=[], help="datasets to create before listening")
    syn = sub.add_parser("synthetic", help="an on-the-fly ListObjectsV2 server")
    syn.add_argument("--objects", type=int, default=1_000_000)
    syn.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    if args.server == "moto":
        from refscan.demo import moto_main

        patch_moto_version_listing()
        seed_moto(args.seed)
        moto_main.main(["--host", HOST, "--port", "0"])
    else:
        serve_synthetic(args.objects, args.port)
    sys.exit(0)


if __name__ == "__main__":
    main()
