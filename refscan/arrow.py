"""pyarrow, imported on first use (the `inventory` extra), with the install hint when it is missing, and
refscan's choice of Arrow's memory pool."""

from __future__ import annotations

import os
from typing import Any

from .errors import MissingDependency

#: Whether `pyarrow()` makes Arrow's default memory pool one that gives freed memory back (`lean_memory`).
_lean = {"wanted": False, "done": False}


def lean_memory() -> None:
    """Have refscan make Arrow's default memory pool jemalloc (where pyarrow has it, else the system
    allocator) when it first uses pyarrow, unless `ARROW_DEFAULT_MEMORY_POOL` already chooses one. Arrow's own
    default, mimalloc, keeps freed buffers: ~90 MB more at the peak of verifying a million entries. The CLI
    asks for this; a program embedding refscan decides for its own process (`pyarrow.set_memory_pool`)."""
    _lean["wanted"] = True


def pyarrow() -> Any:
    """The pyarrow package, or `MissingDependency` with the install hint."""
    try:
        import pyarrow as pa
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.dataset  # the submodules are used through `pa`
    except ImportError as exc:
        raise MissingDependency(
            f"reading inventories needs pyarrow ({exc.name or exc}): pip install 'refscan[inventory]'"
        ) from exc
    if _lean["wanted"] and not _lean["done"]:
        _lean["done"] = True
        if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
            try:
                pa.set_memory_pool(pa.jemalloc_memory_pool())
            except NotImplementedError:  # a build without jemalloc
                pa.set_memory_pool(pa.system_memory_pool())
    return pa
