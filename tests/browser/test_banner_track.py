"""`ConsentGate.track(name, props)` in real Chromium: a custom event reaches the store only while the visitor's
consent allows it, with its properties sent as strings (issue 12)."""
from __future__ import annotations

import json

from testsite import start_gateway

TRACK_SIGNUP = "ConsentGate.track('signup', {plan: 'pro', n: 3})"


def test_track_after_accepting_analytics_stores_one_event_with_its_props(site, visit, tmp_path):
    gw = start_gateway(tmp_path, site)
    try:
        v = visit()
        v.page.goto(site.url("/"))
        v.banner().get_by_role("button", name="Instellingen").click()
        v.settings_layer().get_by_role("switch", name="Statistieken").check()
        decision = v.click_and_wait_consent("Keuze opslaan", scope=".cg-panel")
        assert (decision["choices"]["analytics"], decision["choices"]["marketing"]) == (True, False)
        v.wait_for_collects(1)  # the page view the decision starts
        assert v.page.evaluate(TRACK_SIGNUP) is True
        v.wait_for_collects(2)
        assert v.collect_results == ["stored", "stored"]
        sent = [json.loads(r.post_data) for r in v.collects()]
        assert [(s["type"], s.get("name"), s.get("props")) for s in sent] == [
            ("pageview", None, None), ("event", "signup", {"plan": "pro", "n": "3"})]
    except BaseException:
        gw.kill()
        raise
    finally:
        site.gateway = ""
    gw.stop()
    rows = gw.sql("SELECT visitor_id, type, name, path, props FROM {db}.events ORDER BY timestamp")
    assert rows == [
        {"visitor_id": decision["consent_id"], "type": "pageview", "name": "", "path": "/", "props": {}},
        {"visitor_id": decision["consent_id"], "type": "event", "name": "signup", "path": "/",
         "props": {"plan": "pro", "n": "3"}},
    ]


def test_track_sends_nothing_before_consent_after_rejecting_or_after_withdrawing(site, visit, tmp_path):
    gw = start_gateway(tmp_path, site)
    try:
        undecided = visit()
        undecided.page.goto(site.url("/"))
        assert undecided.page.evaluate(TRACK_SIGNUP) is False  # the banner is still asking

        rejecting = visit()
        rejecting.page.goto(site.url("/"))
        rejecting.click_and_wait_consent("Weigeren")
        assert rejecting.page.evaluate(TRACK_SIGNUP) is False

        # Accepts, tracks once, withdraws through the re-open control: the next track is refused.
        withdrawing = visit()
        withdrawing.page.goto(site.url("/"))
        accepted = withdrawing.click_and_wait_consent("Accepteren")
        withdrawing.wait_for_collects(1)
        assert withdrawing.page.evaluate("ConsentGate.track('before_withdrawal', {step: '1'})") is True
        withdrawing.wait_for_collects(2)
        withdrawing.page.get_by_role("button", name="Cookie-instellingen").click()
        withdrawing.click_and_wait_consent("Weigeren")
        assert withdrawing.page.evaluate(TRACK_SIGNUP) is False

        for v in (undecided, rejecting, withdrawing):
            v.settle()
        assert undecided.collects() == [] and rejecting.collects() == []
        assert len(withdrawing.collects()) == 2  # its page view and the one event before withdrawal
    except BaseException:
        gw.kill()
        raise
    finally:
        site.gateway = ""
    gw.stop()
    rows = gw.sql("SELECT visitor_id, name, props FROM {db}.events WHERE type = 'event'")
    assert rows == [{"visitor_id": accepted["consent_id"], "name": "before_withdrawal", "props": {"step": "1"}}]
