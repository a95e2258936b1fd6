"""`refscan guard`: will what a manifest pins survive the bucket's lifecycle rules? And `--hold` / `--release`."""

from __future__ import annotations

import sys

import click

from ..guard import GuardReport, aguard
from ..sync import run_sync
from .context import Context
from .render import echo_json, print_table, summary, table


@click.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Entries whose protection is unknown fail too.")
@click.option("--all", "show_all", is_flag=True, help="List protected entries too.")
@click.option("--hold", is_flag=True, help="First hold every pinned version (S3 legal hold, GCS temporary hold).")
@click.option("--release", is_flag=True, help="Remove those holds first.")
@click.pass_obj
def guard(obj: Context, source: str, as_json: bool, strict: bool, show_all: bool, hold: bool, release: bool) -> None:
    """Check that nothing configured deletes the versions SOURCE pins.

    SOURCE is a manifest file or NAME:VER. Each entry is protected, at-risk (a lifecycle rule can delete
    it: the rule and the earliest date are named), unpinned (no version recorded, or the bucket keeps no
    versions) or unknown (the settings could not be read). Exits 1 when an entry is at risk or unpinned
    (unknown too with --strict). With --hold/--release the exit code says whether every hold was placed or
    removed."""
    if hold and release:
        raise click.UsageError("--hold and --release exclude each other")
    manifest, _ = obj.source(source)
    with obj.progress("guarded", total=len(manifest)) as advance:
        report = run_sync(
            lambda: aguard(manifest, options=obj.options, hold=hold, release=release, on_result=lambda r: advance(1))
        )
    if as_json:
        echo_json(report.to_dict())
    else:
        print_report(report, show_all)
    if report.holds is not None:
        sys.exit(0 if report.holds_ok else 1)
    sys.exit(0 if (report.strict_ok() if strict else report.ok) else 1)


def print_report(report: GuardReport, show_all: bool) -> None:
    """The holds done (if any), then the verdicts that are not `protected` (all with `show_all`) under the
    summary line."""
    if report.holds is not None:
        rows = [(h.status, h.path, h.reason) for h in report.holds if show_all or h.status not in ("held", "released")]
        title = f"holds: {summary(report.hold_counts())}"
        if rows:
            print_table(table(title, ("result", "path", "reason"), rows))
        else:
            click.echo(title)
    shown = [r for r in report.results if show_all or r.status != "protected"]
    title = summary(report.counts) or "nothing to guard"
    if not shown:
        click.echo(title)
        return
    rows2 = [(r.status, r.path, r.earliest, r.reason) for r in shown]
    print_table(table(title, ("status", "path", "earliest", "reason"), rows2))
