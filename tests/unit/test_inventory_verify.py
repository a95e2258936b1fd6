"""`verify --inventory` answers unchanged entries at once (`refscan.inventory.matching`): the report equals the
one the per-entry path gives, on random manifests against a random all-versions inventory (local files, no
request: every entry is older than the inventory, so it vouches for all of them)."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import refscan
from refscan.inventory import matching, source
from refscan.inventory.entries import S3, from_entries
from refscan.manifest import ManifestEntry
from tests.inventories import S3_CSV_COLUMNS, local_put, write_gcs_report, write_s3_inventory

HEX = "0123456789abcdef"


def inventory_rows(rng: random.Random) -> list[dict[str, Any]]:
    """Objects `d/k0`.. with one to three versions each; some latest rows are delete markers."""
    rows = []
    for k in range(30):
        versions = rng.randrange(1, 4)
        for v in range(versions):
            latest = v == versions - 1
            marker = latest and rng.random() < 0.15
            rows.append(
                {
                    "Bucket": "src",
                    "Key": f"d/k{k}" if k % 7 else f"d/sub dir/ü{k}",
                    "VersionId": f"v{k}.{v}" if k % 5 else ("null" if latest else f"v{k}.{v}"),
                    "IsLatest": latest,
                    "IsDeleteMarker": marker,
                    "Size": None if marker else rng.randrange(0, 5),
                    "LastModifiedDate": datetime(2024, 5, 1 + v, 12, 0, 0, 250_000 * v, tzinfo=timezone.utc),
                    "ETag": None if marker else "".join(rng.choice(HEX) for _ in range(32)),
                }
            )
    return rows


def mutated(entry: ManifestEntry, change: int, rng: random.Random) -> ManifestEntry:
    """The entry, or a changed copy of it by `change` (other ETag, size, version, time, extra key, ref)."""
    extra = dict(entry.extra)
    ref, digest, size = entry.ref, entry.digest, entry.size
    if change == 0:
        digest = extra["etag"] = "f" * 32
    elif change == 1:
        size = (size or 0) + 1
    elif change == 2:
        extra["versionID"] = rng.choice(["v1.0", "v3.0", "v3.1", "gone"])
    elif change == 3:
        extra.pop("versionID", None)
    elif change == 4:
        extra["lastModified"] = "2023-01-01T00:00:00Z"
    elif change == 5:
        extra["checksumSHA256"] = "x"
    elif change == 6:
        ref = f"{ref}?versionId={extra.get('versionID', 'v')}"
    elif change == 7:
        ref = "s3://src/d/absent"
    return ManifestEntry(entry.path, digest, ref, size, extra)


def bulk_and_plain(
    source: Any, entries: list[ManifestEntry], inventory: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Any, int]:
    """`verify` of `source` with the bulk step, how many entries that step answered, and `verify` of the same
    `entries` with the bulk step answering none (every entry through the per-entry path)."""
    answered: list[int] = []
    real = matching.unchanged

    async def counted(*args: Any) -> Any:
        found = await real(*args)
        answered.append(sum(found.to_pylist()))
        return found

    monkeypatch.setattr(matching, "unchanged", counted)
    fast = refscan.verify(source, inventory=inventory)

    async def nothing(inventory: Any, entries: Any) -> Any:
        return pa.array([False] * entries.table.num_rows)

    monkeypatch.setattr(matching, "unchanged", nothing)
    return fast, refscan.verify(entries, inventory=inventory), answered[0]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("changes", [8, 6], ids=["any-change", "refs-kept"])  # refs-kept: one folder's refs
@pytest.mark.parametrize("batch_rows", [None, 3], ids=["one-batch", "3-row-batches"])
def test_unchanged_entries_get_the_report_of_the_per_entry_path(
    fmt: str, seed: int, changes: int, batch_rows: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inventory's keys are not in key order (`d/k10` comes after `d/k9`), so with batches of 3 rows the
    matching gathers rows across batches before it matches them (`matching._Gathering`)."""
    if batch_rows is not None:
        monkeypatch.setattr(source, "LEAN_BATCH_ROWS", batch_rows)
    rng = random.Random(seed)
    rows = inventory_rows(rng)
    manifest = write_s3_inventory(local_put(tmp_path), "dest", "src", rows, fmt=fmt, columns=S3_CSV_COLUMNS, files=2)
    inventory = str(tmp_path / manifest)
    scanned = refscan.scan("s3://src/d/", inventory=inventory)
    entries = [mutated(e, rng.randrange(changes) if rng.random() < 0.6 else -1, rng) for e in scanned]
    entries[:2] = [mutated(scanned[0], 1, rng), mutated(scanned[1], 7 if changes == 8 else 0, rng)]
    rng.shuffle(entries)

    fast, plain, answered = bulk_and_plain(entries, entries, inventory, monkeypatch)
    assert fast.to_dict() == plain.to_dict()
    assert 0 < answered < len(entries)  # both paths took part
    assert plain.inventory is not None
    assert plain.inventory["live"] == 0
    assert {"ok", "changed"} <= {s for s, n in plain.counts.items() if n}
    assert (matching.single_folder(from_entries(entries, S3).table) is None) == (changes == 8)


