"""GET /s/{site}/banner.js on a real gateway: one request, within the size budget, cached by ETag."""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import brotli
import httpx
import pytest

from banner.bundle import GZIP_BUDGET_BYTES
from harness import GatewayProcess, write_config

BANNER_DIR = Path(__file__).resolve().parent.parent / "banner"
VENDOR_SECRET = "vendor-secret-must-not-leak-0042"

# A full first-layer setup: controller, policy link, cookies and vendors in every category, Consent Mode.
FULL_SITE = {
    "origins": ["https://www.example.com"],
    "policy_version": 3,
    "policy_url": "https://www.example.com/privacyverklaring",
    "controller": "Clientbox B.V.",
    "languages": ["nl", "en"],
    "consent_mode": True,
    "cookies": {"preferences": ["lang", "region"], "analytics": ["_ga", "_ga_*", "_pk_id*"],
                "marketing": ["_fbp", "_gcl_au", "IDE"]},
    "texts": {"nl": {"title": "Cookies bij Clientbox"}},
    "vendors": [
        {"name": "Google Analytics 4", "category": "analytics", "type": "ga4", "measurement_id": "G-TEST123",
         "api_secret": VENDOR_SECRET},
        {"name": "Meta", "category": "marketing", "type": "meta_capi", "pixel_id": "123", "access_token": VENDOR_SECRET},
        {"name": "CRM webhook", "category": "marketing", "type": "webhook", "url": "http://127.0.0.1:9/hook",
         "secret": VENDOR_SECRET},
    ],
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("banner")
    process = GatewayProcess(write_config(folder, sites={"full": FULL_SITE, "plain": {"origins": ["https://a.example"]}}),
                             folder).start()
    yield process
    process.kill()


def raw_get(gw: GatewayProcess, path: str, **headers: str) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent on the wire (not decoded)."""
    with httpx.Client(base_url=gw.url, timeout=10) as client, client.stream("GET", path, headers=headers) as r:
        return r, b"".join(r.iter_raw())


def test_whole_banner_is_one_request_within_the_gzip_budget(gw):
    r, wire = raw_get(gw, "/s/full/banner.js", **{"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"].startswith("text/javascript")
    assert len(wire) <= GZIP_BUDGET_BYTES == 7 * 1024, f"banner.js is {len(wire)} bytes gzipped, over the 7 KB budget"
    js = gzip.decompress(wire).decode("utf-8")
    # Everything is inside that one response: the CSS, both languages and the site's config.
    for text in ("Accepteren", "Weigeren", "Instellingen", "Accept", "Reject", "Settings",
                 "Clientbox B.V.", "_ga_*", "Google Analytics 4", "CRM webhook", ".cg-btn{"):
        assert text in js, text
    assert "CONSENTGATE_" not in js


def test_bundle_is_minified_and_keeps_no_vendor_secret(gw):
    r, wire = raw_get(gw, "/s/full/banner.js", **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers
    source = (BANNER_DIR / "banner.js").read_text() + (BANNER_DIR / "banner.css").read_text()
    texts = sum(len(p.read_text()) for p in (BANNER_DIR / "i18n").glob("[ne][ln].json"))
    assert len(wire) < len(source) + texts  # comments and indentation are gone
    body = wire.decode("utf-8")
    for secret in (VENDOR_SECRET, "G-TEST123", "hooks", "127.0.0.1:9", "meta_capi"):
        assert secret not in body, f"{secret!r} leaked into the public banner"


def test_site_text_overrides_replace_the_shipped_text(gw):
    js = raw_get(gw, "/s/full/banner.js", **{"Accept-Encoding": "identity"})[1].decode("utf-8")
    shipped_nl = json.loads((BANNER_DIR / "i18n" / "nl.json").read_text())
    assert "Cookies bij Clientbox" in js and shipped_nl["title"] not in js
    assert json.loads((BANNER_DIR / "i18n" / "en.json").read_text())["title"] in js


def test_all_encodings_carry_the_same_script(gw):
    _, identity = raw_get(gw, "/s/full/banner.js", **{"Accept-Encoding": "identity"})
    r_gz, gz = raw_get(gw, "/s/full/banner.js", **{"Accept-Encoding": "gzip, br;q=0"})
    r_br, br = raw_get(gw, "/s/full/banner.js", **{"Accept-Encoding": "gzip, deflate, br"})
    assert r_gz.headers["content-encoding"] == "gzip" and gzip.decompress(gz) == identity
    assert r_br.headers["content-encoding"] == "br" and brotli.decompress(br) == identity
    assert len(br) < len(gz) < len(identity)
    assert r_br.headers["etag"] == r_gz.headers["etag"]
    assert "Accept-Encoding" in r_br.headers["vary"]


def test_etag_revalidation_answers_304_without_a_body(gw):
    r, _ = raw_get(gw, "/s/full/banner.js")
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == "public, max-age=300"
    again, body = raw_get(gw, "/s/full/banner.js", **{"If-None-Match": etag})
    assert again.status_code == 304 and body == b"" and again.headers["etag"] == etag
    strong = etag.removeprefix("W/")
    assert raw_get(gw, "/s/full/banner.js", **{"If-None-Match": f'"other", {strong}'})[0].status_code == 304
    assert raw_get(gw, "/s/full/banner.js", **{"If-None-Match": '"other"'})[0].status_code == 200
    # Each site has its own bundle, so its own ETag.
    assert raw_get(gw, "/s/plain/banner.js")[0].headers["etag"] != etag


def test_unknown_site_is_a_json_404(gw):
    r = httpx.get(f"{gw.url}/s/nosuchsite/banner.js", timeout=10)
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_site" and "nosuchsite" in r.json()["detail"]


def test_cookies_of_the_detailed_form_are_listed_and_expired_by_the_banner_too():
    """A cookie described only in `[[sites.X.cookie]]` must still be removed on Reject, like the short lists."""
    from banner.bundle import site_cookies
    from gateway.config import parse_config

    raw = {"gateway": {"secret_key": "k" * 40, "store": "chdb:///tmp/unused"},
           "sites": {"demo": {"origins": ["https://www.example.com"], "cookies": {"analytics": ["_ga"]},
                              "cookie": [{"name": "_hjSession*", "category": "analytics", "purpose": {"en": "visits"}},
                                         {"name": "_fbp", "category": "marketing", "purpose": {"en": "ads"}},
                                         {"name": "_ga", "category": "analytics", "purpose": {"en": "visitor id"}},
                                         {"name": "cg_session", "category": "necessary", "purpose": {"en": "login"}}]}}}
    site = parse_config(raw, Path("/tmp"), env={}).sites["demo"]
    assert site_cookies(site) == {"analytics": ["_ga", "_hjSession*"], "marketing": ["_fbp"]}
