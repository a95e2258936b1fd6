"""refscan.integrations.wandb against the real `wandb` package (offline, no account) and real servers.

- Parity: on every case where W&B 0.31 is right, W&B's own `Artifact.add_reference` and refscan's drop-in give
  the same path, ref, digest, size, extra.etag and extra.versionID (GCS: int), and equal manifest digests.
- W&B's own S3, GCS and HTTP handlers download refscan's entries (`load_path(entry, local=True)`).
- Deliberate differences (docs/wandb.md) are asserted as differences: what W&B does, what refscan
  does instead.

W&B is pointed at the servers the way its users do it: AWS_S3_ENDPOINT_URL + AWS_REGION (S3),
STORAGE_EMULATOR_HOST + GOOGLE_CLOUD_PROJECT (GCS); refscan reads the same variables.
"""

from __future__ import annotations

import builtins
import importlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web

from tests.servers.util import in_ci

if in_ci():
    import wandb  # under CI a missing wandb is a failure, not a skip
else:
    wandb = pytest.importorskip("wandb")

from wandb.sdk.artifacts.exceptions import ArtifactFinalizedError
from wandb.sdk.artifacts.storage_handler import DEFAULT_MAX_OBJECTS as WANDB_DEFAULT_MAX_OBJECTS
from wandb.sdk.artifacts.storage_handlers.gcs_handler import GCSHandler
from wandb.sdk.artifacts.storage_handlers.http_handler import HTTPHandler
from wandb.sdk.artifacts.storage_handlers.s3_handler import S3Handler

import refscan
from refscan import InvalidURI, NotFound, PathConflict, ScanRequest, TooManyObjects
from refscan.integrations import wandb as rw
from tests.servers.gcs import GCSServer
from tests.servers.nginx import NginxServer
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.integration

EMPTY_MD5_HEX = "d41d8cd98f00b204e9800998ecf8427e"

S3_TREE = {
    "model.h5": b"weights",
    "checkpoints/model.h5": b"ckpt",
    "images/cat.png": b"meow",
    "images/dog.png": b"woof!",
    "images/sub/bird.png": b"tweet",
    "data/x.bin": b"under data/",
    "data2/y.bin": b"sibling prefix",
    "mk/": b"",  # folder marker
    "mk/a.bin": b"a",
    "mk/empty.bin": b"",  # zero-byte file
    "empty.bin": b"",
}


# -- environment and seeded stores ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline W&B with every directory (cache, data, config) under tmp_path."""
    root = tmp_path / "wandb"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"), ("WANDB_DIR", "dir")):
        (root / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(root / "config"))
    return root


