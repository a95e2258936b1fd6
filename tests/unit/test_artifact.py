"""`Artifact`: the W&B naming tables for local files and file:// references, name rules, path conflicts,
all-or-nothing adds, and the frozen draft a store records."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import hashlib
import os
from pathlib import Path

import pytest

from refscan import (
    Artifact,
    InvalidName,
    ManifestEntry,
    NotFound,
    PathConflict,
    ScanRequest,
    TooManyObjects,
    UnsafePath,
)
from refscan.artifact import ArtifactDraft, LocalFile


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The W&B doc's `root-directory`, as the working directory."""
    files = {
        "hello.txt": b"hello",
        "images/cat.png": b"cat",
        "images/dog.png": b"dog",
        "checkpoints/model.h5": b"ckpt",
        "models/model.h5": b"models-model",
        "model.h5": b"model",
    }
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def paths(art: Artifact) -> list[str]:
    return list(art.manifest.entries)


def snapshot(art: Artifact) -> tuple[dict[str, object], str, dict[str, LocalFile]]:
    return art.manifest.to_dict(), art.digest, dict(art.draft().local_files)


# -- the naming tables of the W&B "construct an artifact" page ---------------------------------------


def test_new_file_table(root: Path) -> None:
    art = Artifact("a", "dataset")
    with art.new_file("hello.txt") as f:
        f.write("hi")
    assert paths(art) == ["hello.txt"]


@pytest.mark.parametrize(
    ("local_path", "name", "expected"),
    [
        ("model.h5", None, "model.h5"),
        ("checkpoints/model.h5", None, "model.h5"),
        ("model.h5", "models/mymodel.h5", "models/mymodel.h5"),
        ("hello.txt", "new/path/hello_world.txt", "new/path/hello_world.txt"),
    ],
)
def test_add_file_table(root: Path, local_path: str, name: str | None, expected: str) -> None:
    art = Artifact("a", "dataset")
    art.add_file(local_path, name=name)
    assert paths(art) == [expected]


@pytest.mark.parametrize(
    ("name", "expected"), [(None, ["cat.png", "dog.png"]), ("images", ["images/cat.png", "images/dog.png"])]
)
def test_add_dir_table(root: Path, name: str | None, expected: list[str]) -> None:
    art = Artifact("a", "dataset")
    art.add_dir("images", name=name)
    assert paths(art) == expected


@pytest.mark.parametrize(
    ("uri", "name", "expected"),
    [
        ("file://{root}/model.h5", None, ["model.h5"]),
        ("file://{root}/checkpoints/model.h5", None, ["model.h5"]),
        ("file://{root}/model.h5", "models/mymodel.h5", ["models/mymodel.h5"]),
        ("file://{root}/images", None, ["cat.png", "dog.png"]),
        ("file://{root}/images", "images", ["images/cat.png", "images/dog.png"]),
    ],
)
def test_add_reference_table(root: Path, uri: str, name: str | None, expected: list[str]) -> None:
    art = Artifact("a", "dataset")
    added = art.add_reference(uri.format(root=root), name=name)
    assert [e.path for e in added] == expected
    assert paths(art) == expected


# -- entries ---------------------------------------------------------------------------------------


def test_local_entries_have_md5_size_and_no_ref(root: Path) -> None:
    art = Artifact("a", "dataset")
    entry = art.add_file("hello.txt")
    assert entry == ManifestEntry(path="hello.txt", digest=b64md5(b"hello"), size=5)
    with art.new_file("raw.bin", mode="wb") as f:
        f.write(b"\x00\x01")
    assert art.manifest.to_dict()["contents"] == {
        "hello.txt": {"digest": b64md5(b"hello"), "size": 5},
        "raw.bin": {"digest": b64md5(b"\x00\x01"), "size": 2},
    }
    assert art.digest == art.manifest.digest
    # source paths stay out of the manifest JSON
    assert str(root) not in art.manifest.to_json()


def test_reference_entries_keep_their_ref(root: Path) -> None:
    art = Artifact("a", "dataset")
    [entry] = art.add_reference(str(root / "hello.txt"))
    assert entry.ref == f"file://{root}/hello.txt"
    assert entry.digest == b64md5(b"hello")
    assert art.draft().local_files == {}


def test_add_dir_recurses(root: Path) -> None:
    (root / "images" / "sub").mkdir()
    (root / "images" / "sub" / "deep.png").write_bytes(b"deep")
    art = Artifact("a", "dataset")
    added = art.add_dir(root / "images", name="pics")
    assert [e.path for e in added] == ["pics/cat.png", "pics/dog.png", "pics/sub/deep.png"]
    assert art.draft().local_files["pics/sub/deep.png"] == LocalFile(
        str(root / "images" / "sub" / "deep.png"), b64md5(b"deep")
    )


