"""`refscan demo`: the tour on local S3, GCS and HTTP servers (needs the `demo` extra)."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from .render import fail


@click.command()
def demo() -> None:
    """Tour refscan on local S3, GCS and HTTP servers.

    Logs an artifact, overwrites one object, verifies and downloads; needs the demo extra."""
    from ..demo.run import missing_requirements, run_demo

    missing = missing_requirements()
    if missing:
        fail(f"the demo needs {', '.join(missing)}: pip install 'refscan[demo]'", 1)
    sys.exit(0 if run_demo(Console(soft_wrap=True)) else 1)
