"""The options that run a command's work as planned units: on Ray (`--ray`, `--ray-address`,
`--ray-workers`) and, for scan, resumable from a checkpoint folder (`--checkpoint`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..distributed import Executor, RayExecutor

F = TypeVar("F", bound=Callable[..., Any])


def ray_options(command: F) -> F:
    """`--ray`, `--ray-address ADDRESS` (implies --ray; else Ray's RAY_ADDRESS, else a local Ray) and
    `--ray-workers N`, passed to the command as `ray`, `ray_address`, `ray_workers`."""
    command = click.option("--ray-workers", type=click.IntRange(1), help="Ray actors (default: one per CPU).")(command)
    command = click.option("--ray-address", metavar="ADDRESS", help="The Ray cluster to run on (implies --ray).")(
        command
    )
    return click.option("--ray", is_flag=True, help="Run the work as Ray tasks (pip install 'refscan[ray]').")(command)


def executor_from(ray: bool, address: str | None, workers: int | None) -> Executor | None:
    """The executor those options ask for (None: the command's usual local path)."""
    if ray or address is not None or workers is not None:
        return RayExecutor(address, workers=workers)
    return None
