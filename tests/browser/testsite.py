"""The test site (its own origin, embedding the banner), its gateway config, and a recorded browser visit."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import BrowserContext, Locator, Page, Request, Response

from harness import CHROMIUM, CHROMIUM_ARGS, GatewayProcess, write_config  # noqa: F401 - re-exported for bench/
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
CSP_NONCE = "cg-test-nonce-4f1d"

# What the gated snippets leave behind when they run: a counter on window and a cookie.
MARKETING_JS = "window.marketingRuns = (window.marketingRuns || 0) + 1; document.cookie = '_fbp_test=1; path=/';"
PAGE = """<!doctype html>
<html{lang_attr}><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Voorbeeldwinkel</title>
{csp_probe}<script src="{gateway}/s/{site}/banner.js" defer{nonce}></script>
<style{nonce}>body {{ margin: 0; font: 17px/1.6 Georgia, serif; color: #2d2a26; background: #faf7f2; }}
header {{ padding: 18px 32px; background: #3b2f2f; color: #f5efe6; }} header a {{ color: #f5efe6; }}
main {{ max-width: 760px; margin: 0 auto; padding: 24px 32px; }} h1 {{ font-size: 34px; }}</style>
</head><body>
<header><strong>Voorbeeldwinkel</strong> &middot; <a href="/">Home</a> &middot; <a href="/producten">Producten</a></header>
<main><h1>Duurzame koffie, vers gebrand</h1>
<p>Kies uit onze bonen uit Ethiopi&euml;, Colombia en Sumatra. Elke week vers gebrand in Utrecht en binnen twee dagen bezorgd.</p>
<p><button id="page-button" type="button">Voeg toe aan winkelwagen</button> <span id="page-output"></span></p>
<p>Gratis verzending vanaf 25 euro. Niet tevreden? Binnen 30 dagen geld terug.</p>
<p>Onze branderij werkt met kleine boerencoöperaties en betaalt een vaste meerprijs per kilo.
Zo weet u precies waar uw koffie vandaan komt.</p></main>
<script{nonce}>document.getElementById('page-button').addEventListener('click', function () {{
  document.getElementById('page-output').textContent = 'added'; }});</script>
<script type="text/plain" data-category="analytics"{nonce}>window.analyticsRuns = (window.analyticsRuns || 0) + 1;
document.cookie = '_ga=GA1.1.42; path=/'; document.cookie = '_ga_TEST=GS1.1; path=/';</script>
<script type="text/plain" data-category="marketing" data-src="/marketing.js"{nonce}></script>
<script type="text/plain" data-category="preferences"{nonce}>window.preferencesRuns = (window.preferencesRuns || 0) + 1;</script>
</body></html>
"""
# Under the strict CSP page: record any violation, so a test can prove there were none.
CSP_PROBE = ('<script nonce="{n}">window.cspViolations = []; document.addEventListener("securitypolicyviolation", '
             'function (e) {{ window.cspViolations.push(e.violatedDirective + " " + e.blockedURI); }});</script>\n')


@dataclass
class EmbeddingSite:
    """The embedding website: every path is a page with the banner tag and gated scripts.
    Query: ?lang=xx sets <html lang>, ?csp=1 serves it under a strict Content-Security-Policy."""

    port: int
    gateway: str = ""  # the gateway's base URL; set by the `gw` fixture
    site: str = "demo"
    hooks: list[bytes] = field(default_factory=list)  # bodies the gateway's webhook vendor delivered

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def page(self, query: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
        lang = query.get("lang", [""])[0]
        csp = query.get("csp", [""])[0] == "1"
        body = PAGE.format(
            lang_attr=f' lang="{html.escape(lang)}"' if lang else "",
            gateway=self.gateway, site=self.site,
            nonce=f' nonce="{CSP_NONCE}"' if csp else "",
            csp_probe=CSP_PROBE.format(n=CSP_NONCE) if csp else "",
        )
        headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
        if csp:
            headers["Content-Security-Policy"] = (
                f"default-src 'none'; script-src {self.gateway} 'nonce-{CSP_NONCE}'; "
                f"style-src 'nonce-{CSP_NONCE}'; connect-src {self.gateway}; img-src 'self'")
        return body, headers


def handler(site: EmbeddingSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            if parts.path == "/marketing.js":
                self._send(200, MARKETING_JS.encode(), {"Content-Type": "text/javascript"})
            elif parts.path == "/favicon.ico":
                self._send(404, b"", {})
            else:
                body, headers = site.page(parse_qs(parts.query))
                self._send(200, body.encode(), headers)

        def do_POST(self) -> None:  # noqa: N802
            site.hooks.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self._send(204, b"", {})

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def site_config(site: EmbeddingSite, **overrides: Any) -> dict[str, Any]:
    """The demo site as a site owner would configure it for this test site."""
    return {
        "origins": [site.origin],
        "policy_version": 1,
        "policy_url": site.url("/privacy"),
        "controller": "Voorbeeldwinkel B.V.",
        "languages": ["nl", "en"],
        "cookies": {"analytics": ["_ga", "_ga_*"], "marketing": ["_fbp*"]},
        "consent_mode": True,
        "vendors": [{"name": "Voorbeeld CRM", "category": "marketing", "type": "webhook", "url": site.url("/hook")}],
        **overrides,
    }


def start_gateway(folder: Any, site: EmbeddingSite, **overrides: Any) -> GatewayProcess:
    gw = GatewayProcess(write_config(folder, sites={site.site: site_config(site, **overrides)}), folder).start()
    site.gateway = gw.url
    return gw


@dataclass
class Visit:
    """One visitor: a fresh browser profile and a page, with every call to the gateway recorded."""

    context: BrowserContext
    page: Page
    requests: list[Request] = field(default_factory=list)
    collect_results: list[str] = field(default_factory=list)  # X-Consentgate-Result of each page view
    storage_key: str = "consentgate:demo"  # where the banner keeps the site's decision

    def on_request(self, request: Request) -> None:
        if "/s/" in request.url:
            self.requests.append(request)

    def on_response(self, response: Response) -> None:
        if response.url.endswith("/collect"):
            self.collect_results.append(response.headers.get("x-consentgate-result", ""))

    def collects(self) -> list[Request]:
        return [r for r in self.requests if r.url.endswith("/collect")]

    def banner(self) -> Locator:
        return self.page.locator(".cg-banner")

    def settings_layer(self) -> Locator:
        return self.page.locator(".cg-panel")

    def click_and_wait_consent(self, name: str, scope: str = ".cg-banner") -> dict[str, Any]:
        """Clicks a banner button and returns the gateway's answer to the consent POST,
        once the banner has stored and applied it."""
        with self.page.expect_response(lambda r: r.url.endswith("/consent") and r.request.method == "POST") as answer:
            self.page.locator(scope).get_by_role("button", name=name, exact=True).click()
        decision = answer.value.json()
        self.page.wait_for_function("([key, token]) => (JSON.parse(localStorage.getItem(key)) || {}).token === token",
                                    arg=[self.storage_key, decision["token"]])
        return decision

    def wait_for_collects(self, count: int, timeout: float = 5000) -> None:
        waited = 0.0
        while len(self.collect_results) < count and waited < timeout:
            self.page.wait_for_timeout(50)  # also lets Playwright deliver the response events
            waited += 50
        assert len(self.collect_results) >= count, f"{len(self.collect_results)} page views answered, wanted {count}"

    def settle(self, ms: int = 300) -> None:
        """Gives the page time to send anything it would send (used before asserting nothing was sent)."""
        self.page.wait_for_timeout(ms)
