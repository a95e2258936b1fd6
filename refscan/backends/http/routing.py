"""Proxy and ~/.netrc settings from the environment, looked up once per (scheme, host).

aiohttp's `trust_env=True` reads them again on every request, in two thread-pool hops (the proxy lookup and
the netrc lookup); that was most of refscan's client CPU per HEAD. `Routes` asks the same aiohttp helpers
(`get_env_proxy_for_url`, `netrc_from_env`, `basicauth_from_netrc`) once per (scheme, host), in a worker
thread, and keeps the answer for the life of the backend; requests then go out with `trust_env=False` and an
explicit proxy and Authorization header. What is honoured is therefore what `trust_env=True` honours:

- `HTTP_PROXY` / `HTTPS_PROXY` (either case, urllib's `getproxies`), except for hosts `NO_PROXY` matches
  (urllib's `proxy_bypass`). aiohttp ignores `https://` proxy URLs. Credentials in the proxy URL, else the
  netrc entry of the proxy host, are sent as `Proxy-Authorization`.
- `~/.netrc`, or the file `$NETRC` names: the login and password of a host (or the `default` entry), used as
  basic auth when a request carries no credentials of its own.

Changes to the environment or the netrc file after a host's first request are not seen by that backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TypeAlias

from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from yarl import URL

from ...events import logger
from ...uri import redact

_Key: TypeAlias = tuple[str, str | None]


@dataclass(frozen=True)
class Route:
    """How requests to one (scheme, host) go out. The credentials are header values, left out of `repr`."""

    #: the proxy to send through (its credentials removed), or None to connect directly
    proxy: URL | None = None
    #: `Proxy-Authorization` value for `proxy`
    proxy_authorization: str | None = field(default=None, repr=False)
    #: `Authorization` value from the netrc entry of the host
    netrc_authorization: str | None = field(default=None, repr=False)


#: No proxy, no netrc credentials: every host when `HTTPOptions.trust_env` is False.
DIRECT = Route()


def resolve(url: URL) -> Route:
    """The route of `url`'s scheme and host from the environment. Blocking (reads files): run it in a thread.

    Raises `ValueError` when the environment holds something unusable (e.g. a malformed proxy URL)."""
    try:
        proxy, proxy_auth = get_env_proxy_for_url(url)
    except LookupError:  # no proxy for this scheme, or NO_PROXY matches the host
        proxy, proxy_auth = None, None
    netrc_auth = None
    if url.host is not None:
        try:
            netrc_auth = basicauth_from_netrc(netrc_from_env(), url.host)
        except LookupError:  # no netrc file, or no entry for the host
            netrc_auth = None
    return Route(
        proxy=proxy,
        proxy_authorization=proxy_auth.encode() if proxy_auth is not None else None,
        netrc_authorization=netrc_auth.encode() if netrc_auth is not None else None,
    )


class Routes:
    """`resolve` cached per (scheme, host); concurrent first requests to a host share one lookup, logged once
    as `http.route` (the proxy without credentials, whether netrc had an entry). A failed lookup is not cached
    (the next request to that host tries again). Use on one event loop."""

    def __init__(self) -> None:
        self._known: dict[_Key, Route] = {}
        self._pending: dict[_Key, asyncio.Future[Route]] = {}

    def cached(self, url: URL) -> Route | None:
        """The route of `url` if it has been resolved already."""
        return self._known.get((url.scheme, url.host))

    async def get(self, url: URL) -> Route:
        """The route of `url`: from the cache, else resolved in the default executor. Raises what `resolve`
        raises. Cancelling one waiter does not cancel the lookup others wait for."""
        key = (url.scheme, url.host)
        route = self._known.get(key)
        if route is not None:
            return route
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().run_in_executor(None, resolve, url)
            self._pending[key] = pending

            def settle(done: asyncio.Future[Route]) -> None:
                self._pending.pop(key, None)
                if not done.cancelled() and done.exception() is None:  # exception(): retrieved, never unraised
                    route = self._known[key] = done.result()
                    logger().debug(
                        "http.route",
                        scheme=key[0],
                        host=key[1],
                        proxy=redact(str(route.proxy)) if route.proxy is not None else None,
                        netrc=route.netrc_authorization is not None,
                    )

            pending.add_done_callback(settle)
        return await asyncio.shield(pending)
