"""`refscan demo`: the tour on local S3, GCS, HTTP and Azure servers (needs the `demo` extra; Azure: Azurite)."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from .render import fail


@click.command()
def demo() -> None:
    """Tour refscan on local S3, GCS, HTTP and Azure servers.

    Logs an artifact, overwrites one object, verifies and downloads; needs the demo extra. The Azure leg runs
    when Azurite (npm azurite) and the azure extra are installed, else it is skipped with the reason."""
    from ..demo.run import missing_requirements, run_demo

    missing = missing_requirements()
    if missing:
        fail(f"the demo needs {', '.join(missing)}: pip install 'refscan[demo]'", 1)
    sys.exit(0 if run_demo(Console(soft_wrap=True)) else 1)
