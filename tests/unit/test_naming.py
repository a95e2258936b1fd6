"""Every row of the W&B naming table, for each scheme's URI shape, and the path-clash rule (pure functions,
no I/O)."""

from __future__ import annotations

import pytest

from refscan import InvalidURI, ManifestEntry, PathConflict, RefURI, UnsafePath
from refscan.naming import PathIndex, check_clashes, check_same_path, folder_entry_path, object_path


@pytest.mark.parametrize("scheme", ["s3", "gs"])
@pytest.mark.parametrize(
    ("uri", "name", "expected"),
    [
        ("{s}://b/model.h5", None, "model.h5"),
        ("{s}://b/checkpoints/model.h5", None, "model.h5"),
        ("{s}://b/model.h5", "models/mymodel.h5", "models/mymodel.h5"),
    ],
)
def test_single_object_rows(scheme: str, uri: str, name: str | None, expected: str) -> None:
    assert object_path(RefURI.parse(uri.format(s=scheme)), name) == expected


@pytest.mark.parametrize("scheme", ["s3", "gs", "file"])
@pytest.mark.parametrize(
    ("name", "expected"),
    [(None, ["cat.png", "dog.png"]), ("images", ["images/cat.png", "images/dog.png"])],
)
def test_folder_rows(scheme: str, name: str | None, expected: list[str]) -> None:
    base = "file:///data/images" if scheme == "file" else f"{scheme}://b/images"
    folder = RefURI.parse(base).folder()
    keys = [folder.key + "cat.png", folder.key + "dog.png"]
    assert [folder_entry_path(folder, k, name) for k in keys] == expected


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_bucket_root_gives_full_keys(scheme: str) -> None:
    root = RefURI.parse(f"{scheme}://b").folder()
    assert folder_entry_path(root, "images/cat.png", None) == "images/cat.png"
    assert folder_entry_path(root, "images/cat.png", "all") == "all/images/cat.png"


def test_http_row_uses_decoded_last_segment_never_the_query() -> None:
    assert object_path(RefURI.parse("https://h/d/my%20file.csv?sig=abc"), None) == "my file.csv"
    assert object_path(RefURI.parse("https://h/d/x.csv"), "data/x.csv") == "data/x.csv"


def test_http_url_without_file_name_needs_name() -> None:
    with pytest.raises(InvalidURI, match="name="):
        object_path(RefURI.parse("https://h/dir/"), None)
    assert object_path(RefURI.parse("https://h/dir/"), "index.html") == "index.html"


def test_bucket_root_without_checksum_is_named_after_bucket() -> None:
    assert object_path(RefURI.parse("s3://my-bucket"), None) == "my-bucket"
    assert object_path(RefURI.parse("gs://my-bucket/images/"), None) == "images"


@pytest.mark.parametrize("key", ["a/../b", "./x", "a/./b"])
def test_dot_segments_are_refused(key: str) -> None:
    root = RefURI.parse("s3://b")
    with pytest.raises(UnsafePath):
        folder_entry_path(root, key, None)


def test_empty_segments_collapse_and_names_are_cleaned() -> None:
    root = RefURI.parse("s3://b")
    assert folder_entry_path(root, "a//b.txt", None) == "a/b.txt"
    assert folder_entry_path(root, "/lead", None) == "lead"
    with pytest.raises(UnsafePath):
        object_path(RefURI.parse("s3://b/x"), "../escape")


# -- the path-clash rule ------------------------------------------------------------------------------


def entries(*pairs: tuple[str, str]) -> list[ManifestEntry]:
    return [ManifestEntry(path=p, digest=d) for p, d in pairs]


def test_same_path_message_is_worded_by_the_caller() -> None:
    check_same_path("a", "d1", "d1", where="in the manifest")
    with pytest.raises(PathConflict) as info:
        check_same_path("a", "d1", "d2", where="in artifact 'x'", hint="; pass a different name=")
    assert str(info.value) == (
        "path 'a' is already in artifact 'x' with digest 'd1' (new digest 'd2'); pass a different name="
    )


def test_path_index_messages_and_no_ops() -> None:
    index: PathIndex[ManifestEntry] = PathIndex(entries(("a/x", "1"), ("b", "2")), where="pending")
    assert index.add(entries(("a/x", "1"))) == []  # same entry again: a no-op
    with pytest.raises(PathConflict) as info:
        index.add(entries(("b", "3")))
    assert str(info.value) == "path 'b' is already pending with digest '2' (new digest '3')"
    with pytest.raises(PathConflict) as info:
        index.add(entries(("b/inner", "4")))
    assert str(info.value) == "path 'b' would be both a file and a folder (holding 'b/inner')"
    with pytest.raises(PathConflict) as info:
        index.add(entries(("a", "5")))
    assert str(info.value) == "path 'a' would be both a file and a folder"
    assert list(index) == ["a/x", "b"]
    assert (index.digest_at("b"), index.digest_at("a"), index.is_folder("a"), index.is_folder("a/x")) == (
        "2",
        None,
        True,
        False,
    )


def test_a_batch_is_checked_whole_and_added_all_or_nothing() -> None:
    index: PathIndex[ManifestEntry] = PathIndex(entries(("x", "1")))
    # a same-path clash anywhere in the batch is reported before any file/folder clash
    with pytest.raises(PathConflict, match="already taken"):
        index.add(entries(("x/y", "2"), ("z", "3"), ("x", "4")))
    # inside the batch too: `a` as a file and `a/b` under it
    with pytest.raises(PathConflict, match=r"path 'a' would be both a file and a folder \(holding 'a/b'\)"):
        index.add(entries(("a/b", "5"), ("a", "6")))
    assert list(index) == ["x"]
    added = index.add(entries(("n/1", "7"), ("n/1", "7"), ("n/2", "8")))
    assert [e.path for e in added] == ["n/1", "n/2"]
    assert index.is_folder("n")


def test_check_clashes_reads_any_taken_paths() -> None:
    class Taken:
        def digest_at(self, path: str) -> str | None:
            return {"f": "1"}.get(path)

        def is_folder(self, path: str) -> bool:
            return path == "dir"

    new = check_clashes(entries(("f", "1"), ("g", "2")), Taken(), where="there")
    assert list(new) == ["g"]
    with pytest.raises(PathConflict, match="path 'dir' would be both"):
        check_clashes(entries(("dir", "3")), Taken(), where="there")
    with pytest.raises(PathConflict, match=r"path 'f' would be both a file and a folder \(holding 'f/g'\)"):
        check_clashes(entries(("f/g", "3")), Taken(), where="there")
