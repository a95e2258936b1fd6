"""`start_on_free_port`: a child that dies or never gets ready is stopped and launched again on another port."""

from __future__ import annotations

import sys

import pytest

from refscan.demo.process import ManagedProcess, ServerStartError, start_on_free_port


def _sleeper(port: int) -> ManagedProcess:
    return ManagedProcess([sys.executable, "-c", "import time; time.sleep(30)"], name=f"sleeper-{port}")


def test_retries_on_a_new_port_until_ready() -> None:
    launched: list[ManagedProcess] = []
    ports: list[int] = []

    def launch(port: int) -> ManagedProcess:
        ports.append(port)
        argv = [sys.executable, "-c", "raise SystemExit(3)"] if len(ports) == 1 else None
        proc = ManagedProcess(argv, name="dies") if argv else _sleeper(port)
        launched.append(proc)
        return proc

    # the first child exits before it is ever ready: only the second one answers
    proc, port = start_on_free_port(launch, lambda p: len(ports) == 2, timeout=5, attempts=3)
    try:
        assert len(launched) == 2
        assert port == ports[1]
        assert not launched[0].alive()
        assert proc is launched[1]
        assert proc.alive()
    finally:
        proc.stop()


def test_gives_up_with_the_last_error_and_stops_every_child() -> None:
    launched: list[ManagedProcess] = []

    def launch(port: int) -> ManagedProcess:
        launched.append(_sleeper(port))
        return launched[-1]

    with pytest.raises(ServerStartError, match="was not ready within"):
        start_on_free_port(launch, lambda p: False, timeout=0.3, attempts=2)
    assert len(launched) == 2
    assert not any(p.alive() for p in launched)
