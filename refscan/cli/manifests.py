"""Commands that read a manifest file or a logged version: `verify`, `download` and `diff`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..diff import diff_manifests
from ..download import download as download_files
from ..manifest import ManifestSource
from ..sources import StoredVersion, is_version_spec
from ..sync import run_sync
from ..verify import averify
from .context import Context
from .render import echo_json, print_verify_results
from .scaleout import executor_from, ray_options


@click.command()
@click.argument("source")
@click.option("--deep", is_flag=True, help="Read the bytes and check the strongest recorded hash.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Unverifiable entries fail too.")
@click.option("--all", "show_all", is_flag=True, help="List ok entries too.")
@click.option("--rescan", multiple=True, metavar="URI", help="List this folder again and report objects added.")
@click.option("--inventory", metavar="INV", help="Check entries against this newer inventory (manifest URI or path).")
@ray_options
@click.pass_obj
def verify(
    obj: Context,
    source: str,
    deep: bool,
    as_json: bool,
    strict: bool,
    show_all: bool,
    rescan: tuple[str, ...],
    inventory: str | None,
    ray: bool,
    ray_address: str | None,
    ray_workers: int | None,
) -> None:
    """Check that referenced objects are still exactly there.

    SOURCE is a manifest file or NAME:VER. Exits 1 when an entry changed, is missing, could not be
    checked, or (with --rescan) was added. With --inventory, entries the inventory vouches for are checked
    against its rows without a request each; the others are looked up live."""
    executor = executor_from(ray, ray_address, ray_workers)
    if executor is not None and (rescan or inventory is not None):
        raise click.UsageError("--ray does not combine with --rescan or --inventory")
    manifest: ManifestSource
    if inventory is not None and Path(source).is_file():  # read by verify itself, in chunks: millions of entries
        manifest, total = source, None
    elif inventory is not None and is_version_spec(source):
        manifest, total = StoredVersion(obj.store(), source), None
    else:
        manifest = obj.source(source)[0]
        total = len(manifest)
    with obj.progress("verified", total=total) as advance:
        report = run_sync(
            lambda: averify(
                manifest,
                deep=deep,
                options=obj.options,
                rescan=rescan,
                on_progress=advance,
                inventory=inventory,
                executor=executor,
            )
        )
    if report.inventory is not None:
        used = report.inventory
        click.echo(
            f"inventory {used['location']}: taken {used['created']}; {used['from_inventory']} entries checked "
            f"against it, {used['live']} looked up live",
            err=True,
        )
    if as_json:
        echo_json(report.to_dict())
    else:
        print_verify_results(report.results if show_all else list(report.problems()), report.counts, show_all)
    sys.exit(0 if (report.strict_ok() if strict else report.ok) else 1)


@click.command()
@click.argument("source")
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_obj
def download(obj: Context, source: str, directory: str) -> None:
    """Download files at their pinned versions, checked.

    Writes every entry of SOURCE (manifest file or NAME:VER) into DIRECTORY at its recorded version and
    checks each file against its recorded fingerprint."""
    manifest, store = obj.source(source)
    paths = download_files(manifest, directory, options=obj.options, store=store)
    click.echo(f"{len(paths)} files in {directory}")


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are differences.")
@click.pass_obj
def diff(obj: Context, a: str, b: str, as_json: bool, exit_code: bool) -> None:
    """Compare two manifests or logged versions.

    Prints the paths added (+), removed (-) and changed (~) from A to B (manifest files or NAME:VER)."""
    result = diff_manifests(obj.source(a)[0], obj.source(b)[0])
    if as_json:
        echo_json(result.to_dict())
    else:
        for sign, paths in (("+", result.added), ("-", result.removed), ("~", result.changed)):
            for path in paths:
                click.echo(f"{sign} {path}")
        if not result:
            click.echo("no differences")
    sys.exit(1 if exit_code and result else 0)
