"""GET /s/{site}/cookies, cookies.json, cookies.js against a real gateway: matches the config, nl and en,
every config text escaped, security headers on the HTML page."""
from __future__ import annotations

import pytest

from harness import SITE_ORIGIN, GatewayProcess, grant, write_config

EVIL = "<script>alert(1)</script>"
COOKIES = [
    {"name": "_ga", "category": "analytics", "purpose": {"nl": "Meet bezoeken", "en": "Measures visits"},
     "lifetime": "2 years", "party": "first"},
    {"name": "_fbp", "category": "marketing", "purpose_nl": f"Advertenties {EVIL}", "purpose_en": f"Ads {EVIL}",
     "lifetime": "90 days", "party": "third", "provider": "Meta"},
]
VENDOR = {"name": "crm", "category": "marketing", "type": "webhook", "url": "https://hooks.example.com/x",
          "purpose": {"nl": "Klantbeheer", "en": "Customer care"}, "privacy_url": "https://crm.example.com/privacy"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cookies")
    site = {"origins": [SITE_ORIGIN], "controller": "Voorbeeld B.V.", "cookies": {"preferences": ["lang"]},
            "cookie": COOKIES, "vendors": [VENDOR]}
    gateway = GatewayProcess(write_config(folder, sites={"demo": site}), folder).start()
    yield gateway
    gateway.kill()


def _by_category(body: dict) -> dict:
    return {c["category"]: c for c in body["categories"]}


def test_json_lists_every_configured_cookie_and_vendor_in_both_languages(gw):
    with gw.client() as c:
        en = _by_category(c.get("/s/demo/cookies.json", params={"lang": "en"}).json())
        nl = _by_category(c.get("/s/demo/cookies", headers={"Accept": "application/json",
                                                            "Accept-Language": "nl-NL,nl;q=0.9,en;q=0.5"}).json())
    assert [k["name"] for k in en["analytics"]["cookies"]] == ["_ga"]
    assert en["analytics"]["cookies"][0] == {"name": "_ga", "purpose": "Measures visits", "lifetime": "2 years",
                                             "party": "first", "provider": ""}
    assert nl["analytics"]["cookies"][0]["purpose"] == "Meet bezoeken"
    assert nl["marketing"]["cookies"][0]["purpose"] == f"Advertenties {EVIL}"  # data, escaped where shown
    assert en["marketing"]["vendors"] == [{"name": "crm", "purpose": "Customer care",
                                           "privacy_url": "https://crm.example.com/privacy"}]
    assert [k["name"] for k in en["preferences"]["cookies"]] == ["lang"]  # the short form still counts
    assert en["necessary"]["cookies"][0]["name"] == "cg_consent"  # the gateway's own cookie is declared
    assert (en["analytics"]["name"], nl["analytics"]["name"]) == ("Statistics", "Statistieken")


def test_html_escapes_config_text_shows_the_choice_and_sends_security_headers(gw):
    with gw.client() as c:
        before = c.get("/s/demo/cookies", params={"lang": "en"})
        grant(c, analytics=True)  # the cookie jar now holds cg_consent
        after = c.get("/s/demo/cookies", params={"lang": "en"})
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/html")
    assert EVIL not in before.text and "Ads &lt;script&gt;alert(1)&lt;/script&gt;" in before.text
    assert "You have not made a choice yet." in before.text
    assert "Statistics: on" in after.text and "Marketing: off" in after.text
    csp = before.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert before.headers["x-content-type-options"] == "nosniff" and before.headers["referrer-policy"] == "no-referrer"
    assert '<html lang="en">' in before.text and "<script>" not in before.text.replace(
        '<script src="/s/demo/cookies-page.js" defer></script>', "")


def test_embed_script_carries_the_data_without_a_raw_angle_bracket(gw):
    with gw.client() as c:
        js = c.get("/s/demo/cookies.js", headers={"Accept-Language": "en"})
        banner = c.get("/s/demo/banner.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "consentgate-cookies" in js.text and "Customer care" in js.text
    assert "<script>" not in js.text and "\\u003cscript>" in js.text
    assert "consentgate-cookies" not in banner.text  # the banner does not grow


def test_unknown_site_and_bad_cookie_config(gw, tmp_path):
    with gw.client() as c:
        r = c.get("/s/nosuch/cookies.json")
    assert r.status_code == 404 and r.json()["error"] == "unknown_site"
