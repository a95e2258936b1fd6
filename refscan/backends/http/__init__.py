"""The `http://` / `https://` backend (see `backend.py`)."""

from .backend import HTTPBackend

__all__ = ["HTTPBackend"]
