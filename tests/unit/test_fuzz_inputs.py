"""Property-based fuzzing (hypothesis) of what the CLI is given: its arguments, and every file refscan reads —
manifests, store checkpoints of resumable scans, inventories (their manifest and CSV data files). Whatever
comes in, the outcome is a result or a deliberate refscan error: exit 0, 1 or 2 with one `refscan: error:`
line (or click's usage message), never a traceback and never an unexpected exception mapped to a generic line.

Nothing here touches the network: arguments naming remote stores are left out, and inventories are read from
local files. Runs are derandomized and small.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import refscan
from refscan import InvalidInventory, Options, RefscanError
from refscan.cli import cli
from refscan.distributed.checkpoint import FILE, Checkpoint
from refscan.errors import CheckpointError
from refscan.inventory.manifest import parse_manifest
from tests.inventories import S3_CSV_COLUMNS, local_put, s3_schema, write_s3_inventory

FUZZ = settings(derandomize=True, deadline=None, max_examples=150, suppress_health_check=list(HealthCheck))
#: Text naming a remote store, or a path outside the test's folder (a scan of `/` would walk the disk).
_OFF_LIMITS = re.compile(r"(?i)(s3|gs|az|https?|file|ray)[:_]|//|^[/~]|\.\.|\x00")
GENERIC = "(run with -v for the traceback)"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with a small tree, a manifest of it and a garbage file; the CLI runs in it."""
    root = tmp_path_factory.mktemp("fuzz-cli")
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "a.txt").write_text("a")
    (root / "data" / "sub" / "b.txt").write_text("b")
    refscan.Manifest(refscan.scan(str(root / "data"))).dump(root / "m.json")
    (root / "junk.json").write_bytes(b"\xff{not json")
    old = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(old)


def run_cli(args: list[str], home: Path) -> Result:
    return CliRunner().invoke(cli, args, env={"REFSCAN_HOME": str(home), "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"})


