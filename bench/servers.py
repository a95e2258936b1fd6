"""The benchmark's servers, on the project's launch plumbing (`refscan.demo`).

- `moto` (`python -m bench.servers moto [--seed NAME ...]`): refscan's moto + waitress server with moto's
  ListObjectVersions fixed to cost what S3's does, seeded in-process (moto's own PutObject, the same call its
  HTTP handler makes, without ~8 ms of request handling per object) before it listens. moto 5.2 deep-copies
  and sorts every version in the bucket on every request (~1 s per page at a few thousand versions); the
  patch hands it only the keys the page can contain (those at or after the marker, under the prefix), so a
  page costs about as much as a ListObjectsV2 page. Its answers are unchanged: the original function runs on
  that window.
- `synthetic` (`python -m bench.servers synthetic --objects N [--page-ms MS]`): an S3 listing server whose
  bucket `synthetic` holds `data/obj-0000000.bin` ... generated on the fly (no storage), for the
  million-object streaming scenario that moto cannot be seeded with in time. It pages exactly as S3 does
  (StartAfter, ContinuationToken, delimiters; `bench/synthetic.py`), serves requests concurrently, and sleeps
  `--page-ms` per list page so a sequential client's floor shows.

Both print `LISTENING <port>` once bound, like `refscan.demo.moto_main`. `start_gcs_preloaded` starts
fake-gcs-server with `-data`, which loads a folder tree as buckets at startup (far faster than uploads).
SeaweedFS, nginx and Azurite come from the project's own launchers (`start_seaweedfs`, `start_nginx`,
`refscan.demo.servers.start_azurite`); `azurite_sas` signs the account SAS the raw listing floor reads
Azurite with.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
import threading
from pathlib import Path
from typing import Any

from refscan.demo.process import HOST, STARTUP_TIMEOUT, ManagedProcess, ServerStartError, free_port, http_status
from refscan.demo.servers import GCSServer, find_fake_gcs_binary


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


def azurite_sas(account: str, key: str, hours: float = 6.0) -> str:
    """An account SAS (read + list on every container and blob) for Azurite's development account, as a query
    string without `?`: signs plain List Blobs requests (the raw listing floor) without Shared Key code."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours)
    resources = ResourceTypes(service=True, container=True, object=True)
    return str(generate_account_sas(account, key, resources, AccountSasPermissions(read=True, list=True), expiry))


def start_seaweedfs(timeout: float = 120.0) -> Any:
    """SeaweedFS (``weed mini``, signed requests only) from the project's launcher in `refscan.demo.servers`."""
    try:
        from refscan.demo.servers import start_seaweedfs as start
    except ImportError as e:
        raise ServerStartError(
            f"the SeaweedFS launcher (refscan.demo.servers.start_seaweedfs) cannot be imported ({e}): leave out "
            "the sw-* scenarios (--scenarios)"
        ) from e
    return start(timeout=timeout)


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.servers")
    sub = ap.add_subparsers(dest="server", required=True)
    moto = sub.add_parser("moto", help="moto + waitress with a fixed ListObjectVersions")
    moto.add_argument("--seed", nargs="*", default=[], help="datasets to create before listening")
    syn = sub.add_parser("synthetic", help="an S3 listing server over generated keys (bench/synthetic.py)")
    syn.add_argument("--objects", type=int, default=1_000_000)
    syn.add_argument("--port", type=int, default=0)
    syn.add_argument("--page-ms", type=float, default=0.0, help="server time per list page, slept (default 0)")
    args = ap.parse_args(argv)
    if args.server == "moto":
        from refscan.demo import moto_main

        patch_moto_version_listing()
        seed_moto(args.seed)
        moto_main.main(["--host", HOST, "--port", "0"])
    else:
        from .synthetic import serve

        serve(args.objects, args.port, page_ms=args.page_ms)
    sys.exit(0)


if __name__ == "__main__":
    main()
