"""Inventories as a listing and verification source: S3 Inventory (`manifest.json` + CSV.gz, Parquet or ORC
files, current-only or all versions) and GCS Storage Insights inventory reports (CSV with a header, Parquet).

`manifest.py` reads and checks manifests (pure), `files.py` fetches and checks the data files, `readers.py`
streams their rows through pyarrow (the `inventory` extra), `source.py` turns rows into `ObjectMeta` for scan
and verify, `columns.py` builds regular rows' entries column by column. For verify in bulk: `entries.py` holds
a manifest's entries as columns (read from a file or a store's rows in chunks, msgspec), `matching.py` finds
those the rows show unchanged, `verifying.py` keeps them as columns in the report. pyarrow (and msgspec) are
imported only when an inventory is opened.
"""

from .manifest import DataFile, InventoryManifest, parse_manifest
from .source import Index, Inventory

__all__ = ["DataFile", "Index", "Inventory", "InventoryManifest", "parse_manifest"]
