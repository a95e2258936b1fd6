"""The `refscan` command line: a thin layer that parses arguments, shows progress, renders results and
calls the library. Results go to stdout; progress, logs and errors to stderr.

- `app`: the click group, global options, errors to exit codes, `main()`
- `context`: the settings a command receives (options, progress, the local store, SOURCE lookup)
- `scan`, `manifests` (verify, download, diff), `local_store` (log, versions, ls), `demo`: the commands
- `render`: tables, JSON / JSON Lines, the atomic `-o` writer; `progress`: the stderr progress bar
"""

from __future__ import annotations

from .app import cli, main

__all__ = ["cli", "main"]
