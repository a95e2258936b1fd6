"""Azurite (the Azure Storage emulator, npm `azurite`) on 127.0.0.1, blob service only, in memory, seeded with
the synchronous azure-storage-blob client (the `azure` extra).

`find_azurite()` looks for `azurite-blob` in $AZURITE_BLOB, on PATH, then in the npm prefixes `.ci/run` uses
(`$REFSCAN_CACHE/azurite`, default `~/.cache/refscan/azurite`, and `./.azurite`).
"""

from __future__ import annotations

import os
import shutil
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

AZURITE_ACCOUNT = "devstoreaccount1"
#: the published development key of devstoreaccount1 (documented by Microsoft; not a secret)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_prefixes() -> list[Path]:
    """The npm prefixes `.ci/run` installs Azurite into, in the order they are searched."""
    cache = Path(os.environ.get("REFSCAN_CACHE") or Path.home() / ".cache" / "refscan")
    return [cache / "azurite", Path.cwd() / ".azurite"]


def find_azurite() -> str:
    """The `azurite-blob` executable; raises ServerStartError with the install command when there is none."""
    explicit = os.environ.get("AZURITE_BLOB")
    candidates = [explicit] if explicit else []
    found = shutil.which("azurite-blob")
    if found:
        candidates.append(found)
    candidates += [str(p / "node_modules" / ".bin" / "azurite-blob") for p in azurite_prefixes()]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ServerStartError(
        f"azurite-blob not found: npm install --prefix {azurite_prefixes()[0]} azurite@3.37.0 (or run .ci/run)"
    )


@dataclass
class AzuriteServer:
    """A running Azurite blob service; `connection_string` reaches devstoreaccount1; helpers seed it."""

    port: int
    process: ManagedProcess | None = None

    @property
    def account_url(self) -> str:
        return f"http://{HOST}:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.account_url};"
        )

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name: str | None = None) -> str:
        name = name or unique_name("az")
        self.service().create_container(name)
        return name

    def upload(
        self, container: str, name: str, data: bytes, *, metadata: Mapping[str, str] | None = None, blocks: int = 1
    ) -> dict[str, Any]:
        """Upload `data` as blob `name`: single-shot (the service stores a Content-MD5), or as `blocks` staged
        blocks committed without one. Returns the upload's properties (`etag` quoted as the header sends it)."""
        blob = self.service().get_blob_client(container, name)
        if blocks <= 1:
            result: dict[str, Any] = blob.upload_blob(data, overwrite=True, metadata=dict(metadata or {}))
            return result
        from azure.storage.blob import BlobBlock

        size = max(1, -(-len(data) // blocks))
        ids = []
        for i in range(blocks):
            block_id = f"{i:08d}"
            blob.stage_block(block_id, data[i * size : (i + 1) * size])
            ids.append(BlobBlock(block_id=block_id))
        commit: dict[str, Any] = blob.commit_block_list(ids, metadata=dict(metadata or {}))
        return commit

    def upload_many(self, container: str, blobs: Mapping[str, bytes], *, workers: int = 16) -> None:
        service = self.service()
        client = service.get_container_client(container)

        def one(item: tuple[str, bytes]) -> None:
            client.upload_blob(item[0], item[1], overwrite=True)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, blobs.items()))

    def delete(self, container: str, name: str) -> None:
        self.service().get_blob_client(container, name).delete_blob()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def start_azurite(timeout: float = STARTUP_TIMEOUT, attempts: int = 3) -> AzuriteServer:
    """Start Azurite's blob service in memory on a free port and wait until it answers."""
    binary = find_azurite()
    try:
        import azure.storage.blob  # noqa: F401  (seeding needs it; fail here, not in the first test)
    except ImportError as exc:
        raise ServerStartError(f"azure-storage-blob is not installed: pip install 'refscan[azure]' ({exc})") from exc

    def launch(port: int) -> ManagedProcess:
        return ManagedProcess(
            [
                binary,
                "--blobHost", HOST,
                "--blobPort", str(port),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ],
            name="azurite",
        )  # fmt: skip

    def answers(port: int) -> bool:
        return http_status(f"{AzuriteServer(port).account_url}?comp=list", timeout=1.0) is not None

    proc, port = start_on_free_port(launch, answers, timeout=timeout, attempts=attempts, what="listening")
    return AzuriteServer(port=port, process=proc)
