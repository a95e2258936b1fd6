"""Progress on stderr: a rich bar while a command works, nothing at all when progress is off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Advance(Protocol):
    """`advance(n)`: n more items done; `label=` replaces the bar's label (e.g. with a count of ranges)."""

    def __call__(self, n: int, /, label: str | None = None) -> None: ...


def _ignore(n: int, /, label: str | None = None) -> None:
    return None


@contextmanager
def progress_bar(console: Console, label: str, total: int | None = None, *, enabled: bool = True) -> Iterator[Advance]:
    """A transient bar labelled `label` on `console` (counting up to `total`, or open-ended when it is
    `None`); yields `advance(n)`. When not `enabled` nothing is drawn and `advance` does nothing."""
    if not enabled:
        yield _ignore
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int, /, label: str | None = None) -> None:
            bar.update(task, advance=n, description=label)

        yield advance
