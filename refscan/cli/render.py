"""What commands print: rich tables, JSON and JSON Lines on stdout, the `-o FILE` writer, and the
one-line error on stderr."""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn, TextIO, cast

import click
from rich.console import Console
from rich.table import Table

from ..errors import RefscanError
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


def summary(counts: dict[str, int]) -> str:
    """`2 ok, 1 changed`: the statuses that occur, with their numbers ("" when none do)."""
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v)


def print_verify_results(results: Sequence[VerifyResult], counts: dict[str, int], show_all: bool) -> None:
    """The summary line (`2 ok, 1 changed`) as the title of a table of the entries that are not ok (all
    of them with `show_all`); just the summary when that table would be empty."""
    title = summary(counts) or "nothing to verify"
    shown = [r for r in results if show_all or r.status != "ok"]
    if not shown:
        click.echo(title)
        return
    print_table(table(title, ("status", "path", "reason"), [(r.status, r.path, r.reason) for r in shown]))


# -- JSON ------------------------------------------------------------------------------------------------------


def echo_json(data: Any) -> None:
    """`data` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# -- output files ----------------------------------------------------------------------------------------------


#: What a write raises when the disk refuses more bytes: full, over a quota, past the file-size limit, I/O error.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


@contextmanager
def open_output(output: str | None) -> Iterator[TextIO]:
    """Where a command's results go: stdout for None or `-`; a device, FIFO or socket (`/dev/null`, a named
    pipe) written straight into; else a regular FILE written atomically: the text goes to a hidden temporary
    file beside it, renamed into place only when the block exits without an exception (and removed otherwise,
    leaving an existing FILE as it was). A full disk or a file-size limit is a `RefscanError` naming FILE."""
    if output is None or output == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with _output_file(output, "w") as f:
        yield cast(TextIO, f)


@contextmanager
def open_binary_output(output: str | None) -> Iterator[BinaryIO]:
    """`open_output` for bytes (UTF-8 text already encoded): stdout's own byte stream for None or `-`."""
    if output is None or output == "-":
        sys.stdout.flush()  # text already written goes first
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with _output_file(output, "wb") as f:
        yield cast(BinaryIO, f)


@contextmanager
def _output_file(output: str, mode: str) -> Iterator[IO[Any]]:
    """The file FILE of `open_output`, opened in `mode` (`w`: UTF-8 text, `wb`: bytes)."""
    encoding = None if "b" in mode else "utf-8"
    target = Path(output)
    try:
        if target.exists() and not target.is_file():
            with open(target, mode, encoding=encoding) as f:
                yield f
            return
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, mode, encoding=encoding) as f:
                yield f
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno not in _DISK_ERRNOS:
            raise
        raise RefscanError(f"cannot write {output}: {exc.strerror}; it was left as it was") from None