def assert_refscan_outcome(result: Result) -> None:
    """Exit 0/1/2; an error is one deliberate line; no traceback, no exception escaping the CLI."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert GENERIC not in result.stderr, result.stderr
    if result.exit_code and "refscan: error: " in result.stderr:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("refscan: error: "), result.stderr
    elif result.exit_code:  # click's own usage message (it quotes the argument as given)
        assert result.exit_code == 2, result.output
        assert "Error: " in result.stderr, result.output


# -- arguments ------------------------------------------------------------------------------------------------------

COMMANDS = ["scan", "verify", "download", "diff", "log", "versions", "ls"]
OPTIONS = [
    "--format", "json", "jsonl", "table", "-o", "out.json", "-", "--name", "--max-objects", "--no-checksum",
    "--deep", "--json", "--strict", "--all", "--exit-code", "--type", "dataset", "-a", "--alias", "--named",
    "--description", "--inventory", "--checkpoint", "ckpt", "--concurrency", "--timeout", "--progress",
    "--no-progress", "-v", "-q", "--log-format", "0", "1", "-1", "1e9", "nan", "m.json", "junk.json", "data",
    "data/a.txt", "ds", "ds:v0", "ds:latest", "ds:nope", ":", "out", "--help", "-h", "--version",
]  # fmt: skip
TOKENS = st.sampled_from(OPTIONS) | st.text(min_size=0, max_size=12)
GLOBALS = st.lists(st.sampled_from(["-q", "-v", "--no-progress", "--concurrency", "3", "--timeout", "30"]), max_size=3)


@FUZZ
@given(st.sampled_from(COMMANDS), st.lists(TOKENS, max_size=6), GLOBALS)
@example("scan", ["data", "--format", "json", "-o", "out.json"], [])
@example("log", ["ds", "--type", "dataset", "data"], [])
@example("verify", ["junk.json"], [])
@example("download", ["m.json", "out"], [])
@example("scan", ["--max-objects", "-1", "data"], ["--timeout", "0"])
def test_cli_arguments_give_a_result_or_one_error_line(
    workdir: Path, command: str, tokens: list[str], global_options: list[str]
) -> None:
    assume(not any(_OFF_LIMITS.search(t) for t in tokens))
    assert_refscan_outcome(run_cli([*global_options, command, *tokens], workdir / "home"))


# -- manifests ------------------------------------------------------------------------------------------------------

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
ENTRY = st.fixed_dictionaries(
    {"digest": JSON_LEAVES, "ref": st.sampled_from(["data/a.txt", "", None, 5]) | st.text(max_size=10)},
    optional={"size": JSON_LEAVES, "extra": JSON, "birthArtifactID": JSON_LEAVES},
)
MANIFEST = st.fixed_dictionaries(
    {
        "version": st.sampled_from([1, 2, "1", None]),
        "contents": st.dictionaries(st.text(max_size=10), ENTRY, max_size=3) | JSON,
    },
    optional={"storagePolicy": JSON_LEAVES, "storagePolicyConfig": JSON},
)


@FUZZ
@given(
    st.binary(max_size=64) | MANIFEST.map(lambda d: json.dumps(d).encode()) | JSON.map(lambda d: json.dumps(d).encode())
)
@example(b'{"version": 1, "contents": {"../x": {"digest": "d", "ref": "data/a.txt"}}}')
@example(b'{"version": 1, "contents": {"a": {"digest": "d", "size": -5}}}')
def test_manifest_files_give_a_result_or_one_error_line(workdir: Path, raw: bytes) -> None:
    assume(not _OFF_LIMITS.search(raw.decode("utf-8", "replace").replace("\\u0000", "\x00")))
    path = workdir / "fuzzed.json"
    path.write_bytes(raw)
    for args in (["verify", str(path)], ["diff", str(path), "m.json"], ["download", str(path), "fuzz-out"]):
        assert_refscan_outcome(run_cli(args, workdir / "home"))


# -- checkpoints ----------------------------------------------------------------------------------------------------


def read_all(checkpoint: Checkpoint) -> None:
    checkpoint.empty()
    checkpoint.pending()
    checkpoint.states()
    list(checkpoint.entries())


@FUZZ
@given(st.binary(max_size=200))
@example(b"SQLite format 3\x00" + b"\x00" * 84)
def test_a_checkpoint_file_of_any_bytes_is_a_checkpoint_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    root = tmp_path_factory.mktemp("ckpt")
    (root / FILE).write_bytes(raw)
    with contextlib.suppress(CheckpointError):
        read_all(Checkpoint(root, "work", ["scan"]))


TABLE_ROWS = st.sampled_from(["units", "entries", "requests", "meta"]).flatmap(
    lambda table: st.tuples(
        st.just(table), st.lists(JSON.map(json.dumps) | st.text(max_size=20), min_size=3, max_size=3)
    )
)


@FUZZ
@given(st.lists(TABLE_ROWS, min_size=1, max_size=4))
def test_damaged_checkpoint_rows_are_a_checkpoint_error(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Any]
) -> None:
    root = tmp_path_factory.mktemp("ckpt")
    Checkpoint(root, "work", ["scan"]).close()
    with sqlite3.connect(root / FILE) as db:
        for table, (a, b, c) in rows:
            if table == "units":
                db.execute("INSERT INTO units (unit, state) VALUES (?, 'pending')", (a,))
            elif table == "entries":
                db.execute("INSERT INTO entries VALUES (?, ?, ?)", (len(a), len(b), c))
            elif table == "requests":
                db.execute("INSERT OR REPLACE INTO requests VALUES (?, ?)", (len(a), b))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (a, b))
    with contextlib.suppress(CheckpointError):
        read_all(Checkpoint(root, "work", ["scan"]))


# -- inventories ----------------------------------------------------------------------------------------------------

S3_DOC = st.fixed_dictionaries(
    {
        "sourceBucket": JSON_LEAVES | st.just("src"),
        "fileSchema": JSON_LEAVES | st.just(s3_schema(S3_CSV_COLUMNS, "csv")),
    },
    optional={
        "fileFormat": st.sampled_from(["CSV", "Parquet", "ORC", "Avro"]) | JSON_LEAVES,
        "files": JSON,
        "creationTimestamp": JSON_LEAVES,
    },
)
GCS_DOC = st.fixed_dictionaries(
    {"report_shards_file_names": JSON}, optional={"records_processed": JSON_LEAVES, "snapshot_time": JSON_LEAVES}
)


@FUZZ
@given(st.binary(max_size=80) | (S3_DOC | GCS_DOC | JSON).map(lambda d: json.dumps(d).encode()))
def test_inventory_manifests_are_read_or_refused(raw: bytes) -> None:
    with contextlib.suppress(InvalidInventory):
        parse_manifest(raw, "fuzzed/manifest.json", None)


CSV_FIELD = st.sampled_from(["src", "k/1", "true", "false", "", "12", "-1", "null", "etag", "x%2Fy", "%ZZ"]) | st.text(
    max_size=6
)


@FUZZ
@given(st.lists(st.lists(CSV_FIELD, min_size=0, max_size=len(S3_CSV_COLUMNS) + 1), max_size=4), st.booleans())
@example([["src", "k/1", "", "true", "false", "12", "2024-01-01T00:00:00.000Z", "abc", "STANDARD", ""]], True)
@example([["src", "k/1", "", "true", "false", "-12", "yesterday", "", "", ""]], False)
def test_inventory_data_files_give_entries_or_one_inventory_error(
    tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]], gzipped: bool
) -> None:
    root = tmp_path_factory.mktemp("inv")
    key = write_s3_inventory(local_put(root), "dest", "src", [], fmt="csv", files=1)
    manifest_path = root / key
    doc = json.loads(manifest_path.read_text())
    text = "".join(",".join(f'"{v}"' for v in row) + "\n" for row in rows).encode()
    data = gzip.compress(text) if gzipped else text
    (root / doc["files"][0]["key"]).write_bytes(data)
    doc["files"][0].update(size=len(data), MD5checksum=hashlib.md5(data).hexdigest())
    manifest_path.write_text(json.dumps(doc))
    (manifest_path.parent / "manifest.checksum").write_text(hashlib.md5(manifest_path.read_bytes()).hexdigest())
    with contextlib.suppress(RefscanError):
        refscan.scan("s3://src/k/", inventory=str(manifest_path), options=Options())
