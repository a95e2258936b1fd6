"""The store under killed writers and bad files: SIGKILL at seeded random moments while `log` writes
20,000-entry versions and while six processes upsert into one group; a corrupt or foreign database file.

Each kill is checked for: SQLite's integrity_check, no half version (every version holds all its entries
and its recorded digest is the digest of those entries), upserts all-or-nothing, nothing committed lost,
and the store still taking the next write.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from threading import Thread

import pytest

from refscan import Artifact, ManifestEntry, Store
from refscan.manifest import manifest_digest
from tests.store_writers import LOG_ENTRIES, UPSERT_ENTRIES, batch_paths

REPO = Path(__file__).resolve().parents[2]
SEED = 1914
LOG_KILLS = 3
WRITERS = 6
KILLED = 2
BATCHES = 40


@contextmanager
def writer(*args: str) -> Iterator[subprocess.Popen[str]]:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store_writers", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"writer exited early with {proc.wait()}"
    return line.strip()


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        (result,) = conn.execute("PRAGMA integrity_check").fetchone()
    return str(result)


def assert_whole_versions(store: Store, name: str, entries: int) -> list[int]:
    """Every version of `name` lists all `entries` of it and carries the digest of exactly those; returns the
    version numbers."""
    with sqlite3.connect(store.db_path) as conn:
        rows = conn.execute("SELECT id, version, digest FROM versions WHERE name = ? ORDER BY version", (name,))
        numbers = []
        for version_id, number, digest in rows.fetchall():
            pairs = conn.execute("SELECT path, digest FROM entries WHERE version_id = ?", (version_id,)).fetchall()
            assert len(pairs) == entries, f"{name}:v{number} has {len(pairs)} of {entries} entries"
            assert manifest_digest(ManifestEntry(path=p, digest=d) for p, d in pairs) == digest
            numbers.append(number)
    assert numbers == list(range(len(numbers)))
    return numbers


def test_log_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    root = tmp_path / "store"
    rng = random.Random(SEED)
    logged: list[str] = []
    for _ in range(LOG_KILLS):
        with writer("log", str(root)) as proc:
            logged.append(read_line(proc))  # at least one version is in before the kill
            time.sleep(rng.uniform(0.0, 0.8))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
            assert proc.stdout is not None
            logged += [line.strip() for line in proc.stdout]
        assert integrity(root / "refscan.db") == "ok"
        store = Store(root)
        numbers = assert_whole_versions(store, "big", LOG_ENTRIES)
        assert {f"logged big:v{n}" for n in numbers} >= set(logged)  # nothing reported as logged is lost
        store.close()

    store = Store(root)
    art = Artifact("big", "dataset")
    art.add_entries(ManifestEntry(path=f"d/{i:05}", digest=f"after-{i}", ref="s3://b/x") for i in range(LOG_ENTRIES))
    ref = store.log(art)
    assert ref == f"big:v{numbers[-1] + 1}"
    assert len(store.get(ref).manifest) == LOG_ENTRIES
    assert_whole_versions(store, "big", LOG_ENTRIES)


def test_parallel_upserts_survive_killed_writers(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store(root).close()
    rng = random.Random(SEED)
    victims = set(rng.sample(range(WRITERS), KILLED))
    reported: dict[int, list[str]] = {w: [] for w in range(WRITERS)}
    with ExitStack() as stack:
        procs = [stack.enter_context(writer("upsert", str(root), str(w), str(BATCHES))) for w in range(WRITERS)]

        def kill_after(w: int, batches: int) -> None:
            reported[w] += [read_line(procs[w]) for _ in range(batches)]
            procs[w].send_signal(signal.SIGKILL)

        # each victim killed right after a random number of its own batches, all watched at once: mid-way
        # however fast it runs and however the others hold the database meanwhile
        killers = [Thread(target=kill_after, args=(w, rng.randrange(1, BATCHES // 4))) for w in sorted(victims)]
        for killer in killers:
            killer.start()
        for killer in killers:
            killer.join(120)
        for w, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=120)
            reported[w] += out.split("\n")
            assert proc.returncode == (-signal.SIGKILL if w in victims else 0)

    assert integrity(root / "refscan.db") == "ok"
    store = Store(root)
    ref = store.finish("par", group="g")
    paths = set(store.get(ref).manifest.entries)
    expected: set[str] = set()
    for w in range(WRITERS):
        done = [b for b in range(BATCHES) if set(batch_paths(w, b)) <= paths]
        partial = [b for b in range(BATCHES) if b not in done and set(batch_paths(w, b)) & paths]
        assert partial == [], f"writer {w}: batches {partial} are half there"
        if w in victims:
            committed = sum(1 for line in reported[w] if line.startswith("upserted"))
            assert done == list(range(len(done)))  # in order
            assert len(done) >= committed  # nothing reported as upserted is lost
            assert len(done) < BATCHES, "the kill came after the writer had finished: pick another moment"
        else:
            assert done == list(range(BATCHES))
        expected |= {p for b in done for p in batch_paths(w, b)}
    assert paths == expected
    assert len(paths) % UPSERT_ENTRIES == 0


# -- files that are not a refscan store ------------------------------------------------------------------------


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(REPO), "REFSCAN_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "refscan", *args], cwd=home.parent, env=env, capture_output=True, text=True, timeout=60
    )


def write_garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 200)


def write_foreign(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    sqlite3.connect(db).close()


def corrupt_pages(db: Path) -> None:
    store = Store(db.parent)
    art = Artifact("ds", "dataset")
    art.add_entries(ManifestEntry(path=f"f{i}", digest=str(i), ref=f"s3://b/f{i}") for i in range(2000))
    store.log(art)
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(db, "r+b") as f:
        f.seek(4096 * 2)
        f.write(os.urandom(4096 * 4))


@pytest.mark.parametrize("damage", [write_garbage, write_foreign, corrupt_pages], ids=["garbage", "foreign", "pages"])
@pytest.mark.parametrize(
    "command", [["versions", "ds"], ["log", "ds", "--type", "dataset", "--no-checksum", "s3://b/x"]]
)
def test_a_damaged_or_foreign_store_file_is_one_error_line(
    damage: Callable[[Path], None], command: list[str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = home / "refscan.db"
    damage(db)
    before = db.read_bytes()
    result = run_cli(home, *command)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"refscan: error: {db}")
    if damage is not corrupt_pages:  # a damaged page may only show when a query reaches it
        assert db.read_bytes() == before