def test_add_missing_local_paths(root: Path) -> None:
    art = Artifact("a", "dataset")
    with pytest.raises(NotFound):
        art.add_file("nope.txt")
    with pytest.raises(NotFound):
        art.add_file("images")
    with pytest.raises(NotFound):
        art.add_dir("hello.txt")
    with pytest.raises(UnsafePath):
        art.add_file("hello.txt", name="../escape.txt")


def test_add_entries_requires_clean_reference_entries() -> None:
    art = Artifact("a", "dataset")
    art.add_entries([ManifestEntry(path="x/y.csv", digest="abc", ref="s3://b/y.csv")])
    assert paths(art) == ["x/y.csv"]
    with pytest.raises(ValueError, match="no ref"):
        art.add_entries([ManifestEntry(path="z", digest="abc")])
    with pytest.raises(UnsafePath):
        art.add_entries([ManifestEntry(path="a//b", digest="abc", ref="s3://b/b")])


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cats", "a", "x" * 128, "my-data_v1.2", "A.B-C_9"])
def test_valid_names(name: str) -> None:
    assert Artifact(name, "dataset").name == name


@pytest.mark.parametrize("name", ["", "x" * 129, "has space", "a/b", "a:b", "ünï", "tab\t", "new\nline"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidName):
        Artifact(name, "dataset")


def test_invalid_type_and_metadata() -> None:
    with pytest.raises(InvalidName):
        Artifact("a", "")
    with pytest.raises(TypeError):
        Artifact("a", "dataset", metadata={"bad": object()})


# -- conflicts and all-or-nothing ------------------------------------------------------------------


def test_same_path_same_digest_is_a_no_op_and_different_digest_conflicts(root: Path) -> None:
    art = Artifact("a", "dataset")
    art.add_file("model.h5")
    art.add_file("model.h5")
    art.add_reference(f"file://{root}/model.h5")  # same bytes, same path: no-op
    assert paths(art) == ["model.h5"]
    before = snapshot(art)
    with pytest.raises(PathConflict, match=r"'model\.h5'") as info:
        art.add_file("checkpoints/model.h5")
    assert str(info.value) == (
        f"path 'model.h5' is already in artifact 'a' with digest {b64md5(b'model')!r} "
        f"(new digest {b64md5(b'ckpt')!r}); pass a different name="
    )
    assert snapshot(art) == before


def test_file_and_folder_cannot_share_a_path(root: Path) -> None:
    (root / "obj").write_bytes(b"file")
    (root / "tree" / "obj").mkdir(parents=True)
    (root / "tree" / "obj" / "inner.txt").write_bytes(b"inner")
    art = Artifact("a", "dataset")
    art.add_file("obj")
    with pytest.raises(PathConflict, match="'obj'") as info:
        art.add_dir("tree")
    assert str(info.value) == "path 'obj' would be both a file and a folder (holding 'obj/inner.txt')"
    assert paths(art) == ["obj"]

    other = Artifact("b", "dataset")
    other.add_dir("tree")
    with pytest.raises(PathConflict, match="'obj'") as info:
        other.add_file("obj")
    assert str(info.value) == "path 'obj' would be both a file and a folder"
    assert paths(other) == ["obj/inner.txt"]


def test_collision_in_the_middle_of_a_folder_leaves_artifact_unchanged(root: Path) -> None:
    folder = root / "many"
    folder.mkdir()
    for i in range(20):
        (folder / f"f{i:02}.txt").write_bytes(f"file {i}".encode())
    art = Artifact("a", "dataset")
    art.add_file("hello.txt", name="f10.txt")  # f10.txt will collide, half-way through the folder
    before = snapshot(art)
    with pytest.raises(PathConflict, match=r"'f10\.txt'"):
        art.add_reference(f"file://{folder}")
    assert snapshot(art) == before
    with pytest.raises(PathConflict):
        art.add_dir(folder)
    assert snapshot(art) == before


def test_too_many_objects_and_not_found_add_nothing(root: Path) -> None:
    art = Artifact("a", "dataset")
    art.add_file("hello.txt")
    before = snapshot(art)
    with pytest.raises(TooManyObjects, match="Exceeded 1 objects"):
        art.add_reference(f"file://{root}/images", max_objects=1)
    with pytest.raises(NotFound):
        art.add_reference(f"file://{root}/missing")
    assert snapshot(art) == before


def test_add_references_is_all_or_nothing(root: Path) -> None:
    art = Artifact("a", "dataset")
    results = art.add_references([f"file://{root}/images", ScanRequest(f"file://{root}/model.h5", name="m/model.h5")])
    assert [[e.path for e in r] for r in results] == [["cat.png", "dog.png"], ["m/model.h5"]]
    before = snapshot(art)
    # two requests claiming the same path with different content
    with pytest.raises(PathConflict, match="'x'"):
        art.add_references(
            [ScanRequest(f"file://{root}/hello.txt", name="x"), ScanRequest(f"file://{root}/model.h5", name="x")]
        )
    assert snapshot(art) == before
    with pytest.raises(NotFound):  # a failing reference among good ones: its own error, nothing added
        art.add_references([f"file://{root}/images", f"file://{root}/not-there"])
    assert snapshot(art) == before


# -- new_file ---------------------------------------------------------------------------------------


def test_new_file_is_added_only_when_the_block_succeeds(root: Path) -> None:
    art = Artifact("a", "dataset")

    def write_then_fail() -> None:
        with art.new_file("broken.txt") as f:
            f.write("partial")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert paths(art) == []
    assert art._staging is not None
    assert os.listdir(art._staging) == []  # the partial file was discarded
    with art.new_file("notes/ok.txt", encoding="utf-8") as f:
        f.write("ünï")
    assert art.manifest.entries["notes/ok.txt"].digest == b64md5("ünï".encode())
    staged = art.draft().local_files["notes/ok.txt"].source
    assert Path(staged).read_text(encoding="utf-8") == "ünï"
    with pytest.raises(PathConflict), art.new_file("notes/ok.txt") as f:
        f.write("different")
    assert Path(staged).read_text(encoding="utf-8") == "ünï"
    with pytest.raises(ValueError, match="mode"), art.new_file("x", mode="r"):
        pass


def test_staging_folder_is_removed_with_the_artifact(root: Path) -> None:
    art = Artifact("a", "dataset")
    with art.new_file("hello.txt") as f:
        f.write("hi")
    staging = art._staging
    assert staging is not None
    assert os.path.isdir(staging)
    del art
    gc.collect()
    assert not os.path.exists(staging)


# -- async and running loops --------------------------------------------------------------------------


def test_add_reference_inside_a_running_loop(root: Path) -> None:
    art = Artifact("a", "dataset")

    async def main() -> list[ManifestEntry]:
        return art.add_reference(f"file://{root}/images")

    assert [e.path for e in asyncio.run(main())] == ["cat.png", "dog.png"]
    assert paths(art) == ["cat.png", "dog.png"]


@pytest.mark.anyio
async def test_aadd_reference(root: Path) -> None:
    art = Artifact("a", "dataset")
    added = await art.aadd_reference(f"file://{root}/images", name="images")
    assert [e.path for e in added] == ["images/cat.png", "images/dog.png"]
    results = await art.aadd_references([f"file://{root}/hello.txt", f"file://{root}/model.h5"])
    assert [e.path for r in results for e in r] == ["hello.txt", "model.h5"]
    assert len(art.manifest) == 4


# -- the draft ----------------------------------------------------------------------------------------


def test_draft_is_a_frozen_snapshot(root: Path) -> None:
    art = Artifact("a", "dataset", description="pets", metadata={"rows": [1, 2]})
    art.add_dir("images")
    art.add_reference(f"file://{root}/hello.txt", name="greeting")
    draft = art.draft()
    assert isinstance(draft, ArtifactDraft)
    assert (draft.name, draft.type, draft.description) == ("a", "dataset", "pets")
    assert draft.metadata == {"rows": [1, 2]}
    assert [e.path for e in draft.entries] == ["cat.png", "dog.png", "greeting"]  # in the order added
    assert draft.digest == art.digest
    assert draft.manifest == art.manifest
    assert dict(draft.local_files) == {
        "cat.png": LocalFile(str(root / "images" / "cat.png"), b64md5(b"cat")),
        "dog.png": LocalFile(str(root / "images" / "dog.png"), b64md5(b"dog")),
    }

    art.add_file("model.h5")
    art.metadata["rows"].append(3)
    art.description = "changed"
    assert len(draft.entries) == 3
    assert "model.h5" not in draft.local_files
    assert (draft.description, draft.metadata["rows"]) == ("pets", [1, 2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        draft.name = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        draft.local_files["x"] = LocalFile("/x", "d")  # type: ignore[index]
