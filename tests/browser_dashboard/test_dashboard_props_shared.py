"""The dashboard's properties panel and its shared-link mode, in real Chromium on a real gateway over a store
seeded with known hits: the panel's breakdown equals a plain-Python count of the hits, a property filter chip
filters, the goal form sends a property match and a revenue property; a shared link's session shows no
editor, "Log out" ends it, and when the link is revoked the page loads its own address again."""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Page

from dashboard_page import kpi, number, wait_loaded
from harness import ROOT, STATS_TOKEN, GatewayProcess, write_config
from stats_seed import Hit, hit_passes, seed

SHOTS = Path(os.environ.get("CONSENTGATE_SCREENSHOTS") or tempfile.mkdtemp(prefix="cg-shots-"))
AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}
# Noon two days ago on the site's clock: inside the default range (the last 30 days), whatever the hour now.
DAY = (datetime.now(ZoneInfo("Europe/Amsterdam")) - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
PLANS = ["pro", "free", "free", "team", "pro", "free", "enterprise", "free", "team", "pro", "free", "<b>odd</b>"]


def event(visitor: str, minutes: int, name: str, **props: str) -> Hit:
    return Hit("shop", visitor, DAY + timedelta(minutes=minutes), "/app", type="event", name=name,
               props=tuple(sorted(props.items())))


def seeded_hits() -> list[Hit]:
    hits: list[Hit] = []
    for i, plan in enumerate(PLANS):
        v = f"v{i}"
        hits.append(Hit("shop", v, DAY + timedelta(minutes=i), "/pricing"))
        hits.append(event(v, i + 1, "signup", plan=plan))
        if i % 3 == 0:  # some sign up twice: events differ from visitors
            hits.append(event(v, i + 2, "signup", plan=plan))
        if i % 2 == 0:
            hits.append(event(v, i + 3, "purchase", plan=plan, amount=str(10 * (i + 1))))
    hits += [
        Hit("shop", "w1", DAY, "/welcome", props=(("plan", "trial"),)),  # a pageview may carry props too
        event("w2", 5, "download", format="pdf"),  # another property: not in plan's breakdown
        event("w3", 6, "signup", plan=""),  # an empty value is no value
        Hit("other", "o1", DAY, "/", type="event", name="signup", props=(("plan", "other-site"),)),
    ]
    return hits


HITS = seeded_hits()


def prop_reference(site: str, name: str, filters: dict[str, str], limit: int = 8) -> list[tuple[str, int, int]]:
    """(value, visitors, events) of the hits that carry the property, as docs/stats.md defines the breakdown."""
    groups: dict[str, tuple[set[str], int]] = {}
    for h in HITS:
        value = dict(h.props).get(name, "")
        if h.site == site and value and hit_passes(h, filters):
            visitors, events = groups.get(value, (set(), 0))
            groups[value] = (visitors | {h.visitor}, events + 1)
    rows = [(value, len(v), n) for value, (v, n) in groups.items()]
    return sorted(rows, key=lambda r: (-r[1], -r[2], r[0]))[:limit]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("props-dashboard")
    config = write_config(folder, sites={"shop": {"origins": ["https://www.example.com"]},
                                         "other": {"origins": ["https://www.other.example"]}})
    seed(config, HITS)
    gw = GatewayProcess(config, folder).start()
    yield gw
    gw.kill()


def log_in(browser: Browser, gateway: GatewayProcess) -> Page:
    page = browser.new_context(locale="en-US", viewport={"width": 1360, "height": 1000}).new_page()
    page.goto(f"{gateway.url}/dashboard#site=shop")
    page.fill("#token", STATS_TOKEN)
    page.click("button[type=submit]")
    wait_loaded(page)
    return page


def shown_props(page: Page) -> list[tuple[str, int, int]]:
    rows = page.locator("#props .row-btn")
    return [(r.locator(".row-value").inner_text(), number(r.locator(".row-num").nth(0).inner_text()),
             number(r.locator(".row-num").nth(1).inner_text())) for r in rows.all()]


def wait_props(page: Page, expected: list[tuple[str, int, int]]) -> None:
    page.wait_for_function("(n) => document.querySelectorAll('#props .row-btn').length === n", arg=len(expected))
    page.wait_for_load_state("networkidle")


def test_the_properties_panel_breaks_down_and_filters_by_a_property(browser: Browser, gateway) -> None:
    page = log_in(browser, gateway)
    assert page.locator("#props .empty").inner_text().startswith("Type a property name")
    page.fill("#prop-name", "plan")
    page.press("#prop-name", "Enter")
    every = prop_reference("shop", "plan", {})
    assert [v for v, _, _ in every][:3] == ["free", "pro", "team"] and ("other-site", 1, 1) not in every
    wait_props(page, every)
    assert shown_props(page) == every
    assert "prop=plan" in page.evaluate("() => location.hash")

    # one event's property: the picker offers the events of the range
    assert {"signup", "purchase", "download"} <= set(page.locator("#prop-event option").all_inner_texts())
    page.select_option("#prop-event", "purchase")
    purchases = prop_reference("shop", "plan", {"event": "purchase"})
    assert purchases != every
    wait_props(page, purchases)
    assert shown_props(page) == purchases
    page.select_option("#prop-event", "")
    wait_props(page, every)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky top bar at the top of the full-page shot
    page.screenshot(path=str(SHOTS / "dashboard-properties.png"), full_page=True)

    # a row is a filter: a chip, the hash, every figure of the page filtered by prop.plan=pro
    page.locator("#props .row-btn", has=page.locator(".row-value", has_text="pro")).first.click()
    wait_loaded(page)
    chip = page.locator(".chip")
    assert chip.inner_text().replace("\n", "").startswith("Property plan is pro")
    assert "f.prop.plan=pro" in page.evaluate("() => location.hash")
    pro_visitors = {h.visitor for h in HITS if h.site == "shop" and dict(h.props).get("plan") == "pro"}
    assert kpi(page, "Visitors") == len(pro_visitors) == 3
    wait_props(page, [("pro", 0, 0)])
    assert shown_props(page) == prop_reference("shop", "plan", {"prop.plan": "pro"})

    # the filter is in the address: a reload keeps it; removing the chip removes it
    page.reload()
    wait_loaded(page)
    assert page.locator(".chip b").inner_text() == "pro" and kpi(page, "Visitors") == len(pro_visitors)
    page.locator(".chip").click()
    wait_loaded(page)
    assert page.locator(".chip").count() == 0
    assert kpi(page, "Visitors") == len({h.visitor for h in HITS if h.site == "shop"})
    page.context.close()


def test_the_goal_form_sends_a_property_match_and_a_revenue_property(browser: Browser, gateway) -> None:
    page = log_in(browser, gateway)
    assert page.locator("#goal-form").is_visible() and not page.locator("#goal-revenue").is_visible()
    page.fill("#goal-name", "Pro purchases")
    page.select_option("#goal-kind", "event")
    page.fill("#goal-value", "purchase")
    page.fill("#goal-prop-name", "plan")
    page.fill("#goal-prop-value", "pro")
    page.fill("#goal-revenue", "amount")
    page.click("#goal-form button[type=submit]")
    row = page.locator(".goal-row", has=page.locator(".row-value", has_text="Pro purchases"))
    row.wait_for()
    made = next(g for g in httpx.get(f"{gateway.url}/api/stats/shop/goals", headers=AUTH).json()["goals"]
                if g["name"] == "Pro purchases")
    assert made["event"] == "purchase" and made["props"] == {"plan": "pro"} and made["revenue_property"] == "amount"
    converted = [h for h in HITS if h.site == "shop" and h.name == "purchase" and dict(h.props).get("plan") == "pro"]
    assert number(row.locator(".row-num").first.inner_text()) == len({h.visitor for h in converted}) == 2
    report = next(g for g in httpx.get(f"{gateway.url}/api/stats/shop/conversions", headers=AUTH).json()["results"]
                  if g["name"] == "Pro purchases")
    assert report["revenue"] == sum(float(dict(h.props)["amount"]) for h in converted) == 10 + 50
    assert row.locator(".row-num").nth(2).inner_text().replace("\u00a0", " ") == "€60.00"
    row.locator(".del").click()
    row.wait_for(state="detached")
    page.context.close()


def share_path(gateway: GatewayProcess) -> tuple[str, str]:
    made = httpx.post(f"{gateway.url}/api/stats/shop/shared-links", headers=AUTH, json={"label": "agency"})
    assert made.status_code == 201, made.text
    path = "/" + made.json()["url"].split("/", 3)[3]
    assert re.fullmatch(r"/share/[A-Za-z0-9_-]{43}", path)
    return path, made.json()["link_id"]


def test_a_shared_session_shows_no_editor_and_log_out_ends_it(browser: Browser, gateway) -> None:
    goal = httpx.post(f"{gateway.url}/api/stats/shop/goals", headers=AUTH, json={"name": "Signups", "event": "signup"})
    assert goal.status_code == 201 and goal.json()["editable"]  # the owner could delete it: a shared link may not
    path, _ = share_path(gateway)
    ctx = browser.new_context(locale="en-US", viewport={"width": 1360, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(gateway.url + path)
        wait_loaded(page)
        assert page.request.get(f"{gateway.url}/api/stats/sites").json()["sites"] == [
            {"name": "shop", "timezone": "Europe/Amsterdam", "can_write": False}]
        page.locator(".goal-row", has=page.locator(".row-value", has_text="Signups")).wait_for()
        assert not page.locator("#goal-form").is_visible()
        assert page.locator("#goals .del").count() == 0
        assert page.locator("#site option").all_inner_texts() == ["shop"]

        # "Log out": the shared session ends, in the browser and for the API; /dashboard asks for a token
        page.click("#logout")
        page.wait_for_selector("#token")
        assert page.url == f"{gateway.url}/dashboard"
        assert [c["name"] for c in ctx.cookies() if c["name"] in ("cg_share", "cg_stats")] == []
        assert page.request.get(f"{gateway.url}/api/stats/sites").status == 401
        page.goto(f"{gateway.url}/dashboard")
        assert page.locator("#token").is_visible() and page.locator("#kpis").count() == 0
    finally:
        ctx.close()
        httpx.delete(f"{gateway.url}/api/stats/shop/goals/{goal.json()['id']}", headers=AUTH)


def test_a_revoked_links_page_loads_its_own_address_again(browser: Browser, gateway) -> None:
    """On a 401 the page goes to its own address, not to /dashboard: a shared link's viewer has no token to log in
    with, and the link's address says why it no longer opens (or asks for its password again)."""
    path, link_id = share_path(gateway)
    ctx = browser.new_context(locale="en-US")
    try:
        page = ctx.new_page()
        page.goto(gateway.url + path)
        wait_loaded(page)
        revoked = httpx.delete(f"{gateway.url}/api/stats/shop/shared-links/{link_id}", headers=AUTH)
        assert revoked.status_code == 200
        # The range change sends a dozen requests and each gets a 401: one navigation must come of them. A second
        # location.assign() would abort the first (net::ERR_ABORTED), which is how this test once failed in CI.
        loads: list[str] = []
        page.on("request", lambda r: loads.append(r.url) if r.resource_type == "document" else None)
        with page.expect_navigation(url=gateway.url + path):
            page.select_option("#range", "7d")
        page.wait_for_load_state("networkidle")
        assert "no shared link at this address" in page.content()
        assert loads == [gateway.url + path]
    finally:
        ctx.close()


def test_the_properties_screenshot_exists() -> None:
    path = ROOT / "docs" / "screenshots" / "dashboard-properties.png"
    assert path.stat().st_size > 10_000, path
