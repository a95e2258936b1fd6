"""Every row of SPEC §4's naming table, for each scheme's URI shape (pure functions, no I/O)."""

from __future__ import annotations

import pytest

from refscan import InvalidURI, RefURI, UnsafePath
from refscan.naming import folder_entry_path, object_path


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