@pytest.fixture
def s3_wb(s3_env: dict[str, str], s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server reachable through W&B's variable only (AWS_S3_ENDPOINT_URL): refscan reads it too."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", s3_server.endpoint_url)
    return s3_server


@dataclass(frozen=True)
class Stores:
    s3: str  # unversioned bucket holding S3_TREE
    s3v: str  # versioned bucket: m.bin (v1 "one", v2 "two!"), f/a.bin, f/b.bin
    s3_v1: str
    s3_v2: str
    gs: str
    gsv: str
    gs_gen1: int
    gs_gen2: int
    http: str  # nginx base URL; files under d/


@pytest.fixture(scope="module")
def stores(s3_server: S3Server, gcs_server: GCSServer, nginx_server: NginxServer) -> Stores:
    s3 = s3_server.create_bucket()
    s3_server.put_objects(s3, S3_TREE)
    s3v = s3_server.create_bucket(versioned=True)
    client = s3_server.client()
    v1 = client.put_object(Bucket=s3v, Key="m.bin", Body=b"one")["VersionId"]
    v2 = client.put_object(Bucket=s3v, Key="m.bin", Body=b"two!")["VersionId"]
    s3_server.put_objects(s3v, {"f/a.bin": b"aa", "f/b.bin": b"bbb"})

    gs = gcs_server.create_bucket()
    gcs_server.upload_many(gs, S3_TREE)
    gsv = gcs_server.create_bucket(versioning=True)
    gen1 = int(gcs_server.upload(gsv, "m.bin", b"one")["generation"])
    gen2 = int(gcs_server.upload(gsv, "m.bin", b"two!")["generation"])
    gcs_server.upload_many(gsv, {"f/a.bin": b"aa", "f/b.bin": b"bbb"})

    nginx_server.write("d/f.csv", "a,b\n1,2\n")
    nginx_server.write("d/my file.csv", "x,y\n")
    return Stores(s3, s3v, v1, v2, gs, gsv, gen1, gen2, nginx_server.base_url)


def uri_of(stores: Stores, template: str) -> str:
    return template.format(**vars(stores))


def new_artifact() -> Any:
    """A fresh draft artifact: W&B caches its boto/GCS clients on the handlers of each artifact."""
    return wandb.Artifact("refs", type="dataset")


Row = tuple[str, Any, str, Any, Any, Any]


def rows(entries: Iterable[Any]) -> list[Row]:
    """The compared fields, sorted by path: path, ref, digest, size, extra.etag, extra.versionID."""
    return sorted(
        (str(e.path), e.ref, e.digest, e.size, e.extra.get("etag"), e.extra.get("versionID")) for e in entries
    )


def wandb_add(uri: str, **kw: Any) -> tuple[Any, list[Any]]:
    art = new_artifact()
    return art, list(art.add_reference(uri, **kw))


def refscan_add(uri: str, **kw: Any) -> tuple[Any, list[Any]]:
    art = new_artifact()
    return art, rw.add_reference(art, uri, **kw)


def paths(art: Any) -> list[str]:
    return sorted(art.manifest.entries)


# -- parity -------------------------------------------------------------------------------------------------

PARITY = [
    # S3, unversioned
    pytest.param("s3://{s3}/model.h5", {}, id="s3-single"),
    pytest.param("s3://{s3}/checkpoints/model.h5", {}, id="s3-nested"),
    pytest.param("s3://{s3}/model.h5", {"name": "models/mymodel.h5"}, id="s3-name"),
    pytest.param("s3://{s3}/images", {}, id="s3-folder"),
    pytest.param("s3://{s3}/images/", {}, id="s3-folder-slash"),
    pytest.param("s3://{s3}/images", {"name": "images"}, id="s3-folder-name"),
    pytest.param("s3://{s3}/model.h5", {"checksum": False}, id="s3-no-checksum"),
    # S3, versioned (latest versions carry versionID)
    pytest.param("s3://{s3v}/m.bin", {}, id="s3v-single"),
    pytest.param("s3://{s3v}/f", {}, id="s3v-folder"),
    pytest.param("s3://{s3v}/f", {"name": "g"}, id="s3v-folder-name"),
    # GCS (W&B keeps zero-byte objects and honours #generation here)
    pytest.param("gs://{gs}/model.h5", {}, id="gs-single"),
    pytest.param("gs://{gs}/checkpoints/model.h5", {}, id="gs-nested"),
    pytest.param("gs://{gs}/model.h5", {"name": "models/mymodel.h5"}, id="gs-name"),
    pytest.param("gs://{gs}/images", {}, id="gs-folder"),
    pytest.param("gs://{gs}/images", {"name": "images"}, id="gs-folder-name"),
    pytest.param("gs://{gs}/empty.bin", {}, id="gs-zero-byte"),
    pytest.param("gs://{gs}/mk", {}, id="gs-marker-skipped-zero-byte-kept"),
    pytest.param("gs://{gsv}/m.bin", {}, id="gsv-single"),
    pytest.param("gs://{gsv}/m.bin#{gs_gen1}", {}, id="gsv-pinned-fragment"),
    pytest.param("gs://{gsv}/f", {"name": "g"}, id="gsv-folder-name"),
    # HTTP (nginx: strong ETag, Content-Length)
    pytest.param("{http}/d/f.csv", {}, id="http-etag"),
    pytest.param("{http}/d/f.csv", {"name": "tables/t.csv"}, id="http-name"),
    pytest.param("{http}/d/f.csv", {"checksum": False}, id="http-no-checksum"),
]


@pytest.mark.parametrize(("template", "kw"), PARITY)
def test_parity_with_wandb(template: str, kw: dict[str, Any], stores: Stores, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("s3_wb" if template.startswith("s3") else "gcs_env")
    uri = uri_of(stores, template)
    wb_art, wb = wandb_add(uri, **kw)
    rs_art, rs = refscan_add(uri, **kw)
    assert wb, "W&B found nothing: not a parity case"
    assert rows(rs) == rows(wb)
    version_type = int if uri.startswith("gs") else str
    if "{s3v}" in template or template.startswith("gs"):  # versioned S3 buckets and every GCS object
        assert all("versionID" in e.extra for e in wb + rs)
    assert all(type(e.extra["versionID"]) is version_type for e in wb + rs if "versionID" in e.extra)
    for w, r in zip(sorted(wb, key=lambda e: e.path), sorted(rs, key=lambda e: e.path), strict=True):
        assert dict(w.extra).items() <= dict(r.extra).items()  # refscan's extra is a superset of W&B's
        assert type(r) is type(w)
    assert rs_art.manifest.digest() == wb_art.manifest.digest()
    assert sorted(rs_art.manifest.entries) == sorted(wb_art.manifest.entries)


def test_parity_file_scheme(tmp_path: Path) -> None:
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.txt").write_text("bb")
    (root / "zero").write_bytes(b"")
    for uri, kw in ((f"file://{root}/a.txt", {}), (f"file://{root}", {}), (f"file://{root}", {"name": "n"})):
        assert rows(refscan_add(uri, **kw)[1]) == rows(wandb_add(uri, **kw)[1])


# -- W&B's own download code accepts refscan's entries ------------------------------------------------------


def loaded(handler: Any, entries: Iterable[Any]) -> dict[str, bytes]:
    return {str(e.path): Path(handler.load_path(e, local=True)).read_bytes() for e in entries}


@pytest.mark.usefixtures("s3_wb")
def test_s3_handler_loads_refscan_entries(stores: Stores) -> None:
    folder, zero, pinned, latest, vfolder = rw.add_references(
        new_artifact(),
        [
            f"s3://{stores.s3}/images",
            ScanRequest(f"s3://{stores.s3}/mk", name="mk"),  # with the zero-byte file W&B itself would drop
            f"s3://{stores.s3v}/m.bin?versionId={stores.s3_v1}",
            ScanRequest(f"s3://{stores.s3v}/m.bin", name="latest.bin"),
            ScanRequest(f"s3://{stores.s3v}/f", name="f"),
        ],
    )
    assert pinned[0].extra["versionID"] == stores.s3_v1
    assert loaded(S3Handler(), folder + zero + pinned + latest + vfolder) == {
        "cat.png": b"meow",
        "dog.png": b"woof!",
        "sub/bird.png": b"tweet",
        "mk/a.bin": b"a",
        "mk/empty.bin": b"",
        "m.bin": b"one",
        "latest.bin": b"two!",
        "f/a.bin": b"aa",
        "f/b.bin": b"bbb",
    }


@pytest.mark.usefixtures("gcs_env")
def test_gcs_handler_loads_refscan_entries(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    # fake-gcs-server's mediaLink lacks `generation=` (real GCS includes it), so google-cloud-storage would
    # download the latest bytes whatever generation W&B asked for. Without a mediaLink the library builds the
    # download URL from the blob's path and generation, as real GCS's mediaLink does.
    from google.cloud.storage.blob import Blob

    monkeypatch.setattr(Blob, "media_link", property(lambda _: None))
    folder, by_fragment, by_query, latest = rw.add_references(
        new_artifact(),
        [
            ScanRequest(f"gs://{stores.gs}/images", name="images"),
            ScanRequest(f"gs://{stores.gsv}/m.bin#{stores.gs_gen1}", name="one-a.bin"),
            ScanRequest(f"gs://{stores.gsv}/m.bin?generation={stores.gs_gen1}", name="one-b.bin"),
            f"gs://{stores.gsv}/m.bin",
        ],
    )
    assert by_query[0].extra["versionID"] == stores.gs_gen1
    assert loaded(GCSHandler(), folder + by_fragment + by_query + latest) == {
        "images/cat.png": b"meow",
        "images/dog.png": b"woof!",
        "images/sub/bird.png": b"tweet",
        "one-a.bin": b"one",
        "one-b.bin": b"one",
        "m.bin": b"two!",
    }


def test_http_handler_loads_refscan_entries(stores: Stores) -> None:
    _, entries = refscan_add(f"{stores.http}/d/f.csv")
    with requests.Session() as session:
        assert loaded(HTTPHandler(session), entries) == {"f.csv": b"a,b\n1,2\n"}


# -- deliberate differences (docs/wandb.md) -----------------------------------------------------------------


@pytest.mark.usefixtures("s3_wb")
def test_sibling_prefix_s3(stores: Stores) -> None:
    """`s3://b/data` with `data/x.bin` and `data2/y.bin`: W&B lists by string prefix and then fails."""
    uri = f"s3://{stores.s3}/data"
    art = new_artifact()
    with pytest.raises(ValueError, match=r"data2/y\.bin"):
        art.add_reference(uri)
    assert paths(art) == []
    _, rs = refscan_add(uri)
    assert rows(rs) == [("x.bin", f"{uri}/x.bin", rs[0].digest, 11, rs[0].digest, None)]


@pytest.mark.usefixtures("gcs_env")
def test_sibling_prefix_gcs(stores: Stores) -> None:
    """On GCS, W&B 0.31 does not fail (it does on S3): it silently adds `data2/y.bin` as `y.bin`
    with the folder's own URI as its ref, an entry no download can resolve."""
    uri = f"gs://{stores.gs}/data"
    _, wb = wandb_add(uri)
    assert [(str(e.path), e.ref) for e in sorted(wb, key=lambda e: e.path)] == [
        ("x.bin", f"{uri}/x.bin"),
        ("y.bin", uri),
    ]
    _, rs = refscan_add(uri)
    assert [(e.path, e.ref) for e in rs] == [("x.bin", f"{uri}/x.bin")]


@pytest.mark.usefixtures("s3_wb")
def test_zero_byte_files_s3(stores: Stores) -> None:
    """W&B drops zero-byte S3 objects: from folders, and a zero-byte object on its own yields nothing."""
    _, wb_single = wandb_add(f"s3://{stores.s3}/empty.bin")
    _, rs_single = refscan_add(f"s3://{stores.s3}/empty.bin")
    assert wb_single == []
    assert rows(rs_single) == [("empty.bin", f"s3://{stores.s3}/empty.bin", EMPTY_MD5_HEX, 0, EMPTY_MD5_HEX, None)]
    _, wb_folder = wandb_add(f"s3://{stores.s3}/mk")
    _, rs_folder = refscan_add(f"s3://{stores.s3}/mk")
    assert [str(e.path) for e in wb_folder] == ["a.bin"]
    assert [e.path for e in rs_folder] == ["a.bin", "empty.bin"]  # the marker `mk/` is skipped by both
    assert rows(rs_folder)[0] == rows(wb_folder)[0]


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_empty_folder(scheme: str, stores: Stores, request: pytest.FixtureRequest) -> None:
    """A folder with nothing in it: W&B adds nothing and says nothing; refscan raises NotFound."""
    request.getfixturevalue("s3_wb" if scheme == "s3" else "gcs_env")
    bucket = stores.s3 if scheme == "s3" else stores.gs
    for uri in (f"{scheme}://{bucket}/nothing/", f"{scheme}://{bucket}/nothing"):
        wb_art, wb = wandb_add(uri)
        assert wb == []
        assert paths(wb_art) == []
        art = new_artifact()
        with pytest.raises(NotFound):
            rw.add_reference(art, uri)
        assert paths(art) == []


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_max_objects_exceeded(scheme: str, stores: Stores, request: pytest.FixtureRequest) -> None:
    """W&B truncates a folder to max_objects entries silently; refscan raises and adds nothing."""
    request.getfixturevalue("s3_wb" if scheme == "s3" else "gcs_env")
    bucket = stores.s3 if scheme == "s3" else stores.gs
    uri = f"{scheme}://{bucket}/images"  # 3 objects
    _, wb = wandb_add(uri, max_objects=2)
    assert len(wb) == 2
    art = new_artifact()
    with pytest.raises(TooManyObjects, match="Exceeded 2 objects"):
        rw.add_reference(art, uri, max_objects=2)
    assert paths(art) == []
    assert len(refscan_add(uri, max_objects=3)[1]) == 3


def test_default_max_objects_differs() -> None:
    """W&B's default limit is 10,000,000 objects; refscan's is 10,000: pass max_objects= above it."""
    assert WANDB_DEFAULT_MAX_OBJECTS == 10_000_000
    assert refscan.DEFAULT_MAX_OBJECTS == 10_000


@pytest.mark.usefixtures("s3_wb")
def test_explicit_s3_version(stores: Stores) -> None:
    """`?versionId=<old>`: W&B records the latest version's digest, size and versionID; refscan the one asked."""
    uri = f"s3://{stores.s3v}/m.bin?versionId={stores.s3_v1}"
    ref = f"s3://{stores.s3v}/m.bin"
    _, wb = wandb_add(uri)
    _, rs = refscan_add(uri)
    (w,) = rows(wb)
    (r,) = rows(rs)
    assert (w[1], w[3], w[5]) == (ref, 4, stores.s3_v2)  # "two!", the latest
    assert (r[1], r[3], r[5]) == (ref, 3, stores.s3_v1)  # "one", as asked
    assert w[2] != r[2]


@pytest.mark.usefixtures("gcs_env")
def test_explicit_gcs_generation_query(stores: Stores) -> None:
    """`#<gen>` works in W&B (a parity case); the `?generation=<gen>` form is ignored by W&B (latest recorded)."""
    uri = f"gs://{stores.gsv}/m.bin?generation={stores.gs_gen1}"
    _, wb = wandb_add(uri)
    _, rs = refscan_add(uri)
    assert [(e.extra["versionID"], e.size) for e in wb] == [(stores.gs_gen2, 4)]
    assert [(e.extra["versionID"], e.size) for e in rs] == [(stores.gs_gen1, 3)]
    assert rows(rs) == rows(wandb_add(f"gs://{stores.gsv}/m.bin#{stores.gs_gen1}")[1])
    missing = f"gs://{stores.gsv}/m.bin#{stores.gs_gen1 - 1}"  # no such generation: ValueError vs NotFound
    with pytest.raises(ValueError, match="Object does not exist"):
        wandb_add(missing)
    with pytest.raises(NotFound):
        refscan_add(missing)


@pytest.mark.usefixtures("gcs_env")
def test_gcs_bucket_root(gcs_server: GCSServer, gcs_bucket: str) -> None:
    """W&B cannot add a GCS bucket root: checksum=True fails in google-cloud-storage, checksum=False builds
    the invalid path '.'. refscan lists the bucket (full keys as paths) or names the entry after the bucket."""
    gcs_server.upload_many(gcs_bucket, {"a.txt": b"a", "dir/b.txt": b"bb", "dir/noext": b"n"})
    for uri in (f"gs://{gcs_bucket}", f"gs://{gcs_bucket}/"):
        art = new_artifact()
        with pytest.raises(ValueError, match="without a blob name"):
            art.add_reference(uri)
        _, rs = refscan_add(uri)
        assert [(e.path, e.ref) for e in rs] == [
            (k, f"gs://{gcs_bucket}/{k}") for k in ("a.txt", "dir/b.txt", "dir/noext")
        ]
    with pytest.raises(ValueError, match="Invalid artifact path"):
        new_artifact().add_reference(f"gs://{gcs_bucket}", checksum=False)
    _, rs = refscan_add(f"gs://{gcs_bucket}", checksum=False)
    assert rows(rs) == [(gcs_bucket, f"gs://{gcs_bucket}", f"gs://{gcs_bucket}", None, None, None)]


@pytest.mark.usefixtures("s3_wb")
def test_s3_bucket_root(s3_server: S3Server, s3_bucket: str) -> None:
    """Not in docs/wandb.md's list: at an S3 bucket root W&B matches keys against the prefix '.' as a substring, so a
    nested key without a '.' gets its base name as path and the bucket as ref. refscan: full keys."""
    s3_server.put_objects(s3_bucket, {"a.txt": b"a", "dir/b.txt": b"bb", "dir/noext": b"n"})
    uri = f"s3://{s3_bucket}"
    _, wb = wandb_add(uri)
    _, rs = refscan_add(uri)
    assert sorted((str(e.path), e.ref) for e in wb) == [
        ("a.txt", f"{uri}/a.txt"),
        ("dir/b.txt", f"{uri}/dir/b.txt"),
        ("noext", uri),  # wrong
    ]
    assert [(e.path, e.ref) for e in rs] == [(k, f"{uri}/{k}") for k in ("a.txt", "dir/b.txt", "dir/noext")]
    same = [r for r in rows(rs) if r[0] != "dir/noext"]
    assert same == [r for r in rows(wb) if r[0] != "noext"]


@pytest.mark.usefixtures("s3_wb", "gcs_env")
def test_checksum_false_paths_and_versions(stores: Stores) -> None:
    """Not a listed W&B bug, but refscan's naming rule: without checksum the path is the last component and the
    version stays in ref/digest. W&B uses the whole key as path and drops `?versionId=`."""
    nested = f"s3://{stores.s3}/checkpoints/model.h5"
    assert rows(wandb_add(nested, checksum=False)[1]) == [("checkpoints/model.h5", nested, nested, None, None, None)]
    assert rows(refscan_add(nested, checksum=False)[1]) == [("model.h5", nested, nested, None, None, None)]
    pinned = f"s3://{stores.s3v}/m.bin?versionId={stores.s3_v1}"
    assert [(e.ref, e.digest) for e in wandb_add(pinned, checksum=False)[1]] == [(pinned.split("?")[0],) * 2]
    assert [(e.ref, e.digest) for e in refscan_add(pinned, checksum=False)[1]] == [(pinned, pinned)]
    gs_pinned = f"gs://{stores.gs}/checkpoints/model.h5#7"
    gs_ref = gs_pinned.split("#")[0]
    assert rows(wandb_add(gs_pinned, checksum=False)[1]) == [("checkpoints/model.h5", gs_ref, gs_ref, None, None, None)]
    assert rows(refscan_add(gs_pinned, checksum=False)[1]) == [("model.h5", gs_pinned, gs_pinned, None, None, None)]


def test_http_query_and_encoded_name(stores: Stores) -> None:
    """W&B names the entry after the raw URL tail (percent-encoding and query included) and stores signature
    parameters in the ref; refscan decodes the last segment, drops the query from the path, redacts the secret."""
    url = f"{stores.http}/d/my%20file.csv?sig=secret&a=1"
    (w,) = rows(wandb_add(url)[1])
    (r,) = rows(refscan_add(url)[1])
    assert (w[0], w[1]) == ("my%20file.csv?sig=secret&a=1", url)
    assert (r[0], r[1]) == ("my file.csv", f"{stores.http}/d/my%20file.csv?sig=REDACTED&a=1")
    assert w[2:] == r[2:]  # digest, size, etag


def http_app() -> web.Application:
    async def weak(_: web.Request) -> web.Response:
        return web.Response(body=b"weak", headers={"ETag": 'W/"w-1"'})

    async def old(_: web.Request) -> web.Response:
        raise web.HTTPFound("/new.txt")

    async def new(_: web.Request) -> web.Response:
        return web.Response(body=b"new!", headers={"ETag": '"n-1"'})

    app = web.Application()
    app.router.add_get("/weak.txt", weak)
    app.router.add_get("/old.txt", old)
    app.router.add_get("/new.txt", new)
    return app


def test_http_weak_etag_and_redirect(serve_app: Callable[[web.Application], str]) -> None:
    """Not in docs/wandb.md's list: W&B strips quotes off a weak ETag (`W/"w-1`, half a token) and records the redirect
    target as ref; refscan keeps `W/"w-1"` and the URL as given."""
    base = serve_app(http_app())
    (w,) = wandb_add(f"{base}/weak.txt")[1]
    (r,) = refscan_add(f"{base}/weak.txt")[1]
    assert (w.digest, r.digest) == ('W/"w-1', 'W/"w-1"')
    assert w.extra["etag"] == r.extra["etag"] == 'W/"w-1"'
    (w,) = wandb_add(f"{base}/old.txt")[1]
    (r,) = refscan_add(f"{base}/old.txt")[1]
    assert (w.ref, r.ref) == (f"{base}/new.txt", f"{base}/old.txt")
    assert (str(w.path), w.digest, w.size) == (r.path, r.digest, r.size) == ("old.txt", "n-1", 4)


# -- artifact semantics -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("s3_wb")
def test_all_or_nothing_where_wandb_adds_half(stores: Stores) -> None:
    """A path conflict in the middle of a folder: W&B has added the entries before it; refscan none."""
    clash = f"s3://{stores.s3}/model.h5"
    wb_art = new_artifact()
    wb_art.add_reference(clash, name="dog.png")
    with pytest.raises(ValueError, match=r"Cannot add the same path twice: 'dog\.png'"):
        wb_art.add_reference(f"s3://{stores.s3}/images")
    assert paths(wb_art) == ["cat.png", "dog.png"]  # cat.png was added before the failure

    rs_art = new_artifact()
    rw.add_reference(rs_art, clash, name="dog.png")
    with pytest.raises(PathConflict, match=r"Cannot add the same path twice: 'dog\.png'") as info:
        rw.add_reference(rs_art, f"s3://{stores.s3}/images")
    assert isinstance(info.value, ValueError)
    assert paths(rs_art) == ["dog.png"]
    # the same entry again is a no-op for both
    assert len(wb_art.add_reference(clash, name="dog.png")) == len(rw.add_reference(rs_art, clash, name="dog.png"))


@pytest.mark.usefixtures("s3_wb")
def test_file_and_folder_at_one_path_refused(stores: Stores) -> None:
    """W&B accepts `imgs` beside `imgs/cat.png` (no download can hold both); refscan refuses, adds nothing."""
    wb_art = new_artifact()
    wb_art.add_reference(f"s3://{stores.s3}/model.h5", name="imgs")
    wb_art.add_reference(f"s3://{stores.s3}/images", name="imgs")
    assert {"imgs", "imgs/cat.png"} <= set(paths(wb_art))

    rs_art = new_artifact()
    rw.add_reference(rs_art, f"s3://{stores.s3}/model.h5", name="imgs")
    with pytest.raises(PathConflict, match="'imgs' would be both a file and a folder"):
        rw.add_reference(rs_art, f"s3://{stores.s3}/images", name="imgs")
    assert paths(rs_art) == ["imgs"]
    rs_art = new_artifact()
    rw.add_reference(rs_art, f"s3://{stores.s3}/images", name="pics")
    with pytest.raises(PathConflict, match="'pics' would be both a file and a folder"):
        rw.add_reference(rs_art, f"s3://{stores.s3}/model.h5", name="pics")
    assert paths(rs_art) == ["pics/cat.png", "pics/dog.png", "pics/sub/bird.png"]


@pytest.mark.usefixtures("s3_wb")
def test_wandb_validation_failure_rolls_back(s3_server: S3Server, s3_bucket: str) -> None:
    """A key W&B's own path validation refuses (a Windows drive) leaves the artifact as it was."""
    s3_server.put_objects(s3_bucket, {"win/a.txt": b"a", "win/C:/x.txt": b"x"})
    art = new_artifact()
    rw.add_reference(art, f"s3://{s3_bucket}/win/a.txt", name="keep.txt")
    with pytest.raises(ValueError, match="Invalid artifact path"):
        rw.add_reference(art, f"s3://{s3_bucket}/win")
    assert paths(art) == ["keep.txt"]


def test_finalized_artifact_refused_like_wandb(stores: Stores) -> None:
    """W&B's own guard runs first (before any request) and raises W&B's own error, message included."""
    art = new_artifact()
    art.finalize()
    with pytest.raises(ArtifactFinalizedError) as wb_err:
        art.add_reference(f"{stores.http}/d/f.csv")
    with pytest.raises(ArtifactFinalizedError) as rs_err:
        rw.add_reference(art, f"{stores.http}/d/f.csv")
    with pytest.raises(ArtifactFinalizedError):
        rw.add_references(art, [f"{stores.http}/d/f.csv"])
    assert str(rs_err.value) == str(wb_err.value)
    assert paths(art) == []


def test_not_a_uri_and_delegated_schemes(tmp_path: Path) -> None:
    """A bare path is refused as by W&B; schemes refscan cannot read go to W&B's own add_reference."""
    local = tmp_path / "a.txt"
    local.write_text("a")
    with pytest.raises(ValueError, match="References must be URIs"):
        new_artifact().add_reference(str(local))
    with pytest.raises(InvalidURI, match="References must be URIs"):
        rw.add_reference(new_artifact(), str(local))
    assert rows(refscan_add("foo://bar/baz", name="baz")[1]) == rows(wandb_add("foo://bar/baz", name="baz")[1])
    with pytest.raises(InvalidURI, match="read by W&B itself"):
        rw.add_references(new_artifact(), ["foo://bar/baz"])


@pytest.mark.usefixtures("s3_wb", "gcs_env")
def test_add_references_many_at_once(stores: Stores) -> None:
    uris = [
        f"s3://{stores.s3}/images",
        ScanRequest(f"gs://{stores.gs}/images", name="gcs"),
        ScanRequest(f"{stores.http}/d/f.csv", name="tables/f.csv"),
        f"s3://{stores.s3v}/m.bin",
    ]
    art = new_artifact()
    results = rw.add_references(art, uris)
    assert [len(r) for r in results] == [3, 3, 1, 1]
    expected = new_artifact()
    expected.add_reference(f"s3://{stores.s3}/images")
    expected.add_reference(f"gs://{stores.gs}/images", name="gcs")
    expected.add_reference(f"{stores.http}/d/f.csv", name="tables/f.csv")
    expected.add_reference(f"s3://{stores.s3v}/m.bin")
    assert rows(art.manifest.entries.values()) == rows(expected.manifest.entries.values())
    assert art.manifest.digest() == expected.manifest.digest()

    untouched = new_artifact()
    with pytest.raises(NotFound):
        rw.add_references(untouched, [f"s3://{stores.s3}/images", f"gs://{stores.gs}/missing/"])
    assert paths(untouched) == []


@pytest.mark.anyio
@pytest.mark.usefixtures("s3_wb")
async def test_async_twins(stores: Stores) -> None:
    art = new_artifact()
    entries = await rw.aadd_reference(art, f"s3://{stores.s3}/images", name="i")
    assert [str(e.path) for e in entries] == ["i/cat.png", "i/dog.png", "i/sub/bird.png"]
    (more,) = await rw.aadd_references(art, [f"s3://{stores.s3}/model.h5"])
    assert paths(art) == ["i/cat.png", "i/dog.png", "i/sub/bird.png", "model.h5"]
    assert more[0].path == "model.h5"
    # the sync function works while this event loop runs
    assert len(rw.add_reference(art, f"s3://{stores.s3}/checkpoints/model.h5", name="ck.h5")) == 1


def test_missing_wandb_raises_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_wandb(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "wandb" or name.startswith("wandb."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "refscan.integrations.wandb")
    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(refscan.MissingDependency, match=r"pip install 'refscan\[wandb\]'") as info:
        importlib.import_module("refscan.integrations.wandb")
    assert isinstance(info.value, ImportError)


# -- manifests W&B wrote, verified by refscan ---------------------------------------------------------------


def wandb_manifest(art: Any) -> refscan.Manifest:
    """The manifest W&B itself writes for `art` (its own JSON), read by refscan."""
    return refscan.Manifest.from_dict(art.manifest.to_manifest_json())


@pytest.mark.usefixtures("gcs_env")
def test_gcs_manifest_written_by_wandb_verifies(stores: Stores, gcs_server: GCSServer) -> None:
    """W&B records a GCS object as digest = etag and extra.versionID = generation, nothing else (no md5 or
    crc32c): the generation is the proof (its bytes never change); unpinned, the etag is."""
    bucket = gcs_server.create_bucket()
    gcs_server.upload_many(bucket, {"w/a.bin": b"alpha", "w/b.bin": b"beta"})
    art, added = wandb_add(f"gs://{bucket}/w")
    assert {tuple(e.extra) for e in added} == {("versionID",)}  # what W&B 0.31 writes
    manifest = wandb_manifest(art)
    report = refscan.verify(manifest)
    assert [(r.path, r.status, r.cause) for r in report.results] == [
        ("a.bin", "ok", "fingerprint-matches"),
        ("b.bin", "ok", "fingerprint-matches"),
    ]
    unpinned = [refscan.ManifestEntry(e.path, e.digest, e.ref, e.size) for e in manifest]
    assert refscan.verify(unpinned).counts["ok"] == 2

    gcs_server.upload(bucket, "w/a.bin", b"ALPHA")  # a new generation; the recorded one is gone (unversioned)
    by_path = {r.path: r for r in refscan.verify(manifest).results}
    assert (by_path["a.bin"].status, by_path["a.bin"].cause) == ("changed", "pin-gone-content-differs")
    assert by_path["b.bin"].status == "ok"
    assert {r.path: r.status for r in refscan.verify(unpinned).results} == {"a.bin": "changed", "b.bin": "ok"}


@pytest.mark.usefixtures("s3_wb")
def test_s3_manifest_written_by_wandb_verifies(stores: Stores) -> None:
    art, _ = wandb_add(f"s3://{stores.s3v}/m.bin")
    report = refscan.verify(wandb_manifest(art))
    assert [(r.path, r.status) for r in report.results] == [("m.bin", "ok")]
