"""Shared links on a real gateway over a real store: a link reads one site and nothing else, read-only,
stops working when revoked, keeps its password's attempts limited, and may be framed only where the site
allows it. The store never holds a link's secret or password."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from harness import STATS_TOKEN
from stats_seed import Hit, seed

AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}
DEMO_TOKEN = "demo-only-stats-token-0123456789"
AGENCY = "https://agency.example"
DEMO_PATH = "/demo-only-page-4b1e"
OTHER_PATH = "/other-only-page-9c2d"
PASSWORD = "correct horse battery"
NOW = datetime.now(ZoneInfo("Europe/Amsterdam")).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from harness import GatewayProcess, write_config

    folder = tmp_path_factory.mktemp("shared")
    config = write_config(folder, gateway={"trusted_proxies": ["127.0.0.1/32"]}, sites={
        "demo": {"origins": ["https://www.example.com"], "stats_tokens": [DEMO_TOKEN]},
        "other": {"origins": ["https://www.other.example"]},
        "framed": {"origins": ["https://www.framed.example"], "share_frame_ancestors": [AGENCY]},
    })
    seed(config, [Hit("demo", "d1", NOW, DEMO_PATH), Hit("demo", "d2", NOW, DEMO_PATH),
                  Hit("other", "o1", NOW, OTHER_PATH)])
    gw = GatewayProcess(config, folder).start()
    yield gw
    gw.kill()


def create(c: httpx.Client, site: str = "demo", headers: dict | None = None, **body: str) -> dict:
    r = c.post(f"/api/stats/{site}/shared-links", json=body, headers=headers or AUTH)
    assert r.status_code == 201, r.text
    return r.json()


def share_path(link: dict) -> str:
    path = "/" + link["url"].split("/", 3)[3]
    assert re.fullmatch(r"/share/[A-Za-z0-9_-]{43}", path)
    return path


def test_a_link_reads_its_site_only_and_nothing_else(gateway):
    with gateway.client() as admin, gateway.client() as visitor:
        link = create(admin, label="agency")
        page = visitor.get(share_path(link))
        assert page.status_code == 200 and 'id="kpis"' in page.text  # the dashboard itself
        assert "cg_share" in visitor.cookies
        assert visitor.get("/api/stats/sites").json()["sites"] == [{"name": "demo", "timezone": "Europe/Amsterdam", "can_write": False}]
        pages = visitor.get("/api/stats/demo/breakdown/page").json()["results"]
        assert pages == [{"value": DEMO_PATH, "visitors": 2, "pageviews": 2}]
        assert visitor.get("/api/stats/demo/summary").json()["current"]["visitors"] == 2
        # Another site, known or not, is as closed as to a site token of demo.
        for path in ("/api/stats/other/summary", "/api/stats/other/breakdown/page", "/api/stats/nosuch/summary"):
            r = visitor.get(path)
            assert r.status_code == 403 and OTHER_PATH not in r.text, (path, r.text)
        # Not the consent export, not the admin API, not the links themselves (read-only).
        assert visitor.get("/api/consents/demo").status_code == 403
        assert visitor.get("/api/stats/demo/shared-links").status_code == 403
        made = visitor.post("/api/stats/demo/shared-links", json={})
        assert made.status_code == 403 and "shared link" in made.json()["detail"]
        assert visitor.delete(f"/api/stats/demo/shared-links/{link['link_id']}").status_code == 403
        # The session is not a dashboard login of another kind: the bare API without the cookie is closed.
        assert httpx.get(f"{gateway.url}/api/stats/demo/summary").status_code == 401


def test_revoking_ends_the_link_and_its_open_sessions_at_their_next_request(gateway):
    with gateway.client() as admin, gateway.client() as visitor:
        link = create(admin)
        assert visitor.get(share_path(link)).status_code == 200
        assert visitor.get("/api/stats/demo/summary").status_code == 200
        listed = admin.get("/api/stats/demo/shared-links", headers=AUTH).json()["links"]
        assert link["link_id"] in [x["link_id"] for x in listed]
        r = admin.delete(f"/api/stats/demo/shared-links/{link['link_id']}", headers=AUTH)
        assert r.status_code == 200 and r.json() == {"revoked": True, "link_id": link["link_id"]}
        assert visitor.get("/api/stats/demo/summary").status_code == 401  # the open session, next request
        assert visitor.get("/api/stats/sites").status_code == 401
        again = visitor.get(share_path(link))
        assert again.status_code == 404 and "revoked" in again.json()["detail"]
        listed = admin.get("/api/stats/demo/shared-links", headers=AUTH).json()["links"]
        assert link["link_id"] not in [x["link_id"] for x in listed]
        assert admin.delete(f"/api/stats/demo/shared-links/{link['link_id']}", headers=AUTH).status_code == 404


def test_log_out_ends_the_shared_session_on_the_server_so_a_copied_cookie_is_dead(gateway):
    """Logging out clears the browser's cg_share and ends the session itself: a copy of the cookie (taken
    from the browser before, say) no longer reads the site, though the link stays live."""
    with gateway.client() as admin, gateway.client() as visitor:
        link = create(admin)
        assert visitor.get(share_path(link)).status_code == 200
        copied = visitor.cookies["cg_share"]
        assert visitor.post("/dashboard/logout", headers={"Origin": gateway.url}).status_code in (200, 303)
        with httpx.Client(base_url=gateway.url, cookies={"cg_share": copied}) as thief:
            assert thief.get("/api/stats/demo/summary").status_code == 401
        with gateway.client() as fresh:  # the link itself still opens a new session
            assert fresh.get(share_path(link)).status_code == 200
            assert fresh.get("/api/stats/demo/summary").status_code == 200


def test_a_site_token_manages_its_own_sites_links_only(gateway):
    own = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    with gateway.client() as c:
        link = create(c, headers=own)
        assert c.get("/api/stats/other/shared-links", headers=own).status_code == 403
        assert c.post("/api/stats/other/shared-links", json={}, headers=own).status_code == 403
        other = create(c, site="other")
        # demo's token cannot revoke another site's link, even by its id through its own site
        assert c.delete(f"/api/stats/demo/shared-links/{other['link_id']}", headers=own).status_code == 404
        assert c.delete(f"/api/stats/other/shared-links/{other['link_id']}", headers=own).status_code == 403
        assert c.delete(f"/api/stats/demo/shared-links/{link['link_id']}", headers=own).status_code == 200


def test_a_password_guards_the_link_and_its_attempts_are_limited(gateway):
    with gateway.client() as admin, gateway.client() as visitor:
        link = create(admin, password=PASSWORD)
        assert link["password"] is True and PASSWORD not in str(link)
        form = visitor.get(share_path(link))
        assert form.status_code == 200 and 'name="password"' in form.text and 'id="kpis"' not in form.text
        assert "cg_share" not in visitor.cookies
        assert visitor.get("/api/stats/demo/summary").status_code == 401
        wrong = visitor.post(share_path(link), data={"password": "not it"})
        assert wrong.status_code == 401 and "not the password" in wrong.text and "cg_share" not in visitor.cookies
        right = visitor.post(share_path(link), data={"password": PASSWORD})
        assert right.status_code == 303 and right.headers["location"] == share_path(link)
        assert visitor.get(share_path(link)).status_code == 200
        assert visitor.get("/api/stats/demo/summary").json()["current"]["visitors"] == 2
    # Guessing: the 10 failures a minute of stats tokens, from one network; then even the right one waits.
    with gateway.client(headers={"X-Forwarded-For": "203.0.113.9"}) as guesser:
        statuses = [guesser.post(share_path(link), data={"password": f"guess-{i}"}).status_code for i in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        blocked = guesser.post(share_path(link), data={"password": PASSWORD})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


def test_parallel_password_guesses_get_no_more_than_ten_answers(gateway):
    """30 wrong passwords at once from one network: each is counted before its (slow, threaded) check, so 10
    are answered 401 and the other 20 refused with 429. Counted after the check, a burst all got through."""
    import asyncio

    with gateway.client() as admin:
        path = share_path(create(admin, password=PASSWORD))

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30,
                                     headers={"X-Forwarded-For": "198.51.100.61"}) as c:  # a network no other test blocked
            answers = await asyncio.gather(*(c.post(path, data={"password": f"guess-{i}"}) for i in range(30)))
        return [r.status_code for r in answers]

    statuses = asyncio.run(burst())
    assert sorted(statuses) == [401] * 10 + [429] * 20, statuses


def test_parallel_unknown_link_addresses_get_no_more_than_ten_lookups(gateway):
    """The same for link addresses: 30 unknown ones at once from one network get 10 answers (404) and 20
    refusals (429), not 30 store lookups; opening a live link is not counted against the network."""
    import asyncio

    with gateway.client() as admin:
        live = share_path(create(admin, label="viewer"))
    net = {"X-Forwarded-For": "192.0.2.71"}  # a network (/24) no other test of this module blocks
    with gateway.client(headers=net) as viewer:
        assert all(viewer.get(live).status_code == 200 for _ in range(12))  # 12 opens: more than the limit

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=net) as c:
            answers = await asyncio.gather(*(c.get("/share/" + f"U{i:02d}" * 14) for i in range(30)))
        return [r.status_code for r in answers]

    statuses = asyncio.run(burst())
    assert sorted(statuses) == [404] * 10 + [429] * 20, statuses


def test_a_dashboard_session_manages_links_only_from_the_gateway_page(gateway):
    with gateway.client() as c:
        assert c.post("/dashboard/login", data={"token": STATS_TOKEN}).status_code == 303
        foreign = c.post("/api/stats/demo/shared-links", json={"label": "csrf"}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and foreign.json()["error"] == "bad_origin"
        listed = c.get("/api/stats/demo/shared-links").json()["links"]
        assert "csrf" not in [link["label"] for link in listed]
        own = c.post("/api/stats/demo/shared-links", json={"label": "own page"}, headers={"Origin": gateway.url})
        assert own.status_code == 201, own.text
        revoked = c.delete(f"/api/stats/demo/shared-links/{own.json()['link_id']}", headers={"Origin": "https://evil.example"})
        assert revoked.status_code == 403


def test_a_site_has_at_most_100_live_links(gateway):
    with gateway.client() as c:
        live = len(c.get("/api/stats/other/shared-links", headers=AUTH).json()["links"])
        made = [create(c, site="other", label=f"bulk {i}") for i in range(100 - live)]
        refused = c.post("/api/stats/other/shared-links", json={"label": "one too many"}, headers=AUTH)
        assert refused.status_code == 409 and "revoke unused ones" in refused.json()["detail"]
        assert c.delete(f"/api/stats/other/shared-links/{made[0]['link_id']}", headers=AUTH).status_code == 200
        create(c, site="other", label="room again")  # a revoked link no longer counts


def test_unknown_links_are_counted_as_failed_checks(gateway):
    # Share addresses hold 256 random bits; still, each miss counts like a wrong stats token.
    with gateway.client(headers={"X-Forwarded-For": "2001:db8:77::1"}) as c:
        misses = [c.get("/share/" + f"A{i:02d}" * 14) for i in range(9)] + [c.get("/share/" + "x" * 500)]
        assert [r.status_code for r in misses] == [404] * 10
        assert misses[0].json()["error"] == "not_found" and "revoked or mistyped" in misses[0].json()["detail"]
        assert c.get("/share/" + "B" * 43).status_code == 429
    # The gateway logs those 404s and 429s without the addresses asked for: a live link's secret would open it.
    logs = gateway.logs()
    assert "GET /share/<redacted>" in logs and "A00A01" not in logs and "B" * 43 not in logs


def test_framing_only_where_the_site_allows_it(gateway):
    with gateway.client() as admin, gateway.client() as visitor:
        closed = visitor.get(share_path(create(admin)))
        assert "frame-ancestors 'none'" in closed.headers["content-security-policy"]
        assert closed.headers["x-frame-options"] == "DENY"
        framed = visitor.get(share_path(create(admin, site="framed")))
        assert f"frame-ancestors {AGENCY};" in framed.headers["content-security-policy"]
        assert "x-frame-options" not in framed.headers
        form = visitor.get(share_path(create(admin, site="framed", password=PASSWORD)))
        assert f"frame-ancestors {AGENCY};" in form.headers["content-security-policy"]
        # The dashboard's own page stays unframeable.
        assert "frame-ancestors 'none'" in visitor.get("/dashboard").headers["content-security-policy"]


def test_bad_requests_are_clear_4xx(gateway):
    with gateway.client() as c:
        for body, word in (({"password": 5}, "string"), ({"password": "short"}, "shorter than 8"),
                           ({"label": "x" * 201}, "longer"), ({"expires": 1}, "unknown field")):
            r = c.post("/api/stats/demo/shared-links", json=body, headers=AUTH)
            assert r.status_code == 400 and word in r.json()["detail"], (body, r.text)
        assert c.post("/api/stats/demo/shared-links", content=b"[1]", headers=AUTH).status_code == 400
        assert c.post("/api/stats/nosuch/shared-links", json={}, headers=AUTH).status_code == 404
        assert c.post("/api/stats/demo/shared-links", json={}).status_code == 401


def test_the_store_keeps_no_secret_and_no_password(gateway):
    with gateway.client() as c:
        link = create(c, password=PASSWORD)
    secret = share_path(link).rsplit("/", 1)[1]
    gateway.stop()
    try:
        rows = gateway.sql("SELECT * FROM {db}.shared_links")
        dump = repr(rows)
        assert rows and secret not in dump and PASSWORD not in dump
        row = next(r for r in rows if r["link_id"] == link["link_id"])
        assert row["password_hash"].startswith("scrypt$") and len(row["secret_hash"]) == 64
    finally:
        gateway.start()


def test_the_shared_dashboard_in_a_browser_shows_one_site(gateway, browser):
    """The dashboard's own page and script, opened by a link: one site in the picker, its numbers drawn."""
    import os
    import tempfile
    from pathlib import Path

    shots = Path(os.environ.get("CONSENTGATE_SCREENSHOTS") or tempfile.mkdtemp(prefix="cg-shots-"))
    with gateway.client() as admin:
        link = create(admin, label="agency")
    ctx = browser.new_context(locale="en-US", viewport={"width": 1360, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(gateway.url + share_path(link))
        page.wait_for_function("() => !document.body.classList.contains('loading') "
                               "&& document.querySelectorAll('.kpi').length === 6")
        page.wait_for_load_state("networkidle")
        assert page.locator("#site option").all_inner_texts() == ["demo"]
        visitors = page.locator(".kpi", has=page.locator(".kpi-label", has_text="Visitors")).locator(".kpi-value")
        assert visitors.inner_text().strip() == "2"
        assert DEMO_PATH in page.locator('[data-panel="pages"]').inner_text()
        cookie = next(c for c in ctx.cookies() if c["name"] == "cg_share")
        assert cookie["httpOnly"] and page.evaluate("() => document.cookie") == ""
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "shared-dashboard.png"), full_page=True)
    finally:
        ctx.close()


