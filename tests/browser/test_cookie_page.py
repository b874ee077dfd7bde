"""The cookie declaration in a real Chromium: the gateway's page passes axe-core (nl and en, with and
without a choice, and with the banner it reopens), its "change my choice" button opens a working,
styled banner under the page's own strict CSP, and the embed fills a site's cookie policy page on the
site's own origin and reopens the banner from there.

axe-core comes from node_modules (package.json, `npm ci`); it is injected with Playwright's
add_script_tag in a context that bypasses the page's CSP (the page allows no inline script, rightly).
The CSP itself is checked in a normal context.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import ROOT, UA_CHROME, GatewayProcess, free_port, grant
from testsite import EmbeddingSite, start_gateway

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
EVIL = "<img src=x onerror=window.pwned=1>"
COOKIES = [
    {"name": "_ga", "category": "analytics", "purpose": {"nl": "Onderscheidt bezoekers", "en": "Tells visitors apart"},
     "lifetime": "2 jaar", "party": "first"},
    # Hostile text in English only: the Dutch page is the screenshot in docs/.
    {"name": "_fbp", "category": "marketing", "purpose": {"nl": "Advertenties", "en": f"Ads {EVIL}"},
     "lifetime": "90 dagen", "party": "third", "provider": "Meta"},
]
VENDOR = {"name": "Voorbeeld CRM", "category": "marketing", "type": "webhook", "url": "http://127.0.0.1:9/hook",
          "purpose": {"nl": "Klantbeheer", "en": "Customer care"}, "privacy_url": "https://crm.example.com/privacy"}
# A site's own cookie policy page: its words, then the gateway's declaration in one tag.
POLICY_PAGE = """<!doctype html>
<html lang="nl"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cookiebeleid</title><script src="{gateway}/s/demo/banner.js" defer></script></head>
<body><main><h1>Cookiebeleid</h1>{section}<p>Hieronder staat welke cookies wij gebruiken.</p>
<div id="consentgate-cookies"></div></main>
<script src="{gateway}/s/demo/cookies.js" defer></script></body></html>
"""
CSP_PROBE = ("window.cspViolations = []; document.addEventListener('securitypolicyviolation', "
             "function (e) { window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI); });")


@pytest.fixture(scope="module")
def policy_site() -> Iterator[EmbeddingSite]:
    """The site's policy page, served on its own origin (http://localhost:PORT) by a real HTTP server."""
    origin = EmbeddingSite(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            # /cookiebeleid?h2=1 puts the declaration under a section heading of the site's own.
            section = "<h2>Cookies</h2>" if "h2=1" in self.path else ""
            body = POLICY_PAGE.format(gateway=origin.gateway, section=section).encode()
            self.send_response(200 if self.path.startswith("/cookiebeleid") else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", origin.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield origin
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cookie_gw(policy_site: EmbeddingSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = start_gateway(tmp_path_factory.mktemp("cookie-page"), policy_site, cookie=COOKIES, vendors=[VENDOR])
    yield gw
    gw.kill()


def axe_violations(page, selector: str | None = None) -> list[dict]:
    """axe-core's violations on the page or one part of it (all rules it runs by default: WCAG 2.x A/AA
    and best practices)."""
    if not page.evaluate("!!window.axe"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("""sel => axe.run(sel || document).then(r => ({
        violations: r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.html)})),
        passes: r.passes.map(p => p.id)}))""", selector)
    # axe really looked at the content (a blank page has no contrast or table to check).
    assert {"color-contrast", "th-has-data-cells"} <= set(result["passes"]), result["passes"]
    return result["violations"]


@pytest.mark.parametrize(("lang", "with_choice", "title", "change"), [
    ("nl", False, "Cookieverklaring", "Keuze wijzigen"),
    ("en", True, "Cookie declaration", "Change my choice"),
])
def test_the_page_and_the_banner_it_reopens_pass_axe(cookie_gw, policy_site, browser, lang, with_choice, title, change):
    context = browser.new_context(bypass_csp=True, user_agent=UA_CHROME, locale="nl-NL")
    try:
        if with_choice:  # the visitor's own cookie, as the gateway set it: the page then lists the choice
            with cookie_gw.client() as c:
                token = grant(c, origin=policy_site.origin, analytics=True)["token"]
            context.add_cookies([{"name": "cg_consent", "value": token, "url": cookie_gw.url}])
        page = context.new_page()
        page.goto(f"{cookie_gw.url}/s/demo/cookies?lang={lang}")
        assert page.locator("html").get_attribute("lang") == lang
        assert page.get_by_role("heading", level=1).inner_text() == title
        assert (page.get_by_role("listitem").count() == 4) is with_choice
        assert axe_violations(page) == []
        assert page.evaluate("window.pwned") is None and (EVIL in page.inner_text("main")) is (lang == "en")
        page.get_by_role("button", name=change).click()
        page.locator(".cg-banner").wait_for(state="visible")
        assert axe_violations(page) == []
    finally:
        context.close()


def test_change_my_choice_opens_a_styled_working_banner_under_the_page_csp(cookie_gw, visit):
    v = visit()
    v.context.add_init_script(CSP_PROBE)
    v.page.goto(f"{cookie_gw.url}/s/demo/cookies?lang=nl")
    assert "default-src 'none'" in httpx.get(f"{cookie_gw.url}/s/demo/cookies").headers["content-security-policy"]
    assert "U heeft nog geen keuze gemaakt." in v.page.inner_text("main")
    v.page.get_by_role("button", name="Keuze wijzigen").click()
    v.banner().wait_for(state="visible")
    # The banner's own style applied (it is fixed at the bottom, not appended unstyled below the tables).
    assert v.banner().evaluate("b => getComputedStyle(b).position") == "fixed"
    decision = v.click_and_wait_consent("Weigeren")
    assert decision["choices"]["analytics"] is False
    v.page.reload()  # the page shows the choice just made (the gateway's cookie, on its own origin)
    assert "Statistieken: uit" in v.page.inner_text("main")
    assert v.page.evaluate("window.cspViolations") == []


def test_embed_fills_the_div_on_the_site_and_reopens_the_banner(cookie_gw, policy_site, visit):
    v = visit()
    v.page.goto(policy_site.url("/cookiebeleid"))
    declaration = v.page.locator("#consentgate-cookies")
    declaration.locator("table").first.wait_for()
    text = declaration.inner_text()
    for shown in ("cg_consent", "_ga", "Onderscheidt bezoekers", "2 jaar", "_fbp", "derde partij (Meta)",
                  "Voorbeeld CRM", "Klantbeheer", "U heeft nog geen keuze gemaakt."):
        assert shown in text, shown
    link = declaration.get_by_role("link", name="Privacyverklaring")
    assert link.get_attribute("href") == VENDOR["privacy_url"]
    assert axe_violations(v.page, "#consentgate-cookies") == []
    # Its category headings continue the page's outline: h2 under the h1 here, h3 under a section's h2.
    assert declaration.get_by_role("heading", level=2).all_inner_texts() == [
        "Noodzakelijk", "Voorkeuren", "Statistieken", "Marketing"]
    # The banner asks on the first visit; after a decision the embed shows it and reopens the banner.
    v.click_and_wait_consent("Weigeren")
    v.page.wait_for_function("document.getElementById('consentgate-cookies').innerText.includes('Statistieken uit')")
    assert v.banner().is_hidden()
    declaration.get_by_role("button", name="Keuze wijzigen").click()
    v.banner().wait_for(state="visible")
    assert v.page.evaluate("document.activeElement.className") == "cg-banner"


def test_embed_headings_follow_the_page_outline(cookie_gw, policy_site, visit):
    v = visit()
    v.page.goto(policy_site.url("/cookiebeleid?h2=1"))
    declaration = v.page.locator("#consentgate-cookies")
    declaration.locator("table").first.wait_for()
    assert declaration.get_by_role("heading", level=3).count() == 4
    assert declaration.get_by_role("heading", level=2).count() == 0
    assert axe_violations(v.page) == []  # the whole page: the site's outline and the embed together


def test_cookie_page_screenshot(cookie_gw, visit, tmp_path):
    """The screenshot in docs/; to refresh it, run with CONSENTGATE_SCREENSHOTS=docs/screenshots."""
    out = Path(os.environ.get("CONSENTGATE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    v = visit()
    v.page.goto(f"{cookie_gw.url}/s/demo/cookies?lang=nl")
    assert v.page.evaluate("document.documentElement.scrollWidth") <= v.page.viewport_size["width"]
    v.page.screenshot(path=str(out / "cookie-page-nl.png"), full_page=True)
