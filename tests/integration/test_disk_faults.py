"""Writing output when the disk refuses bytes, and output that is not a regular file.

A child process with a small `RLIMIT_FSIZE` stands in for a full disk (writes past the limit fail with
EFBIG; Python ignores SIGXFSZ): `scan -o`, `download` and the store's `log` fail with one error line, exit 1,
leave no partial file and leave an existing destination as it was. `-o` into a FIFO, a symlink to a device
and `-` writes straight into them instead of replacing them with a regular file.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from refscan import Manifest, Store

REPO = Path(__file__).resolve().parents[2]
FILES = 3_000


def run_cli(args: Sequence[str], cwd: Path, home: Path, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    """`refscan ARGS` in `cwd`, with files limited to `fsize` bytes when given."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = os.environ | {"PYTHONPATH": str(REPO), "REFSCAN_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "refscan", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("refscan: error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")))


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many") / "data"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"file-{i:05}.txt").write_text(f"content {i}\n")
    return folder


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_scan_output_past_the_file_size_limit(fmt: str, many_files: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("the previous result\n")
    result = run_cli(
        ["scan", str(many_files), "--format", fmt, "-o", str(out)], tmp_path, tmp_path / "home", fsize=64 << 10
    )
    one_error_line(result, f"cannot write {out}", "File too large")
    assert out.read_text() == "the previous result\n"
    assert leftovers(tmp_path) == []

    assert run_cli(["scan", str(many_files), "-o", str(out)], tmp_path, tmp_path / "home").returncode == 0
    assert len(Manifest.load(out)) == FILES


def test_download_past_the_file_size_limit(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("a.bin", "b.bin"):
        (source / name).write_bytes(os.urandom(256 << 10))
    manifest = tmp_path / "manifest.json"
    assert run_cli(["scan", str(source), "-o", str(manifest)], tmp_path, tmp_path / "home").returncode == 0
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.bin").write_bytes(b"an older a.bin")

    result = run_cli(["download", str(manifest), str(root)], tmp_path, tmp_path / "home", fsize=128 << 10)
    one_error_line(result, "2 of 2 entries failed", "File too large")
    assert (root / "a.bin").read_bytes() == b"an older a.bin"
    assert not (root / "b.bin").exists()
    assert leftovers(root) == []

    assert run_cli(["download", str(manifest), str(root)], tmp_path, tmp_path / "home").returncode == 0
    assert (root / "a.bin").read_bytes() == (source / "a.bin").read_bytes()


def test_store_log_past_the_file_size_limit(many_files: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    small = tmp_path / "small"
    small.mkdir()
    (small / "one.txt").write_text("one")
    assert run_cli(["log", "ds", "--type", "dataset", str(small)], tmp_path, home).returncode == 0
    db = home / "refscan.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    limit = max(p.stat().st_size for p in home.iterdir() if p.is_file()) + (32 << 10)

    result = run_cli(["log", "ds", "--type", "dataset", str(many_files)], tmp_path, home, fsize=limit)
    one_error_line(result, str(db), "nothing of this change was recorded")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = Store(home)
    assert [v.ref for v in store.versions("ds")] == ["ds:v0"]
    store.close()

    result = run_cli(["log", "ds", "--type", "dataset", str(many_files)], tmp_path, home)
    assert result.stdout.strip() == "ds:v1", result.stderr
    assert len(Store(home).get("ds:v1").manifest) == FILES


# -- -o into what is not a regular file --------------------------------------------------------------------------


def test_output_into_a_fifo_is_written_straight_into_it(many_files: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run_cli(["scan", str(many_files), "-o", str(fifo)], tmp_path, tmp_path / "home")
    reader.join(30)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert len(json.loads(received[0])["contents"]) == FILES
    assert leftovers(tmp_path) == []


def test_output_through_a_symlink_to_a_device_keeps_both(many_files: Path, tmp_path: Path) -> None:
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    result = run_cli(["scan", str(many_files), "-o", str(link)], tmp_path, tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)
    assert leftovers(tmp_path) == []


def test_output_dash_is_stdout(many_files: Path, tmp_path: Path) -> None:
    result = run_cli(["scan", str(many_files), "--format", "jsonl", "-o", "-"], tmp_path, tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == FILES
    assert not (tmp_path / "-").exists()
