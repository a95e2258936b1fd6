"""refscan: track datasets and models in external object stores by reference (see SPEC §1)."""

from .artifact import Artifact
from .download import adownload, download
from .errors import (
    AccessDenied,
    BackendError,
    ChecksumMismatch,
    DownloadError,
    InvalidName,
    InvalidURI,
    ManifestError,
    MissingDependency,
    NotFound,
    PathConflict,
    RefscanError,
    SealedGroup,
    SourceChanged,
    TooManyObjects,
    TypeConflict,
    UnsafePath,
    UnsupportedScheme,
)
from .manifest import Manifest, ManifestEntry
from .options import GCSOptions, HTTPOptions, Options, S3Options
from .scan import DEFAULT_MAX_OBJECTS, Scanner, ScanRequest, ascan, iter_scan, scan
from .store import ArtifactVersion, FileRow, LineageRow, Store
from .uri import RefURI
from .verify import VerifyReport, VerifyResult, averify, verify

__all__ = [
    "DEFAULT_MAX_OBJECTS",
    "AccessDenied",
    "Artifact",
    "ArtifactVersion",
    "BackendError",
    "ChecksumMismatch",
    "DownloadError",
    "FileRow",
    "GCSOptions",
    "HTTPOptions",
    "InvalidName",
    "InvalidURI",
    "LineageRow",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "MissingDependency",
    "NotFound",
    "Options",
    "PathConflict",
    "RefURI",
    "RefscanError",
    "S3Options",
    "ScanRequest",
    "Scanner",
    "SealedGroup",
    "SourceChanged",
    "Store",
    "TooManyObjects",
    "TypeConflict",
    "UnsafePath",
    "UnsupportedScheme",
    "VerifyReport",
    "VerifyResult",
    "adownload",
    "ascan",
    "averify",
    "download",
    "iter_scan",
    "scan",
    "verify",
]
__version__ = "0.1.0"
