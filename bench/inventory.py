"""`python -m bench.inventory`: an inventory as the listing source, beside a live listing of the same prefix.

The bench writes (once, cached under `--data-dir`, default `~/.cache/refscan-bench`) an S3 Inventory of
`--rows` rows (default 10,000,000) as one Parquet file sorted by key, with `manifest.json` and
`manifest.checksum` in the documented layout, and a copy of it with its rows shuffled. `--prefix-rows` of
them (default 1,000,000) are the synthetic S3 bucket's own objects (`data/obj-NNNNNNN.bin`, same ETag, size
and LastModified as `bench/synthetic.py` serves); the rest sit under other prefixes before and after `data/`.
Each run is its own process started through `bench.spawn` (so its peak RSS is its own):

- `refscan scan s3://synthetic/data/ --inventory ... --format jsonl -o FILE`, the command line itself, and the
  same scan in-process (`Scanner.iter_scan_batches` to a JSON Lines file, the operation timed alone);
- `refscan verify MANIFEST --inventory ...` of the 1,000,000-entry manifest that scan made, the command line
  (against the sorted inventory and the shuffled copy) and in-process (`refscan.verify(path, inventory=)`:
  the file read by verify in chunks), the same entries logged in a store (`refscan verify bench:v0
  --inventory ...`: read from its rows), and, for comparison, `refscan.verify(Manifest, inventory=)` of the
  manifest loaded as objects first;
- live listing: the same prefix from the synthetic S3 server behind the delay proxy at `--rtt` ms.

Rows per second are inventory rows the run covered (entries, for verify, are looked up among those rows) per
second of the operation's wall time. Results: `--out` (default `bench/results`) `inventory.json` and
`inventory.md`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from . import synthetic

SOURCE_BUCKET = "synthetic"
CREATED_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: after the synthetic objects' LastModified
CHUNK_ROWS = 1_000_000
OTHER_PREFIXES = ("a0/", "a1/", "a2/", "a3/", "a4/", "x0/", "x1/", "x2/", "x3/", "x4/")


def default_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "refscan-bench"


def write_inventory(root: Path, rows: int, prefix_rows: int) -> Path:
    """The inventory's manifest.json under `root` (written unless already there)."""
    base = root / f"inventory-{rows}" / "dest" / "inventories" / SOURCE_BUCKET / "bench"
    manifest = base / "2026-01-01T00-00Z" / "manifest.json"
    if manifest.exists():
        return manifest
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = base / "data" / "part-0.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [
            ("bucket", pa.string()),
            ("key", pa.string()),
            ("size", pa.int64()),
            ("last_modified_date", pa.timestamp("ms", tz="UTC")),
            ("e_tag", pa.string()),
            ("storage_class", pa.string()),
        ]
    )
    others = max(0, rows - prefix_rows)
    per_prefix = -(-others // len(OTHER_PREFIXES))
    modified = datetime.fromisoformat(synthetic.LAST_MODIFIED.replace("Z", "+00:00"))
    with pq.ParquetWriter(str(data) + ".tmp", schema, compression="zstd") as writer:

        def chunk(keys: list[str], etags: list[str], sizes: list[int]) -> None:
            n = len(keys)
            writer.write_table(
                pa.table(
                    {
                        "bucket": pa.array([SOURCE_BUCKET] * n),
                        "key": keys,
                        "size": pa.array(sizes, pa.int64()),
                        "last_modified_date": pa.array([modified] * n, schema.field("last_modified_date").type),
                        "e_tag": etags,
                        "storage_class": pa.array(["STANDARD"] * n),
                    },
                    schema=schema,
                ),
                row_group_size=128 * 1024,
            )

        def filler(prefix: str, count: int) -> None:
            for start in range(0, count, CHUNK_ROWS):
                numbers = range(start, min(count, start + CHUNK_ROWS))
                chunk(
                    [f"{prefix}obj-{i:08d}.bin" for i in numbers], [f"{i:032x}" for i in numbers], [1024] * len(numbers)
                )

        left = others
        for prefix in OTHER_PREFIXES:  # sorted: a*/ < data/ < x*/
            if prefix == "x0/":
                for start in range(0, prefix_rows, CHUNK_ROWS):
                    numbers = range(start, min(prefix_rows, start + CHUNK_ROWS))
                    chunk(
                        [synthetic.key(i) for i in numbers],
                        [synthetic.etag(i) for i in numbers],
                        [synthetic.size(i) for i in numbers],
                    )
            count = min(per_prefix, left)
            filler(prefix, count)
            left -= count
    os.replace(str(data) + ".tmp", data)
    _write_manifest(manifest, data, schema.names)
    return manifest


def write_shuffled(sorted_manifest: Path) -> Path:
    """The manifest.json of the inventory at `sorted_manifest` with its rows in random order (written unless
    already there): an inventory whose files do not list keys in order."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = sorted_manifest.parents[6]
    base = root / f"{sorted_manifest.parents[5].name}-shuffled" / "dest" / "inventories" / SOURCE_BUCKET / "bench"
    manifest = base / "2026-01-01T00-00Z" / "manifest.json"
    if manifest.exists():
        return manifest
    table = pq.read_table(next(sorted_manifest.parent.parent.glob("data/*.parquet")))
    order = list(range(table.num_rows))
    random.Random(0).shuffle(order)
    data = base / "data" / "part-0.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.take(pa.array(order)), str(data) + ".tmp", row_group_size=128 * 1024, compression="zstd")
    os.replace(str(data) + ".tmp", data)
    _write_manifest(manifest, data, table.schema.names)
    return manifest


def _write_manifest(manifest: Path, data: Path, names: list[str]) -> None:
    """manifest.json and manifest.checksum of the inventory whose one data file is `data` (columns `names`)."""
    body = data.read_bytes()
    doc = {
        "sourceBucket": SOURCE_BUCKET,
        "destinationBucket": "arn:aws:s3:::dest",
        "version": "2016-11-30",
        "creationTimestamp": str(CREATED_MS),
        "fileFormat": "Parquet",
        "fileSchema": "message s3.inventory { " + " ".join(f"optional binary {n};" for n in names) + " }",
        "files": [
            {
                "key": "inventories/synthetic/bench/data/part-0.parquet",
                "size": len(body),
                "MD5checksum": hashlib.md5(body).hexdigest(),
            }
        ],
    }
    manifest.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc).encode()
    manifest.with_name("manifest.checksum").write_text(hashlib.md5(text).hexdigest())
    manifest.write_bytes(text)


# -- child jobs (each in its own process) ----------------------------------------------------------------------


def _cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def job_scan(inventory: str | None, out: str | None) -> dict[str, Any]:
    """Entries of s3://synthetic/data/ from the inventory (or live, when `inventory` is None), streamed to a JSON
    Lines file batch by batch as the CLI's `--format jsonl` does (their bytes, in constant memory), or only
    counted."""
    import anyio

    from refscan.scan import Scanner

    count = 0
    sink = open(out or os.devnull, "wb")  # noqa: SIM115  (closed below)

    async def run() -> None:
        nonlocal count
        async with Scanner() as scanner:
            uri = f"s3://{SOURCE_BUCKET}/data/"
            async for batch in scanner.iter_scan_batches(uri, max_objects=10**9, inventory=inventory):
                sink.write(batch.jsonl_bytes())
                count += len(batch)

    cpu, started = _cpu(), time.perf_counter()
    with sink:
        anyio.run(run)
    return {"seconds": time.perf_counter() - started, "cpu": _cpu() - cpu, "entries": count}


def jsonl_to_manifest(lines: Path, manifest: Path) -> None:
    """The W&B manifest of the entries in the JSON Lines file `lines` (what verify reads)."""
    import refscan

    with lines.open(encoding="utf-8") as f:
        entries = (json.loads(line) for line in f)
        refscan.Manifest(refscan.ManifestEntry.from_dict(e.pop("path"), e) for e in entries).dump(manifest)


def log_manifest(manifest: str, home: str) -> None:
    """The entries of the manifest file logged as version `bench:v0` of the store at `home`."""
    import refscan

    art = refscan.Artifact("bench", "dataset")
    art.add_entries(refscan.Manifest.load(manifest))
    refscan.Store(home).log(art)


def job_verify(inventory: str, manifest_path: str, how: str) -> dict[str, Any]:
    """`refscan.verify` of the manifest file against the inventory: given its path (`how` = "file": read by
    verify itself, in chunks, as the CLI does) or loaded first as a `Manifest` ("object": loading timed apart)."""
    import refscan

    source: Any = manifest_path
    loaded = 0.0
    if how == "object":
        started = time.perf_counter()
        source = refscan.Manifest.load(manifest_path)
        loaded = time.perf_counter() - started
    cpu, started = _cpu(), time.perf_counter()
    report = refscan.verify(source, inventory=inventory)
    return {
        "seconds": time.perf_counter() - started,
        "cpu": _cpu() - cpu,
        "load_seconds": loaded,
        "entries": len(report.results),
        "counts": report.counts,
        "inventory": report.inventory,
    }


def _spawn(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `python -m bench.inventory job ARGS` through bench.spawn; its JSON result plus peak RSS."""
    return _spawned([sys.executable, "-m", "bench.inventory", "job", *args], env)


def _spawned(command: list[str], env: dict[str, str] | None = None, *, cli: bool = False) -> dict[str, Any]:
    """`command` run through bench.spawn: the JSON its last line prints (none for the CLI: then the process's
    own wall time and CPU are the result) plus its peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json") as usage:
        argv = [sys.executable, "-m", "bench.spawn", usage.name, *command]
        done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
        spawned = json.loads(Path(usage.name).read_text())
        result: dict[str, Any] = (
            {
                "seconds": spawned["wall"],
                "cpu": spawned["cpu"],
                "stdout": done.stdout[-300:],
                "stderr": done.stderr[-300:],
            }
            if cli
            else json.loads(done.stdout.strip().splitlines()[-1])
        )
        result["peak_rss_mb"] = round(spawned["maxrss_kb"] / 1024, 1)
    return result


def median_run(run: Callable[[], dict[str, Any]], repeat: int) -> dict[str, Any]:
    """`run()` `repeat` times: the run of median wall time, with every run's wall time, CPU and peak RSS under
    `samples`."""
    done = sorted((run() for _ in range(repeat)), key=lambda r: r["seconds"])
    result = dict(done[len(done) // 2])
    result["samples"] = [{k: r.get(k) for k in ("seconds", "cpu", "peak_rss_mb", "load_seconds")} for r in done]
    return result


def live_listing(objects: int, rtt_ms: float) -> dict[str, Any]:
    """The synthetic S3 bucket listed live through the delay proxy."""
    from .proxy import DelayProxy

    server = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", "synthetic", "--objects", str(objects)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        while line and not line.startswith("LISTENING"):
            line = server.stdout.readline()
        port = int(line.split()[1])
        with DelayProxy("127.0.0.1", port, rtt_ms / 1000) as proxy:
            env = {
                "AWS_ENDPOINT_URL_S3": proxy.url,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_REGION": "us-east-1",
            }
            result = _spawn(["scan", "-"], env)
            result["requests"] = proxy.reset().requests
        return result
    finally:
        server.terminate()
        server.wait(10)


def report(results: dict[str, Any], out: Path) -> None:
    rows = results["rows"]
    lines = [
        f"Inventory bench, {results['when']}: one Parquet S3 Inventory of {rows:,} rows (sorted by key, "
        f"{results['file_mb']} MB), a prefix of {results['prefix_rows']:,} objects; live listing at "
        f"{results['rtt_ms']:g} ms RTT from the synthetic S3 server.",
        "",
        "| run | entries | wall time | rows/s | CPU | rows per CPU second | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["runs"].items():
        rate = f"{r['rows_per_second']:,.0f}" if r.get("rows_per_second") else ""
        per_cpu = f"{r['entries'] / r['cpu']:,.0f}" if r.get("rows_per_second") and r.get("cpu") else ""
        lines.append(
            f"| {name} | {r['entries']:,} | {r['seconds']:.2f} s | {rate} | {r.get('cpu', 0):.2f} s | {per_cpu} | "
            f"{r['peak_rss_mb']:.0f} MB |"
        )
    lines += ["", *results["notes"]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "inventory.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "inventory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.inventory")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--prefix-rows", type=int, default=1_000_000)
    ap.add_argument("--rtt", type=float, default=20.0, help="round-trip time of the live listing, ms")
    ap.add_argument("--no-live", action="store_true", help="skip the live listing")
    ap.add_argument("--live-from", help="reuse a live-listing result (JSON) from an earlier run of the same prefix")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--repeat", type=int, default=1, help="runs of each inventory job; the median is reported")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    if argv is None and sys.argv[1:2] == ["job"]:
        kind, inventory, *rest = sys.argv[2:]
        inv = None if inventory == "-" else inventory
        result = job_scan(inv, rest[0] if rest else None) if kind == "scan" else job_verify(inventory, *rest)
        print(json.dumps(result))
        return
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    manifest = write_inventory(args.data_dir, args.rows, args.prefix_rows)
    shuffled = str(write_shuffled(manifest))
    written = time.perf_counter() - started
    data_file = next(manifest.parent.parent.glob("data/*.parquet"))
    inv = str(manifest)
    refscan_cli = [sys.executable, "-m", "refscan"]
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        entries_json = str(Path(tmp) / "manifest.json")
        lines = Path(tmp) / "entries.jsonl"
        uri = f"s3://{SOURCE_BUCKET}/data/"
        scan_cli = [*refscan_cli, "scan", uri, "--inventory", inv, "--format", "jsonl", "--max-objects", "1000000000"]
        cases: list[tuple[str, Callable[[], dict[str, Any]], int]] = [
            (
                "`refscan scan --inventory` (1M prefix of 10M rows)",
                lambda: _spawned([*scan_cli, "-o", str(lines)], cli=True),
                args.prefix_rows,
            ),
            (
                "(its scan in-process: `iter_scan_batches` to JSONL)",
                lambda: _spawn(["scan", inv, str(lines)]),
                args.prefix_rows,
            ),
        ]
        for name, run, count in cases:
            runs[name] = median_run(run, args.repeat)
            runs[name] |= {"entries": count, "rows_per_second": count / runs[name]["seconds"]}
        jsonl_to_manifest(lines, Path(entries_json))
        home = str(Path(tmp) / "home")
        log_manifest(entries_json, home)
        cases = [
            (
                "`refscan verify --inventory` (1M-entry manifest file)",
                lambda: _spawned([*refscan_cli, "verify", entries_json, "--inventory", inv], cli=True),
                args.prefix_rows,
            ),
            (
                "`refscan verify NAME:v0 --inventory` (the same 1M entries logged in the store)",
                lambda: _spawned(
                    [*refscan_cli, "verify", "bench:v0", "--inventory", inv], {"REFSCAN_HOME": home}, cli=True
                ),
                args.prefix_rows,
            ),
            (
                "`refscan verify --inventory` (the same file, against the inventory's rows shuffled)",
                lambda: _spawned([*refscan_cli, "verify", entries_json, "--inventory", shuffled], cli=True),
                args.prefix_rows,
            ),
            (
                "(its verify in-process: `verify(path, inventory=)`)",
                lambda: _spawn(["verify", inv, entries_json, "file"]),
                args.prefix_rows,
            ),
            (
                "(`verify(Manifest, inventory=)`: loaded first, load not timed)",
                lambda: _spawn(["verify", inv, entries_json, "object"]),
                args.prefix_rows,
            ),
        ]
        for name, run, count in cases:
            runs[name] = median_run(run, args.repeat)
            runs[name] |= {"entries": count, "rows_per_second": count / runs[name]["seconds"]}
    if not args.no_live and args.live_from:
        runs[f"live listing at {args.rtt:g} ms RTT"] = json.loads(Path(args.live_from).read_text())
    elif not args.no_live:
        live = runs[f"live listing at {args.rtt:g} ms RTT"] = live_listing(args.prefix_rows, args.rtt)
        live["rows_per_second"] = live["entries"] / live["seconds"]
    notes = [
        f"- The inventory was {f'written in {written:.0f} s' if written > 1 else 'read from the cache'} "
        f"({args.data_dir}).",
        "- The `refscan` rows are the command line itself, timed from outside (interpreter start and imports "
        "included); the rows in parentheses time the operation inside its process (peak RSS: that process's).",
        "- Every scan streams its entries to a JSON Lines file; scan and verify include checking the data file's "
        "MD5 (the whole file is hashed) and reading the manifest; Parquet row groups outside the prefix (or the "
        "entries' key range) are skipped by their Key statistics. verify reads its manifest file (280 MB, "
        "indent=2 as `refscan` writes it) as part of the run; its peak RSS includes the entries it verifies.",
        "- The CLI makes Arrow's memory pool jemalloc (refscan.arrow.lean_memory); the in-process rows use "
        "pyarrow's default (mimalloc), which keeps more freed memory.",
        f"- Each inventory row is the median (by wall time) of {args.repeat} run(s); all runs are in inventory.json. "
        f"Machine load (1-minute average) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on "
        f"{os.cpu_count()} cores shared with other work: wall times are noisy, CPU is the steadier figure.",
    ]
    report(
        {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "rows": args.rows,
            "prefix_rows": args.prefix_rows,
            "rtt_ms": args.rtt,
            "file_mb": round(data_file.stat().st_size / 1e6, 1),
            "runs": runs,
            "notes": notes,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
