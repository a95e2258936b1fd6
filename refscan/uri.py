"""`RefURI`: the generic split of a reference, and redaction of secrets for display.

The scheme picks the backend; the backend parses the rest (version syntax, folders, percent-decoding) and
formats it back (docs/behaviour.md, URIs). A string without a scheme, or with a one-letter (drive) scheme, is
a local path. Parsing never touches the network.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import InvalidURI, UnsupportedScheme

if TYPE_CHECKING:
    from .backends.base import Backend
    from .options import Options

#: The scheme of a reference written as a plain local path.
LOCAL_SCHEME = "file"

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")

#: Query parameters whose values are credentials (presigned URLs); their values never leave refscan.
SECRET_QUERY_PARAMS = frozenset(
    p.lower()
    for p in (
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "X-Goog-Signature",
        "X-Goog-Credential",
        "Signature",
        "sig",
    )
)
REDACTED = "REDACTED"


@dataclass(frozen=True)
class RefURI:
    """A parsed reference: `scheme`, `bucket` and `key` as its backend reads them, and `version` (the pinned
    version, as a string) or None.

    Bucket stores: `bucket` and `key` (empty = bucket root, ending in `/` = folder). URLs: `bucket` is the
    host[:port], `key` the path, `url` the URL exactly as given. Local files: `bucket` is empty and `key` the
    absolute path. The backend of `scheme` defines how the text maps to these fields and back.
    """

    scheme: str
    bucket: str
    key: str
    version: str | None = None
    url: str = field(default="", repr=False)  # may hold credentials: never in a repr

    @classmethod
    def parse(cls, text: str, options: Options | None = None) -> RefURI:
        """Parse `text` with its scheme's backend (no network); raises `InvalidURI` or `UnsupportedScheme`.

        An http(s) URL goes to the backend that claims it under `options` (default: the environment), e.g. an
        Azure blob URL to `az`; any other to the HTTP backend. Backends whose URIs depend on configuration
        (an account, an endpoint) read it from `options`."""
        if not isinstance(text, str) or not text:
            raise InvalidURI("empty reference: expected a URI such as s3://bucket/key, or a local path")
        if "\x00" in text:
            raise InvalidURI("reference contains a NUL byte")
        m = _SCHEME_RE.match(text)
        scheme = LOCAL_SCHEME if m is None or len(m.group(1)) == 1 else m.group(1).lower()
        if scheme in ("http", "https"):
            scheme = _owner(text, options) or scheme
        try:
            backend = _backend_class(scheme)
        except UnsupportedScheme as exc:
            raise UnsupportedScheme(f"{exc} (in {shown(text)})") from None
        if options is None:
            return backend.parse_uri(scheme, text)
        return backend.parse_configured(scheme, text, options)

    @property
    def backend(self) -> type[Backend]:
        """The backend class of this URI's scheme."""
        return _backend_class(self.scheme)

    @property
    def is_folder(self) -> bool:
        """True when the URI itself says "folder": the bucket root or a key ending in `/` (on backends that
        have folders)."""
        return self.backend.folders and (self.key == "" or self.key.endswith("/"))

    def folder(self) -> RefURI:
        """The folder this URI names when read as a prefix (`key` + `/`); the bucket root stays as is."""
        if self.is_folder:
            return self
        return replace(self, key=self.key + "/", version=None)

    def child(self, key: str, version: str | None = None) -> RefURI:
        """The URI of object `key` in the same bucket (or file system)."""
        return replace(self, key=key, version=version, url="")

    def object_ref(self) -> str:
        """The manifest `ref` for this object: no version, secrets removed."""
        return self.backend.object_ref(self)

    def __str__(self) -> str:
        """The URI in canonical form with its version; secrets removed."""
        return self.backend.format_uri(self)


def _backend_class(scheme: str) -> type[Backend]:
    global _lookup
    if _lookup is None:
        from .backends import backend_class  # the registry imports backends, which import this module

        _lookup = backend_class
    return _lookup(scheme)


def _owner(url: str, options: Options | None) -> str | None:
    """The scheme of the backend that claims the http(s) `url` (see `refscan.backends.url_owner`)."""
    from .backends import url_owner
    from .options import Options

    return url_owner(url, options if options is not None else Options())


_lookup: Callable[[str], type[Backend]] | None = None


def shown(text: str) -> str:
    """A malformed reference as error messages quote it: redacted, and not at all when it holds an '@' (user
    info that could not be told apart, e.g. a secret key with a '/' in `s3://KEY:SECRET@bucket`)."""
    if "@" in text:
        return "(not shown: it has an '@' and may hold credentials)"
    return repr(redact(text))


def redact(text: str) -> str:
    """`text` with URL credentials removed: no `user:pass@`, signature query values replaced by REDACTED.

    Only http(s) query strings are rewritten; other `scheme://user:pass@...` lose their user info (unsupported
    schemes are echoed in errors). Non-URL strings pass through unchanged. Used for every ref, log event, error
    and progress line.
    """
    m = _SCHEME_RE.match(text)
    if m is None:
        return text
    if m.group(1).lower() not in ("http", "https"):
        return _USERINFO_RE.sub(r"\1", text)  # scheme://user:pass@host/... -> scheme://host/...
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_QUERY_PARAMS for k, _ in pairs):
            query = urlencode([(k, REDACTED if k.lower() in SECRET_QUERY_PARAMS else v) for k, v in pairs], safe="/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
