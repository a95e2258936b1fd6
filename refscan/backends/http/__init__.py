"""The `http://` / `https://` backend.

`backend.py` holds `HTTPBackend` (URIs, codec, `stat`, `read`), `client.py` the aiohttp session and the one
request path (redirects, retries, error table), `routing.py` the proxy and netrc lookups per host, `headers.py`
what response headers mean.
"""

from .backend import HTTPBackend

__all__ = ["HTTPBackend"]
