"""`python -m bench.spawn REPORT CMD [ARG ...]`: run CMD from a small fresh process and write its own peak RSS,
CPU and wall time to REPORT (JSON); exit with CMD's status.

Why a process in between: Linux carries a process's peak RSS across `exec` (the kernel keeps the larger of
the old and new memory's high-water marks in `ru_maxrss`), and `subprocess` starts children by vfork/fork
from the bench itself, so every child would report at least the bench's own peak as its peak RSS — about
1 GB once the bench has parsed a million-entry rclone listing. This launcher is a fresh interpreter of a few
MB; CMD, spawned from it, starts from that instead. Only the standard library is imported.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    report, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    with open(report, "w", encoding="utf-8") as f:
        json.dump({"status": code, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                   "maxrss_kb": usage.ru_maxrss}, f)  # fmt: skip
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
