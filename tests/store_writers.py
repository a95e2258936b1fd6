"""Store writer processes for the kill tests (`python -m tests.store_writers ...`): they print one line per
finished call, flushed, so the test knows what was committed before it kills them.

- `log ROOT`: logs version after version of `big`, each with `LOG_ENTRIES` reference entries; prints
  `logged <ref>` after each.
- `upsert ROOT WORKER BATCHES`: upserts `BATCHES` batches of `UPSERT_ENTRIES` entries into group `g` of
  `par`; prints `upserted <batch>` after each.
"""

from __future__ import annotations

import sys

from refscan import Artifact, ManifestEntry, Store

LOG_ENTRIES = 20_000
UPSERT_ENTRIES = 500


def report(line: str) -> None:
    """`line` on stdout in one write (also under PYTHONUNBUFFERED, where `print` writes piece by piece and a
    kill between the pieces would leave half a line)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def log_forever(root: str) -> None:
    store = Store(root)
    n = 0
    while True:
        art = Artifact("big", "dataset")
        art.add_entries(
            ManifestEntry(path=f"d/{i:05}", digest=f"{n}-{i}", ref=f"s3://b/d/{i:05}", size=i)
            for i in range(LOG_ENTRIES)
        )
        report(f"logged {store.log(art)}")
        n += 1


def batch_paths(worker: int, batch: int) -> list[str]:
    return [f"w{worker}/b{batch:03}/{j:03}" for j in range(UPSERT_ENTRIES)]


def upsert_batches(root: str, worker: int, batches: int) -> None:
    store = Store(root)
    for batch in range(batches):
        art = Artifact("par", "dataset")
        art.add_entries(ManifestEntry(path=p, digest=p, ref=f"s3://b/{p}") for p in batch_paths(worker, batch))
        store.upsert(art, group="g")
        report(f"upserted {batch}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "log":
        log_forever(args[0])
    else:
        upsert_batches(args[0], int(args[1]), int(args[2]))
