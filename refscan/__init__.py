"""refscan: track datasets and models in external object stores by reference (docs/behaviour.md, Public API)."""

from .artifact import Artifact
from .backends import Backend, BucketBackend, register_backend
from .download import adownload, download
from .errors import (
    AccessDenied,
    BackendError,
    ChecksumMismatch,
    DownloadError,
    InvalidInventory,
    InvalidName,
    InvalidSource,
    InvalidURI,
    ManifestError,
    MissingDependency,
    NotFound,
    PathConflict,
    RefscanError,
    SealedGroup,
    SourceChanged,
    StoreError,
    TooManyObjects,
    TypeConflict,
    UnsafePath,
    UnsupportedScheme,
)
from .guard import GuardReport, GuardResult, HoldResult, aguard, guard
from .manifest import EntryBatch, Manifest, ManifestEntry
from .meta import ObjectMeta
from .options import AzureOptions, GCSOptions, HTTPOptions, Options, RetryPolicy, S3Options
from .scan import DEFAULT_MAX_OBJECTS, Scanner, ScanRequest, ascan, iter_scan, scan
from .session import Session
from .sources import open_source
from .store import ArtifactVersion, FileRow, LineageRow, Store
from .uri import RefURI
from .verify import VerifyReport, VerifyResult, averify, verify

__all__ = [
    "DEFAULT_MAX_OBJECTS",
    "AccessDenied",
    "Artifact",
    "ArtifactVersion",
    "AzureOptions",
    "Backend",
    "BackendError",
    "BucketBackend",
    "ChecksumMismatch",
    "DownloadError",
    "EntryBatch",
    "FileRow",
    "GCSOptions",
    "GuardReport",
    "GuardResult",
    "HTTPOptions",
    "HoldResult",
    "InvalidInventory",
    "InvalidName",
    "InvalidSource",
    "InvalidURI",
    "LineageRow",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "MissingDependency",
    "NotFound",
    "ObjectMeta",
    "Options",
    "PathConflict",
    "RefURI",
    "RefscanError",
    "RetryPolicy",
    "S3Options",
    "ScanRequest",
    "Scanner",
    "SealedGroup",
    "Session",
    "SourceChanged",
    "Store",
    "StoreError",
    "TooManyObjects",
    "TypeConflict",
    "UnsafePath",
    "UnsupportedScheme",
    "VerifyReport",
    "VerifyResult",
    "adownload",
    "aguard",
    "ascan",
    "averify",
    "download",
    "guard",
    "iter_scan",
    "open_source",
    "register_backend",
    "scan",
    "verify",
]
__version__ = "0.1.0"
