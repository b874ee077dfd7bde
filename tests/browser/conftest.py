"""Real-browser fixtures: Debian's Chromium driven by Playwright, a test site on its own origin, a gateway.

The site is served as http://localhost:PORT and the gateway as http://127.0.0.1:PORT:
two different sites, as www.example.com and consent.example.com are for a browser,
so the banner's calls are cross-origin (CORS) and its cookie is not sent cross-site.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext

from harness import UA_CHROME, GatewayProcess, free_port
from testsite import DESKTOP, EmbeddingSite, Visit, handler, start_gateway


@pytest.fixture(scope="session")
def site() -> Iterator[EmbeddingSite]:
    embedding_site = EmbeddingSite(port=free_port())
    server = ThreadingHTTPServer(("127.0.0.1", embedding_site.port), handler(embedding_site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield embedding_site
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gw(site: EmbeddingSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway per test module, serving the banner for the test site's origin."""
    process = start_gateway(tmp_path_factory.mktemp("browser-gw"), site)
    yield process
    process.kill()



@pytest.fixture
def visit(browser: Browser) -> Iterator:
    """visit(**context options) -> Visit; every context is closed after the test."""
    contexts: list[BrowserContext] = []

    def open_visit(**options: Any) -> Visit:
        context = browser.new_context(**{"user_agent": UA_CHROME, "viewport": DESKTOP, "locale": "nl-NL", **options})
        contexts.append(context)
        v = Visit(context, context.new_page())
        context.on("request", v.on_request)
        context.on("response", v.on_response)
        return v

    yield open_visit
    for context in contexts:
        context.close()
