"""Azure Blob Storage against Azurite (`..._azurite_...`) and, for blob versions, which Azurite does not keep,
against a small aiohttp origin serving the documented List Blobs / Get Blob Properties / Get Blob answers
(`..._origin_...`)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import structlog
from aiohttp import web

import refscan
from refscan import AzureOptions, Options, RetryPolicy
from refscan.demo.servers import AzuriteServer
from tests.faults import FaultPlan, FaultProxy, ProxyRequest

pytestmark = pytest.mark.integration

ODD = ["data/a b.txt", "data/ünï/çødé.bin", "data/hash#1.txt", "data/what?.txt", "data/sub/deep/x.csv"]


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def seeded(azurite: AzuriteServer, azure_container: str) -> str:
    """odd names, a zero-byte blob, a block blob without Content-MD5, stubs, and a sibling prefix `data2/`."""
    for name in ODD:
        azurite.upload(azure_container, name, name.encode())
    azurite.upload(azure_container, "data/empty.txt", b"")
    azurite.upload(azure_container, "data/blocks.bin", b"0123456789" * 10, blocks=3)
    azurite.upload(azure_container, "data/stub", b"", metadata={"hdi_isfolder": "true"})
    azurite.upload(azure_container, "data/marker/", b"")
    azurite.upload(azure_container, "data2/not-me.txt", b"sibling")
    return azure_container


def test_azurite_folder_odd_names_stubs_and_sibling_prefix(
    azurite: AzuriteServer, seeded: str, azure_options: Options
) -> None:
    entries = refscan.scan(f"az://{seeded}/data", options=azure_options)
    by_path = {e.path: e for e in entries}
    expected = {n.removeprefix("data/") for n in ODD} | {"empty.txt", "blocks.bin"}
    assert set(by_path) == expected  # no stub, no marker, nothing from data2/
    for name in ODD:
        entry = by_path[name.removeprefix("data/")]
        assert entry.ref == f"{azurite.account_url}/{seeded}/{name}"
        assert entry.size == len(name.encode())
        assert entry.digest == entry.extra["etag"]
        assert '"' not in entry.digest
        assert entry.extra["contentMD5"] == md5_b64(name.encode())
        assert "versionID" not in entry.extra  # Azurite keeps no versions
    assert by_path["empty.txt"].size == 0
    assert "contentMD5" not in by_path["blocks.bin"].extra  # a committed block list has no Content-MD5

    # the same folder through the endpoint URL form, and a single blob in both forms
    url_entries = refscan.scan(f"{azurite.account_url}/{seeded}/data/", options=azure_options)
    assert url_entries == entries
    [one] = refscan.scan(f"az://{seeded}/data/hash#1.txt", options=azure_options)
    assert (one.path, one.ref) == ("hash#1.txt", f"{azurite.account_url}/{seeded}/data/hash#1.txt")
    [named] = refscan.scan(f"{azurite.account_url}/{seeded}/data/what?.txt", name="q/w.txt", options=azure_options)
    assert named.path == "q/w.txt"
    assert named.size == len(b"data/what?.txt")


def test_azurite_object_wins_container_root_and_not_found(
    azurite: AzuriteServer, azure_container: str, azure_options: Options
) -> None:
    azurite.upload(azure_container, "model", b"the object")
    azurite.upload(azure_container, "model/inner.txt", b"inside")
    [entry] = refscan.scan(f"az://{azure_container}/model", options=azure_options)
    assert entry.path == "model"
    assert entry.size == len(b"the object")
    root = refscan.scan(f"az://{azure_container}", options=azure_options)
    assert [e.path for e in root] == ["model", "model/inner.txt"]
    with pytest.raises(refscan.NotFound, match="no such object, and no objects under"):
        refscan.scan(f"az://{azure_container}/nothing-here", options=azure_options)
    with pytest.raises(refscan.NotFound, match="container does not exist"):
        refscan.scan("az://no-such-container/x", options=azure_options)
    with pytest.raises(refscan.NotFound, match="container does not exist"):
        refscan.scan("az://no-such-container", options=azure_options)


def test_azurite_max_objects_exact_and_one_more(
    azurite: AzuriteServer, azure_container: str, azure_options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refscan.backends.azure.backend import AzureBackend

    monkeypatch.setattr(AzureBackend, "page_size", 2)  # several pages
    azurite.upload_many(azure_container, {f"f/{i}": b"x" for i in range(5)})
    azurite.upload(azure_container, "f/stub", b"", metadata={"hdi_isfolder": "true"})  # not counted
    assert len(refscan.scan(f"az://{azure_container}/f", max_objects=5, options=azure_options)) == 5
    with pytest.raises(refscan.TooManyObjects, match="Exceeded 4 objects"):
        refscan.scan(f"az://{azure_container}/f", max_objects=4, options=azure_options)


def test_azurite_denied_listing_with_a_read_only_sas(
    azurite: AzuriteServer, azure_container: str, no_azure_env: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from refscan.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY

    azurite.upload(azure_container, "d/x.txt", b"x")
    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        azure_container,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    options = Options(azure=AzureOptions(endpoint_url=azurite.account_url, sas_token=sas))
    [entry] = refscan.scan(f"az://{azure_container}/d/x.txt", options=options)  # read is allowed
    assert entry.size == 1
    with pytest.raises(refscan.AccessDenied, match="list permission") as info:
        refscan.scan(f"az://{azure_container}/d", options=options)
    signature = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    assert signature not in str(info.value)


def test_azurite_wrong_key_is_access_denied(azurite: AzuriteServer, azure_container: str, no_azure_env: None) -> None:
    azurite.upload(azure_container, "k.txt", b"k")
    wrong = base64.b64encode(b"not the key" * 4).decode()
    options = Options(
        retry=RetryPolicy(max_attempts=1),
        azure=AzureOptions(endpoint_url=azurite.account_url, account_name="devstoreaccount1", account_key=wrong),
    )
    with pytest.raises(refscan.AccessDenied, match=r"credential from AzureOptions\.account_key") as info:
        refscan.scan(f"az://{azure_container}/k.txt", options=options)
    assert wrong not in str(info.value)


def test_azurite_verify_and_download(
    azurite: AzuriteServer, seeded: str, azure_options: Options, tmp_path: Path
) -> None:
    entries = refscan.scan(f"az://{seeded}/data", options=azure_options)
    report = refscan.verify(entries, deep=True, options=azure_options)
    assert report.ok, report.to_dict()
    reasons = {r.path: r.reason for r in report.results}
    assert "md5" in reasons["a b.txt"]
    assert "etag" in reasons["blocks.bin"]  # only the ETag is known: the reason says so

    paths = refscan.download(entries, tmp_path, options=azure_options)
    assert len(paths) == len(entries)
    assert (tmp_path / "ünï" / "çødé.bin").read_bytes() == "data/ünï/çødé.bin".encode()
    assert (tmp_path / "empty.txt").read_bytes() == b""
    assert (tmp_path / "blocks.bin").read_bytes() == b"0123456789" * 10

    azurite.upload(seeded, "data/a b.txt", b"changed!")
    azurite.delete(seeded, "data/hash#1.txt")
    statuses = {r.path: r.status for r in refscan.verify(entries, options=azure_options).results}
    assert statuses["a b.txt"] == "changed"
    assert statuses["hash#1.txt"] == "missing"
    assert statuses["what?.txt"] == "ok"


def test_azurite_wandb_entries_match_wandbs_own_handler_field_for_field(
    azurite: AzuriteServer, seeded: str, azure_options: Options, no_azure_env: pytest.MonkeyPatch
) -> None:
    """W&B's handler cannot be pointed at Azurite (it only handles *.blob.core.windows.net hosts and reads the
    first path segment as the container), so its entry builder is run on the properties Azurite returns."""
    wandb = pytest.importorskip("wandb")
    from wandb.sdk.artifacts.storage_handlers.azure_handler import AzureHandler

    from refscan.integrations.wandb import add_reference

    no_azure_env.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    art = wandb.Artifact("azure-refs", type="dataset")
    ours = {str(e.path): e for e in add_reference(art, f"{azurite.account_url}/{seeded}/data")}
    container = azurite.service().get_container_client(seeded)
    handler = AzureHandler()
    for path, entry in ours.items():
        props = container.get_blob_client(f"data/{path}").get_blob_properties()
        theirs = handler._create_entry(props, path=path, ref=f"{azurite.account_url}/{seeded}/data/{path}")
        assert (entry.path, entry.ref, entry.digest, entry.size) == (
            theirs.path,
            theirs.ref,
            theirs.digest,
            theirs.size,
        )
        assert {k: v for k, v in entry.extra.items() if k != "contentMD5"} == theirs.extra


def _proxied(proxy: FaultProxy, attempts: int = 4, max_backoff: float = 0.05) -> Options:
    """Options for Azurite through `proxy`, with quick retries."""
    from refscan.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY

    return Options(
        retry=RetryPolicy(max_attempts=attempts, backoff=0.01, max_backoff=max_backoff),
        azure=AzureOptions(
            endpoint_url=f"{proxy.url}/{AZURITE_ACCOUNT}",
            account_name=AZURITE_ACCOUNT,
            account_key=AZURITE_KEY,
            timeout=5.0,
        ),
    )


def test_azurite_folder_under_10_percent_faults_is_identical(
    azurite: AzuriteServer, azure_container: str, no_azure_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refscan.backends.azure.backend import AzureBackend

    monkeypatch.setattr(AzureBackend, "page_size", 40)
    azurite.upload_many(azure_container, {f"ds/{i % 7}/obj-{i:04d}": f"blob {i}".encode() for i in range(400)})
    with FaultProxy(f"http://127.0.0.1:{azurite.port}", flavor="http") as proxy:
        options = _proxied(proxy, attempts=8, max_backoff=0.2)
        uri = f"az://{azure_container}/ds"
        proxy.configure(FaultPlan())
        baseline = refscan.scan(uri, options=options)
        assert len(baseline) == 400
        faults = 0
        for run in range(4):
            proxy.configure(FaultPlan(rate=0.1, kinds=("503", "500", "429", "reset", "truncate"), seed=run))
            assert refscan.scan(uri, options=options) == baseline, f"run {run}: {proxy.stats()}"
            report = refscan.verify(baseline[:40], deep=True, options=options)
            assert report.ok, report.to_dict()
            faults += proxy.stats().total_faults
        assert faults > 0


def _blob_read(req: ProxyRequest) -> bool:
    return req.method == "GET" and not req.query


@pytest.mark.parametrize("cuts", [1, 2, 3])
def test_azurite_short_bodies_resume_until_the_blob_is_whole(
    azurite: AzuriteServer, azure_container: str, no_azure_env: None, cuts: int, tmp_path: Path
) -> None:
    """A body cut short behind a Content-Length that matches the cut looks complete to HTTP; the blob's size
    (Content-Range) says it is not, so the read resumes where it stopped instead of hashing part of it."""
    data = bytes(range(256)) * 8
    azurite.upload(azure_container, "d/blob.bin", data)
    with FaultProxy(f"http://127.0.0.1:{azurite.port}", flavor="http") as proxy:
        options = _proxied(proxy)
        [entry] = refscan.scan(f"az://{azure_container}/d", options=options)
        proxy.configure(FaultPlan(rate=1.0, kinds=("truncate",), match=_blob_read, max_faults=cuts))
        [result] = refscan.verify([entry], deep=True, options=options).results
        assert (result.status, result.cause) == ("ok", "deep-matches"), result.to_dict()
        assert proxy.stats().faults["truncate"] == cuts
        proxy.configure(FaultPlan(rate=1.0, kinds=("truncate",), match=_blob_read, max_faults=cuts))
        [path] = refscan.download([entry], tmp_path, options=options)
        assert path.read_bytes() == data


def test_azurite_a_body_always_cut_short_is_an_error_not_a_change(
    azurite: AzuriteServer, azure_container: str, no_azure_env: None
) -> None:
    azurite.upload(azure_container, "d/blob.bin", b"x" * 1000)
    with FaultProxy(f"http://127.0.0.1:{azurite.port}", flavor="http") as proxy:
        options = _proxied(proxy)
        [entry] = refscan.scan(f"az://{azure_container}/d", options=options)
        proxy.configure(FaultPlan(rate=1.0, kinds=("truncate",), match=_blob_read))
        [result] = refscan.verify([entry], deep=True, options=options).results
        assert result.status == "error", result.to_dict()
        assert re.search(r"/d/blob\.bin: read cut short: the body ended at byte \d+ of 1000$", result.reason)


# -- key ranges (List Blobs startFrom) ----------------------------------------------------------------------


RANGED = [f"r/{d}/{name}" for d in ("a", "a b", "b-1", "ü") for name in (f"obj-{i:03d}" for i in range(60))]


def test_azurite_folder_as_key_ranges_equals_one_chain(
    azurite: AzuriteServer, azure_container: str, azure_options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refscan.backends.azure.backend import AzureBackend
    from refscan.distributed import LocalExecutor

    monkeypatch.setattr(AzureBackend, "page_size", 20)
    azurite.upload_many(azure_container, {name: name.encode() for name in RANGED} | {"r2/sibling": b"s"})
    uri = f"az://{azure_container}/r"
    chain = refscan.scan(
        uri, options=replace(azure_options, azure=replace(azure_options.azure, parallel_listing=False))
    )
    assert sorted(e.path for e in chain) == sorted(name.removeprefix("r/") for name in RANGED)
    with structlog.testing.capture_logs() as logs:
        ranged = refscan.scan(uri, options=azure_options)
    assert ranged == chain
    assert [e["honoured"] for e in logs if e["event"] == "azure.start_from"] == [True]  # Azurite honours it
    [listing] = [e for e in logs if e["event"] == "azure.list"]
    assert listing["ranges"] is True
    assert listing["pages"] >= len(RANGED) // 20
    assert refscan.scan(uri, options=azure_options, max_objects=len(RANGED)) == chain
    with pytest.raises(refscan.TooManyObjects):
        refscan.scan(uri, options=azure_options, max_objects=len(RANGED) - 1)
    assert refscan.scan(uri, options=azure_options, executor=LocalExecutor()) == chain  # scale-out ranges


def no_start_from_origin(names: list[str], asked: list[dict[str, str]]) -> web.Application:
    """List Blobs that pages by `marker` and `maxresults` but ignores `startFrom`, as a service before version
    2026-02-06 would; `asked` records every query."""

    async def listing(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        begin = int(request.query.get("marker") or 0)
        chunk = names[begin : begin + int(request.query["maxresults"])]
        end = begin + len(chunk)
        blobs = "".join(
            f"<Blob><Name>{n}</Name><Properties><Etag>0x8D{i}</Etag><Content-Length>1</Content-Length>"
            f"</Properties><Metadata /></Blob>"
            for i, n in enumerate(chunk, begin)
        )
        marker = str(end) if end < len(names) else ""
        body = f"<EnumerationResults><Blobs>{blobs}</Blobs><NextMarker>{marker}</NextMarker></EnumerationResults>"
        return web.Response(body=body.encode(), content_type="application/xml")

    app = web.Application()
    app.router.add_get(f"/{ACCOUNT}/{CONTAINER}", listing)
    return app


def test_origin_ignoring_start_from_is_listed_as_one_chain_exactly(
    serve_app: Callable[[web.Application], str], no_azure_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refscan.backends.azure.backend import AzureBackend

    monkeypatch.setattr(AzureBackend, "page_size", 7)
    names = [f"d/{i:04d}" for i in range(100)]
    asked: list[dict[str, str]] = []
    base = serve_app(no_start_from_origin(names, asked))
    options = Options(azure=AzureOptions(endpoint_url=f"{base}/{ACCOUNT}", anonymous=True))
    entries = refscan.scan(f"az://{CONTAINER}/d", options=options)
    assert [e.path for e in entries] == [n.removeprefix("d/") for n in names]
    assert [q["startFrom"] for q in asked if "startFrom" in q] == ["d/0006"]  # the probe, answered from the start
    assert len(asked) == 15 + 1  # every page once, in one chain of markers, and the probe
    asked.clear()
    assert refscan.scan(f"az://{CONTAINER}/d", options=options) == entries
    assert len(asked) == 15 + 1  # a new session probes again (once per account and session)


# -- versions, against an origin serving the documented responses -----------------------------------------


ACCOUNT = "acct"
CONTAINER = "cont"
#: name -> [(version id, content, current)]
VERSIONS: dict[str, list[tuple[str, bytes, bool]]] = {
    "v/a.txt": [("2024-01-01T00:00:00.0000001Z", b"first", False), ("2024-02-01T00:00:00.0000002Z", b"second!", True)],
    "v/b.txt": [("2024-03-01T00:00:00.0000003Z", b"bee", True)],
    "v/gone.txt": [("2024-04-01T00:00:00.0000004Z", b"deleted", False)],
}


def _etag(version: str) -> str:
    return "0x8D" + hashlib.md5(version.encode()).hexdigest()[:13].upper()


def _find(name: str, version: str | None) -> tuple[str, bytes] | None:
    for vid, data, current in VERSIONS.get(name, []):
        if (version is None and current) or vid == version:
            return vid, data
    return None


def _headers(vid: str, data: bytes) -> dict[str, str]:
    return {
        "ETag": f'"{_etag(vid)}"',
        "Content-MD5": md5_b64(data),
        "x-ms-version-id": vid,
        "x-ms-blob-type": "BlockBlob",
        "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
        "Accept-Ranges": "bytes",
    }


def versions_origin() -> web.Application:
    async def listing(request: web.Request) -> web.Response:
        assert request.query["comp"] == "list"
        assert "versions" in request.query["include"]
        prefix = request.query.get("prefix", "")
        blobs = []
        for name, versions in sorted(VERSIONS.items()):
            if not name.startswith(prefix):
                continue
            for vid, data, current in versions:
                blobs.append(
                    f"<Blob><Name>{name}</Name><VersionId>{vid}</VersionId>"
                    f"<IsCurrentVersion>{'true' if current else 'false'}</IsCurrentVersion>"
                    f"<Properties><Last-Modified>Mon, 01 Jan 2024 00:00:00 GMT</Last-Modified>"
                    f"<Etag>{_etag(vid)}</Etag><Content-Length>{len(data)}</Content-Length>"
                    f"<Content-MD5>{md5_b64(data)}</Content-MD5><BlobType>BlockBlob</BlobType></Properties>"
                    f"<Metadata /></Blob>"
                )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="x" ContainerName="c">'
            f"<Prefix>{prefix}</Prefix><Blobs>{''.join(blobs)}</Blobs><NextMarker /></EnumerationResults>"
        )
        return web.Response(body=body.encode(), content_type="application/xml")

    async def blob(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        found = _find(name, request.query.get("versionid"))
        if found is None:
            return web.Response(status=404, headers={"x-ms-error-code": "BlobNotFound"})
        vid, data = found
        headers = _headers(vid, data)
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        ranged = request.headers.get("x-ms-range") or request.headers.get("Range")
        if ranged and data:
            start, _, end = ranged.removeprefix("bytes=").partition("-")
            lo, hi = int(start), min(int(end or len(data) - 1), len(data) - 1)
            headers["Content-Range"] = f"bytes {lo}-{hi}/{len(data)}"
            return web.Response(status=206, body=data[lo : hi + 1], headers=headers)
        return web.Response(body=data, headers=headers)

    app = web.Application()
    app.router.add_get(f"/{ACCOUNT}/{CONTAINER}", listing)
    app.router.add_route("*", f"/{ACCOUNT}/{CONTAINER}/{{name:.+}}", blob)
    return app


@pytest.fixture
def origin_options(serve_app: Callable[[web.Application], str], no_azure_env: None) -> Options:
    base = serve_app(versions_origin())
    return Options(
        retry=RetryPolicy(max_attempts=2, backoff=0.01),
        azure=AzureOptions(endpoint_url=f"{base}/{ACCOUNT}", anonymous=True),
    )


def test_origin_versions_folder_records_current_versions(origin_options: Options) -> None:
    entries = {e.path: e for e in refscan.scan(f"az://{CONTAINER}/v", options=origin_options)}
    assert set(entries) == {"a.txt", "b.txt"}  # older versions and a blob with no current version are skipped
    a = entries["a.txt"]
    assert a.extra == {
        "etag": _etag(VERSIONS["v/a.txt"][1][0]),
        "versionID": VERSIONS["v/a.txt"][1][0],
        "contentMD5": md5_b64(b"second!"),
    }
    assert a.size == len(b"second!")


def test_origin_explicit_version_is_honoured_verified_and_downloaded(origin_options: Options, tmp_path: Path) -> None:
    old = VERSIONS["v/a.txt"][0][0]
    [entry] = refscan.scan(f"az://{CONTAINER}/v/a.txt?versionId={old}", options=origin_options)
    assert (entry.size, entry.extra["versionID"], entry.digest) == (len(b"first"), old, _etag(old))
    assert entry.ref.endswith(f"/{CONTAINER}/v/a.txt")  # no query in the ref
    assert refscan.verify([entry], deep=True, options=origin_options).ok
    [path] = refscan.download([entry], tmp_path, options=origin_options)
    assert path.read_bytes() == b"first"  # the pinned version, not the current one

    with pytest.raises(refscan.NotFound, match="no such blob version"):
        refscan.scan(f"az://{CONTAINER}/v/a.txt?versionId=2000-01-01T00:00:00.0000000Z", options=origin_options)

    gone = refscan.ManifestEntry(
        "a.txt", entry.digest, entry.ref, entry.size, {**entry.extra, "versionID": "2000-01-01T00:00:00.0000000Z"}
    )
    [result] = refscan.verify([gone], options=origin_options).results
    assert result.status == "changed"  # the pinned version is gone and the current blob differs
