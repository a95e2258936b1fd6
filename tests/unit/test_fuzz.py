"""Property-based fuzzing (hypothesis) of the code that reads untrusted text: URI parsing, entry naming, manifest
decoding and secret redaction. The only exceptions allowed out are `RefscanError` subclasses (for manifests:
`ManifestError`), and what does come out keeps the invariants the rest of refscan relies on.

Runs are derandomized (the same examples every run) and small enough to stay quick.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from refscan import InvalidURI, Manifest, ManifestEntry, ManifestError, RefscanError, RefURI, UnsafePath
from refscan.download import safe_target
from refscan.naming import clean_path, folder_entry_path, last_segment, object_path
from refscan.uri import REDACTED, SECRET_QUERY_PARAMS, redact

T = TypeVar("T")
FUZZ = settings(derandomize=True, deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
#: For strategies that are costly to draw (nested JSON, whole URLs).
FUZZ_DEEP = settings(FUZZ, max_examples=150)

#: Every secret value the strategies generate starts with this; nothing else they generate can contain it.
MARK = "ZQXJ"
ROOT = Path("/fuzz-root")

PREFIXES = st.sampled_from(
    [
        "",
        "s3://",
        "gs://",
        "http://",
        "https://",
        "file://",
        "file:",
        "S3://",
        "Gs://",
        "HTTP://",
        "s3:",
        "C:",
        "ftp://",
    ]
)
ANY_TEXT = st.text(max_size=40)
URI_TEXT = st.builds(lambda p, t: p + t, PREFIXES, ANY_TEXT) | ANY_TEXT
URL_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")


def outcome_of(func: Callable[[], T]) -> T | RefscanError:
    """What `func()` returns, or the RefscanError it raised; any other exception fails the test."""
    try:
        return func()
    except RefscanError as exc:
        return exc


def parsed(text: str) -> RefURI | None:
    try:
        return RefURI.parse(text)
    except RefscanError:
        return None


def assert_clean_path(path: str) -> None:
    """What naming promises (docs/behaviour.md, Entries): POSIX, relative, no empty, '.' or '..' segments,
    no NUL or backslash."""
    assert path
    assert not path.startswith("/")
    assert "\x00" not in path
    assert "\\" not in path
    assert all(part not in ("", ".", "..") for part in path.split("/"))


DRIVE = re.compile(r"^[A-Za-z]:")


def assert_downloadable(path: str) -> None:
    """Every path naming produces is one download accepts: the only exception is a first segment that reads as
    a Windows drive (`C:`), which download refuses on every platform so a manifest means the same everywhere."""
    if DRIVE.match(path):
        with pytest.raises(UnsafePath):
            safe_target(ROOT, path)
    else:
        assert safe_target(ROOT, path) == ROOT.joinpath(*path.split("/"))


# -- URI parsing -------------------------------------------------------------------------------------------------


@FUZZ
@given(URI_TEXT)
@example("file://[x")  # urllib's ValueError for a bad IPv6 host once escaped as ValueError
@example("file://os.PathLike[str]")
@example("http://[::1/x")
@example("https://h:99999/")
@example("s3://AKIA:secret@bucket/k")
def test_parse_raises_only_refscan_errors(text: str) -> None:
    uri = outcome_of(lambda: RefURI.parse(text))
    if isinstance(uri, RefscanError):
        assert isinstance(uri, InvalidURI)
        return
    assert uri.scheme in ("s3", "gs", "http", "https", "file")
    # formatting a parsed URI never fails, and for s3/gs gives a URI that parses back to the same thing
    text_form = str(uri)
    assert uri.object_ref()
    if uri.scheme in ("s3", "gs") and uri.version is None:
        assert RefURI.parse(text_form).key == uri.key


@FUZZ
@given(st.binary(max_size=40))
def test_parse_survives_undecodable_and_control_bytes(raw: bytes) -> None:
    text = raw.decode("utf-8", errors="surrogateescape")  # lone surrogates, as os.fsdecode gives them
    for candidate in (text, "s3://b/" + text, "https://h/" + text, "file:///" + text, "gs://b/" + text):
        parsed(candidate)


# -- naming --------------------------------------------------------------------------------------------------------


@FUZZ
@given(uri_text=URI_TEXT, name=st.none() | ANY_TEXT)
def test_object_path_is_clean_or_raises(uri_text: str, name: str | None) -> None:
    uri = parsed(uri_text)
    assume(uri is not None)
    assert uri is not None
    path = outcome_of(lambda: object_path(uri, name))
    if isinstance(path, RefscanError):
        assert isinstance(path, InvalidURI | UnsafePath)
        return
    assert_clean_path(path)
    assert_downloadable(path)
    if name is None:
        assert path == clean_path(last_segment(uri), source="x")


@FUZZ
@given(
    scheme=st.sampled_from(["s3", "gs", "file"]),
    folder_key=ANY_TEXT,
    relative=ANY_TEXT,
    name=st.none() | ANY_TEXT,
)
def test_folder_entry_path_is_clean_or_raises(scheme: str, folder_key: str, relative: str, name: str | None) -> None:
    text = f"file:///{quote(folder_key)}" if scheme == "file" else f"{scheme}://bucket/{folder_key}"
    uri = parsed(text)
    assume(uri is not None and uri.backend.folders)
    assert uri is not None
    folder = uri.folder()
    path = outcome_of(lambda: folder_entry_path(folder, folder.key + relative, name))
    if isinstance(path, RefscanError):
        assert isinstance(path, UnsafePath)
        return
    assert_clean_path(path)
    assert_downloadable(path)
    if name:  # under name/, or name itself for an object whose key is the folder's own (`data/`, not a marker)
        prefix = clean_path(name, source="x")
        assert path == prefix or path.startswith(prefix + "/")


@FUZZ
@given(ANY_TEXT)
def test_clean_path_is_idempotent(text: str) -> None:
    try:
        once = clean_path(text, source="fuzz")
    except UnsafePath:
        return
    assert_clean_path(once)
    assert clean_path(once, source="fuzz") == once


# -- manifest decoding -----------------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62 - 2, max_value=2**64) | st.floats()
) | st.text(max_size=8)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)
#: Near-valid shapes reach deeper than random JSON: entries with every field present but of any type.
ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "digest": st.text(max_size=8) | JSON,
        "ref": st.text(max_size=8) | JSON,
        "size": st.integers(min_value=-5, max_value=2**63) | JSON,
        "extra": st.dictionaries(st.text(max_size=6), JSON, max_size=3) | JSON,
    },
)
MANIFEST = st.fixed_dictionaries(
    {},
    optional={
        "version": st.just(1) | JSON,
        "storagePolicy": JSON,
        "contents": st.dictionaries(st.text(max_size=10), ENTRY | JSON, max_size=4) | JSON,
    },
)


@FUZZ_DEEP
@given(MANIFEST | JSON)
def test_from_dict_raises_only_manifest_error(data: Any) -> None:
    manifest = outcome_of(lambda: Manifest.from_dict(data))
    if isinstance(manifest, RefscanError):
        assert isinstance(manifest, ManifestError)
        return
    for entry in manifest:
        assert isinstance(entry.path, str)
        assert entry.path
        assert isinstance(entry.digest, str)
        assert entry.ref is None or isinstance(entry.ref, str)
        assert entry.size is None or (type(entry.size) is int and entry.size >= 0)
    # what was accepted survives a round trip through JSON unchanged
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest


@FUZZ_DEEP
@given(
    st.lists(
        st.builds(
            ManifestEntry,
            path=st.text(min_size=1, max_size=10),
            digest=st.text(max_size=10),
            ref=st.none() | st.text(max_size=10),
            size=st.none() | st.integers(min_value=0, max_value=2**62),
            extra=st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers(), max_size=3),
        ),
        max_size=5,
        unique_by=lambda e: e.path,
    )
)
def test_valid_manifests_round_trip(entries: list[ManifestEntry]) -> None:
    manifest = Manifest(entries)
    again = Manifest.from_dict(json.loads(manifest.to_json()))
    assert again == manifest
    assert again.digest == manifest.digest


@FUZZ_DEEP
@given(st.binary(max_size=200) | st.builds(lambda d: json.dumps(d).encode(), MANIFEST))
def test_load_raises_only_manifest_error(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz-manifest.json"
    path.write_bytes(raw)
    loaded = outcome_of(lambda: Manifest.load(path))
    assert isinstance(loaded, Manifest | ManifestError)


# -- redaction ---------------------------------------------------------------------------------------------------

SECRET_VALUES = st.builds(lambda s: MARK + s, st.text(URL_CHARS, max_size=12))
#: Non-secret text never contains MARK: it is drawn without capital letters.
PLAIN = st.text(st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=["Lu", "Lt"]), max_size=10)
PLAIN_NAMES = PLAIN.filter(lambda k: k.lower() not in SECRET_QUERY_PARAMS)


def case_variants(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flags: "".join(c.upper() if f else c.lower() for c, f in zip(name, flags, strict=True))
    )


#: (the name as written in the URL, the name a server decodes): any letter case, or percent-encoded dashes.
SECRET_NAMES = st.sampled_from(sorted(SECRET_QUERY_PARAMS)).flatmap(
    lambda name: case_variants(name).map(lambda v: (quote(v, safe=""), v)) | st.just((name.replace("-", "%2D"), name))
)


@st.composite
def presigned_urls(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, bool]]]:
    """A URL with credentials everywhere a URL can carry them; returns it and its decoded query pairs, each
    with whether it is a secret."""
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    user = draw(st.none() | PLAIN)
    password = draw(st.none() | SECRET_VALUES)
    host = draw(st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True))
    port = draw(st.none() | st.integers(min_value=1, max_value=65535))
    path = draw(st.lists(PLAIN, max_size=3))
    fragment = draw(st.none() | PLAIN)
    written: list[str] = []
    pairs: list[tuple[str, str, bool]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if draw(st.booleans()):
            (raw, name), value = draw(SECRET_NAMES), draw(SECRET_VALUES)
            pairs.append((name, value, True))
        else:
            name, value = draw(PLAIN_NAMES), draw(PLAIN)
            raw = quote(name, safe="")
            pairs.append((name, value, False))
        written.append(f"{raw}={quote(value, safe='')}")
    userinfo = ""
    if user is not None or password is not None:
        userinfo = quote(user or "", safe="") + (":" + quote(password, safe="") if password is not None else "") + "@"
    netloc = userinfo + host + (f":{port}" if port is not None else "")
    url = f"{scheme}://{netloc}/" + "/".join(quote(p, safe="") for p in path)
    if written:
        url += "?" + "&".join(written)
    if fragment is not None:
        url += "#" + quote(fragment, safe="")
    return url, pairs


@FUZZ_DEEP
@given(presigned_urls())
def test_redact_never_leaks_a_secret(case: tuple[str, list[tuple[str, str, bool]]]) -> None:
    url, pairs = case
    shown = redact(url)
    assert MARK not in shown
    assert quote(MARK) not in shown
    assert redact(shown) == shown  # idempotent
    parts = urlsplit(shown)
    assert "@" not in parts.netloc
    # every parameter is kept, in order: secret values REDACTED, the others unchanged
    assert parse_qsl(parts.query, keep_blank_values=True) == [(k, REDACTED if s else v) for k, v, s in pairs]


@FUZZ_DEEP
@given(presigned_urls())
def test_parsed_urls_and_their_errors_never_show_secrets(case: tuple[str, list[tuple[str, str, bool]]]) -> None:
    url, _ = case
    uri = outcome_of(lambda: RefURI.parse(url))
    if isinstance(uri, RefscanError):
        assert MARK not in str(uri)
        return
    for shown in (str(uri), uri.object_ref(), repr(uri)):
        assert MARK not in shown


@FUZZ
@given(
    scheme=st.sampled_from(["s3", "gs", "ftp", "file", "azure"]),
    user=PLAIN,
    secret=SECRET_VALUES,
    rest=st.text(URL_CHARS, max_size=20),
)
def test_credentials_in_other_schemes_never_reach_errors(scheme: str, user: str, secret: str, rest: str) -> None:
    text = f"{scheme}://{quote(user, safe='')}:{quote(secret, safe='')}@{rest}"
    uri = outcome_of(lambda: RefURI.parse(text))
    if isinstance(uri, RefscanError):
        assert MARK not in str(uri)
        return
    assert MARK not in str(uri)
    assert MARK not in repr(uri)
    assert MARK not in redact(text)
