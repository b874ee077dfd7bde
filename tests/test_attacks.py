"""Issue 8's attacks on a real gateway: bad tokens beyond collect, CSRF, open redirects, security
headers on every HTML answer, and XSS through every stored field shown in the dashboard (real Chromium).

Bad tokens at collect (forged, moved, expired, old policy, no consent) are in
tests/test_collect_input.py::test_bad_tokens_are_no_consent_never_an_error; here the same kinds of
token meet the other routes that read a token. Brute force, sessions and per-site stats tokens are in
tests/test_security_auth.py.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from gateway.tokens import TokenSigner
from harness import SECRET, SITE_ORIGIN, STATS_TOKEN, UA_CHROME, grant, write_config

OTHER_ORIGIN = "https://www.other.example"
EVIL = "https://evil.example"
H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
SITES = {"demo": {"origins": [SITE_ORIGIN]}, "other": {"origins": [OTHER_ORIGIN]}}


def signed(site: str, policy: int, now_ms: int | None = None, secret: str = SECRET, cid: str = "c0ffee") -> str:
    """A token made the way another gateway, or an attacker holding an old token, would have it."""
    signer = TokenSigner((secret,), 182)
    return signer.dumps(signer.issue(cid, site, {"analytics": True, "marketing": True}, policy, now_ms))


# ---- tokens beyond collect -------------------------------------------------------------------------


def test_forged_moved_expired_and_old_policy_tokens_read_and_continue_nothing(module_gateway):
    with module_gateway.client() as c:
        moved = grant(c, site="other", origin=OTHER_ORIGIN, analytics=True)  # genuine, for another site
        c.cookies.clear()
        good = grant(c, analytics=True)["token"]
        c.cookies.clear()
        payload, sig = good.rsplit(".", 1)
        bad = {
            "forged (another secret)": signed("demo", 1, secret="an-attackers-guess-0123456789abcdef"),
            "tampered signature": payload + "." + sig[::-1],
            "moved (other site)": moved["token"],
            "expired": signed("demo", 1, now_ms=1_000),
            "old policy": signed("demo", 0),
        }
        for kind, token in bad.items():
            header = {**H, "X-Consent-Token": token}
            assert c.get("/s/demo/consent", headers=header).json()["choices"] is None, kind
            r = c.get("/s/demo/privacy/me", headers=header)
            assert r.status_code == 401 and "c0ffee" not in r.text and moved["consent_id"] not in r.text, (kind, r.text)
            fresh = c.post("/s/demo/consent", json={"choices": {"analytics": False}, "method": "custom", "consent": token},
                           headers=H).json()
            # a bad token buys no continuation of someone's consent id (and so none of their data)
            assert fresh["consent_id"] not in ("c0ffee", moved["consent_id"]), kind
            c.cookies.clear()


# ---- CSRF -----------------------------------------------------------------------------------------------
# Why SameSite=Lax plus the Origin check suffice on the consent and privacy routes:
# - cg_consent is SameSite=Lax: a browser attaches it to a cross-site request only on a top-level GET
#   navigation. A forged POST/DELETE from another site (form, fetch, sendBeacon) arrives without it,
#   and the token in the body or X-Consent-Token header is not ambient: the attacker's page lacks it.
# - Browsers send Origin with every cross-origin fetch and every form POST, and pages cannot change
#   it; the gateway answers 403 to any Origin the site does not list, before it reads or writes.
# - The one cross-site request that carries the cookie, a top-level GET navigation to /consent or
#   /privacy/me, changes nothing, and its answer opens in the visitor's own window: CORS lets only
#   the site's origins read answers, so the attacker cannot.
# The test below is stricter than a browser: it sends the visitor's cookie along with the forged Origin.


def test_a_foreign_origin_can_neither_decide_nor_read_nor_erase_for_a_visitor(make_gateway):
    gw = make_gateway(sites=SITES)
    with gw.client() as c:
        answer = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "method": "custom"}, headers=H)
        cookie = answer.headers["set-cookie"].lower()
        assert "samesite=lax" in cookie and "httponly" in cookie
        assert c.post("/s/demo/collect", json={"url": "https://www.example.com/before"}, headers=H
                      ).headers["x-consentgate-result"] == "stored"
        for origin in (EVIL, "null", OTHER_ORIGIN):  # another site of the same gateway is foreign too
            forged = {"Origin": origin, "User-Agent": UA_CHROME}
            attempts = {
                "consent": c.post("/s/demo/consent", json={"choices": {"analytics": True, "marketing": True},
                                                           "method": "accept_all"}, headers=forged),
                "read": c.get("/s/demo/consent", headers=forged),
                "withdraw": c.request("DELETE", "/s/demo/consent", headers=forged),
                "export": c.get("/s/demo/privacy/me", headers=forged),
                "erase": c.request("DELETE", "/s/demo/privacy/me", headers=forged),
            }
            for what, r in attempts.items():
                assert r.status_code == 403 and r.json()["error"] == "bad_origin", (origin, what, r.text)
                assert "set-cookie" not in r.headers and "access-control-allow-origin" not in r.headers
            preflight = c.options("/s/demo/consent", headers={"Origin": origin, "Access-Control-Request-Method": "DELETE"})
            assert preflight.headers.get("access-control-allow-origin") != origin
        assert c.get("/s/demo/consent", headers=H).json()["choices"]["analytics"] is True  # still consented
    gw.stop()
    assert gw.sql("SELECT action, method FROM {db}.consents") == [{"action": "grant", "method": "custom"}]
    assert gw.sql("SELECT path FROM {db}.events") == [{"path": "/before"}]


# ---- open redirects -----------------------------------------------------------------------------------


def test_login_and_logout_redirect_only_to_the_dashboard(module_gateway):
    own = module_gateway.url
    targets = [EVIL, "//evil.example", "/\\evil.example", "https:evil.example", "javascript:alert(1)"]
    with module_gateway.client() as c:
        for target in targets:
            query = "?" + urlencode({"next": target, "redirect": target, "return_to": target, "url": target})
            form = {"token": STATS_TOKEN, "next": target, "redirect": target}
            r = c.post("/dashboard/login" + query, data=form, headers={"Origin": own, "Referer": own + "/dashboard"})
            assert r.status_code == 303 and r.headers["location"] == "/dashboard", (target, r.headers)
            r = c.post("/dashboard/logout" + query, data={"next": target}, headers={"Origin": own})
            assert r.status_code == 303 and r.headers["location"] == "/dashboard", (target, r.headers)
        # no GET route answers with a redirect somewhere else, whatever the query says
        for path in ("/dashboard", "/s/demo/consent", "/s/demo/privacy/me", "/s/demo/banner.js"):
            r = c.get(path + "?" + urlencode({"next": EVIL, "redirect": EVIL, "url": EVIL}), headers={"Referer": EVIL})
            assert not 300 <= r.status_code < 400, (path, r.status_code)


# ---- security headers on every HTML answer ---------------------------------------------------------------


def get_routes(tmp_path: Path) -> list[str]:
    """Every GET route of the app, read from the app itself (so a route added later is covered)."""
    from gateway.app import create_app
    from gateway.config import load_config

    app = create_app(load_config(write_config(tmp_path, sites=SITES), env={}))
    paths = [r.path for r in app.routes if "GET" in (getattr(r, "methods", None) or ())]
    fill = {"site": "demo", "dimension": "page", "name": "dashboard.js", "consent_id": "c0ffee"}
    return [re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: fill.get(m.group(1), "x"), p) for p in paths]


def assert_secure_html(r: httpx.Response, what: str) -> None:
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp or "frame-ancestors 'self'" in csp, (what, csp)
    assert "default-src" in csp and "script-src" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0], (what, csp)
    assert r.headers.get("x-content-type-options") == "nosniff", what
    assert r.headers.get("referrer-policy") in ("no-referrer", "same-origin", "strict-origin-when-cross-origin"), what


def test_every_html_answer_has_the_security_headers(module_gateway, tmp_path):
    html_answers = 0
    with module_gateway.client() as anonymous, module_gateway.client() as logged_in:
        assert logged_in.post("/dashboard/login", data={"token": STATS_TOKEN}).status_code == 303
        failed = anonymous.post("/dashboard/login", data={"token": "wrong"})
        assert failed.status_code == 401 and failed.headers["content-type"].startswith("text/html")
        assert_secure_html(failed, "failed login")
        for path in get_routes(tmp_path):
            for client in (anonymous, logged_in):
                r = client.get(path, headers={"Accept": "text/html", "Origin": SITE_ORIGIN})
                assert r.status_code < 500, (path, r.status_code)
                if r.headers.get("content-type", "").startswith("text/html"):
                    assert_secure_html(r, path)
                    html_answers += 1
    assert html_answers >= 2  # the login page and the dashboard at least


# ---- XSS through every stored field, in the dashboard, in real Chromium ----------------------------------

XSS = {  # field -> a value that runs script if it is ever put into the page as HTML
    "page": "/<script>window.__xss='page'</script>",
    "utm_source": "<img src=x onerror=\"window.__xss='utm_source'\">",
    "utm_medium": "\"><svg onload=\"window.__xss='utm_medium'\">",
    "utm_campaign": "<script>window.__xss='utm_campaign'</script>",
    "event": "\"><img src=x onerror=\"window.__xss='event'\">",
    "browser": "<img src=x onerror=window.__xss=7>",
}
XSS_REFERRER = "https://evil.example/<script>window.__xss='referrer'</script>"
# ua-parser takes the product name of a CFNetwork app's User-Agent as the browser, markup included.
XSS_UA = XSS["browser"] + "/1.0 CFNetwork/1.0 Darwin/20.0"
PANELS = [("pages", "Pages", "page"), ("sources", "Referrers", "referrer_host"), ("sources", "UTM source", "utm_source"),
          ("sources", "UTM medium", "utm_medium"), ("sources", "Campaigns", "utm_campaign"),
          ("devices", "Browsers", "browser"), ("devices", "OS", "os"), ("events", "Custom events", "event")]


@pytest.fixture
def xss_gateway(make_gateway):
    gw = make_gateway()
    query = urlencode({"utm_source": XSS["utm_source"], "utm_medium": XSS["utm_medium"], "utm_campaign": XSS["utm_campaign"]})
    url = f"https://www.example.com{XSS['page']}?{query}"
    headers = {"Origin": SITE_ORIGIN, "User-Agent": XSS_UA}
    with gw.client() as c:
        token = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "method": "custom"}, headers=headers).json()["token"]
        for body in ({"type": "pageview", "url": url, "referrer": XSS_REFERRER, "consent": token},
                     {"type": "event", "name": XSS["event"], "url": url, "referrer": XSS_REFERRER, "consent": token}):
            assert c.post("/s/demo/collect", json=body, headers=headers).headers["x-consentgate-result"] == "stored"
    return gw


def breakdown(gw, dim: str) -> list[str]:
    r = httpx.get(f"{gw.url}/api/stats/demo/breakdown/{dim}", params={"limit": "8"},
                  headers={"Authorization": f"Bearer {STATS_TOKEN}"})
    return [row["value"] for row in r.json()["results"]]


def test_markup_in_every_stored_field_shows_as_text_in_the_dashboard(xss_gateway, browser):
    gw = xss_gateway
    for _ in range(100):  # the writer flushes every 0.2 s
        if breakdown(gw, "event"):
            break
        httpx.get(f"{gw.url}/healthz")
    for field, value in XSS.items():  # the store holds the markup as given: the dashboard has to cope
        assert value in breakdown(gw, field), (field, breakdown(gw, field))
    context = browser.new_context(user_agent=UA_CHROME, locale="en-US", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{gw.url}/dashboard")
    page.fill("#token", STATS_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_function("() => !document.body.classList.contains('loading') && document.querySelectorAll('.kpi').length === 6")
    for panel, tab, dim in PANELS:
        card = page.locator(f'[data-panel="{panel}"]')
        if card.locator(".tab").count():
            card.locator(f'.tab:text-is("{tab}")').click()
        card.locator(".row-value").first.wait_for()
        shown = card.locator(".row-value").all_inner_texts()
        assert shown == [v or "(none)" for v in breakdown(gw, dim)], (dim, shown)
        if dim in XSS:
            assert XSS[dim] in shown, (dim, shown)
    # a click on a row puts the value into a filter chip and the address: still text after a reload
    page.locator('[data-panel="events"] .row-btn').first.click()
    page.wait_for_selector(".chip")
    assert page.locator(".chip b").inner_text() == XSS["event"]
    page.reload()
    page.wait_for_selector(".chip")
    assert page.locator(".chip b").inner_text() == XSS["event"]
    assert page.evaluate("() => window.__xss") is None and dialogs == []
    assert page.locator("[data-panel] img, [data-panel] svg, [data-panel] script, .chip img, .chip script").count() == 0
    context.close()
