"""Pure Azure logic: URL routing and parsing, settings and credential order, the List Blobs page parser, the
listing budget and the codec (no server)."""

from __future__ import annotations

import anyio
import pytest

from refscan import AzureOptions, InvalidURI, Options, RefURI
from refscan.backends.azure.config import DEV_BLOB_ENDPOINT, claims, configured, connection_settings
from refscan.backends.azure.listing import Page, list_blobs, parse_page

pytest.importorskip("azure.storage.blob")
from refscan.backends.azure.backend import AzureBackend
from refscan.backends.azure.client import Malformed

ACCT_C1 = "https://acct.blob.core.windows.net/c1"
DEV_C1 = "http://127.0.0.1:10000/devstoreaccount1/c1"
AZURITE = Options(azure=AzureOptions(endpoint_url="http://127.0.0.1:10000/devstoreaccount1"))


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AZURE_STORAGE_SAS_TOKEN", raising=False)


@pytest.mark.parametrize(
    ("text", "options", "bucket", "key", "version"),
    [
        ("https://Acct.blob.core.windows.net/c1/a b#1?.txt", None, ACCT_C1, "a b#1?.txt", None),
        (f"{ACCT_C1}/x?versionId=2024-01-01T00:00:00.1Z", None, ACCT_C1, "x", "2024-01-01T00:00:00.1Z"),
        (ACCT_C1, None, ACCT_C1, "", None),
        (f"{DEV_C1}/d/", AZURITE, DEV_C1, "d/", None),
        ("az://c1/d/e.txt", AZURITE, DEV_C1, "d/e.txt", None),
    ],
)  # fmt: skip
def test_azure_uris(text: str, options: Options | None, bucket: str, key: str, version: str | None) -> None:
    uri = RefURI.parse(text, options)
    assert (uri.scheme, uri.bucket, uri.key, uri.version) == ("az", bucket, key, version)
    assert uri.object_ref() == f"{bucket}/{key}"


def test_only_azure_urls_are_claimed() -> None:
    assert RefURI.parse("https://example.com/c1/x").scheme == "https"
    assert RefURI.parse("http://127.0.0.1:10000/devstoreaccount1/c1/x").scheme == "http"  # no endpoint configured
    assert RefURI.parse("http://127.0.0.1:10000/other/c1/x", AZURITE).scheme == "http"  # not under the endpoint
    assert not claims("https://blob.core.windows.net.evil.com/c/x", AzureOptions())
    assert claims("https://acct.blob.core.windows.net/c/x", AzureOptions())


def test_azure_uri_errors_name_no_secret() -> None:
    with pytest.raises(InvalidURI, match="none is configured"):
        RefURI.parse("az://c1/x")
    with pytest.raises(InvalidURI, match="SAS token does not belong") as info:
        RefURI.parse("https://acct.blob.core.windows.net/c1/x?sv=2024&sig=TOPSECRET")
    assert "TOPSECRET" not in str(info.value)
    with pytest.raises(InvalidURI, match="not a valid container"):
        RefURI.parse("az://UPPER/x", AZURITE)
    with pytest.raises(InvalidURI, match="only pin a blob"):
        RefURI.parse("az://c1/d/?versionId=1", AZURITE)


def test_connection_strings_and_credential_order(monkeypatch: pytest.MonkeyPatch) -> None:
    dev = connection_settings("UseDevelopmentStorage=true")
    assert dev["blobendpoint"] == DEV_BLOB_ENDPOINT
    assert dev["accountkey"].endswith("==")  # the '=' padding survives the split
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=envacct;AccountKey=ZW52a2V5")
    from_env = configured(AzureOptions())
    assert (from_env.source, from_env.account_url, from_env.account_key) == (
        "AZURE_STORAGE_CONNECTION_STRING",
        "https://envacct.blob.core.windows.net",
        "ZW52a2V5",
    )
    explicit = configured(AzureOptions(sas_token="sv=1&sig=x"))  # options first, then the environment
    assert explicit.source == "AzureOptions.sas_token"
    assert explicit.account_url == "https://envacct.blob.core.windows.net"
    assert "sig=x" not in repr(explicit)
    assert "ZW52a2V5" not in repr(from_env)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    assert configured(AzureOptions()).source == "DefaultAzureCredential"


