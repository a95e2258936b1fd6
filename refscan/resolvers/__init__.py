"""Scheme → resolver registry with lazy imports, so a missing backend library costs nothing until used."""

from __future__ import annotations

import importlib

from ..errors import MissingDependency, UnsupportedScheme
from .base import ObjectInfo, Resolver

__all__ = ["ObjectInfo", "Resolver", "resolver_class"]

# scheme: (module, class name, the distribution that provides the backend)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "s3": ("refscan.resolvers.s3", "S3Resolver", "aioboto3"),
    "gs": ("refscan.resolvers.gcs", "GCSResolver", "gcsfs"),
    "http": ("refscan.resolvers.http", "HTTPResolver", "aiohttp"),
    "https": ("refscan.resolvers.http", "HTTPResolver", "aiohttp"),
    "file": ("refscan.resolvers.file", "FileResolver", "refscan"),
}


def resolver_class(scheme: str) -> type[Resolver]:
    """The resolver class for `scheme`; raises `UnsupportedScheme` or `MissingDependency` (with a hint)."""
    try:
        module_name, class_name, dist = _REGISTRY[scheme]
    except KeyError:
        raise UnsupportedScheme(f"no resolver for scheme {scheme!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependency(
            f"{scheme}:// needs the {dist!r} package ({exc.name or exc}): pip install {dist}"
        ) from exc
    cls: type[Resolver] = getattr(module, class_name)
    return cls
