"""The dashboard in a real browser, on `consentgate demo`: log in, charts drawn, range and filter
changes, attacker-shaped values shown as text, a demo-site visit in realtime, screenshots for the README."""
from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Browser, Page

from dashboard_page import kpi, painted_pixels, wait_loaded
from gateway.demo import DEMO_TOKEN
from harness import ROOT, UA_CHROME

# Screenshots for the README: refreshed with CONSENTGATE_SCREENSHOTS=docs/screenshots, else kept out of the tree.
SHOTS = Path(os.environ.get("CONSENTGATE_SCREENSHOTS") or tempfile.mkdtemp(prefix="cg-shots-"))
TOKEN = DEMO_TOKEN
XSS_PATH = "/<img src=x onerror=window.__xss=1>"
XSS_CAMPAIGN = "<script>window.__xss=2</script>"


def api(demo, path: str, **params: str) -> dict:
    r = httpx.get(f"{demo.gateway}/api/stats/demo/{path}", params=params, headers={"Authorization": f"Bearer {TOKEN}"})
    r.raise_for_status()
    return r.json()


def log_in(browser: Browser, demo, **context: object) -> tuple[Page, list[str]]:
    ctx = browser.new_context(user_agent=UA_CHROME, locale="en-US", **context)
    page = ctx.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{demo.gateway}/dashboard")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    assert "not one of this gateway's stats tokens" in page.locator(".error").inner_text()
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    wait_loaded(page)
    return page, requested


def test_dashboard_logs_in_draws_charts_and_filters(browser: Browser, demo) -> None:
    page, requested = log_in(browser, demo, viewport={"width": 1360, "height": 900})
    cookie = next(c for c in page.context.cookies() if c["name"] == "cg_stats")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""  # the session is out of the page's reach

    # the default range: last 30 days, as the API says
    summary = api(demo, "summary")["current"]
    assert summary["visitors"] > 0
    assert kpi(page, "Visitors") == summary["visitors"] and kpi(page, "Pageviews") == summary["pageviews"]
    assert painted_pixels(page, "timeseries") > 2000
    assert painted_pixels(page, "consent-chart") > 500
    top_page = api(demo, "breakdown/page", limit="8")["results"][0]
    first_row = page.locator('[data-panel="pages"] .row-btn').first
    assert first_row.locator(".row-value").inner_text() == top_page["value"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard-desktop.png"), full_page=True)

    # a shorter range
    page.select_option("#range", "7d")
    wait_loaded(page)
    today = datetime.now(ZoneInfo("Europe/Amsterdam")).date()
    week = api(demo, "summary", **{"from": str(today - timedelta(days=6)), "to": str(today)})["current"]
    assert "range=7d" in page.evaluate("() => location.hash")
    assert kpi(page, "Visitors") == week["visitors"]
    assert len(page.locator("#timeseries").all()) == 1 and painted_pixels(page, "timeseries") > 2000

    # a filter by clicking a row: the top channel
    channel = page.locator('[data-panel="sources"] .row-btn').first
    name = channel.locator(".row-value").inner_text()
    channel.click()
    wait_loaded(page)
    assert page.locator(".chip").inner_text().replace("\n", "").startswith("Channel is " + name)
    filtered = api(demo, "summary", **{"from": str(today - timedelta(days=6)), "to": str(today), "source": name})
    assert kpi(page, "Visitors") == filtered["current"]["visitors"] < week["visitors"]
    page.screenshot(path=str(SHOTS / "dashboard-filtered.png"), full_page=True)
    page.locator(".chip").click()
    wait_loaded(page)
    assert kpi(page, "Visitors") == week["visitors"]

    # a custom range
    page.select_option("#range", "custom")
    page.fill("#from", str(today - timedelta(days=13)))
    page.fill("#to", str(today - timedelta(days=7)))
    page.click("#apply")
    wait_loaded(page)
    before = api(demo, "summary", **{"from": str(today - timedelta(days=13)), "to": str(today - timedelta(days=7))})
    assert kpi(page, "Visitors") == before["current"]["visitors"]

    gateway_origin = demo.gateway
    foreign = [u for u in requested if not u.startswith(gateway_origin) and not u.startswith("data:")]
    assert foreign == [], f"the dashboard asked another origin: {foreign}"
    page.context.close()


def test_visitor_values_show_as_text_and_a_demo_visit_shows_in_realtime(browser: Browser, demo) -> None:
    # a visitor on the demo site, in a browser: accepts the banner, opens two pages
    visitor = browser.new_context(user_agent=UA_CHROME, locale="en-US")
    site_page = visitor.new_page()
    site_page.goto(f"{demo.site}/pricing")
    site_page.click('[data-action="accept"]')
    site_page.click('nav a[href="/features"]')
    site_page.wait_for_load_state("networkidle")

    # an attacker sends a path and a campaign made of markup, with the consent it was given
    with httpx.Client(base_url=demo.gateway, headers={"Origin": demo.site, "User-Agent": UA_CHROME}) as c:
        token = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "method": "custom"}).json()["token"]
        r = c.post("/s/demo/collect", json={"url": f"https://www.clientbox.example{XSS_PATH}?utm_campaign={quote(XSS_CAMPAIGN)}",
                                            "consent": token})
        assert r.headers["x-consentgate-result"] == "stored"

    # The demo's generated traffic holds recent visitors too, so a page of one visit can fall out of the
    # top 10 (it did, on a loaded machine): ask for each page by a filter.
    seen: dict[str, int] = {}
    for _ in range(50):
        seen = {path: api(demo, "realtime", page=path)["pageviews"] for path in ("/pricing", "/features", XSS_PATH)}
        if all(seen.values()):
            break
        site_page.wait_for_timeout(200)
    assert all(seen.values()), seen

    page, _ = log_in(browser, demo, viewport={"width": 1360, "height": 900})
    page.goto(f"{demo.gateway}/dashboard#site=demo&range=today&interval=hour&f.page={quote(XSS_PATH)}")
    page.reload()
    wait_loaded(page)
    assert page.locator("#realtime-count").inner_text() == str(api(demo, "realtime")["visitors"])
    row_values = page.locator('[data-panel="pages"] .row-value').all_inner_texts()
    assert row_values == [XSS_PATH]
    page.click('[data-panel="sources"] .tab:has-text("Campaigns")')
    page.wait_for_selector('[data-panel="sources"] .row-value')
    assert page.locator('[data-panel="sources"] .row-value').all_inner_texts() == [XSS_CAMPAIGN]
    assert page.locator(".chip b").inner_text() == XSS_PATH
    assert page.evaluate("() => window.__xss") is None
    assert page.locator('[data-panel] img, [data-panel] script').count() == 0
    page.context.close()
    visitor.close()