def _blob(name: str, size: int, *, version: str = "", current: str = "", md5: str = "", meta: str = "") -> str:
    version_xml = f"<VersionId>{version}</VersionId><IsCurrentVersion>{current}</IsCurrentVersion>" if version else ""
    md5_xml = f"<Content-MD5>{md5}</Content-MD5>" if md5 else ""
    encoded = ' Encoded="true"' if "%" in name else ""
    return (
        f"<Blob><Name{encoded}>{name}</Name>{version_xml}<Properties>"
        f"<Etag>0x8D{size}</Etag><Content-Length>{size}</Content-Length>{md5_xml}</Properties>"
        f"<Metadata>{meta}</Metadata></Blob>"
    )


def _page(*blobs: str, marker: str = "") -> bytes:
    return (
        f"<EnumerationResults><Blobs>{''.join(blobs)}</Blobs><NextMarker>{marker}</NextMarker></EnumerationResults>"
    ).encode()


def test_parse_page_keeps_current_objects_only() -> None:
    objects, marker = parse_page(
        _page(
            _blob("a", 1, version="v1", current="false"),
            _blob("a", 2, version="v2", current="true", md5="bWQ1"),
            _blob("stub", 0, meta="<hdi_isfolder>true</hdi_isfolder>"),
            _blob("dir/", 0),
            _blob("empty", 0),
            _blob("odd%0Aname", 3),
            marker="M1",
        )
    )
    assert [(o.key, o.size, o.version, dict(o.hashes)) for o in objects] == [
        ("a", 2, "v2", {"md5": "bWQ1"}),
        ("empty", 0, None, {}),
        ("odd\nname", 3, None, {}),
    ]
    assert objects[0].etag == "0x8D2"
    assert marker == "M1"
    with pytest.raises(Malformed):
        parse_page(_page(_blob("a", 1))[:-30])  # cut short on the way


class FakePages:
    """A PageSource over a fixed list of names, paging by the `max_results` asked; records what was asked."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.asked: list[int] = []

    async def page(self, prefix: str, marker: str | None, max_results: int) -> Page:
        self.asked.append(max_results)
        start = int(marker or 0)
        chunk = self.names[start : start + max_results]
        end = start + len(chunk)
        return parse_page(_page(*(_blob(n, 1) for n in chunk), marker=str(end) if end < len(self.names) else ""))


@pytest.mark.parametrize(("total", "limit"), [(10, 11), (10, 10), (10, 4), (3, 5)])
def test_listing_asks_for_no_more_than_the_limit(total: int, limit: int) -> None:
    source = FakePages([f"k{i:03d}" for i in range(total)])

    async def run() -> list[str]:
        return [o.key for batch in [b async for b in list_blobs(source, "", limit, page_size=3)] for o in batch]

    keys = anyio.run(run)
    assert keys == [f"k{i:03d}" for i in range(min(total, limit))]
    assert sum(source.asked) <= limit


def test_codec_round_trip_and_wandb_entries() -> None:
    from refscan.meta import ObjectMeta

    meta = ObjectMeta(key="a", size=3, etag="0x8DABC", version="v1", hashes={"md5": "bWQ1"})
    digest, extra = AzureBackend.encode(meta)
    assert (digest, extra) == ("0x8DABC", {"etag": "0x8DABC", "versionID": "v1", "contentMD5": "bWQ1"})
    assert AzureBackend.decode("a", digest, 3, extra) == meta
    wandb_written = AzureBackend.decode("a", "0x8DABC", 3, {"etag": "0x8DABC"})  # W&B: etag (and versionID) only
    assert AzureBackend.fingerprint(wandb_written).hashes == (("etag", "0x8DABC"),)
    uri = RefURI.parse("https://acct.blob.core.windows.net/c1/a b.txt?versionId=v1")
    assert AzureBackend.direct_url(uri, Options()) == "https://acct.blob.core.windows.net/c1/a%20b.txt?versionid=v1"
    assert str(uri) == "https://acct.blob.core.windows.net/c1/a b.txt?versionId=v1"
    assert AzureBackend.file_name(RefURI.parse(ACCT_C1)) == "c1"
