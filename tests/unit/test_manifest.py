"""Manifest model, W&B v1 JSON codec and digest formula."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refscan import Manifest, ManifestEntry, ManifestError, PathConflict

ENTRIES = [
    ManifestEntry("b/dog.png", "abc", ref="s3://bkt/b/dog.png", size=3, extra={"etag": "abc", "versionID": "v1"}),
    ManifestEntry("a.txt", "Zm9v", size=0),
    ManifestEntry("c", "https://h/c", ref="https://h/c"),
]


def formula(paths_digests: dict[str, str]) -> str:
    text = "".join(f"{p}:{paths_digests[p]}\n" for p in sorted(paths_digests))
    return hashlib.md5(b"wandb-artifact-manifest-v1\n" + text.encode()).hexdigest()


def test_to_dict_is_wandb_v1_sorted_and_omits_none() -> None:
    d = Manifest(ENTRIES).to_dict()
    assert d["version"] == 1
    assert d["storagePolicy"] == "wandb-storage-policy-v1"
    assert d["storagePolicyConfig"] == {"storageLayout": "V2"}
    assert list(d["contents"]) == ["a.txt", "b/dog.png", "c"]
    assert d["contents"]["a.txt"] == {"digest": "Zm9v", "size": 0}
    assert d["contents"]["c"] == {"digest": "https://h/c", "ref": "https://h/c"}
    assert d["contents"]["b/dog.png"]["extra"] == {"etag": "abc", "versionID": "v1"}


def test_json_round_trip_and_digest(tmp_path: Path) -> None:
    m = Manifest(ENTRIES)
    path = tmp_path / "m.json"
    m.dump(path)
    loaded = Manifest.load(path)
    assert loaded == m
    assert loaded.digest == m.digest == formula({e.path: e.digest for e in ENTRIES})
    assert [e.path for e in loaded] == ["a.txt", "b/dog.png", "c"]
    assert list(tmp_path.iterdir()) == [path]  # atomic write left no temp file


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.tuples(st.text(max_size=30), st.none() | st.integers(0, 2**40)),
        max_size=20,
    )
)
def test_round_trip_property(contents: dict[str, tuple[str, int | None]]) -> None:
    m = Manifest(ManifestEntry(p, d, size=s) for p, (d, s) in contents.items())
    again = Manifest.from_dict(json.loads(m.to_json()))
    assert again == m
    assert again.digest == formula({p: d for p, (d, _) in contents.items()})


def test_reads_wandb_written_manifest_with_unknown_keys() -> None:
    data = {
        "version": 1,
        "storagePolicy": "wandb-storage-policy-v1",
        "storagePolicyConfig": {"storageLayout": "V2"},
        "contents": {
            "x.bin": {"digest": "d1", "ref": "s3://b/x.bin", "birthArtifactID": "QXJ0", "extra": {"etag": "d1"}},
            "y.bin": {"digest": "d2", "size": 0, "local_path": "/tmp/y"},
        },
        "somethingNew": True,
    }
    m = Manifest.from_dict(data)
    assert m.entries["x.bin"].size is None
    assert m.entries["x.bin"].ref == "s3://b/x.bin"
    assert m.entries["y.bin"].size == 0


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"version": 2, "contents": {}},
        {"version": 1},
        {"version": 1, "contents": {"a": "x"}},
        {"version": 1, "contents": {"a": {"digest": 5}}},
        {"version": 1, "contents": {"a": {"digest": "x", "size": -1}}},
        {"version": 1, "contents": {"a": {"digest": "x", "size": True}}},
        {"version": 1, "contents": {"a": {"digest": "x", "size": 2**70}}},
        {"version": 1, "contents": {"a": {"digest": "x", "ref": 3}}},
        {"version": 1, "contents": {"a": {"digest": "x", "extra": [1]}}},
        {"version": 1, "contents": {"": {"digest": "x"}}},
    ],
)
def test_invalid_manifests_raise_manifest_error(data: Any) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_dict(data)


def test_load_reports_bad_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.load(bad)
    with pytest.raises(ManifestError, match="cannot read"):
        Manifest.load(tmp_path / "missing.json")


def test_conflicting_path_raises_and_same_entry_is_idempotent() -> None:
    m = Manifest([ENTRIES[0]])
    m.add(ENTRIES[0])
    assert len(m) == 1
    with pytest.raises(PathConflict, match=r"b/dog\.png") as info:
        m.add(ManifestEntry("b/dog.png", "other"))
    assert str(info.value) == (
        f"path 'b/dog.png' is already in the manifest with digest {ENTRIES[0].digest!r} (new digest 'other'); "
        "pass a different name="
    )


def test_a_manifest_may_hold_a_file_and_a_folder_at_one_path() -> None:
    # only the same-path rule applies to a manifest; downloads refuse the file/folder clash themselves
    m = Manifest([ManifestEntry("a", "1"), ManifestEntry("a/b", "2")])
    assert list(m.entries) == ["a", "a/b"]
