"""`Store`: versions, de-duplication, aliases, types, files with direct URLs, lineage, self-contained local
files, and parallel writers across processes on a real SQLite file."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

import refscan
import refscan.errors
import refscan.store
from refscan import (
    Artifact,
    InvalidName,
    Manifest,
    ManifestEntry,
    NotFound,
    Options,
    PathConflict,
    S3Options,
    SealedGroup,
    SourceChanged,
    Store,
    TypeConflict,
)

ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_S3_ENDPOINT_URL", "STORAGE_EMULATOR_HOST")


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture(autouse=True)
def _no_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENDPOINT_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "cat.png").write_bytes(b"cat")
    (folder / "images" / "dog.png").write_bytes(b"dog")
    (folder / "labels.csv").write_bytes(b"a,b\n")
    return folder


def dataset(data: Path, name: str = "cats") -> Artifact:
    art = Artifact(name, "dataset", description="pets", metadata={"rows": 2})
    art.add_dir(data / "images", name="images")
    art.add_reference(f"file://{data}/labels.csv")
    return art


def file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    assert parts.scheme == "file"
    return Path(unquote(parts.path))


# -- the root -----------------------------------------------------------------------------------------


def test_root_from_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFSCAN_HOME", str(tmp_path / "home"))
    assert Store().db_path == tmp_path / "home" / "refscan.db"
    monkeypatch.delenv("REFSCAN_HOME")
    monkeypatch.chdir(tmp_path)
    with Store() as store:
        assert store.root == tmp_path / ".refscan"
        assert store.db_path.is_file()
    with sqlite3.connect(tmp_path / ".refscan" / "refscan.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- log, versions, aliases, types -----------------------------------------------------------------


def test_log_same_content_twice_is_one_version(store: Store, data: Path) -> None:
    assert store.log(dataset(data)) == "cats:v0"
    assert store.log(dataset(data)) == "cats:v0"
    assert [v.ref for v in store.versions("cats")] == ["cats:v0"]


def test_changed_content_is_a_new_version(store: Store, data: Path) -> None:
    first = dataset(data)
    assert store.log(first, producer={"run": "r1"}) == "cats:v0"
    (data / "images" / "dog.png").write_bytes(b"a different dog")
    second = dataset(data)
    assert second.digest != first.digest
    assert store.log(second, producer={"run": "r2"}) == "cats:v1"

    v0, v1 = store.versions("cats")
    assert (v0.version, v1.version) == (0, 1)
    assert v0.digest == first.digest
    assert v1.digest == second.digest
    assert v0.manifest == first.manifest
    assert v1.manifest == second.manifest
    assert store.get("cats:latest") == v1
    assert store.get("cats") == v1
    assert store.get("cats:v0") == v0
    assert v0.aliases == ()
    assert v1.aliases == ("latest",)
    assert (v1.name, v1.type, v1.ref, v1.producer) == ("cats", "dataset", "cats:v1", {"run": "r2"})
    assert (v1.description, v1.metadata) == ("pets", {"rows": 2})
    assert v1.created_at >= v0.created_at
    assert v1.created_at.endswith("+00:00")


def test_aliases_move_to_the_newest_version_that_gets_them(store: Store, data: Path) -> None:
    assert store.log(dataset(data), aliases=["best", "prod"]) == "cats:v0"
    (data / "labels.csv").write_bytes(b"a,b\n1,2\n")
    assert store.log(dataset(data), aliases=("best",)) == "cats:v1"
    assert store.get("cats:best").ref == "cats:v1"
    assert store.get("cats:prod").ref == "cats:v0"
    assert store.get("cats:v0").aliases == ("prod",)
    assert store.get("cats:v1").aliases == ("latest", "best")

    # logging v0's content again returns v0 and moves the alias there; latest stays on v1
    (data / "labels.csv").write_bytes(b"a,b\n")
    assert store.log(dataset(data), aliases="best") == "cats:v0"
    assert store.get("cats:best").ref == "cats:v0"
    assert store.get("cats:latest").ref == "cats:v1"

    with pytest.raises(InvalidName):
        store.log(dataset(data), aliases=["v3"])
    with pytest.raises(InvalidName):
        store.log(dataset(data), aliases=["no spaces"])


def test_a_name_keeps_its_type(store: Store, data: Path) -> None:
    store.log(dataset(data))
    model = Artifact("cats", "model")
    model.add_file(data / "labels.csv")
    with pytest.raises(TypeConflict, match="dataset") as info:
        store.log(model)
    assert isinstance(info.value, ValueError)
    assert [v.ref for v in store.versions("cats")] == ["cats:v0"]


def test_unknown_versions(store: Store, data: Path) -> None:
    store.log(dataset(data))
    for spec in ("cats:v1", "cats:nope", "dogs:latest", "dogs"):
        with pytest.raises(NotFound):
            store.get(spec)
    with pytest.raises(NotFound):
        store.versions("dogs")
    with pytest.raises(InvalidName):
        store.get("bad name:v0")


def test_store_reopens_and_exports_manifests(store: Store, data: Path, tmp_path: Path) -> None:
    art = dataset(data)
    store.log(art)
    store.close()
    version = Store(store.root).get("cats:v0")
    assert version.manifest.to_dict() == art.manifest.to_dict()
    version.manifest.dump(tmp_path / "m.json")
    assert Manifest.load(tmp_path / "m.json").digest == version.digest == art.digest


def test_threads_share_one_store(store: Store) -> None:
    def log(i: int) -> None:
        art = Artifact("t", "dataset")
        art.add_entries([ManifestEntry(path="x", digest=f"d{i}", ref=f"s3://b/x{i}")])
        store.log(art)

    threads = [threading.Thread(target=log, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [v.version for v in store.versions("t")] == list(range(8))


# -- local files: stored content-addressed ------------------------------------------------------------


def test_local_files_are_copied_into_the_store(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"same")
    (src / "b.txt").write_bytes(b"same")
    art = Artifact("local", "dataset")
    art.add_dir(src)
    with art.new_file("notes.txt") as f:
        f.write("note")
    store.log(art)
    (src / "a.txt").unlink()
    (src / "b.txt").unlink()
    del art

    rows = store.files("local:v0")
    assert [(r.path, r.ref, r.size) for r in rows] == [("a.txt", None, 4), ("b.txt", None, 4), ("notes.txt", None, 4)]
    assert rows[0].direct_url == rows[1].direct_url  # one object per content
    for row in rows:
        stored = file_url_path(row.direct_url)
        assert stored.parent.parent == store.root / "objects"
        assert stored.name == hashlib.md5(stored.read_bytes()).hexdigest()
        assert b64md5(stored.read_bytes()) == row.digest
    assert len(list((store.root / "objects").rglob("*"))) == 4  # 2 fan-out folders + 2 objects, no temp files


def test_a_local_file_changed_after_add_is_refused(store: Store, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_bytes(b"before")
    art = Artifact("local", "dataset")
    art.add_file(tmp_path / "f.txt")
    (tmp_path / "f.txt").write_bytes(b"after!")
    with pytest.raises(SourceChanged, match="add it again"):
        store.log(art)
    with pytest.raises(NotFound):
        store.versions("local")
    assert not [p for p in (store.root / "objects").rglob("*") if p.is_file()]


# -- files and direct URLs --------------------------------------------------------------------------


def references() -> Artifact:
    art = Artifact("refs", "dataset")
    art.add_entries(
        [
            ManifestEntry(path="s3/plain", digest="e1", ref="s3://bkt/dir/a b#1.txt", size=1),
            ManifestEntry(
                path="s3/versioned", digest="e2", ref="s3://bkt/k.bin", size=2, extra={"etag": "e2", "versionID": "V1"}
            ),
            ManifestEntry(path="s3/unchecked", digest="s3://bkt/k.bin?versionId=V2", ref="s3://bkt/k.bin?versionId=V2"),
            ManifestEntry(path="gs/obj", digest="g1", ref="gs://gb/p/q r.csv", size=3, extra={"versionID": 1712}),
            ManifestEntry(path="gs/plain", digest="g2", ref="gs://gb/x", size=4),
            ManifestEntry(path="web", digest="h1", ref="https://example.com/d/my%20file.csv?x=1", size=5),
            ManifestEntry(path="local", digest="f1", ref="file:///data/my%20file.csv", size=6),
        ]
    )
    return art


def test_files_direct_urls(store: Store) -> None:
    assert store.log(references()) == "refs:v0"
    urls = {r.path: r.direct_url for r in store.files("refs:v0")}
    assert urls == {
        "s3/plain": "https://bkt.s3.amazonaws.com/dir/a%20b%231.txt",
        "s3/versioned": "https://bkt.s3.amazonaws.com/k.bin?versionId=V1",
        "s3/unchecked": "https://bkt.s3.amazonaws.com/k.bin?versionId=V2",
        "gs/obj": "https://storage.googleapis.com/gb/p/q%20r.csv?generation=1712",
        "gs/plain": "https://storage.googleapis.com/gb/x",
        "web": "https://example.com/d/my%20file.csv?x=1",
        "local": "file:///data/my%20file.csv",
    }
    row = store.files("refs:latest")[0]
    assert (row.path, row.ref, row.size, row.digest) == ("gs/obj", "gs://gb/p/q r.csv", 3, "g1")


def test_direct_urls_use_the_configured_endpoint(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.log(references())
    configured = Store(store.root, options=Options(s3=S3Options(endpoint_url="http://127.0.0.1:9000/")))
    urls = {r.path: r.direct_url for r in configured.files("refs:v0")}
    assert urls["s3/versioned"] == "http://127.0.0.1:9000/bkt/k.bin?versionId=V1"
    assert urls["s3/plain"] == "http://127.0.0.1:9000/bkt/dir/a%20b%231.txt"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://minio.example")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")
    urls = {r.path: r.direct_url for r in Store(store.root).files("refs:v0")}
    assert urls["s3/plain"] == "https://minio.example/bkt/dir/a%20b%231.txt"
    assert urls["gs/plain"] == "http://localhost:4443/gb/x"


# -- lineage ----------------------------------------------------------------------------------------


def test_lineage_lists_versions_and_their_producers(store: Store, data: Path) -> None:
    store.log(dataset(data), producer={"run": "prep-1"})
    model = Artifact("clf", "model")
    with model.new_file("weights.bin", mode="wb") as f:
        f.write(b"\x01")
    store.log(model, producer={"run": "train-7", "inputs": ["cats:v0"]})
    rows = store.lineage()
    assert [(r.name, r.type, r.ref, r.producer) for r in rows] == [
        ("cats", "dataset", "cats:v0", {"run": "prep-1"}),
        ("clf", "model", "clf:v0", {"run": "train-7", "inputs": ["cats:v0"]}),
    ]
    assert [r.ref for r in store.lineage("clf")] == ["clf:v0"]
    with pytest.raises(NotFound):
        store.lineage("nope")


# -- parallel writers ---------------------------------------------------------------------------------

WORKERS = 8
PER_WORKER = 500
BATCH = 25


def _upsert_worker(root: str, scratch: str, worker: int, barrier: Any) -> None:
    """One writer process: 500 local files, upserted in batches of 25 into group `g`."""
    base = Path(scratch) / f"w{worker}"
    for i in range(PER_WORKER):
        chunk = base / f"c{i // BATCH:02}"
        chunk.mkdir(parents=True, exist_ok=True)
        (chunk / f"f{i:03}.txt").write_text(f"worker {worker} file {i}")
    store = Store(root)
    barrier.wait()
    for chunk in sorted(base.iterdir()):
        art = Artifact("parallel", "dataset")
        art.add_dir(chunk, name=f"w{worker}/{chunk.name}")
        store.upsert(art, group="g")


def test_parallel_upserts_lose_nothing(store: Store, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [
        ctx.Process(target=_upsert_worker, args=(str(store.root), str(tmp_path / "scratch"), w, barrier))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    ref = store.finish("parallel", group="g", aliases=["full"], producer={"writers": WORKERS})
    assert ref == "parallel:v0"
    version = store.get("parallel:full")
    assert len(version.manifest) == WORKERS * PER_WORKER == 4000
    assert version.producer == {"writers": WORKERS}
    assert "w7/c19/f499.txt" in version.manifest
    assert len(store.files(ref)) == 4000

    late = Artifact("parallel", "dataset")
    late.add_entries([ManifestEntry(path="late", digest="d", ref="s3://b/late")])
    with pytest.raises(SealedGroup):
        store.upsert(late, group="g")
    assert store.finish("parallel", group="g") == ref  # finishing again is idempotent
    assert len(store.get(ref).manifest) == 4000


def test_upsert_conflicts_types_and_dedup(store: Store) -> None:
    def art(*entries: tuple[str, str], type_: str = "dataset") -> Artifact:
        a = Artifact("grp", type_)
        a.add_entries(ManifestEntry(path=p, digest=d, ref=f"s3://b/{p}") for p, d in entries)
        return a

    store.upsert(art(("a/x", "1"), ("b", "2")), group="one")
    store.upsert(art(("a/x", "1")), group="one")  # same entry again: no-op
    with pytest.raises(PathConflict, match="'b'") as info:
        store.upsert(art(("c", "3"), ("b", "other")), group="one")
    assert str(info.value) == "path 'b' is already pending with digest '2' (new digest 'other')"
    with pytest.raises(PathConflict, match="'a'") as info:
        store.upsert(art(("a", "4")), group="one")
    assert str(info.value) == "path 'a' would be both a file and a folder"
    with pytest.raises(PathConflict, match="'b'") as info:
        store.upsert(art(("b/inner", "5")), group="one")
    assert str(info.value) == "path 'b' would be both a file and a folder (holding 'b/inner')"
    with pytest.raises(TypeConflict):
        store.upsert(art(("d", "6"), type_="model"), group="one")
    with pytest.raises(NotFound):
        store.finish("grp", group="never")
    assert store.finish("grp", group="one") == "grp:v0"
    assert list(store.get("grp:v0").manifest.entries) == ["a/x", "b"]  # the failed upserts added nothing

    # a second group with the same content finishes into the same version
    store.upsert(art(("b", "2"), ("a/x", "1")), group="two")
    assert store.finish("grp", group="two") == "grp:v0"
    assert len(store.versions("grp")) == 1
    with pytest.raises(TypeConflict):
        store.upsert(art(("z", "9"), type_="model"), group="three")


def test_download_restores_stored_local_files(tmp_path: Path) -> None:
    src = tmp_path / "local.txt"
    src.write_bytes(b"kept in the store")
    art = Artifact("withfiles", "dataset")
    art.add_file(str(src))
    store = Store(tmp_path / "home")
    ref = store.log(art)
    src.unlink()  # the original is gone: the store's copy serves the download
    manifest = store.get(ref).manifest
    with pytest.raises(refscan.DownloadError, match="stored file"):
        refscan.download(manifest, tmp_path / "nostore")
    [written] = refscan.download(manifest, tmp_path / "out", store=store)
    assert written.read_bytes() == b"kept in the store"


# -- the store's interfaces ---------------------------------------------------------------------------


def test_the_store_records_the_artifacts_draft(store: Store) -> None:
    class Drafted(Artifact):
        def draft(self) -> refscan.artifact.ArtifactDraft:
            return dataclasses.replace(super().draft(), description="from the draft")

    art = Drafted("d", "dataset", description="from the artifact")
    art.add_entries([ManifestEntry(path="x", digest="1", ref="s3://b/x")])
    assert store.get(store.log(art)).description == "from the draft"
    store.upsert(art, group="g")
    assert store.get(store.finish("d", group="g")).description == "from the draft"


def test_store_errors_live_in_refscan_errors() -> None:
    for name in ("TypeConflict", "SealedGroup", "SourceChanged"):
        cls = getattr(refscan.errors, name)
        assert getattr(refscan, name) is cls
        assert getattr(refscan.store, name) is cls
        assert issubclass(cls, refscan.RefscanError)
        assert issubclass(cls, ValueError)
    assert set(refscan.store.__all__) >= {"Store", "ArtifactVersion", "FileRow", "LineageRow", "LATEST"}
