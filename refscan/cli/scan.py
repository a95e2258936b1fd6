"""`refscan scan`: references to a manifest (JSON, streamed JSON Lines, or a table)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from ..distributed import Executor, run_scan
from ..manifest import EntryBatch, EntryList, Manifest, ManifestEntry
from ..scan import Scanner, ScanRequest
from ..sync import run_sync
from .context import Context
from .render import entries_table, open_binary_output, open_output, render
from .scaleout import executor_from, ray_options


def scan_into(
    obj: Context,
    requests: Sequence[ScanRequest],
    sink: Callable[[EntryBatch], object],
    executor: Executor | None = None,
    checkpoint: str | None = None,
) -> None:
    """Scan each request in turn with one scanner, passing entry batches to `sink` as they arrive (so `jsonl`
    streams in constant memory), with an "objects scanned" counter on stderr. With an `executor` or a
    `checkpoint` folder the work is planned as units (`refscan.distributed`): entries arrive in no order."""
    if executor is not None or checkpoint is not None:
        with obj.progress("objects scanned") as advance:

            def each(request: int, entries: list[ManifestEntry]) -> None:
                sink(EntryList(entries))
                advance(len(entries))

            def units(done: int, planned: int) -> None:
                advance(0, label=f"objects scanned, {done}/{planned} units done")

            run_sync(
                lambda: run_scan(
                    requests, each, options=obj.options, executor=executor, checkpoint=checkpoint, on_units=units
                )
            )
        return

    async def run() -> None:
        async with Scanner(obj.options) as scanner:
            with obj.progress("objects scanned") as advance:
                for r in requests:
                    async for batch in scanner.iter_scan_batches(
                        r.uri, name=r.name, checksum=r.checksum, max_objects=r.max_objects, inventory=r.inventory
                    ):
                        sink(batch)
                        advance(len(batch))
            report_inventories(scanner.inventories_used())

    run_sync(run)


def report_inventories(used: Sequence[Mapping[str, Any]]) -> None:
    """Say on stderr which inventory entries came from and when it was taken (they are as of that time)."""
    for inventory in used:
        click.echo(f"inventory {inventory['location']}: taken {inventory['created']}", err=True)


INVENTORY_HELP = "Read objects from this inventory (manifest URI or path) instead of listing."


@click.command()
@click.argument("uris", nargs=-1, required=True)
@click.option("--name", help="Path (single object) or folder prefix inside the artifact; needs one URI.")
@click.option("--max-objects", type=click.IntRange(0), help="Folder limit (default 10,000).")
@click.option("--no-checksum", is_flag=True, help="Record the URI only, without looking it up.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["json", "jsonl", "table"]), default="json", show_default=True)
@click.option("--inventory", metavar="INV", help=INVENTORY_HELP)
@click.option("--checkpoint", metavar="DIR", help="Record progress in DIR; rerun the same command to resume.")
@ray_options
@click.pass_obj
def scan(
    obj: Context,
    uris: tuple[str, ...],
    name: str | None,
    max_objects: int | None,
    no_checksum: bool,
    output: str | None,
    fmt: str,
    inventory: str | None,
    checkpoint: str | None,
    ray: bool,
    ray_address: str | None,
    ray_workers: int | None,
) -> None:
    """Scan references into a manifest.

    Prints a W&B v1 manifest (json), one entry per line as it is found (jsonl), or a table."""
    if name is not None and len(uris) > 1:
        raise click.UsageError("--name needs exactly one URI")
    requests = [ScanRequest(u, name, not no_checksum, max_objects, inventory) for u in uris]
    executor = executor_from(ray, ray_address, ray_workers)
    if fmt == "jsonl":  # streamed, as bytes: constant memory (and no text decoding) for millions of entries
        with open_binary_output(output) as lines:
            scan_into(obj, requests, lambda batch: lines.write(batch.jsonl_bytes()), executor, checkpoint)
        return
    manifest = Manifest()

    def add(batch: EntryBatch) -> None:
        for entry in batch.entries():
            manifest.add(entry)

    scan_into(obj, requests, add, executor, checkpoint)
    if fmt == "json":
        text = manifest.to_json()
    else:
        text = render(entries_table(manifest, f"{len(manifest)} entries, manifest digest {manifest.digest}"))
    with open_output(output) as out:
        out.write(text)