def test_dashboard_on_a_phone(browser: Browser, demo) -> None:
    page, _ = log_in(browser, demo, viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                     has_touch=True)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"
    assert painted_pixels(page, "timeseries") > 2000
    page.screenshot(path=str(SHOTS / "dashboard-mobile.png"), full_page=True)
    # log out: the API no longer answers this browser
    page.click(".logout button")
    page.wait_for_selector("#token")
    assert page.request.get(f"{demo.gateway}/api/stats/sites").status == 401
    page.context.close()


def test_screenshots_exist() -> None:
    for name in ("desktop", "filtered", "mobile"):
        path = ROOT / "docs" / "screenshots" / f"dashboard-{name}.png"
        assert path.stat().st_size > 10_000, path


def test_goals_are_edited_and_the_funnel_drawn_in_the_dashboard(browser: Browser, demo) -> None:
    """A goal made with the dashboard's form shows the API's figures and goes again with its delete button; a
    funnel (made through the API) is drawn with its steps."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    made = httpx.post(f"{demo.gateway}/api/stats/demo/funnels", headers=auth, json={
        "name": "Pricing to signup", "steps": [{"page": "/"}, {"page": "/pricing"}, {"event": "signup"}]})
    assert made.status_code == 201, made.text
    page, requested = log_in(browser, demo, viewport={"width": 1360, "height": 900})
    page.fill("#goal-name", "Saw pricing")
    page.select_option("#goal-kind", "page")
    page.fill("#goal-value", "/pricing*")
    page.click("#goal-form button[type=submit]")
    row = page.locator(".goal-row", has=page.locator(".row-value", has_text="Saw pricing"))
    row.wait_for()
    expected = next(g for g in api(demo, "conversions")["results"] if g["name"] == "Saw pricing")
    assert expected["conversions"] > 0
    assert int(row.locator(".row-num").first.inner_text().replace(",", "")) == expected["conversions"]
    page.fill("#goal-name", "Purchases")
    page.select_option("#goal-kind", "event")
    page.fill("#goal-value", "purchase")
    page.click("#goal-form button[type=submit]")
    page.locator(".goal-row", has=page.locator(".row-value", has_text="Purchases")).wait_for()
    page.wait_for_function("() => document.querySelectorAll('#funnel-steps .step-row').length === 3")
    steps = api(demo, f"funnels/{made.json()['id']}")["results"]
    shown = [float(t.rstrip("%")) for t in page.locator("#funnel-steps .step-row .row-num:not(.muted)").all_inner_texts()]
    assert shown == [s["conversion_rate"] for s in steps] and 0 < shown[1] < 100
    assert painted_pixels(page, "funnel-chart") > 500
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky top bar at the top of the full-page shot
    page.screenshot(path=str(SHOTS / "dashboard-goals-funnel.png"), full_page=True)
    # a bad goal: the gateway's message is shown
    page.fill("#goal-name", "Broken")
    page.select_option("#goal-kind", "page")
    page.fill("#goal-value", "pricing")
    page.click("#goal-form button[type=submit]")
    page.locator("#goal-error", has_text="starts with '/'").wait_for()
    for name in ("Saw pricing", "Purchases"):
        page.locator(".goal-row", has=page.locator(".row-value", has_text=name)).locator(".del").click()
        page.locator(".goal-row", has=page.locator(".row-value", has_text=name)).wait_for(state="detached")
    assert [g["name"] for g in api(demo, "goals")["goals"]] == []
    assert all(u.startswith(demo.gateway) for u in requested)
