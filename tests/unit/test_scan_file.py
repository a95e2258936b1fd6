"""The scan engine end to end through the file:// resolver: naming, folders, limits, sync wrapper, events."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import pytest
import structlog

import refscan
from refscan import NotFound, Options, Scanner, ScanRequest, TooManyObjects


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    files = {
        "hello.txt": b"hello",
        "images/cat.png": b"cat",
        "images/dog.png": b"dog",
        "checkpoints/model.h5": b"ckpt",
        "model.h5": b"model",
        "data2/x": b"sibling",
        "empty/.keep": b"",
        "odd/a b#1?.txt": "ünï".encode(),
    }
    for rel, data in files.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return tmp_path


def paths(entries: list[refscan.ManifestEntry]) -> list[str]:
    return [e.path for e in entries]


def test_naming_table_on_local_files(tree: Path) -> None:
    assert paths(refscan.scan(str(tree / "model.h5"))) == ["model.h5"]
    assert paths(refscan.scan(str(tree / "checkpoints/model.h5"))) == ["model.h5"]
    assert paths(refscan.scan(str(tree / "model.h5"), name="models/mymodel.h5")) == ["models/mymodel.h5"]
    assert paths(refscan.scan(f"file://{tree}/images")) == ["cat.png", "dog.png"]
    assert paths(refscan.scan(f"file://{tree}/images/", name="images")) == ["images/cat.png", "images/dog.png"]


def test_entry_fields_for_files(tree: Path) -> None:
    [entry] = refscan.scan(str(tree / "odd" / "a b#1?.txt"))
    assert entry.path == "a b#1?.txt"
    assert entry.digest == b64md5("ünï".encode())
    assert entry.size == len("ünï".encode())
    assert entry.ref == f"file://{tree}/odd/a%20b%231%3F.txt"
    assert entry.extra == {}
    # the ref reads back as the same file
    assert refscan.scan(entry.ref)[0].digest == entry.digest


def test_zero_byte_files_are_kept(tree: Path) -> None:
    [entry] = refscan.scan(str(tree / "empty"))
    assert (entry.path, entry.size, entry.digest) == (".keep", 0, b64md5(b""))


def test_folder_is_by_path_component(tree: Path) -> None:
    with pytest.raises(NotFound):
        refscan.scan(str(tree / "data"))  # never picks up data2/x
    assert paths(refscan.scan(str(tree / "data2"))) == ["x"]


def test_checksum_false_makes_no_lookup(tree: Path) -> None:
    missing = f"file://{tree}/not/there.bin"
    [entry] = refscan.scan(missing, checksum=False)
    assert (entry.path, entry.ref, entry.digest, entry.size, entry.extra) == ("there.bin", missing, missing, None, {})
    [named] = refscan.scan("s3://bucket", checksum=False)
    assert (named.path, named.ref) == ("bucket", "s3://bucket")


def test_too_many_objects_at_max_plus_one(tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"f{i}").write_bytes(b"x")
    assert len(refscan.scan(str(tmp_path), max_objects=6)) == 6
    with pytest.raises(TooManyObjects, match=r"Exceeded 5 objects.*max_objects"):
        refscan.scan(str(tmp_path), max_objects=5)
    assert isinstance(TooManyObjects("x"), ValueError)


def test_missing_path_and_empty_folder_raise_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        refscan.scan(str(tmp_path / "nope"))
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "hollow").mkdir()
    with pytest.raises(NotFound, match="no objects under"):
        refscan.scan(str(tmp_path / "hollow"))


def test_sync_scan_inside_running_event_loop(tree: Path) -> None:
    async def notebook_cell() -> list[str]:
        return paths(refscan.scan(str(tree / "images")))

    assert asyncio.run(notebook_cell()) == ["cat.png", "dog.png"]


@pytest.mark.anyio
async def test_iter_scan_streams_and_may_raise_after_yielding(tmp_path: Path) -> None:
    for i in range(600):
        (tmp_path / f"f{i:03}").write_bytes(b"x")
    seen: list[refscan.ManifestEntry] = []

    async def consume() -> None:
        async for entry in refscan.iter_scan(str(tmp_path), max_objects=599):
            seen.append(entry)

    with pytest.raises(TooManyObjects):
        await consume()
    assert 0 < len(seen) < 600  # streamed a batch before the limit was found


@pytest.mark.anyio
async def test_scanner_reuses_resolvers_and_scans_many(tree: Path) -> None:
    async with Scanner(Options(concurrency=4)) as scanner:
        results = await scanner.scan_many(
            [ScanRequest(str(tree / "images"), name="img"), str(tree / "hello.txt"), str(tree / "model.h5")]
        )
        first = await scanner.session.backend("file")
        assert first is await scanner.session.backend("file")
    assert [paths(r) for r in results] == [["img/cat.png", "img/dog.png"], ["hello.txt"], ["model.h5"]]


def test_events_are_structured_and_capturable(tree: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        refscan.scan(str(tree / "images"))
    [event] = [e for e in logs if e["event"] == "scan.folder"]
    assert event["objects"] == 2
    assert event["uri"].endswith("/images")
