"""The `refscan` command line (SPEC §10): a thin layer that parses arguments, renders progress and tables
and calls the library. Results go to stdout; progress, logs and errors to stderr. Exit codes: 0 success,
1 drift or a failed operation, 2 bad usage."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

import click
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .artifact import Artifact
from .diff import diff_manifests
from .download import download as download_files
from .errors import InvalidName, InvalidURI, RefscanError
from .manifest import Manifest, ManifestEntry
from .options import Options, S3Options
from .scan import Scanner, ScanRequest
from .store import Store
from .sync import run_sync
from .verify import VerifyResult, averify

USAGE_ERRORS = (InvalidURI, InvalidName)
_CLICK_FLOW = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)


class Context:
    """Settings shared by all commands."""

    def __init__(self, options: Options, progress: bool | None, verbose: int, quiet: bool) -> None:
        self.options = options
        self.verbose = verbose
        self.stderr = Console(stderr=True, force_terminal=True if progress else None)
        self.show_progress = (self.stderr.is_terminal and not quiet) if progress is None else progress

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

    def store(self, *, create: bool = False) -> Store:
        """The local store (`REFSCAN_HOME`, else `./.refscan`) with this invocation's options; only `log`
        creates it, lookups raise NotFound when it does not exist."""
        return Store(options=self.options) if create else Store.existing(options=self.options)


_terminated = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`timeout`, `kill`, a cancelled CI job) is handled as Ctrl-C, so the same cleanup runs: the scan
    or download task is cancelled and no `.part` or half-written `-o` file is left behind."""
    global _terminated
    _terminated = True
    on_sigint = signal.getsignal(signal.SIGINT)
    if not callable(on_sigint):  # SIGINT ignored (a background job): still stop
        raise KeyboardInterrupt
    on_sigint(signal.SIGINT, frame)  # asyncio's runner cancels its main task; Python's default raises


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"refscan: error: {message}", err=True)
    sys.exit(code)


