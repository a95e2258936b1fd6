"""The `refscan` command line (SPEC §10): a thin layer that parses arguments, renders progress and tables
on stderr/stdout and calls the library. Exit codes: 0 success, 1 drift or a failed operation, 2 bad usage."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .diff import diff_manifests
from .errors import InvalidName, InvalidURI, ManifestError, RefscanError
from .manifest import Manifest, ManifestEntry
from .options import Options, S3Options
from .scan import Scanner
from .sync import run_sync
from .verify import VerifyResult, averify

USAGE_ERRORS = (InvalidURI, InvalidName)


class Context:
    """Settings shared by all commands."""

    def __init__(self, options: Options, progress: bool | None, verbose: int) -> None:
        self.options = options
        self.verbose = verbose
        self.stderr = Console(stderr=True)
        self.show_progress = self.stderr.is_terminal if progress is None else progress

    @contextmanager
    def progress(self, label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """A progress bar on stderr (only when enabled); yields `advance(n)`."""
        if not self.show_progress:
            yield lambda n: None
            return
        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        with Progress(*columns, TimeElapsedColumn(), console=self.stderr, transient=True) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n: bar.advance(task, n)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"refscan: error: {message}", err=True)
    sys.exit(code)


class RefscanGroup(click.Group):
    """Turns refscan errors into one clear line and the SPEC's exit codes (traceback with -v)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as exc:
            self._maybe_trace(ctx)
            _fail(str(exc), 2)
        except RefscanError as exc:
            self._maybe_trace(ctx)
            _fail(str(exc), 1)

    @staticmethod
    def _maybe_trace(ctx: click.Context) -> None:
        obj = ctx.find_object(Context)
        if obj is not None and obj.verbose:
            import traceback

            traceback.print_exc()


def _configure_logging(log_format: str, verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


@click.group(cls=RefscanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="refscan")
@click.option("--endpoint-url", help="S3 endpoint (MinIO, R2, Ceph, moto); default from AWS_ENDPOINT_URL_S3 etc.")
@click.option("--region", help="S3 region.")
@click.option("--profile", help="AWS profile.")
@click.option("--anonymous", is_flag=True, help="Unsigned S3 requests (public buckets).")
@click.option("--concurrency", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: only on a terminal).")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", show_default=True)
@click.option("-v", "--verbose", count=True, help="Debug events and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    anonymous: bool,
    concurrency: int,
    progress: bool | None,
    log_format: str,
    verbose: int,
    quiet: bool,
) -> None:
    """Track datasets and models in S3, GCS, HTTP(S) and local storage by reference."""
    _configure_logging(log_format, verbose, quiet)
    s3 = S3Options(endpoint_url=endpoint_url, region=region, profile=profile, anonymous=anonymous)
    ctx.obj = Context(Options(concurrency=concurrency, s3=s3), progress, verbose)


def _entries_table(entries: list[ManifestEntry], title: str | None = None) -> Table:
    table = Table(title=title)
    for column in ("path", "size", "digest", "version", "ref"):
        table.add_column(column, overflow="fold")
    for e in entries:
        version = e.extra.get("versionID")
        table.add_row(
            e.path,
            "" if e.size is None else str(e.size),
            e.digest,
            "" if version is None else str(version),
            e.ref or "",
        )
    return table


