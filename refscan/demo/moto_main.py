"""Run moto's S3 as a keep-alive WSGI app under waitress (needs the ``demo`` extra).

    python -m refscan.demo.moto_main --port 0

Prints ``LISTENING <port>`` on stdout once the socket is bound.

Two waitress 3.0.x fixes:

1. ``Expect: 100-continue`` with ``Content-Length: 0`` (botocore sends it for an empty PutObject) hangs:
   the parser marks the request complete (no body), then the channel sends ``100 Continue`` and resets
   ``request.completed = False``, so the request is never dispatched. ``send_continue`` is patched to keep a
   complete request complete (the ``100 Continue`` is still sent; see the function for why).
2. moto reads the undecoded path from ``environ["RAW_URI"]`` (a gunicorn/werkzeug key) which waitress does not
   set; without it keys containing ``%3F``/``%23``/``%2F`` are mangled. A middleware copies waitress's
   ``REQUEST_URI`` (the raw request-target) into ``RAW_URI``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def patch_waitress_expect_continue() -> None:
    """Answer ``Expect: 100-continue`` on a body-less request with ``100 Continue`` + the response.

    waitress's ``HTTPChannel.send_continue`` sets ``request.completed = False`` so that it waits for the body;
    when there is no body (Content-Length: 0) the request was already complete and is then never dispatched.
    Keep it complete. We still send the interim ``100 Continue`` (as S3 does): botocore mishandles a final
    response that arrives *instead of* ``100 Continue`` (it keeps that response's status line for the next
    request on the keep-alive connection, which then stalls until the read timeout).
    """
    from waitress.channel import HTTPChannel

    original = HTTPChannel.send_continue
    if getattr(original, "_refscan_patched", False):
        return

    def send_continue(self: Any) -> None:
        request = self.request
        already_complete = bool(request is not None and request.completed)
        original(self)
        if already_complete:
            request.completed = True

    send_continue._refscan_patched = True  # type: ignore[attr-defined]
    HTTPChannel.send_continue = send_continue


def raw_uri_middleware(app: WSGIApp) -> WSGIApp:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "RAW_URI" not in environ:
            raw = environ.get("REQUEST_URI")
            if raw is None:  # rebuild from the (latin-1 decoded) path
                from urllib.parse import quote

                raw = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/")
                if environ.get("QUERY_STRING"):
                    raw += "?" + environ["QUERY_STRING"]
            environ["RAW_URI"] = raw
        return app(environ, start_response)

    return wrapped


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args(argv)

    import waitress
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    patch_waitress_expect_continue()
    app = raw_uri_middleware(DomainDispatcherApplication(create_backend_app))
    server = waitress.create_server(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        connection_limit=1000,
        channel_timeout=300,
        ident="moto-waitress",
        clear_untrusted_proxy_headers=True,
    )
    print(f"LISTENING {server.effective_port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
