"""`gs://` backend: Google Cloud Storage (`backend.GCSBackend`) on its JSON API (`client`), with a fanned-out
listing (`listing`)."""

from __future__ import annotations

from .backend import GCSBackend

__all__ = ["GCSBackend"]
