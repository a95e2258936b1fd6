"""Pure Azure logic: URL routing and parsing, settings and credential order, the List Blobs page parser, the
listing budget, key ranges (startFrom honoured, ignored, rejected; random folders split and re-split) and the
codec (no server)."""

from __future__ import annotations

import random
import string

import anyio
import pytest

from refscan import AzureOptions, InvalidURI, Options, RefURI
from refscan.backends.azure.config import DEV_BLOB_ENDPOINT, claims, configured, connection_settings
from refscan.backends.azure.listing import Page, parse_page
from refscan.backends.azure.ranges import honours_start_from, list_blobs, list_range, split_range
from refscan.backends.keyspace import KeyRange
from refscan.errors import BackendError

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
    page = parse_page(
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
    assert [(o.key, o.size, o.version, dict(o.hashes)) for o in page.objects] == [
        ("a", 2, "v2", {"md5": "bWQ1"}),
        ("empty", 0, None, {}),
        ("odd\nname", 3, None, {}),
    ]
    assert page.objects[0].etag == "0x8D2"
    assert page.next == "M1"
    assert page.names == ["a", "a", "stub", "dir/", "empty", "odd\nname"]  # every name, as listed
    with pytest.raises(Malformed):
        parse_page(_page(_blob("a", 1))[:-30])  # cut short on the way


class FakePages:
    """A PageSource over `names` in the order given (the service's), paging by the `max_results` asked; `start_from`
    is honoured (from the first name at or after it), ignored or rejected (400) as `start_from` says. Records
    every request as (max_results, start_from), and with it in `kept` how many objects had been yielded."""

    def __init__(self, names: list[str], start_from: str = "honour") -> None:
        self.names = names
        self.start_from = start_from
        self.asked: list[tuple[int, str | None]] = []
        self.yielded = 0
        self.kept: list[int] = []

    async def page(self, prefix: str, marker: str | None, max_results: int, start_from: str | None = None) -> Page:
        self.asked.append((max_results, start_from))
        self.kept.append(self.yielded)
        if start_from is not None and self.start_from == "reject":
            raise BackendError("az://c/: list failed with HTTP 400 InvalidQueryParameterValue")
        begin = 0
        if start_from is not None and self.start_from == "honour":
            begin = next((i for i, n in enumerate(self.names) if n >= start_from), len(self.names))
        begin = int(marker) if marker else begin
        chunk = self.names[begin : begin + max_results]
        end = begin + len(chunk)
        return parse_page(_page(*(_blob(n, 1) for n in chunk), marker=str(end) if end < len(self.names) else ""))


def _listed(source: FakePages, limit: int, *, page_size: int = 3, fanout: int = 1, probe: bool = True) -> list[str]:
    async def honours(name: str) -> bool:
        return await honours_start_from(source, "", name)

    async def run() -> list[str]:
        keys: list[str] = []
        async for batch in list_blobs(
            source, "", limit, page_size=page_size, fanout=fanout, probe=honours if probe else None
        ):
            keys += [o.key for o in batch]
            source.yielded = len(keys)
        return keys

    return anyio.run(run)


@pytest.mark.parametrize("fanout", [1, 4])
@pytest.mark.parametrize(("total", "limit"), [(10, 11), (10, 10), (10, 4), (3, 5), (40, 40), (40, 39)])
def test_listing_asks_for_no_more_than_the_limit(total: int, limit: int, fanout: int) -> None:
    source = FakePages([f"k{i:03d}" for i in range(total)])
    keys = _listed(source, limit, fanout=fanout)
    assert sorted(keys) == [f"k{i:03d}" for i in range(min(total, limit))]
    # the objects kept plus the items asked for by the requests of a round never exceed the limit (a split
    # range may read names past its end: those are another range's, dropped; the probe asks for one name)
    rounds: dict[int, int] = {}
    for (n, start_from), kept in zip(source.asked, source.kept, strict=True):
        if (n, start_from) != (1, start_from) or start_from is None:
            rounds[kept] = rounds.get(kept, 0) + n
    assert all(kept + asked <= limit for kept, asked in rounds.items()), rounds
    if fanout == 1:
        assert sum(n for n, _ in source.asked) <= limit


def _random_names(rng: random.Random, n: int) -> list[str]:
    alphabet = string.ascii_letters + string.digits + "-_./ é"
    names = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(n)}
    return sorted(names)


@pytest.mark.parametrize("seed", range(6))
def test_key_ranges_list_a_random_folder_exactly_once(seed: int) -> None:
    names = _random_names(random.Random(seed), 400)
    source = FakePages(names)
    keys = _listed(source, 10_000, page_size=7, fanout=6)
    assert sorted(keys) == names  # every name once: the ranges partition the folder
    assert len([a for a in source.asked if a[1] is not None]) > 1  # it was split: startFrom was used


@pytest.mark.parametrize("behaviour", ["ignore", "reject"])
def test_a_service_without_start_from_is_listed_as_one_chain_exactly(behaviour: str) -> None:
    names = [f"d/{i:04d}" for i in range(100)]
    source = FakePages(names, start_from=behaviour)
    assert _listed(source, 10_000, page_size=7, fanout=6) == names  # the service's order, once each
    assert [a for a in source.asked if a[1] is not None] == [(1, "d/0006")]  # the one probe, then marker pages
    assert len(source.asked) == 15 + 1


def test_parallel_listing_off_and_a_small_budget_never_split() -> None:
    names = [f"d/{i:04d}" for i in range(100)]
    off = FakePages(names)
    assert _listed(off, 10_000, page_size=7, fanout=6, probe=False) == names
    small = FakePages(names)
    assert _listed(small, 10, page_size=7, fanout=6) == names[:10]  # no full page left for a second range
    assert all(a[1] is None for a in off.asked + small.asked)


def test_a_folder_out_of_name_order_stays_one_chain() -> None:
    """A directory-ordered service (`a/b` before `a-c`): the first page shows it, so no range is ever made."""
    names = ["a/b", "a/c", "a-c", "a.d", *(f"z{i:03d}" for i in range(30))]
    source = FakePages(names)
    assert _listed(source, 10_000, page_size=5, fanout=6) == names
    assert all(a[1] is None for a in source.asked)


@pytest.mark.parametrize("seed", range(4))
def test_list_range_steps_and_splits_partition_a_random_folder(seed: int) -> None:
    """The scale-out path: ranges stepped a few pages at a time, their rests split again and again."""
    rnd = random.Random(seed)
    names = _random_names(rnd, 300)
    source = FakePages(names)

    async def run() -> list[str]:
        found: list[str] = []
        todo = [KeyRange()]
        while todo:
            rng = todo.pop(rnd.randrange(len(todo)))
            step = await list_range(source, "", rng, rnd.randint(1, 20), rnd.randint(1, 3), page_size=5)
            assert step.disorder is None
            found += [o.key for o in step.objects]
            if step.rest is not None:
                todo += split_range("", step.rest, step.sample, rnd.randint(1, 4)) if step.sample else [step.rest]
        return found

    found = anyio.run(run)
    assert sorted(found) == names
    assert len(found) == len(names)


def test_list_range_reports_names_before_its_start() -> None:
    source = FakePages([f"d/{i:04d}" for i in range(20)], start_from="ignore")
    step = anyio.run(list_range, source, "", KeyRange(start="d/0010"), 100, 1)
    assert step.disorder is not None
    assert "listed after 'd/0010'" in step.disorder


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
