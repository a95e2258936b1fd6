"""The column-wise fast path of `scan --inventory` equals the per-row path field for field, on random rows:
odd keys (quotes, backslashes, control characters, `//`, `/.`, leading dots, folder markers, non-ASCII),
quoted / weak / multipart / empty ETags, `null` and empty version ids, times in several forms, checksum
algorithms, missing sizes; with and without `name`; and its JSON Lines are `jsonl_line` of each entry."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refscan.backends.base import is_folder_marker
from refscan.errors import RefscanError
from refscan.inventory.columns import NEEDS_ESCAPE, gcs_columns, s3_columns
from refscan.inventory.readers import (
    CHECKSUM,
    CRC32C,
    ETAG,
    KEY,
    MD5,
    METAGENERATION,
    MODIFIED,
    SIZE,
    VERSION,
    iso_seconds,
)
from refscan.inventory.source import row_reader
from refscan.manifest import ManifestEntry, jsonl_line
from refscan.meta import ObjectMeta
from refscan.naming import NOT_PLAIN, _plain
from refscan.scan import folder_entry
from refscan.uri import RefURI

FOLDER = RefURI.parse("s3://bkt/dé/")
# regular values weighted up, so that most rows take the column path and the odd ones are still common
REGULAR_PIECES = ["a", "b.txt", "é", "日本", "/", " ", "+", "%2F", "x"] * 4
PIECES = [*REGULAR_PIECES, "//", "/.", ".", "..", '"', "\\", "\x00", "\x01", "\n"]
keys = st.lists(st.sampled_from(PIECES), min_size=1, max_size=5).map(lambda parts: FOLDER.key + "".join(parts))
HEX = "0123456789abcdef0123456789abcdef"
etags = st.sampled_from([*[HEX, f"{HEX}-3"] * 4, None, "", '"abc"', 'W/"w"', 'a"b', "x\\y", "t\x01"])
versions = st.sampled_from([None, "null", "v1", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"] * 3 + ["", 'q"v', "v\n"])
times = st.sampled_from(
    ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123Z", None] * 3 + ["Wed, 01 May 2024 12:00:00 GMT", "yesterday", ""]
)
rows = st.fixed_dictionaries(
    {
        KEY: keys,
        ETAG: etags,
        SIZE: st.one_of(st.integers(0, 3), st.none()),
        VERSION: versions,
        MODIFIED: times,
        CHECKSUM: st.sampled_from([None, None, None, "", "SHA256"]),
    }
)


def batch_of(items: list[dict[str, Any]]) -> Any:
    types = {SIZE: pa.int64()}
    return pa.RecordBatch.from_pydict(
        {c: pa.array([r[c] for r in items], types.get(c, pa.string())) for c in items[0]} if items else {}
    )


def plain_entries(
    items: list[dict[str, Any]], name: str | None, folder: RefURI = FOLDER
) -> list[ManifestEntry | type[Exception]]:
    """The per-row path: the listing parser of the folder's store, folder markers skipped, the scan engine's
    entry rule."""
    to_meta = row_reader({"s3": "s3", "gs": "gcs"}[folder.scheme])
    out: list[ManifestEntry | type[Exception]] = []
    for row in items:
        if is_folder_marker(row[KEY], row[SIZE]):
            continue
        try:
            out.append(folder_entry(folder.backend, folder, to_meta(row), name))
        except (ValueError, RefscanError) as exc:
            out.append(type(exc))
    return out


def fast_entries(items: list[dict[str, Any]], name: str | None) -> tuple[list[Any], str]:
    """The column path (the rows it hands back through the per-row path) and its JSON Lines, checked equal to
    its JSON Lines bytes."""
    columns, others = s3_columns(batch_of(items), FOLDER.key, name, "s3://bkt/")
    rest = plain_entries(others.to_pylist(), name)
    columns.others = [e for e in rest if isinstance(e, ManifestEntry)]
    text = columns.jsonl()
    assert bytes(columns.jsonl_bytes()) == text.encode()
    return columns.entries() + [e for e in rest if not isinstance(e, ManifestEntry)], text


def order(entries: list[Any]) -> list[Any]:
    return sorted(entries, key=repr)  # the column path puts the rows it hands back after its own


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, min_size=1, max_size=12), st.sampled_from([None, "n", "top/sub"]))
def test_fast_path_equals_the_per_row_path(items: list[dict[str, Any]], name: str | None) -> None:
    fast, text = fast_entries(items, name)
    assert order(fast) == order(plain_entries(items, name))
    made = [e for e in fast if isinstance(e, ManifestEntry)]
    assert sorted(text.splitlines(keepends=True)) == sorted(map(jsonl_line, made))


# Values that are regular apart from where two meet, or that differ from regular ones at one place only, in
# batches where every value has one length: the checks made over a whole column's bytes at once must not be
# fooled by them.
JOINED_KEYS = st.lists(st.sampled_from(["a", "/", ".", "b/", "/c", ".d", "é/", "e."]), min_size=1, max_size=3)
SAME_LENGTH_TIMES = st.sampled_from(
    ["2024-05-01T12:00:00.123Z", "2024-05-01T12:00:00.12xZ", "2024-05-01T12:00:0.123ZZ", "2024-05-01 12:00:00.123Z"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(JOINED_KEYS, SAME_LENGTH_TIMES), min_size=1, max_size=8), st.sampled_from([None, "n"]))
def test_whole_column_checks_equal_the_per_row_rules(parts: list[tuple[list[str], str]], name: str | None) -> None:
    items = [
        {KEY: FOLDER.key + "".join(key), ETAG: HEX, SIZE: 1, VERSION: None, MODIFIED: time, CHECKSUM: None}
        for key, time in parts
    ]
    fast, text = fast_entries(items, name)
    assert order(fast) == order(plain_entries(items, name))
    assert sorted(text.splitlines(keepends=True)) == sorted(jsonl_line(e) for e in fast if isinstance(e, ManifestEntry))


def test_jsonl_bytes_of_odd_and_unicode_rows() -> None:
    """Mixed batches (column entries and per-row ones) give the same bytes as the text, UTF-8 encoded."""
    rng = random.Random(3)
    items = [
        {
            KEY: FOLDER.key + "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 5))),
            ETAG: rng.choice([HEX, '"q"', "é"]),
            SIZE: rng.randrange(5),
            VERSION: rng.choice([None, "v1", "日本"]),
            MODIFIED: rng.choice([None, "2024-05-01T12:00:00.5Z", "2024-05-01T12:00:00Z"]),
            CHECKSUM: None,
        }
        for _ in range(400)
    ]
    fast, text = fast_entries(items, "名前")
    assert sorted(text.splitlines(keepends=True)) == sorted(jsonl_line(e) for e in fast if isinstance(e, ManifestEntry))
    empty, _ = s3_columns(batch_of(items[:1]), FOLDER.key, None, "s3://bkt/")
    assert bytes(empty.head(0).jsonl_bytes()) == b""


def test_regular_rows_take_the_column_path() -> None:
    """The rows of a typical inventory do not fall back to the per-row path."""
    items = [
        {KEY: f"{FOLDER.key}x/{i}.bin", ETAG: f"{i:032x}", SIZE: i, VERSION: v, MODIFIED: m, CHECKSUM: None}
        for i, (v, m) in enumerate([(None, None), ("null", "2024-05-01T12:00:00.5Z"), ("v1", "2024-05-01T12:00:00Z")])
    ]
    columns, others = s3_columns(batch_of(items), FOLDER.key, None, "s3://bkt/")
    assert (len(columns.path), others.num_rows) == (3, 0)
    assert columns.head(2).entries() == columns.entries()[:2]
    assert json.loads(columns.jsonl().splitlines()[2])["extra"] == {"versionID": "v1", "etag": f"{2:032x}"} | {
        "lastModified": "2024-05-01T12:00:00Z"
    }


@pytest.mark.parametrize("seed", range(5))
def test_not_plain_is_the_plain_rule(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):
        text = "".join(rng.choice(["a", "/", ".", "\\", "\x00", "é", "b"]) for _ in range(rng.randrange(6)))
        assert (re.search(NOT_PLAIN, text) is None) == _plain(text), text
        assert (re.search(NEEDS_ESCAPE, text) is None) == (json.dumps(text, ensure_ascii=False) == f'"{text}"')


def test_iso_seconds_is_the_listing_time_rule() -> None:
    """Timestamps become the text `iso_time` gives the same instant (cut to the second, UTC)."""
    from refscan.backends.s3.client import iso_time

    rng = random.Random(7)
    millis = [rng.randrange(0, 4_102_444_800_000) for _ in range(500)] + [0, 999, 1_000]
    got = iso_seconds(pa, pa.array(millis, pa.timestamp("ms", tz="UTC"))).to_pylist()
    assert got == [iso_time(datetime.fromtimestamp(m / 1000, tz=timezone.utc)) for m in millis]
    micro = iso_seconds(pa, pa.array([1_700_000_000_999_999], pa.timestamp("us"))).to_pylist()
    assert micro == ["2023-11-14T22:13:20Z"]


def test_object_meta_of_a_typical_row() -> None:
    row = {KEY: "dé/a", ETAG: '"e"', SIZE: 1, VERSION: "null", MODIFIED: "2024-05-01T12:00:00.000Z", CHECKSUM: None}
    assert row_reader("s3")(row) == ObjectMeta("dé/a", 1, "e", None, "2024-05-01T12:00:00Z")


GCS_FOLDER = RefURI.parse("gs://bkt/dé/")
gcs_keys = st.lists(st.sampled_from(PIECES), min_size=1, max_size=5).map(lambda parts: GCS_FOLDER.key + "".join(parts))
whole_numbers = st.sampled_from(["1700000000000001", "0", "5"] * 4 + [None, "", "007", "-1", "1e3", "x", "9" * 19])
hashes = st.sampled_from(["1B2M2Y8AsgTpgAmY7PhCfg==", "AAAAAA=="] * 4 + [None, "", 'a"b', "c\\d"])
gcs_rows = st.fixed_dictionaries(
    {
        KEY: gcs_keys,
        ETAG: st.sampled_from(["CJa3wQ==", "CLD/1"] * 4 + [None, "", 'e"t', "t\x01"]),
        SIZE: st.one_of(st.integers(0, 3), st.none()),
        VERSION: whole_numbers,
        MD5: hashes,
        CRC32C: hashes,
        METAGENERATION: whole_numbers,
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(gcs_rows, min_size=1, max_size=12), st.sampled_from([None, "n"]))
def test_gcs_fast_path_equals_the_per_row_path(items: list[dict[str, Any]], name: str | None) -> None:
    columns, others = gcs_columns(batch_of(items), GCS_FOLDER.key, name, "gs://bkt/")
    rest = plain_entries(others.to_pylist(), name, GCS_FOLDER)
    columns.others = [e for e in rest if isinstance(e, ManifestEntry)]
    text = columns.jsonl()
    assert bytes(columns.jsonl_bytes()) == text.encode()
    fast = columns.entries() + [e for e in rest if not isinstance(e, ManifestEntry)]
    assert order(fast) == order(plain_entries(items, name, GCS_FOLDER))
    made = [e for e in fast if isinstance(e, ManifestEntry)]
    assert sorted(text.splitlines(keepends=True)) == sorted(map(jsonl_line, made))


def test_regular_gcs_rows_take_the_column_path() -> None:
    row = {KEY: "dé/a.txt", ETAG: "CJa3wQ==", SIZE: 3, VERSION: "17", MD5: "", CRC32C: "AAAAAA==", METAGENERATION: None}
    columns, others = gcs_columns(batch_of([row, {**row, KEY: "dé/b"}]), GCS_FOLDER.key, None, "gs://bkt/")
    assert others.num_rows == 0
    assert [e.extra for e in columns.entries()] == [{"versionID": 17, "crc32c": "AAAAAA=="}] * 2