@cli.command()
@click.argument("uris", nargs=-1, required=True)
@click.option("--name", help="Path (single object) or folder prefix inside the artifact; needs one URI.")
@click.option("--max-objects", type=click.IntRange(0), help="Folder limit (default 10,000).")
@click.option("--no-checksum", is_flag=True, help="Record the URI only, without looking it up.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["json", "jsonl", "table"]), default="json", show_default=True)
@click.pass_obj
def scan(
    obj: Context,
    uris: tuple[str, ...],
    name: str | None,
    max_objects: int | None,
    no_checksum: bool,
    output: str | None,
    fmt: str,
) -> None:
    """Scan URIS and print a W&B v1 manifest (json), one entry per line (jsonl) or a table."""
    if name is not None and len(uris) > 1:
        raise click.UsageError("--name needs exactly one URI")
    if fmt == "jsonl":  # streamed: constant memory for millions of entries
        with _open_output(output) as out:
            _scan_into(obj, uris, name, max_objects, not no_checksum, lambda e: out.write(_jsonl(e)))
        return
    manifest = Manifest()
    _scan_into(obj, uris, name, max_objects, not no_checksum, manifest.add)
    if fmt == "json":
        text = manifest.to_json()
    else:
        title = f"{len(manifest)} entries, manifest digest {manifest.digest}"
        text = _render(_entries_table(list(manifest), title=title))
    with _open_output(output) as out:
        out.write(text)


def _jsonl(entry: ManifestEntry) -> str:
    return json.dumps({"path": entry.path, **entry.to_dict()}, ensure_ascii=False) + "\n"


def _render(table: Table) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


@contextmanager
def _open_output(output: str | None) -> Iterator[TextIO]:
    """stdout, or FILE written atomically (renamed into place only when the command succeeded)."""
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(output)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _scan_into(
    obj: Context,
    uris: tuple[str, ...],
    name: str | None,
    max_objects: int | None,
    checksum: bool,
    sink: Callable[[ManifestEntry], object],
) -> None:
    """Scan each URI in turn with one scanner, passing entries to `sink` as they arrive."""

    async def run() -> None:
        async with Scanner(obj.options) as scanner:
            with obj.progress("objects scanned") as advance:
                for uri in uris:
                    async for entry in scanner.iter_scan(uri, name=name, checksum=checksum, max_objects=max_objects):
                        sink(entry)
                        advance(1)

    run_sync(run)


def load_source(source: str) -> Manifest:
    """A manifest from a JSON file path, or from the local store for `NAME:VERSION`."""
    if Path(source).is_file():
        return Manifest.load(source)
    if ":" in source and "/" not in source:
        from .store import Store

        return Store().get(source).manifest
    raise ManifestError(f"{source!r} is neither a manifest file nor a NAME:VERSION in the local store")


def _print_results(results: list[VerifyResult], counts: dict[str, int], show_all: bool) -> None:
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing to verify"
    shown = [r for r in results if show_all or r.status != "ok"]
    if not shown:
        click.echo(summary)
        return
    table = Table(title=summary)
    for column in ("status", "path", "reason"):
        table.add_column(column, overflow="fold")
    for r in shown:
        table.add_row(r.status, r.path, r.reason)
    Console().print(table)


@cli.command()
@click.argument("source")
@click.option("--deep", is_flag=True, help="Read the bytes and check the strongest recorded hash.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Unverifiable entries fail too.")
@click.option("--all", "show_all", is_flag=True, help="List ok entries too.")
@click.pass_obj
def verify(obj: Context, source: str, deep: bool, as_json: bool, strict: bool, show_all: bool) -> None:
    """Check that every reference in SOURCE (manifest file or NAME:VER) is still exactly there."""
    manifest = load_source(source)
    with obj.progress("verified", total=len(manifest)) as advance:
        report = run_sync(lambda: averify(manifest, deep=deep, options=obj.options, on_result=lambda r: advance(1)))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_results(list(report.results), report.counts, show_all)
    sys.exit(0 if (report.strict_ok() if strict else report.ok) else 1)


@cli.command()
@click.argument("source")
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_obj
def download(obj: Context, source: str, directory: str) -> None:
    """Download every entry of SOURCE (manifest file or NAME:VER) at its pinned version into DIRECTORY."""
    from .download import download as run_download

    manifest = load_source(source)
    paths = run_download(manifest, directory, options=obj.options)
    click.echo(f"{len(paths)} files in {directory}")


@cli.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are differences.")
def diff(a: str, b: str, as_json: bool, exit_code: bool) -> None:
    """Show paths added, removed and changed from A to B (manifest files or NAME:VER)."""
    result = diff_manifests(load_source(a), load_source(b))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        for sign, paths in (("+", result.added), ("-", result.removed), ("~", result.changed)):
            for path in paths:
                click.echo(f"{sign} {path}")
        if not result:
            click.echo("no differences")
    sys.exit(1 if exit_code and result else 0)


def main() -> None:
    """Console entry point."""
    cli(prog_name="refscan")