def test_a_manifest_file_gives_the_report_of_its_entries(tmp_path: Path) -> None:
    """The file is read in chunks (read_columns), the entries as objects (from_entries): the same report,
    progress counts every entry once, and `problems()` is the results that are not ok."""
    rng = random.Random(7)
    manifest = write_s3_inventory(
        local_put(tmp_path), "dest", "src", inventory_rows(rng), fmt="parquet", columns=S3_CSV_COLUMNS, files=1
    )
    inventory = str(tmp_path / manifest)
    scanned = refscan.scan("s3://src/d/", inventory=inventory)
    named = [ManifestEntry(f"zz/{e.path}", e.digest, e.ref, e.size, e.extra) for e in scanned[:5]]
    entries = [mutated(e, rng.randrange(8) if rng.random() < 0.3 else -1, rng) for e in scanned] + named
    path = tmp_path / "entries.json"
    refscan.Manifest(entries).dump(path)
    progress: list[int] = []
    from_file = refscan.verify(str(path), inventory=inventory, on_progress=progress.append)
    from_objects = refscan.verify(entries, inventory=inventory)
    assert from_file.to_dict() == from_objects.to_dict()
    assert from_file.results == from_objects.results
    assert [r.path for r in from_file.results] == sorted(e.path for e in entries)
    assert from_file.results[len(entries) - 1] == list(from_objects.results)[-1]
    assert sum(progress) == len(entries)
    assert list(from_file.problems()) == [r for r in from_objects.results if r.status != "ok"]
    assert from_file.counts["ok"] > len(named)  # the bulk path answered most of them


def test_a_store_version_is_verified_from_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`StoredVersion` (what `refscan verify NAME:VER --inventory` hands verify) gives the report of the same
    entries as objects, read in chunks of rows (one row at a time here, to cross chunk edges)."""
    from refscan.sources import StoredVersion
    from refscan.store import registry

    monkeypatch.setattr(registry, "ROWS_AT_ONCE", 3)
    rng = random.Random(11)
    manifest = write_s3_inventory(
        local_put(tmp_path), "dest", "src", inventory_rows(rng), fmt="csv", columns=S3_CSV_COLUMNS, files=1
    )
    inventory = str(tmp_path / manifest)
    scanned = refscan.scan("s3://src/d/", inventory=inventory)
    entries = [mutated(e, rng.randrange(8) if rng.random() < 0.4 else -1, rng) for e in scanned]
    art = refscan.Artifact("d", "dataset")
    art.add_entries(entries)
    store = refscan.Store(tmp_path / "home")
    store.log(art)
    from_rows = refscan.verify(StoredVersion(store, "d:v0"), inventory=inventory)
    from_objects = refscan.verify(entries, inventory=inventory)
    assert from_rows.to_dict() == from_objects.to_dict()
    assert from_rows.counts["ok"] > 0
    with pytest.raises(refscan.NotFound):
        refscan.verify(StoredVersion(store, "d:v9"), inventory=inventory)


def gcs_mutated(entry: ManifestEntry, change: int) -> ManifestEntry:
    """The GCS entry, or a copy with another digest, size, md5, crc32c or metageneration (same object and
    generation: the report still vouches for it)."""
    extra = dict(entry.extra)
    digest, size = entry.digest, entry.size
    if change == 0:
        digest = "CHANGED"
    elif change == 1:
        size = (size or 0) + 1
    elif change == 2:
        extra["md5"] = "bm90IHRoZSBtZDU="
    elif change == 3:
        extra.pop("crc32c", None)
    elif change == 4:
        extra["metageneration"] = int(extra.get("metageneration", 1)) + 1
    return ManifestEntry(entry.path, digest, entry.ref, size, extra)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("batch_rows", [None, 4], ids=["one-batch", "4-row-batches"])
def test_gcs_report_entries_get_the_report_of_the_per_entry_path(
    fmt: str, seed: int, batch_rows: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing is looked up live
    if batch_rows is not None:  # names not in key order (`d/k10` after `d/k9`): rows gathered across batches
        monkeypatch.setattr(source, "LEAN_BATCH_ROWS", batch_rows)
    rng = random.Random(seed)
    items = [
        {
            "bucket": "src",
            "name": f"d/k{i}" if i % 7 else f"d/sub dir/ü{i}",
            "size": str(rng.randrange(0, 9)),
            "etag": f"CJ{i}",
            "generation": str(1_700_000_000_000_000 + i),
            "md5Hash": "1B2M2Y8AsgTpgAmY7PhCfg==" if i % 3 else "",
            "crc32c": "AAAAAA==",
            "metageneration": str(1 + i % 2),
        }
        for i in range(40)
    ]
    manifest = write_gcs_report(local_put(tmp_path), "src", items, fmt=fmt)
    inventory = str(tmp_path / manifest)
    scanned = refscan.scan("gs://src/d/", inventory=inventory)
    assert len(scanned) == len(items)
    entries = [gcs_mutated(e, rng.randrange(5) if rng.random() < 0.5 else -1) for e in scanned]
    path = tmp_path / "entries.json"
    refscan.Manifest(entries).dump(path)
    fast, plain, answered = bulk_and_plain(str(path), entries, inventory, monkeypatch)
    assert fast.to_dict() == plain.to_dict()
    assert 0 < answered < len(entries)
    assert plain.inventory is not None
    assert plain.inventory["live"] == 0
    assert {"ok", "changed"} <= {s for s, n in plain.counts.items() if n}