class RefscanGroup(click.Group):
    """Turns errors into one clear line and the SPEC's exit codes (the traceback too with -v)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _CLICK_FLOW:
            raise
        except USAGE_ERRORS as exc:
            self._maybe_trace(ctx)
            _fail(str(exc), 2)
        except RefscanError as exc:
            self._maybe_trace(ctx)
            _fail(str(exc), 1)
        except KeyboardInterrupt:
            self._maybe_trace(ctx)
            _fail(*(("terminated", 143) if _terminated else ("interrupted", 130)))
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # click closes a broken pipe quietly
            self._maybe_trace(ctx)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            _fail(f"{type(exc).__name__}: {first_line} (run with -v for the traceback)", 1)

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
    """Track datasets and models in S3, GCS, HTTP(S) and local storage by reference.

    The local store (log, versions, ls, NAME:VER sources) lives in $REFSCAN_HOME, else ./.refscan.
    """
    _configure_logging(log_format, verbose, quiet)
    s3 = S3Options(endpoint_url=endpoint_url, region=region, profile=profile, anonymous=anonymous)
    ctx.obj = Context(Options(concurrency=concurrency, s3=s3), progress, verbose, quiet)


# -- output helpers ------------------------------------------------------------------------------------------


def _table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def _render(table: Table) -> str:
    """The table as text, as wide as the terminal (200 columns in a pipe or file)."""
    console = Console(file=io.StringIO(), width=Console().width if sys.stdout.isatty() else 200)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def _print_table(table: Table) -> None:
    click.echo(_render(table), nl=False)


def _entries_table(entries: list[ManifestEntry], title: str | None = None) -> Table:
    rows = [(e.path, e.size, e.digest, e.extra.get("versionID"), e.ref) for e in entries]
    return _table(title, ("path", "size", "digest", "version", "ref"), rows)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _jsonl(entry: ManifestEntry) -> str:
    return json.dumps({"path": entry.path, **entry.to_dict()}, ensure_ascii=False) + "\n"


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


# -- scan ----------------------------------------------------------------------------------------------------


def _scan_into(obj: Context, requests: Sequence[ScanRequest], sink: Callable[[ManifestEntry], object]) -> None:
    """Scan each request in turn with one scanner, passing entries to `sink` as they arrive."""

    async def run() -> None:
        async with Scanner(obj.options) as scanner:
            with obj.progress("objects scanned") as advance:
                for r in requests:
                    async for entry in scanner.iter_scan(
                        r.uri, name=r.name, checksum=r.checksum, max_objects=r.max_objects
                    ):
                        sink(entry)
                        advance(1)

    run_sync(run)


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
    """Scan references into a manifest.

    Prints a W&B v1 manifest (json), one entry per line as it is found (jsonl), or a table."""
    if name is not None and len(uris) > 1:
        raise click.UsageError("--name needs exactly one URI")
    requests = [ScanRequest(u, name, not no_checksum, max_objects) for u in uris]
    if fmt == "jsonl":  # streamed: constant memory for millions of entries
        with _open_output(output) as out:
            _scan_into(obj, requests, lambda e: out.write(_jsonl(e)))
        return
    manifest = Manifest()
    _scan_into(obj, requests, manifest.add)
    if fmt == "json":
        text = manifest.to_json()
    else:
        text = _render(_entries_table(list(manifest), f"{len(manifest)} entries, manifest digest {manifest.digest}"))
    with _open_output(output) as out:
        out.write(text)


# -- verify / download / diff --------------------------------------------------------------------------------


def load_source(obj: Context, source: str) -> tuple[Manifest, Store | None]:
    """A manifest from a JSON file path, or from the local store for `NAME:VERSION` (with that store)."""
    if Path(source).is_file():
        return Manifest.load(source), None
    if ":" in source and "/" not in source:
        store = obj.store()
        return store.get(source).manifest, store
    raise click.BadParameter(f"{source!r} is neither a manifest file nor a NAME:VERSION in the local store")


def _print_results(results: list[VerifyResult], counts: dict[str, int], show_all: bool) -> None:
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing to verify"
    shown = [r for r in results if show_all or r.status != "ok"]
    if not shown:
        click.echo(summary)
        return
    _print_table(_table(summary, ("status", "path", "reason"), [(r.status, r.path, r.reason) for r in shown]))


@cli.command()
@click.argument("source")
@click.option("--deep", is_flag=True, help="Read the bytes and check the strongest recorded hash.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Unverifiable entries fail too.")
@click.option("--all", "show_all", is_flag=True, help="List ok entries too.")
@click.option("--rescan", multiple=True, metavar="URI", help="List this folder again and report objects added.")
@click.pass_obj
def verify(
    obj: Context, source: str, deep: bool, as_json: bool, strict: bool, show_all: bool, rescan: tuple[str, ...]
) -> None:
    """Check that referenced objects are still exactly there.

    SOURCE is a manifest file or NAME:VER. Exits 1 when an entry changed, is missing, could not be
    checked, or (with --rescan) was added."""
    manifest, _ = load_source(obj, source)
    with obj.progress("verified", total=len(manifest)) as advance:
        report = run_sync(
            lambda: averify(manifest, deep=deep, options=obj.options, rescan=rescan, on_result=lambda r: advance(1))
        )
    if as_json:
        _echo_json(report.to_dict())
    else:
        _print_results(list(report.results), report.counts, show_all)
    sys.exit(0 if (report.strict_ok() if strict else report.ok) else 1)


@cli.command()
@click.argument("source")
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_obj
def download(obj: Context, source: str, directory: str) -> None:
    """Download files at their pinned versions, checked.

    Writes every entry of SOURCE (manifest file or NAME:VER) into DIRECTORY at its recorded version and
    checks each file against its recorded fingerprint."""
    manifest, store = load_source(obj, source)
    paths = download_files(manifest, directory, options=obj.options, store=store)
    click.echo(f"{len(paths)} files in {directory}")


@cli.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are differences.")
@click.pass_obj
def diff(obj: Context, a: str, b: str, as_json: bool, exit_code: bool) -> None:
    """Compare two manifests or logged versions.

    Prints the paths added (+), removed (-) and changed (~) from A to B (manifest files or NAME:VER)."""
    result = diff_manifests(load_source(obj, a)[0], load_source(obj, b)[0])
    if as_json:
        _echo_json(result.to_dict())
    else:
        for sign, paths in (("+", result.added), ("-", result.removed), ("~", result.changed)):
            for path in paths:
                click.echo(f"{sign} {path}")
        if not result:
            click.echo("no differences")
    sys.exit(1 if exit_code and result else 0)


# -- the local store -----------------------------------------------------------------------------------------


@cli.command("log")
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
) -> None:
    """Log a version of artifact NAME from references.

    Each SOURCE (URI or local path) is added under its own file names; --named puts one under
    a path of your choice. Prints the version, NAME:vN (the existing one when nothing changed)."""
    requests = [ScanRequest(u, None, not no_checksum, max_objects) for u in sources]
    requests += [ScanRequest(u, path, not no_checksum, max_objects) for path, u in named]
    if not requests:
        raise click.UsageError("give at least one SOURCE or --named PATH URI")
    artifact = Artifact(name, type_, description=description, options=obj.options)
    manifest = Manifest()
    _scan_into(obj, requests, manifest.add)
    artifact.add_entries(manifest)
    click.echo(obj.store(create=True).log(artifact, aliases=aliases))


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def versions(obj: Context, name: str, as_json: bool) -> None:
    """List the versions of an artifact, oldest first."""
    found = obj.store().versions(name)
    if as_json:
        _echo_json(
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
    _print_table(_table(title, ("version", "digest", "aliases", "created_at", "entries"), rows))


@cli.command("ls")
@click.argument("ref", metavar="NAME:VER")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def ls_command(obj: Context, ref: str, as_json: bool) -> None:
    """List the files of a version with direct URLs.

    Each file's direct URL points at its bytes (S3/GCS URLs pinned to the recorded version)."""
    files = obj.store().files(ref)
    if as_json:
        _echo_json(
            [
                {"path": f.path, "ref": f.ref, "size": f.size, "digest": f.digest, "direct_url": f.direct_url}
                for f in files
            ]
        )
        return
    rows = [(f.path, f.size, f.digest, f.direct_url) for f in files]
    _print_table(_table(f"{ref}: {len(files)} files", ("path", "size", "digest", "direct_url"), rows))


# -- demo ----------------------------------------------------------------------------------------------------


@cli.command()
def demo() -> None:
    """Tour refscan on local S3, GCS and HTTP servers.

    Logs an artifact, overwrites one object, verifies and downloads; needs the demo extra."""
    from .demo.run import missing_requirements, run_demo

    missing = missing_requirements()
    if missing:
        _fail(f"the demo needs {', '.join(missing)}: pip install 'refscan[demo]'", 1)
    sys.exit(0 if run_demo(Console(soft_wrap=True)) else 1)


def main() -> None:
    """Console entry point."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    cli(prog_name="refscan")
