"""The `refscan` click group: global options, logging, and turning errors into one line and an exit code
(0 success, 1 drift, a failed operation or a passed --timeout, 2 bad usage, 130/143/129 interrupted/
terminated/hung up). `main()` is the
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
from ..arrow import lean_memory
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

#: Why the run is being stopped, once a signal or the deadline asked for it: (message, exit code).
_stopped: tuple[str, int] | None = None
_STOPS = {signal.SIGTERM: ("terminated", 143), signal.SIGHUP: ("hung up", 129)}


def _stop(reason: tuple[str, int], frame: FrameType | None) -> None:
    """Stop the run as Ctrl-C does, so the same cleanup runs: the scan or download task is cancelled and no
    `.part`, half-written `-o` file or half-made store change is left behind."""
    global _stopped
    _stopped = reason
    on_sigint = signal.getsignal(signal.SIGINT)
    if not callable(on_sigint):  # SIGINT ignored (a background job): still stop
        raise KeyboardInterrupt
    on_sigint(signal.SIGINT, frame)  # asyncio's runner cancels its main task; Python's default raises


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`timeout`, `kill`, a cancelled CI job) and SIGHUP (the terminal or SSH session closed)."""
    _stop(_STOPS[signal.Signals(signum)], frame)


def _start_deadline(ctx: click.Context, seconds: float) -> None:
    """`--timeout`: SIGALRM after `seconds` stops the run like Ctrl-C, with exit code 1; the timer is
    cleared when the command ends."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        _stop((f"the --timeout deadline of {seconds:g} s passed before the command finished", 1), frame)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)

    def clear() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    ctx.call_on_close(clear)


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
            fail(*(_stopped or ("interrupted", 130)))
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
@click.option(
    "--timeout",
    type=click.FloatRange(0, 2_000_000, min_open=True),
    metavar="SECONDS",
    help="Deadline for the whole command: past it everything is cancelled, nothing partial is kept, exit 1.",
)
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
    timeout: float | None,
    progress: bool | None,
    log_format: str,
    verbose: int,
    quiet: bool,
) -> None:
    """Track datasets and models in S3, GCS, HTTP(S) and local storage by reference.

    The local store (log, versions, ls, NAME:VER sources) lives in $REFSCAN_HOME, else ./.refscan.
    """
    global _stopped
    _stopped = None
    configure_logging(log_format, verbose, quiet)
    if timeout is not None:
        _start_deadline(ctx, timeout)
    s3 = S3Options(endpoint_url=endpoint_url, region=region, profile=profile, anonymous=anonymous)
    ctx.obj = Context(Options(concurrency=concurrency, s3=s3), progress, verbose, quiet)


for _command in (scan, verify, guard, download, diff, log_command, versions, ls_command, demo):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    lean_memory()
    for signum in _STOPS:
        signal.signal(signum, _on_signal)
    cli(prog_name="refscan")
