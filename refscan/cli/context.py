"""The settings one `refscan` invocation shares between its global options and its command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console

from ..errors import InvalidSource
from ..manifest import Manifest
from ..options import Options
from ..sources import open_source
from ..store import Store
from .progress import Advance, progress_bar


class Context:
    """Scan options, verbosity and where progress goes; commands receive it with `@click.pass_obj`."""

    def __init__(self, options: Options, progress: bool | None, verbose: int, quiet: bool) -> None:
        self.options = options
        self.verbose = verbose
        self.stderr = Console(stderr=True, force_terminal=True if progress else None)
        self.show_progress = (self.stderr.is_terminal and not quiet) if progress is None else progress

    @contextmanager
    def progress(self, label: str, total: int | None = None) -> Iterator[Advance]:
        """A progress bar on stderr (only when progress is on); yields `advance(n)`."""
        with progress_bar(self.stderr, label, total, enabled=self.show_progress) as advance:
            yield advance

    def store(self, *, create: bool = False) -> Store:
        """The local store (`REFSCAN_HOME`, else `./.refscan`) with this invocation's options; only `log`
        creates it, lookups raise NotFound when it does not exist."""
        return Store(options=self.options) if create else Store.existing(options=self.options)

    def source(self, text: str) -> tuple[Manifest, Store | None]:
        """The manifest a SOURCE argument names (a manifest file or NAME:VER), and its store if any. Text
        that is neither is a usage error (exit 2) on the current command."""
        try:
            return open_source(text, options=self.options)
        except InvalidSource as exc:
            raise click.BadParameter(str(exc)) from None
