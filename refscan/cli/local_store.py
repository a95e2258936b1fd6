"""Commands on the local store: `log` a version from references, list `versions`, `ls` a version's files."""

from __future__ import annotations

import click

from ..artifact import Artifact
from ..errors import RefscanError
from ..guard import aguard
from ..manifest import Manifest
from ..scan import ScanRequest
from ..sync import run_sync
from .context import Context
from .render import echo_json, print_table, table
from .scan import INVENTORY_HELP, report_inventories


@click.command("log")
@click.argument("name")
@click.argument("sources", nargs=-1)
@click.option("--type", "type_", required=True, help="Artifact type (dataset, model, ...); fixed for a name.")
@click.option(
    "--named",
    type=(str, str),
    multiple=True,
    metavar="PATH URI",
    help="Add URI at PATH (an object) or under PATH/ (a folder); repeatable.",
)
@click.option("-a", "--alias", "aliases", multiple=True, help="Alias for the new version; repeatable.")
@click.option("--description", help="Free text stored with the version.")
@click.option("--max-objects", type=click.IntRange(0), help="Folder limit per source (default 10,000).")
@click.option("--no-checksum", is_flag=True, help="Record the URIs only, without looking them up.")
@click.option("--inventory", metavar="INV", help=INVENTORY_HELP)
@click.pass_obj
def log_command(
    obj: Context,
    name: str,
    sources: tuple[str, ...],
    type_: str,
    named: tuple[tuple[str, str], ...],
    aliases: tuple[str, ...],
    description: str | None,
    max_objects: int | None,
    no_checksum: bool,
    inventory: str | None,
) -> None:
    """Log a version of artifact NAME from references.

    Each SOURCE (URI or local path) is added under its own file names; --named puts one under
    a path of your choice. Prints the version, NAME:vN (the existing one when nothing changed)."""
    requests = [ScanRequest(u, None, not no_checksum, max_objects, inventory) for u in sources]
    requests += [ScanRequest(u, path, not no_checksum, max_objects, inventory) for path, u in named]
    if not requests:
        raise click.UsageError("give at least one SOURCE or --named PATH URI")
    artifact = Artifact(name, type_, description=description, options=obj.options)
    # every source at once through one scanner; the first failure cancels the others and adds nothing
    label = f"scanning {len(requests)} source{'s' if len(requests) > 1 else ''}"
    with obj.progress(label) as advance:
        artifact.add_references(requests, on_entry=lambda _: advance(1))
    report_inventories(artifact.metadata.get("inventories", []))
    version = obj.store(create=True).log(artifact, aliases=aliases)
    click.echo(version)
    warn_at_risk(obj, artifact.manifest, version)


def warn_at_risk(obj: Context, manifest: Manifest, version: str) -> None:
    """One line on stderr when a lifecycle rule can delete what the logged version pins (guard's verdict);
    silent when nothing is at risk or the settings cannot be read."""
    try:
        report = run_sync(lambda: aguard(manifest, options=obj.options))
    except RefscanError:
        return
    risky = [r for r in report.results if r.status == "at-risk"]
    if risky:
        click.echo(
            f"refscan: warning: {len(risky)} of {len(report.results)} entries of {version} are at risk "
            f"({risky[0].path}: {risky[0].reason}); see `refscan guard {version}`",
            err=True,
        )


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def versions(obj: Context, name: str, as_json: bool) -> None:
    """List the versions of an artifact, oldest first."""
    found = obj.store().versions(name)
    if as_json:
        echo_json(
            [
                {
                    "ref": v.ref,
                    "type": v.type,
                    "digest": v.digest,
                    "aliases": list(v.aliases),
                    "created_at": v.created_at,
                    "entries": len(v.manifest),
                }
                for v in found
            ]
        )
        return
    rows = [(f"v{v.version}", v.digest, ", ".join(v.aliases), v.created_at, len(v.manifest)) for v in found]
    title = f"{name} ({found[0].type})"
    print_table(table(title, ("version", "digest", "aliases", "created_at", "entries"), rows))


@click.command("ls")
@click.argument("ref", metavar="NAME:VER")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def ls_command(obj: Context, ref: str, as_json: bool) -> None:
    """List the files of a version with direct URLs.

    Each file's direct URL points at its bytes (S3/GCS URLs pinned to the recorded version)."""
    files = obj.store().files(ref)
    if as_json:
        echo_json(
            [
                {"path": f.path, "ref": f.ref, "size": f.size, "digest": f.digest, "direct_url": f.direct_url}
                for f in files
            ]
        )
        return
    rows = [(f.path, f.size, f.digest, f.direct_url) for f in files]
    print_table(table(f"{ref}: {len(files)} files", ("path", "size", "digest", "direct_url"), rows))
