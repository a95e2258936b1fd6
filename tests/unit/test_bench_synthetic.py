"""The benchmark's synthetic S3 bucket pages exactly as S3 does (bench/synthetic.py; no server started)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import unquote_plus

import pytest

from bench import synthetic
from bench.synthetic import KeySpace, S3Error, key, listing

N = 2_345
KEYS = [key(i) for i in range(N)]
NS = {"s3": synthetic.NS}


def page(space: KeySpace, **query: str) -> ET.Element:
    return ET.fromstring(listing(space, query))


def texts(root: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall(path, NS)]


def one(root: ET.Element, name: str) -> str | None:
    e = root.find(f"s3:{name}", NS)
    return None if e is None else (e.text or "")


def list_v2(space: KeySpace, **query: str) -> tuple[list[str], list[str], int]:
    """Every key and common prefix a V2 client gets by following continuation tokens; and the page count."""
    keys: list[str] = []
    prefixes: list[str] = []
    pages = 0
    q = {"list-type": "2", **query}
    while True:
        root = page(space, **q)
        pages += 1
        got = texts(root, "s3:Contents/s3:Key")
        cps = texts(root, "s3:CommonPrefixes/s3:Prefix")
        assert int(one(root, "KeyCount") or -1) == len(got) + len(cps)
        assert len(got) + len(cps) <= min(int(q.get("max-keys", 1000)), 1000)
        keys += got
        prefixes += cps
        if one(root, "IsTruncated") != "true":
            assert one(root, "NextContinuationToken") is None
            return keys, prefixes, pages
        token = one(root, "NextContinuationToken")
        assert token
        q = {**q, "continuation-token": token}


def reference(after: str = "", prefix: str = "") -> list[str]:
    """S3's answer by brute force: keys under `prefix` strictly after `after`, in byte order."""
    return sorted((k for k in KEYS if k.startswith(prefix) and k.encode() > after.encode()), key=str.encode)


def test_full_listing_pages_of_1000_with_tokens() -> None:
    space = KeySpace(N)
    keys, prefixes, pages = list_v2(space, prefix="data/")
    assert keys == KEYS
    assert prefixes == []
    assert pages == 3
    # MaxKeys above 1,000 is capped; smaller pages still cover everything exactly once
    assert list_v2(space, **{"max-keys": "5000"})[2] == 3
    keys, _, pages = list_v2(space, **{"max-keys": "100"})
    assert keys == KEYS
    assert pages == 24


@pytest.mark.parametrize(
    "after",
    ["", "a", "data/", "data/obj-", "data/obj-0001234.bin", "data/obj-0001234", "data/obj-00012",
     "data/obj-0001234.bin!", "data/obj-0002344.bin", "data/obj-9", "zzz", "data/obj-0000999.bio"],
)  # fmt: skip
def test_start_after_any_string(after: str) -> None:
    space = KeySpace(N)
    keys, _, _ = list_v2(space, **{"start-after": after})
    assert keys == reference(after)
    root = page(space, **{"list-type": "2", "start-after": after, "max-keys": "7"})
    assert one(root, "StartAfter") == after
    assert texts(root, "s3:Contents/s3:Key") == reference(after)[:7]


def test_range_split_client_gets_s3s_answer() -> None:
    """A client that splits the key space at guessed keys and lists each range gets the whole listing."""
    space = KeySpace(N)
    bounds = ["", "data/obj-00005", "data/obj-0000777.bin", "data/obj-0001", "data/obj-0002"]
    got: list[str] = []
    for lo, hi in zip(bounds, [*bounds[1:], None], strict=True):
        keys, _, _ = list_v2(space, **{"start-after": lo})
        got += [k for k in keys if hi is None or k.encode() <= hi.encode()]
    assert got == KEYS


def test_token_wins_over_start_after_and_bad_tokens_fail() -> None:
    space = KeySpace(N)
    first = page(space, **{"list-type": "2", "max-keys": "10"})
    token = one(first, "NextContinuationToken")
    assert token
    root = page(space, **{"list-type": "2", "max-keys": "10", "continuation-token": token, "start-after": "zzz"})
    assert texts(root, "s3:Contents/s3:Key") == KEYS[10:20]
    assert one(root, "ContinuationToken") == token
    with pytest.raises(S3Error) as e:
        listing(space, {"list-type": "2", "continuation-token": key(5)})  # a key is not a token
    assert e.value.status == 400


