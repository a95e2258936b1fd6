"""`RefURI`: parsing and formatting of reference URIs (SPEC §3), and redaction of secrets for display.

Keys are taken as written (no percent-decoding); only a trailing `?versionId=…` (s3) or `?generation=<digits>`
/ `#<digits>` (gs) is a version. `file://` URIs follow RFC 8089 and are percent-decoded; a string without a
scheme is a local path. Parsing never touches the network.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .errors import InvalidURI, UnsupportedScheme

Scheme = Literal["s3", "gs", "http", "https", "file"]
SCHEMES: tuple[Scheme, ...] = ("s3", "gs", "http", "https", "file")

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,221}$")
_S3_VERSION_RE = re.compile(r"\?versionId=([^/?&#]+)$")
_GS_VERSION_RE = re.compile(r"(?:\?generation=|#)(\d+)$")

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
    """A parsed reference.

    - s3/gs: `bucket` and `key` (key may be empty = bucket root, or end in `/` = folder).
    - http(s): `bucket` is the host[:port], `key` the path; `url` is the URL exactly as given.
    - file: `bucket` is empty and `key` the absolute, percent-decoded local path.
    `version` is the pinned S3 version id or GCS generation (as a string), else None.
    """

    scheme: Scheme
    bucket: str
    key: str
    version: str | None = None
    url: str = field(default="", repr=False)  # may hold credentials: never in a repr

    @classmethod
    def parse(cls, text: str) -> RefURI:
        """Parse `text`; raises `InvalidURI` or `UnsupportedScheme` (subclass of InvalidURI)."""
        if not isinstance(text, str) or not text:
            raise InvalidURI("empty reference: expected s3://, gs://, http(s)://, file:// or a local path")
        if "\x00" in text:
            raise InvalidURI("reference contains a NUL byte")
        m = _SCHEME_RE.match(text)
        if m is None or len(m.group(1)) == 1:  # no scheme, or a Windows drive letter: a local path
            return cls("file", "", _normalize_local(text))
        scheme = m.group(1).lower()
        if scheme in ("s3", "gs"):
            return cls._parse_bucket_uri(scheme, text)  # type: ignore[arg-type]
        if scheme in ("http", "https"):
            return cls._parse_http(scheme, text)  # type: ignore[arg-type]
        if scheme == "file":
            return cls._parse_file(text)
        raise UnsupportedScheme(
            f"unsupported scheme {scheme!r} in {_shown(text)}: refscan reads s3://, gs://, http(s)://, file://"
        )

    @classmethod
    def _parse_bucket_uri(cls, scheme: Literal["s3", "gs"], text: str) -> RefURI:
        prefix = f"{scheme}://"
        shown = _shown(text)
        if text[: len(prefix)].lower() != prefix:
            raise InvalidURI(f"malformed {scheme} URI {shown}: expected {prefix}bucket/key")
        rest = text[len(prefix) :]
        bucket, _, key = rest.partition("/")
        version: str | None = None
        pattern = _S3_VERSION_RE if scheme == "s3" else _GS_VERSION_RE
        vm = pattern.search(key) if key else pattern.search(bucket)
        if vm is not None:
            version = vm.group(1)
            if key:
                key = key[: vm.start()]
            else:
                bucket = bucket[: vm.start()]
        if not _BUCKET_RE.match(bucket):
            if "@" in text:  # s3://KEY:SECRET@bucket/... (a secret may hold '/'): never echo any part of it
                raise InvalidURI(
                    f"malformed {scheme} URI {shown}: no valid bucket name; credentials do not belong in the URI "
                    "(use the standard credential chain or Options)"
                )
            raise InvalidURI(f"malformed {scheme} URI {shown}: {bucket!r} is not a valid bucket name")
        if version is not None and (not key or key.endswith("/")):
            raise InvalidURI(f"{shown}: a version can only pin an object, not a bucket or folder")
        return cls(scheme, bucket, key, version)

    @classmethod
    def _parse_http(cls, scheme: Literal["http", "https"], text: str) -> RefURI:
        try:
            parts = urlsplit(text)
            host = parts.hostname
            _ = parts.port  # validates the port
        except ValueError as exc:  # urllib's message may quote the netloc, user:password included
            detail = f": {exc}" if "@" not in text else ""
            raise InvalidURI(f"malformed URL {_shown(text)}{detail}") from None
        if not host or not parts.netloc:
            raise InvalidURI(f"malformed URL {_shown(text)}: no host")
        netloc = parts.netloc.rpartition("@")[2]
        return cls(scheme, netloc, parts.path or "/", None, text)

    @classmethod
    def _parse_file(cls, text: str) -> RefURI:
        try:
            parts = urlsplit(text)
        except ValueError as exc:  # e.g. an unbalanced '[' in the host part
            detail = f": {exc}" if "@" not in text else ""
            raise InvalidURI(f"malformed file URI {_shown(text)}{detail}") from None
        if parts.netloc not in ("", "localhost"):
            raise InvalidURI(f"file URI {_shown(text)} names a host: only local files are supported (file:///abs/path)")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidURI(f"file URI {_shown(text)} must hold an absolute path (file:///abs/path)")
        if "\x00" in path:
            raise InvalidURI("file URI decodes to a path with a NUL byte")
        return cls("file", "", _normalize_local(path))

    # -- formatting -----------------------------------------------------------------------------

    @property
    def is_http(self) -> bool:
        return self.scheme in ("http", "https")

    @property
    def is_folder(self) -> bool:
        """True when the URI itself says "folder": the bucket root or a key ending in `/`."""
        return not self.is_http and (self.key == "" or self.key.endswith("/"))

    def folder(self) -> RefURI:
        """The folder this URI names when read as a prefix (`key` + `/`); the bucket root stays as is."""
        if self.is_folder:
            return self
        return replace(self, key=self.key + "/", version=None)

    def child(self, key: str, version: str | None = None) -> RefURI:
        """The URI of object `key` in the same bucket (or file system)."""
        return replace(self, key=key, version=version, url="")

    def object_ref(self) -> str:
        """The manifest `ref` for this object: no version, secrets removed from URLs (SPEC §4)."""
        if self.is_http:
            return redact(self.url)
        if self.scheme == "file":
            return "file://" + quote(self.key, safe="/")
        return f"{self.scheme}://{self.bucket}/{self.key}"

    def __str__(self) -> str:
        """The URI in canonical form with its version; URLs are redacted."""
        if self.version is None:
            return self.object_ref()
        if self.scheme == "s3":
            return f"{self.object_ref()}?versionId={self.version}"
        return f"{self.object_ref()}#{self.version}"


def _shown(text: str) -> str:
    """A malformed reference as error messages quote it: redacted, and not at all when it holds an '@' (user
    info that could not be told apart, e.g. a secret key with a '/' in `s3://KEY:SECRET@bucket`)."""
    if "@" in text:
        return "(not shown: it has an '@' and may hold credentials)"
    return repr(redact(text))


def _normalize_local(path: str) -> str:
    """Absolute, normalized local path; a trailing separator (folder) is kept."""
    folder = path.endswith(("/", os.sep)) and len(path) > 1
    absolute = os.path.abspath(path)
    return absolute + "/" if folder and absolute != "/" else absolute


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