OFF_THE_LOOP = r"""
import asyncio, json, sys, threading
from pathlib import Path
from starlette.testclient import TestClient
from gateway.app import create_app
from gateway.config import load_config
from gateway import shared_links

calls = []
live = shared_links.SharedLinks.live
def recording_live(self, link_id):
    try:
        asyncio.get_running_loop()
        calls.append("on the event loop")
    except RuntimeError:
        calls.append("in a thread")
    return live(self, link_id)
shared_links.SharedLinks.live = recording_live

app = create_app(load_config(sys.argv[1]))
with TestClient(app, base_url="http://testserver") as c:
    link = c.post("/api/stats/demo/shared-links", json={}, headers={"Authorization": "Bearer " + sys.argv[2]}).json()
    c.get("/" + link["url"].split("/", 3)[3], follow_redirects=False)
    calls.clear()
    codes = [c.get(f"/api/stats/demo/{path}").status_code for path in ("summary", "breakdown/page", "realtime")]
    codes.append(c.get("/api/stats/other/summary").status_code)
    page = c.get("/dashboard")  # the page itself: the shared dashboard, looked up off the loop too
    codes.append(page.status_code)
    shared = list(calls)
    # Logged in with a stats token as well: that session decides, and the link is not looked up at all.
    calls.clear()
    c.post("/dashboard/login", data={"token": sys.argv[2]}, headers={"Origin": "http://testserver"},
           follow_redirects=False)
    codes += [c.get(f"/api/stats/{site}/summary").status_code for site in ("demo", "other")]
print(json.dumps({"codes": codes, "calls": shared, "calls_logged_in": calls, "page": "login" in page.text[:3000].lower()}))
"""


def test_a_shared_sessions_link_is_looked_up_off_the_event_loop(tmp_path):
    """Each of the dashboard's calls in a shared session looks its link up in the store (~6 ms): on the event
    loop that stopped every other request, collect included, for that long."""
    import json
    import subprocess
    import sys

    from harness import ROOT, write_config

    config = write_config(tmp_path, sites={"demo": {"origins": ["https://www.example.com"]},
                                           "other": {"origins": ["https://www.other.example"]}})
    r = subprocess.run([sys.executable, "-c", OFF_THE_LOOP, str(config), STATS_TOKEN], cwd=ROOT, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["codes"] == [200, 200, 200, 403, 200, 200, 200]
    assert len(out["calls"]) == 5 and set(out["calls"]) == {"in a thread"}, out["calls"]  # 4 calls and the page
    assert out["calls_logged_in"] == [], out["calls_logged_in"]
