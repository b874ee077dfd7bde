""""My data" in the banner's settings layer, in a real Chromium against a real gateway: the visitor
downloads their own export and erases it (after a confirmation), with the token the banner keeps.

What each test expects follows from the visitor's clicks and the gateway's own answers: the export
is compared with the page views the gateway acknowledged, and the erasure is checked in the store
itself after the gateway has stopped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from forwarding_helpers import send_hit
from harness import UA_CHROME, grant
from testsite import DESKTOP, start_gateway

TEXTS = Path(__file__).resolve().parents[2] / "banner" / "i18n"
NL = json.loads((TEXTS / "nl.json").read_text(encoding="utf-8"))


def stored_decision(v) -> dict:
    return v.page.evaluate("JSON.parse(localStorage.getItem('consentgate:demo')) || {}")


def open_settings(v) -> None:
    """Through the persistent control, as a returning visitor would."""
    v.page.get_by_role("button", name=NL["reopen"]).click()
    v.banner().get_by_role("button", name=NL["settings"]).click()
    v.settings_layer().wait_for(state="visible")


def export_with(gw, site, token: str) -> httpx.Response:
    return httpx.get(f"{gw.url}/s/demo/privacy/me", timeout=10,
                     headers={"Origin": site.origin, "User-Agent": UA_CHROME, "X-Consent-Token": token})


def test_first_visit_has_no_my_data_link(gw, site, visit):
    v = visit()
    v.page.goto(site.url("/"))
    v.banner().get_by_role("button", name=NL["settings"]).click()
    v.settings_layer().wait_for(state="visible")
    # Nothing is stored about a visitor without a token, so there is nothing to download or erase.
    assert v.settings_layer().get_by_role("button", name=NL["my_data"]).count() == 0


def test_download_then_erase_with_confirmation(site, visit, tmp_path):
    previous = site.gateway
    gw = start_gateway(tmp_path, site)  # its own gateway: the store is read after it stops
    try:
        # Another visitor, whose data must survive this visitor's erasure.
        with gw.client() as c:
            other = grant(c, origin=site.origin, analytics=True)
            send_hit(c, other["token"], "/andere-bezoeker", origin=site.origin)

        v = visit()
        v.page.goto(site.url("/producten"))
        decision = v.click_and_wait_consent("Accepteren")
        v.wait_for_collects(1)
        v.page.evaluate("history.pushState({}, '', '/producten/ethiopie')")
        v.wait_for_collects(2)
        assert v.collect_results == ["stored", "stored"]
        v.page.wait_for_function("document.cookie.includes('_ga_TEST')")

        open_settings(v)
        panel = v.settings_layer()
        panel.get_by_role("button", name=NL["my_data"]).click()
        assert NL["my_data_intro"] in panel.inner_text()
        with v.page.expect_download() as download:
            panel.get_by_role("button", name=NL["download"]).click()
        export = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
        assert download.value.suggested_filename == "my-data-demo.json"
        # The visitor's own data, and only theirs: both page views, the grant, no other visitor.
        assert export["consent_id"] == decision["consent_id"]
        assert [e["path"] for e in export["events"]] == ["/producten", "/producten/ethiopie"]
        assert {e["visitor_id"] for e in export["events"]} == {decision["consent_id"]}
        assert [(r["action"], r["method"]) for r in export["consents"]] == [("grant", "accept_all")]
        assert other["consent_id"] not in json.dumps(export)
        # The export request carried the token in a header, never in the URL.
        export_calls = [r for r in v.requests if "/privacy/me" in r.url]
        assert [(r.method, r.url) for r in export_calls] == [("GET", f"{gw.url}/s/demo/privacy/me")]
        assert export_calls[0].headers["x-consent-token"] == decision["token"]

        # Erasing asks first; cancelling sends nothing.
        panel.get_by_role("button", name=NL["erase"]).click()
        assert NL["erase_confirm"] in panel.inner_text()
        assert v.page.evaluate("document.activeElement.textContent") == NL["cancel"]  # the safe choice has focus
        panel.get_by_role("button", name=NL["cancel"]).click()
        v.settle()
        assert [r.method for r in v.requests if "/privacy/me" in r.url] == ["GET"]
        assert NL["erase_confirm"] not in panel.inner_text()

        panel.get_by_role("button", name=NL["erase"]).click()
        with v.page.expect_response(lambda r: "/privacy/me" in r.url and r.request.method == "DELETE") as answer:
            panel.get_by_role("button", name=NL["erase_yes"]).click()
        erased = answer.value.json()
        assert answer.value.status == 200 and erased["consent_id"] == decision["consent_id"] and erased["events"] == 2

        # The banner forgot the token and asks again, on its first layer; the consented cookies are gone.
        v.banner().wait_for(state="visible")
        assert panel.is_hidden()
        assert "token" not in stored_decision(v)
        assert v.page.evaluate("window.ConsentGate.getConsent()") is None
        assert "_ga" not in v.page.evaluate("document.cookie")
        # No page view leaves without a new decision.
        v.page.evaluate("history.pushState({}, '', '/na-wissen')")
        v.settle()
        assert len(v.collects()) == 2

        # The old token reaches nothing any more; the other visitor still reaches their own data.
        refused = export_with(gw, site, decision["token"])
        assert refused.status_code == 401 and refused.json()["error"] == "no_valid_consent_token"
        assert [e["path"] for e in export_with(gw, site, other["token"]).json()["events"]] == ["/andere-bezoeker"]
        gw.stop()
        cid, other_cid = decision["consent_id"], other["consent_id"]
        assert gw.sql(f"SELECT count() AS n FROM {{db}}.events WHERE visitor_id = '{cid}'") == [{"n": 0}]
        assert gw.sql(f"SELECT count() AS n FROM {{db}}.events WHERE visitor_id = '{other_cid}'") == [{"n": 1}]
        assert gw.sql("SELECT erased_by, rows FROM {db}.erasures") == [
            {"erased_by": "visitor", "rows": erased["removed"]}]
    finally:
        site.gateway = previous
        gw.kill()


def test_a_refused_request_keeps_the_visitor_informed(gw, site, visit):
    v = visit()
    v.page.goto(site.url("/"))
    decision = v.click_and_wait_consent("Accepteren")
    # The token stops counting at the gateway behind the banner's back (withdrawn from another tab).
    r = httpx.request("DELETE", f"{gw.url}/s/demo/consent", timeout=10,
                      headers={"Origin": site.origin, "X-Consent-Token": decision["token"]})
    assert r.status_code == 200
    open_settings(v)
    panel = v.settings_layer()
    panel.get_by_role("button", name=NL["my_data"]).click()
    with v.page.expect_response(lambda r: "/privacy/me" in r.url) as answer:
        panel.get_by_role("button", name=NL["download"]).click()
    assert answer.value.status == 401
    # Said in the visitor's language, announced to screen readers, and the layer stays usable.
    alert = panel.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == NL["my_data_error"]
    assert panel.get_by_role("button", name=NL["erase"]).is_visible()


def test_my_data_fits_the_settings_layer_and_documents_it(gw, site, visit, tmp_path):
    """The screenshot in docs/; to refresh it, run with CONSENTGATE_SCREENSHOTS=docs/screenshots."""
    out = Path(os.environ.get("CONSENTGATE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    en = json.loads((TEXTS / "en.json").read_text(encoding="utf-8"))
    v = visit(locale="en-GB", viewport=DESKTOP)
    v.page.goto(site.url("/?lang=en"))
    v.click_and_wait_consent(en["accept"])
    v.page.get_by_role("button", name=en["reopen"]).click()
    v.banner().get_by_role("button", name=en["settings"]).click()
    panel = v.settings_layer()
    panel.get_by_role("button", name=en["my_data"]).click()
    panel.get_by_role("button", name=en["download"]).wait_for()
    # Everything in view without scrolling, the choice buttons still equal, and My data not one of them.
    box = panel.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= DESKTOP["height"]
    assert panel.evaluate("p => p.scrollHeight <= p.clientHeight")
    assert panel.locator(".cg-btn").all_inner_texts() == [en["reject_all"], en["save"], en["accept_all"]]
    v.page.screenshot(path=str(out / "banner-my-data-en-desktop.png"))