def test_prefix_and_empty_results() -> None:
    space = KeySpace(N)
    keys, _, _ = list_v2(space, prefix="data/obj-00012")
    assert keys == reference(prefix="data/obj-00012")
    assert len(keys) == 100
    root = page(space, **{"list-type": "2", "prefix": "nothing/"})
    assert (one(root, "KeyCount"), one(root, "IsTruncated"), one(root, "Prefix")) == ("0", "false", "nothing/")
    root = page(space, **{"list-type": "2", "start-after": key(N - 1)})
    assert (one(root, "KeyCount"), one(root, "IsTruncated")) == ("0", "false")
    # a page that ends exactly at the last key says it is not truncated
    root = page(space, **{"list-type": "2", "start-after": key(N - 11), "max-keys": "10"})
    assert (one(root, "KeyCount"), one(root, "IsTruncated")) == ("10", "false")


def rolled_up(prefix: str, delimiter: str, after: str = "") -> list[str]:
    """S3's items by brute force: keys under `prefix`, each cut after the first `delimiter` past the prefix,
    deduplicated, those sorting after `after`."""
    items = set()
    for k in KEYS:
        if k.startswith(prefix):
            cut = k.find(delimiter, len(prefix))
            items.add(k if cut < 0 else k[: cut + len(delimiter)])
    return sorted((i for i in items if i.encode() > after.encode()), key=str.encode)


@pytest.mark.parametrize(
    ("prefix", "delimiter", "after", "max_keys"),
    [("", "/", "", "1000"), ("", "/", "data/", "1000"), ("data/", "/", "", "1000"), ("data/obj-000", "0", "", "2"),
     ("data/obj-", "1", "data/obj-0001", "7"), ("data/", "obj-", "", "5"), ("data/obj-0001", "n", "", "300"),
     ("data/obj-000", "0", "data/obj-0000", "1000"), ("", "2", "data/obj-0001500.bin", "50")],
)  # fmt: skip
def test_delimiter_rolls_up_common_prefixes(prefix: str, delimiter: str, after: str, max_keys: str) -> None:
    space = KeySpace(N)
    query = {"prefix": prefix, "delimiter": delimiter, "max-keys": max_keys, "start-after": after}
    keys, prefixes, _ = list_v2(space, **query)
    expected = rolled_up(prefix, delimiter, after)
    assert sorted(keys + prefixes, key=str.encode) == expected
    assert keys == [i for i in expected if not i.endswith(delimiter)]  # no key here ends in its delimiter
    assert len(set(prefixes)) == len(prefixes)  # a common prefix is never repeated across pages


def test_delimiter_examples() -> None:
    space = KeySpace(N)
    assert list_v2(space, delimiter="/") == ([], ["data/"], 1)
    assert list_v2(space, delimiter="/", **{"start-after": "data/"}) == ([], [], 1)
    assert list_v2(space, prefix="data/", delimiter="-") == ([], ["data/obj-"], 1)
    root = page(space, **{"list-type": "2", "prefix": "data/obj-000", "delimiter": "1", "max-keys": "3"})
    assert texts(root, "s3:CommonPrefixes/s3:Prefix") == ["data/obj-0000001"]  # cut after the first "1"
    assert texts(root, "s3:Contents/s3:Key") == [KEYS[0], KEYS[2]]
    assert one(root, "Delimiter") == "1"


def test_v1_markers_and_url_encoding() -> None:
    space = KeySpace(N)
    root = page(space, marker=key(99), **{"max-keys": "3"})
    assert texts(root, "s3:Contents/s3:Key") == KEYS[100:103]
    assert one(root, "IsTruncated") == "true"
    assert one(root, "NextMarker") is None  # S3 gives NextMarker only with a delimiter
    root = page(space, delimiter="/")
    assert texts(root, "s3:CommonPrefixes/s3:Prefix") == ["data/"]
    root = page(space, **{"list-type": "2", "encoding-type": "url", "start-after": "a b+c", "max-keys": "1"})
    assert one(root, "EncodingType") == "url"
    assert unquote_plus(one(root, "StartAfter") or "") == "a b+c"


def test_object_versions_with_key_marker() -> None:
    space = KeySpace(N)
    seen: list[str] = []
    q = {"versions": "", "prefix": "data/"}
    while True:
        root = page(space, **q)
        seen += texts(root, "s3:Version/s3:Key")
        assert set(texts(root, "s3:Version/s3:VersionId")) <= {"null"}
        if one(root, "IsTruncated") != "true":
            break
        q = {**q, "key-marker": one(root, "NextKeyMarker") or "", "version-id-marker": "null"}
    assert seen == KEYS
    root = page(space, versions="", **{"key-marker": "data/obj-00020", "max-keys": "2"})
    assert texts(root, "s3:Version/s3:Key") == reference("data/obj-00020")[:2]


def test_object_lookup() -> None:
    space = KeySpace(N)
    assert synthetic.object_index(space, key(17)) == 17
    assert synthetic.object_index(space, key(17) + "x") is None
    assert synthetic.object_index(space, key(N)) is None
