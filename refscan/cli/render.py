"""What commands print: rich tables, JSON and JSON Lines on stdout, the atomic `-o FILE` writer, and the
one-line error on stderr."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click
from rich.console import Console
from rich.table import Table

from ..manifest import ManifestEntry
from ..verify import VerifyResult


def fail(message: str, code: int) -> NoReturn:
    """Print `refscan: error: MESSAGE` on stderr and exit with `code`."""
    click.echo(f"refscan: error: {message}", err=True)
    sys.exit(code)


# -- tables ----------------------------------------------------------------------------------------------------


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    """A table of `rows` under `columns`; `None` cells are empty, long cells wrap instead of being cut."""
    out = Table(title=title)
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    return out


def render(t: Table) -> str:
    """The table as text, as wide as the terminal (200 columns in a pipe or file)."""
    console = Console(file=io.StringIO(), width=Console().width if sys.stdout.isatty() else 200)
    console.print(t)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def print_table(t: Table) -> None:
    click.echo(render(t), nl=False)


def entries_table(entries: Iterable[ManifestEntry], title: str | None = None) -> Table:
    rows = [(e.path, e.size, e.digest, e.extra.get("versionID"), e.ref) for e in entries]
    return table(title, ("path", "size", "digest", "version", "ref"), rows)


def print_verify_results(results: Sequence[VerifyResult], counts: dict[str, int], show_all: bool) -> None:
    """The summary line (`2 ok, 1 changed`) as the title of a table of the entries that are not ok (all
    of them with `show_all`); just the summary when that table would be empty."""
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing to verify"
    shown = [r for r in results if show_all or r.status != "ok"]
    if not shown:
        click.echo(summary)
        return
    print_table(table(summary, ("status", "path", "reason"), [(r.status, r.path, r.reason) for r in shown]))


# -- JSON ------------------------------------------------------------------------------------------------------


def echo_json(data: Any) -> None:
    """`data` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# -- output files ----------------------------------------------------------------------------------------------


@contextmanager
def open_output(output: str | None) -> Iterator[TextIO]:
    """stdout, or FILE written atomically: the text goes to a hidden temporary file beside it, renamed into
    place only when the block exits without an exception (and removed otherwise)."""
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
