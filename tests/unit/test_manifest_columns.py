"""`refscan.inventory.entries.read_columns`: a manifest file read in chunks gives exactly the entries
`Manifest.load` gives, or None (never other entries) when the file is not in the layout it takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refscan.errors import ManifestError
from refscan.inventory import entries as columns_module
from refscan.inventory.entries import GCS, S3, entries_of, from_entries, read_columns
from refscan.manifest import Manifest, ManifestEntry
from tests.unit.test_fuzz_inputs import MANIFEST

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
extra_value = st.one_of(st.none(), text, st.integers(0, 10), st.booleans())
extra = st.dictionaries(
    st.sampled_from(["etag", "versionID", "lastModified", "md5", "crc32c", "metageneration", "contentMD5", "sse"]),
    st.one_of(extra_value, st.integers(-(2**64), 2**64)),
    max_size=4,
)
entry = st.builds(
    lambda path, digest, ref, size, x: ManifestEntry(path, digest, ref, size, x),
    text,
    text,
    st.one_of(st.none(), text.map(lambda t: f"s3://b/{t}")),
    st.one_of(st.none(), st.integers(0, 2**40)),
    extra,
)


def canonical(entries: list[ManifestEntry]) -> list[dict[str, Any]]:
    return [{"path": e.path, **e.to_dict()} for e in sorted(entries, key=lambda e: e.path)]


def read_back(path: Path, profile: Any = S3) -> list[dict[str, Any]] | None:
    found = read_columns(path, profile)
    if found is None:
        return None
    assert len(found) == found.table.num_rows + len(found.others)
    return canonical(entries_of(found.table, profile) + found.others)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(entry, max_size=40, unique_by=lambda e: e.path),
    indent=st.sampled_from([1, 2, 4]),
    tiny_blocks=st.booleans(),
    profile=st.sampled_from([S3, GCS]),
)
def test_chunked_reading_equals_manifest_load(
    entries: list[ManifestEntry],
    indent: int,
    tiny_blocks: bool,
    profile: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(columns_module, "BLOCK", 40 if tiny_blocks else 4 << 20)
    manifest = Manifest(entries)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest.to_dict(), indent=indent, ensure_ascii=False))
    assert read_back(path, profile) == canonical(list(Manifest.load(path)))
    assert canonical(
        entries_of(from_entries(entries, profile).table, profile) + from_entries(entries, profile).others
    ) == canonical(entries)


def test_entry_objects_split_the_same_way_as_the_file() -> None:
    simple = ManifestEntry("a", "e1", "s3://b/a", 1, {"etag": "e1", "lastModified": "2024-01-01T00:00:00Z"})
    other = ManifestEntry("b", "e2", "s3://b/b", 2, {"etag": "e2", "sse": "aws:kms"})
    found = from_entries([simple, other], S3)
    assert entries_of(found.table, S3) == [simple]
    assert found.others == [other]
    assert found.table.column("etag_is_digest").to_pylist() == [True]  # the etag equal to the digest: held once
    assert found.table.column("etag").to_pylist() == [None]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "m.json"
    path.write_text(body)
    return path


ENTRY = '{\n      "digest": "d",\n      "ref": "s3://b/k",\n      "size": 1\n    }'


def test_a_path_given_twice_is_left_to_manifest_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = f'{{\n  "version": 1,\n  "contents": {{\n    "a": {ENTRY},\n    "b": {ENTRY},\n    "a": {ENTRY}\n  }}\n}}'
    for block in (4 << 20, 30):  # the two in one chunk, and in different chunks
        monkeypatch.setattr(columns_module, "BLOCK", block)
        assert read_columns(write(tmp_path, body), S3) is None
    with pytest.raises(ManifestError, match="twice"):
        Manifest.load(tmp_path / "m.json")


@pytest.mark.parametrize(
    "body",
    [
        '{"version": 1, "contents": {"a": {"digest": "d"}}}',  # one line: not cut
        '{\n  "contents": {\n    "a": {"digest": "d"}\n  },\n  "version": 2\n}',  # a version refscan does not read
        '{\n  "contents": {\n    "a": {"digest": "d"},\n  }\n}',  # a trailing comma
        '{\n  "contents": {\n    "a": {"digest": "d"}\n  }\n',  # cut short
        '{\n  "contents": {\n    "a": {"digest": "d"}\n  },\n  "more": {\n    "b": {"digest": "x"}\n  }\n}',
        '{\n "contents": {\n   "a": {"digest": "d"}\n }\n}',  # entries not at twice the top indentation
    ],
)
def test_other_layouts_give_none_or_the_same_entries(body: str, tmp_path: Path) -> None:
    path = write(tmp_path, body)
    try:
        loaded: Any = canonical(list(Manifest.load(path)))
    except ManifestError as exc:
        loaded = str(exc)
    try:
        found: Any = read_back(path)
    except ManifestError as exc:
        found = str(exc)
    assert found is None or found == loaded


def test_a_wrong_type_is_left_to_manifest_load(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "contents": {\n    "a": {\n      "digest": "d",\n      "size": "9"\n    }\n  }\n}')
    assert read_columns(path, S3) is None
    with pytest.raises(ManifestError, match="size must be a non-negative integer"):
        Manifest.load(path)


def test_an_empty_manifest(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    Manifest().dump(path)
    found = read_columns(path, S3)
    assert found is not None
    assert len(found) == 0


def outcome(path: Path, read: Any) -> Any:
    """The entries `read(path)` gives (canonical), or its error message."""
    try:
        return read(path)
    except ManifestError as exc:
        return str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    doc=MANIFEST,
    indent=st.sampled_from([1, 2, 4]),
    cut=st.integers(0, 10**6),
    how=st.sampled_from(["", "drop", "twice", "byte"]),
)
def test_fuzzed_manifests_give_none_or_what_manifest_load_gives(
    doc: Any, indent: int, cut: int, how: str, tmp_path: Path
) -> None:
    lines = json.dumps(doc, indent=indent).split("\n")
    at = cut % len(lines)
    if how == "drop":
        del lines[at]
    elif how == "twice":
        lines.insert(at, lines[at])
    text = "\n".join(lines)
    if how == "byte":
        text = text[: cut % (len(text) + 1)] + "}" + text[cut % (len(text) + 1) :]
    path = write(tmp_path, text)
    found = outcome(path, read_back)
    loaded = outcome(path, lambda p: canonical(list(Manifest.load(p))))
    assert found is None or found == loaded
