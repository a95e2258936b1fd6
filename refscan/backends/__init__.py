"""The backend registry: URI scheme → backend class, imported on first use (docs/architecture.md, Backends).

Built-in backends are listed below; third-party packages add theirs with `register_backend` or through the
`refscan.backends` entry-point group (`s3x = "mypkg.backend:S3XBackend"`), read once on the first lookup of a
scheme not registered here. A backend whose library is missing raises `MissingDependency` with the pip
command when its scheme is first used.

One rule routes http(s) URLs: a backend registered with `claims` (a light `"module:function"` that imports no
SDK, called as `function(url, backend_options)`) owns the URLs it claims (Azure: `*.blob.core.windows.net`
and the configured endpoint); every other http(s) URL is the HTTP backend's.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..errors import MissingDependency, UnsupportedScheme
from .base import Backend, BucketBackend

__all__ = ["Backend", "BucketBackend", "backend_class", "register_backend", "registered_schemes", "url_owner"]

ENTRY_POINT_GROUP = "refscan.backends"


@dataclass(frozen=True)
class _Registration:
    target: str | type[Backend]  # "module:Class" or the class itself
    install: str | None  # what to pip install when the import fails


_REGISTRY: dict[str, _Registration] = {
    "s3": _Registration("refscan.backends.s3:S3Backend", "aiobotocore"),
    "gs": _Registration("refscan.backends.gcs:GCSBackend", "gcsfs"),
    "http": _Registration("refscan.backends.http:HTTPBackend", "aiohttp"),
    "https": _Registration("refscan.backends.http:HTTPBackend", "aiohttp"),
    "file": _Registration("refscan.backends.file:FileBackend", None),
    "az": _Registration("refscan.backends.azure.backend:AzureBackend", "refscan[azure]"),
}
#: scheme -> (claim function as "module:function" or callable, name of its `Options` field): http(s) URLs it owns
_URL_CLAIMS: dict[str, tuple[str | Callable[[str, Any], bool], str]] = {
    "az": ("refscan.backends.azure.config:claims", "azure"),
}
_LOADED: dict[str, type[Backend]] = {}
_LOCK = threading.Lock()
_entry_points_read = False


def register_backend(
    scheme: str,
    target: str | type[Backend],
    *,
    install: str | None = None,
    claims: str | Callable[[str, Any], bool] | None = None,
    options_field: str = "",
) -> None:
    """Serve `scheme://` URIs with `target`: a Backend subclass or its import path `"module:Class"`.

    `install` names what to `pip install` when importing `target` fails. `claims` (`"module:function"` or a
    callable) makes the backend own the http(s) URLs for which `claims(url, getattr(options, options_field))`
    is true. Registering a scheme again replaces the earlier backend (for URIs parsed from then on).
    """
    scheme = scheme.lower()
    with _LOCK:
        _REGISTRY[scheme] = _Registration(target, install)
        _LOADED.pop(scheme, None)
        if claims is not None:
            _URL_CLAIMS[scheme] = (claims, options_field)


def url_owner(url: str, options: Any) -> str | None:
    """The scheme of the backend that claims the http(s) `url` under `options` (a `refscan.Options`), or None
    (the HTTP backend's). A claim function whose module cannot be imported claims nothing."""
    for scheme, (claim, field) in list(_URL_CLAIMS.items()):
        if isinstance(claim, str):
            module_name, _, name = claim.partition(":")
            try:
                claim = getattr(importlib.import_module(module_name), name)
            except (ImportError, AttributeError):
                continue
            _URL_CLAIMS[scheme] = (claim, field)
        if claim(url, getattr(options, field) if field else options):
            return scheme
    return None


def registered_schemes() -> tuple[str, ...]:
    """Every scheme with a backend, built-in, registered or from entry points."""
    _read_entry_points()
    return tuple(sorted(_REGISTRY))


def backend_class(scheme: str) -> type[Backend]:
    """The backend class for `scheme`; raises `UnsupportedScheme` or `MissingDependency` (with a hint)."""
    scheme = scheme.lower()
    cls = _LOADED.get(scheme)
    if cls is not None:
        return cls
    registration = _REGISTRY.get(scheme)
    if registration is None:
        _read_entry_points()
        registration = _REGISTRY.get(scheme)
    if registration is None:
        known = ", ".join(f"{s}://" for s in registered_schemes())
        raise UnsupportedScheme(f"unsupported scheme {scheme!r}: refscan reads {known} and local paths")
    cls = _load(scheme, registration)
    with _LOCK:
        _LOADED[scheme] = cls
    return cls


def _load(scheme: str, registration: _Registration) -> type[Backend]:
    target = registration.target
    if not isinstance(target, str):
        return target
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = registration.install or exc.name or module_name
        raise MissingDependency(
            f"{scheme}:// needs the {package!r} package ({exc.name or exc}): pip install {package}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise UnsupportedScheme(f"{target!r}, registered for {scheme}://, is not a refscan Backend class")
    return cls


def _read_entry_points() -> None:
    """Add the `refscan.backends` entry points (once); built-in and explicit registrations win."""
    global _entry_points_read
    with _LOCK:
        if _entry_points_read:
            return
        _entry_points_read = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _REGISTRY.setdefault(ep.name.lower(), _Registration(ep.value, ep.dist.name if ep.dist else None))
