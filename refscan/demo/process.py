"""Child-process plumbing for the local servers: free ports, readiness polling, process groups.

Used by `refscan demo` and by the test fixtures (tests/servers); no pytest in here.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0


class ServerStartError(RuntimeError):
    """A server could not be started (missing binary or package, crash at startup, readiness timeout)."""


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (callers that pass it to a child retry on bind failures)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def unique_name(prefix: str = "t") -> str:
    """A lowercase name valid as both an S3 and a GCS bucket name (3-63 chars, [a-z0-9-])."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def http_status(url: str, timeout: float = 1.0, method: str = "GET") -> int | None:
    """Status code of a request, or None if nothing answered."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


def _pdeathsig() -> Callable[[], None] | None:
    """preexec_fn: ask Linux to SIGTERM the child when its parent (the starting thread) dies without cleaning
    up."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def _set() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return _set


class ManagedProcess:
    """A child process in its own process group; ``stop()`` signals the whole group.

    stdout/stderr go to a temp file (never a pipe that nobody drains), so a chatty server cannot block.
    Being its own session, the child does not get the terminal's Ctrl-C: the parent stops it. On Linux the
    child is also sent SIGTERM when the thread that started it exits, so start it from a long-lived thread.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._log: IO[bytes] = tempfile.NamedTemporaryFile(prefix=f"refscan-{name}-", suffix=".log")  # noqa: SIM115
        self.log_path = Path(self._log.name)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session => own process group, killable as a unit
                preexec_fn=_pdeathsig(),
            )
        except OSError as e:
            self._log.close()
            raise ServerStartError(f"{name}: cannot execute {self.argv[0]!r}: {e}") from e
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, limit: int = 4000) -> str:
        """The last `limit` bytes the child printed."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", errors="replace")

    def wait_until(
        self,
        ready: Callable[[], bool],
        *,
        timeout: float = STARTUP_TIMEOUT,
        interval: float = 0.02,
        what: str = "ready",
    ) -> None:
        """Poll ``ready()`` until true; raise ServerStartError if the child exits or time runs out."""
        deadline = time.monotonic() + timeout
        delay = interval
        while True:
            if not self.alive():
                raise ServerStartError(
                    f"{self.name} exited with code {self.proc.returncode} before it was {what}.\n"
                    f"command: {' '.join(self.argv)}\noutput:\n{self.output()}"
                )
            with contextlib.suppress(Exception):
                if ready():
                    return
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.name} was not {what} within {timeout:.0f}s.\n"
                    f"command: {' '.join(self.argv)}\noutput:\n{self.output()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        pgid = self.proc.pid  # == pgid because of start_new_session
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            try:
                self.proc.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        # Reap stragglers of the group (e.g. nginx workers) even if the leader already exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self._log.close()


def start_on_free_port(
    launch: Callable[[int], ManagedProcess],
    ready: Callable[[int], bool],
    *,
    timeout: float = STARTUP_TIMEOUT,
    attempts: int = 3,
    what: str = "ready",
) -> tuple[ManagedProcess, int]:
    """`launch(port)` a server on a free port and wait until `ready(port)`; returns the process and its port.

    The port can be taken between the probe and the child's bind, so a server that exits or never gets ready is
    stopped and launched again on another port, `attempts` times in all; then the last ServerStartError is
    raised. Any other failure (Ctrl-C included) stops the child and propagates."""
    last: ServerStartError | None = None
    for _ in range(attempts):
        port = free_port()
        proc = launch(port)
        try:
            proc.wait_until(functools.partial(ready, port), timeout=timeout, what=what)
        except ServerStartError as e:
            proc.stop()
            last = e
            continue
        except BaseException:
            proc.stop()
            raise
        return proc, port
    assert last is not None
    raise last
