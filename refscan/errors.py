"""The refscan error tree: every exception refscan raises on purpose derives from `RefscanError`.

Backend exceptions (botocore, gcsfs, aiohttp, OSError) are translated by the resolvers; they never reach
users. Messages name the reference in its redacted form and say what to do next.
"""

from __future__ import annotations


class RefscanError(Exception):
    """Base of every error refscan raises on purpose."""


class InvalidURI(RefscanError, ValueError):
    """A reference string that cannot be parsed (raised before any network call)."""


class UnsupportedScheme(InvalidURI):
    """A URI whose scheme refscan has no resolver for."""


class MissingDependency(RefscanError, ImportError):
    """The backend library for a scheme is not installed; the message carries the pip command."""


class NotFound(RefscanError, FileNotFoundError):
    """The object, version, folder or bucket does not exist (or the folder is empty)."""


class NotConfigured(NotFound):
    """A bucket or object has no such configuration: no lifecycle rules, no Object Lock, no hold set."""


class Unsupported(RefscanError):
    """The store cannot do that for this object (a hold on a bucket without Object Lock, on an HTTP URL)."""


class AccessDenied(RefscanError, PermissionError):
    """The store refused the request; the message says which permission is likely missing."""


class TooManyObjects(RefscanError, ValueError):
    """A folder holds more objects than `max_objects`; nothing was returned or added."""


class BackendError(RefscanError):
    """The store could not be reached or kept failing after retries (network, throttling, 5xx)."""


class ResumeRefused(BackendError):
    """A read that dropped mid-body could not resume on the same bytes: the object changed since the read
    began, or the server gives no validator to pin them. Reading again from the start may succeed."""


class InvalidName(RefscanError, ValueError):
    """An artifact name or entry path that breaks the naming rules."""


class UnsafePath(RefscanError, ValueError):
    """An entry path that would escape its root (`..`, absolute, NUL) or cannot be named safely."""


class PathConflict(RefscanError, ValueError):
    """Two entries claim the same path (or a file and a folder share one) with different content."""


class ManifestError(RefscanError, ValueError):
    """A manifest file that is not valid W&B v1 JSON or holds fields of the wrong type."""


class ChecksumMismatch(RefscanError):
    """Bytes read from the store do not match the fingerprint recorded in the manifest."""


class DownloadError(RefscanError):
    """Some entries could not be downloaded; `failures` maps each path to its error."""

    def __init__(self, message: str, failures: dict[str, RefscanError]) -> None:
        super().__init__(message)
        self.failures = failures


class TypeConflict(RefscanError, ValueError):
    """An artifact name logged with a type other than the one it was first logged with."""


class SealedGroup(RefscanError, ValueError):
    """An upsert into a parallel-writer group that `finish` has already sealed."""


class SourceChanged(RefscanError, ValueError):
    """A local file added to an artifact changed or vanished before the artifact was logged; re-add it."""


class InvalidInventory(RefscanError, ValueError):
    """An inventory that cannot be trusted or read: a manifest for another bucket, a data file missing or
    failing its checksum, an unknown file format, or a schema without the key, ETag and size columns."""


class InvalidSource(RefscanError, ValueError):
    """Text that names neither a manifest file nor a store version (`NAME:VER`)."""


class StoreError(RefscanError):
    """The store's database cannot be used: not a refscan store (corrupt, or another program's file), or the
    disk refused a write (full, file-size limit, I/O error). The message names the file."""


class CheckpointError(RefscanError, ValueError):
    """A checkpoint folder that is not a refscan checkpoint, is damaged, or belongs to other work."""
