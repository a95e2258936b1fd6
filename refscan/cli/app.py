"""The `refscan` click group: global options, logging, and turning errors into one line and an exit code
(0 success, 1 drift or a failed operation, 2 bad usage, 130/143 interrupted/terminated). `main()` is the
console entry point."""

from __future__ import annotations

import errno
import logging
import signal
import sys
from types import FrameType
from typing import Any

import click
import structlog

from .. import __version__
from ..errors import InvalidName, InvalidSource, InvalidURI, RefscanError
from ..options import Options, S3Options
from .context import Context
from .demo import demo
from .guard import guard
from .local_store import log_command, ls_command, versions
from .manifests import diff, download, verify
from .render import fail
from .scan import scan

USAGE_ERRORS = (InvalidURI, InvalidName, InvalidSource)
_CLICK_FLOW = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)

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


class RefscanGroup(click.Group):
    """Turns errors into one `refscan: error: ...` line and the exit codes above (the traceback too with -v):
    malformed URIs, unknown schemes and invalid names are bad usage (2), every other error is a failed
    operation (1). Click's own usage errors keep click's message and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _CLICK_FLOW:
            raise
        except USAGE_ERRORS as exc:
            self._maybe_trace(ctx)
            fail(str(exc), 2)
        except RefscanError as exc:
            self._maybe_trace(ctx)
            fail(str(exc), 1)
        except KeyboardInterrupt:
            self._maybe_trace(ctx)
            fail(*(("terminated", 143) if _terminated else ("interrupted", 130)))
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # click closes a broken pipe quietly
            self._maybe_trace(ctx)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            fail(f"{type(exc).__name__}: {first_line} (run with -v for the traceback)", 1)

    @staticmethod
    def _maybe_trace(ctx: click.Context) -> None:
        obj = ctx.find_object(Context)
        if obj is not None and obj.verbose:
            import traceback

            traceback.print_exc()


def configure_logging(log_format: str, verbose: int, quiet: bool) -> None:
    """structlog events on stderr: console or JSON lines; debug with -v, warnings and errors only with -q."""
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
    configure_logging(log_format, verbose, quiet)
    s3 = S3Options(endpoint_url=endpoint_url, region=region, profile=profile, anonymous=anonymous)
    ctx.obj = Context(Options(concurrency=concurrency, s3=s3), progress, verbose, quiet)


for _command in (scan, verify, guard, download, diff, log_command, versions, ls_command, demo):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    cli(prog_name="refscan")
