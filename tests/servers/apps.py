"""Run small aiohttp apps (custom HTTP behaviour: 405 on HEAD, redirects, flaky servers...) for tests.

The runner lives in `refscan.demo.servers`; use it as a context manager or through the fixture:

    with serve_app(app) as base_url: ...
    def test_x(serve_app): url = serve_app(app)      # factory; every app is stopped after the test
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web

from refscan.demo.servers import serve_app

__all__ = ["serve_app", "serve_app_fixture"]


@pytest.fixture(name="serve_app")
def serve_app_fixture() -> Iterator[Callable[[web.Application], str]]:
    """Factory: ``serve_app(app) -> base_url``; every app started in the test is stopped after it."""
    with contextlib.ExitStack() as stack:

        def start(app: web.Application) -> str:
            return stack.enter_context(serve_app(app))

        yield start
