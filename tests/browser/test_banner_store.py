"""What reaches the store from real visitors' clicks: exactly the consented page views, and every decision."""
from __future__ import annotations

import json

from testsite import start_gateway


def stored_token(v) -> dict:
    return v.page.evaluate("JSON.parse(localStorage.getItem('consentgate:demo'))")


def test_store_holds_exactly_the_consented_page_views_and_every_decision(site, visit, tmp_path):
    gw = start_gateway(tmp_path, site)
    expected_paths: dict[str, list[str]] = {}
    expected_decisions: list[tuple[str, str, int, int, int]] = []  # consent id, method, analytics, marketing, gpc
    try:
        # Accepts, then moves on inside a single-page app: one page view per route.
        a = visit()
        a.page.goto(site.url("/"))
        a_id = a.click_and_wait_consent("Accepteren")["consent_id"]
        a.page.evaluate("history.pushState({}, '', '/producten')")
        a.wait_for_collects(2)
        expected_paths[a_id] = ["/", "/producten"]
        expected_decisions.append((a_id, "accept_all", 1, 1, 0))

        # Rejects: the refusal is recorded, no page view is.
        b = visit()
        b.page.goto(site.url("/"))
        b_id = b.click_and_wait_consent("Weigeren")["consent_id"]
        b.page.evaluate("history.pushState({}, '', '/producten')")
        expected_decisions.append((b_id, "reject_all", 0, 0, 0))

        # Global Privacy Control: accepting keeps marketing off, and the signal is recorded.
        c = visit(extra_http_headers={"Sec-GPC": "1"})
        c.context.add_init_script("Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})")
        c.page.goto(site.url("/"))
        c_id = c.click_and_wait_consent("Accepteren")["consent_id"]
        c.wait_for_collects(1)
        expected_paths[c_id] = ["/"]
        expected_decisions.append((c_id, "gpc", 1, 0, 1))

        # Accepts, then withdraws through the re-open control: later routes are not counted.
        d = visit()
        d.page.goto(site.url("/"))
        d_id = d.click_and_wait_consent("Accepteren")["consent_id"]
        d.wait_for_collects(1)
        d.page.get_by_role("button", name="Cookie-instellingen").click()
        assert d.click_and_wait_consent("Weigeren")["consent_id"] == d_id
        d.page.evaluate("history.pushState({}, '', '/na-intrekken')")
        expected_paths[d_id] = ["/"]
        expected_decisions += [(d_id, "accept_all", 1, 1, 0), (d_id, "reject_all", 0, 0, 0)]

        for v in (a, b, c, d):
            v.settle()
        assert [json.loads(r.post_data)["url"] for r in b.collects()] == []
        assert sorted(a.collect_results + c.collect_results + d.collect_results) == ["stored"] * 4
        assert {stored_token(v)["consent_id"] for v in (a, b, c, d)} == {a_id, b_id, c_id, d_id}
    except BaseException:
        gw.kill()
        raise
    finally:
        site.gateway = ""
    gw.stop()

    events = gw.sql("SELECT visitor_id, path, hostname FROM {db}.events ORDER BY timestamp")
    paths: dict[str, list[str]] = {}
    for row in events:
        paths.setdefault(row["visitor_id"], []).append(row["path"])
    assert paths == expected_paths
    assert {row["hostname"] for row in events} == {"localhost"}
    decisions = gw.sql("SELECT consent_id, method, analytics, marketing, gpc FROM {db}.consents ORDER BY timestamp")
    assert sorted((r["consent_id"], r["method"], r["analytics"], r["marketing"], r["gpc"]) for r in decisions) \
        == sorted(expected_decisions)
