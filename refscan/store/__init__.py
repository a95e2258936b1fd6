"""The embedded versioned artifact registry: `Store` (in `registry`), on one SQLite file (`db`) and
content-addressed copies of local files (`objects`)."""

from ..errors import SealedGroup, SourceChanged, TypeConflict
from .db import SCHEMA_VERSION
from .records import LATEST, ArtifactVersion, FileRow, LineageRow
from .registry import Store

__all__ = [
    "LATEST",
    "SCHEMA_VERSION",
    "ArtifactVersion",
    "FileRow",
    "LineageRow",
    "SealedGroup",
    "SourceChanged",
    "Store",
    "TypeConflict",
]
