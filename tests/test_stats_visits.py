"""The stats of large ranges, answered from the tables analytics/visits.py derives from `events`,
against the same plain-Python reference as test_stats_api.

This gateway treats every range as large (`stats_exact_below = 0`), so closed days come from
the visits and hit_hours tables its builder made and the hours since are computed live. The summary,
timeseries and breakdown tests of test_stats_api are imported below: pytest runs them again here,
against this module's `gw` (the imported `api` fixture uses it), and they must give the same exact
numbers (the test data has no visit that crosses a range's first or last midnight, and the visitor
sketches are exact for a handful of visitors).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from analytics.visits import live_cut
from harness import ROOT, SITE_ORIGIN, UA_CHROME, GatewayProcess, grant, write_config
from stats_seed import Hit, seed
from test_stats_api import (  # noqa: F401  (imported tests run again against this module's gateway)
    AMS, AUTH, DECISIONS, END, HITS, NY_HITS, SITES, START, api, reference_days, reference_pages, reference_summary, rng, test_breakdown_csv_matches_json_and_defuses_formulas,
    test_daily_timeseries_is_exact_and_zero_filled, test_empty_range_gives_zeros, test_entry_and_exit_pages,
    test_event_breakdown, test_hit_attribute_breakdowns, test_hourly_buckets_use_the_site_timezone,
    test_limit_keeps_the_top_rows, test_page_breakdown, test_sources_are_grouped_into_channels,
    test_summary_counts_real_visits, test_summary_matches_the_hits, test_timeseries_csv_by_accept_header,
    test_visit_attribute_breakdowns, test_visit_breakdown_with_a_page_filter_counts_visits_holding_the_page,
    test_weekly_and_monthly_buckets_add_up, visits_of,
)

# Every range counts as large, and the builder looks twice a second.
TABLES = {"stats_exact_below": 0, "stats_refresh_seconds": 0.5}
NOW = datetime.now(timezone.utc)
# Hits before the live cut (the start of the last full hour) are in the tables, later ones live.
CUT = live_cut(NOW).replace(tzinfo=timezone.utc)
RECENT_FROM = CUT.astimezone(AMS).date() - timedelta(days=20)


def recent_hits(erased: str) -> list[Hit]:
    """Site `recent`: a visit in the built days, one across the live cut, one in the live hour,
    and `erased`'s visits (erased by a test)."""
    return [
        Hit("recent", "r1", CUT - timedelta(days=10), "/"),
        Hit("recent", "r1", CUT - timedelta(days=10) + timedelta(minutes=5), "/pricing", referrer_host="google.com"),
        Hit("recent", "r2", CUT - timedelta(minutes=10), "/", referrer_host="google.com"),
        Hit("recent", "r2", CUT + timedelta(minutes=10), "/pricing"),
        Hit("recent", "r2", CUT + timedelta(minutes=15), "/signup"),
        Hit("recent", "r3", CUT + timedelta(minutes=30), "/features"),
        Hit("recent", erased, CUT - timedelta(days=5), "/blog", referrer_host="facebook.com"),
        Hit("recent", erased, CUT - timedelta(days=2), "/"),
    ]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("stats-visits")
    config = write_config(folder, gateway=TABLES,
                          sites={**SITES, "recent": {"origins": [SITE_ORIGIN], "goals": [{"name": "Now", "page": "/now"}],
                                                     "funnels": [{"name": "Now", "steps": [{"page": "/"}, {"page": "/now"}]}]}})
    process = GatewayProcess(config, folder).start()
    with process.client() as c:  # a consent id whose past hits the erasure test erases
        process.erased = grant(c, site="recent", analytics=True)
    process.stop()
    seed(config, HITS + NY_HITS + recent_hits(process.erased["consent_id"]), DECISIONS)
    process.start()
    # The first stats request starts the builder; wait until the table answers the test range.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shop = httpx.get(f"{process.url}/api/stats/shop/summary", headers=AUTH).json()
        recent = httpx.get(f"{process.url}/api/stats/recent/summary", params=recent_range(), headers=AUTH).json()
        if shop["exact"] is False and recent["exact"] is False:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the visits table was not built within 60 s:\n" + process.logs()[-3000:])
    yield process
    process.kill()


def wait_for_tables(url: str, site: str, params: dict[str, str]) -> None:
    """Waits until the tables answer `site`'s summary over the range (the first stats request starts the builder)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/api/stats/{site}/summary", params=params, headers=AUTH).json()["exact"] is False:
            return
        time.sleep(0.2)
    raise AssertionError(f"the visits table was not built within 60 s for {site}")


def recent_range() -> dict[str, str]:
    return {"from": str(RECENT_FROM), "to": str(datetime.now(AMS).date())}


def totals(hits: list[Hit]) -> dict[str, int]:
    visits = visits_of(hits)
    return {"visitors": len({v[0].visitor for v in visits}), "visits": len(visits),
            "pageviews": sum(h.type == "pageview" for v in visits for h in v)}


def test_ranges_up_to_now_join_built_days_and_live_hours(gw, api):
    """r2's visit crosses the live cut and counts once; r3's visit is live; a hit stored over HTTP a
    moment ago counts at once."""
    body = api.get("/recent/summary", params=recent_range()).json()
    assert body["exact"] is False
    expected = totals(recent_hits(gw.erased["consent_id"]))
    assert {k: body["current"][k] for k in expected} == expected
    with gw.client() as c:
        token = grant(c, site="recent", analytics=True)["token"]
        r = c.post("/s/recent/collect", json={"url": "https://www.example.com/now", "consent": token},
                   headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME})
        assert r.headers["x-consentgate-result"] == "stored"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = api.get("/recent/summary", params=recent_range()).json()["current"]
        if now["pageviews"] == expected["pageviews"] + 1:
            break
        time.sleep(0.2)
    assert {k: now[k] for k in expected} == {k: v + 1 for k, v in expected.items()}
    # a filter on the live visits (sessionized at query time, beside the table's)
    live = api.get("/recent/summary", params={**recent_range(), "page": "/now"}).json()["current"]
    assert (live["visits"], live["pageviews"]) == (1, 1)
    # a goal and a funnel over the live visits too (equality steps: the visits' hit keys, computed live)
    now_goal = api.get("/recent/conversions", params=recent_range()).json()["results"]
    assert [(g["name"], g["conversions"], g["completions"]) for g in now_goal] == [("Now", 1, 1)]
    funnel = api.get("/recent/funnels/config:Now", params=recent_range()).json()["results"]
    home_visitors = len({h.visitor for h in recent_hits(gw.erased["consent_id"]) if h.path == "/"})
    assert [s["visitors"] for s in funnel] == [home_visitors, 0]  # /now was a visit of its own
    sources = api.get("/recent/breakdown/source", params=recent_range()).json()["results"]
    assert {r["value"]: r["visits"] for r in sources} == {"search": 1, "social": 1, "direct": 4}
    pages = api.get("/recent/breakdown/page", params={**recent_range(), "limit": "100"}).json()
    expected_pages: dict[str, int] = {"/now": 1}
    for h in recent_hits(gw.erased["consent_id"]):
        expected_pages[h.path] = expected_pages.get(h.path, 0) + 1
    assert pages["exact"] is False and {r["value"]: r["pageviews"] for r in pages["results"]} == expected_pages
    days = api.get("/recent/timeseries", params=recent_range()).json()["results"]
    assert sum(d["pageviews"] for d in days) == sum(expected_pages.values())


@pytest.mark.parametrize("filters", [{"page": "/pricing"}, {"country": "BE"}, {"event": "signup"},
                                     {"page": "/pricing", "source": "direct"}, {"source": "search"},
                                     {"page": "/pricing", "country": "BE"}])
def test_filtered_ranges_are_answered_from_the_visits_table(api, filters):
    """Hit filters test each visit's hit arrays in the visits table (`exact: false`, as for every large range),
    with the numbers the hits give (no visit of the test data crosses a range's first or last midnight)."""
    body = api.get("/shop/summary", params=rng(**filters)).json()
    assert body["exact"] is False
    assert body["current"] == reference_summary(START, END, filters)
    days = api.get("/shop/timeseries", params=rng(interval="day", **filters)).json()
    assert days["exact"] is False and days["results"] == reference_days(START, END, filters)
    pages = api.get("/shop/breakdown/page", params=rng(limit="100", **filters)).json()
    assert pages["exact"] is False
    assert {r["value"]: (r["visitors"], r["pageviews"]) for r in pages["results"]} == reference_pages(START, END, filters)


def test_erasure_removes_the_visitor_from_the_visits_table(gw, api):
    token = gw.erased["token"]
    before = api.get("/recent/summary", params=recent_range()).json()["current"]
    with gw.client() as c:
        erased = c.delete("/s/recent/privacy/me", headers={"X-Consent-Token": token}).json()
    assert erased["events"] == 2
    after = api.get("/recent/summary", params=recent_range()).json()
    assert after["exact"] is False
    assert (after["current"]["visitors"], after["current"]["visits"]) == (before["visitors"] - 1, before["visits"] - 2)
    sources = api.get("/recent/breakdown/source", params=recent_range()).json()["results"]
    assert "social" not in {r["value"] for r in sources}
    # the hour sketches follow when the builder has rebuilt the erased visitor's days
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pages = api.get("/recent/breakdown/page", params={**recent_range(), "limit": "100"}).json()
        if "/blog" not in {r["value"] for r in pages["results"]}:
            break
        time.sleep(0.2)
    assert pages["exact"] is False and "/blog" not in {r["value"] for r in pages["results"]}
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.visits WHERE visitor_hash = sipHash64('%s')"
                  % gw.erased["consent_id"]) == [{"n": 0}]
    assert gw.sql("SELECT count() AS n FROM {db}.visits WHERE site = 'recent'") != [{"n": 0}]


LAYOUT_CHECK = """
import json, sys
from datetime import datetime, timedelta, timezone
from analytics import visits
from analytics.store import Store

store = Store("chdb://" + sys.argv[1])
store.migrate()
now = datetime.now(timezone.utc)
day = (now - timedelta(days=3)).date()
lo = datetime(day.year, day.month, day.day)
store.command("INSERT INTO {db}.events (event_id, site, timestamp, type, visitor_id, path) VALUES "
              "(generateUUIDv4(), 's', toDateTime64({t:DateTime64(3)}, 3, 'UTC'), 'pageview', 'v1', '/a'), "
              "(generateUUIDv4(), 's', toDateTime64({t:DateTime64(3)}, 3, 'UTC') + INTERVAL 1 MINUTE, 'pageview', 'v1', '/b')",
              {"t": lo + timedelta(hours=10)})
covered = lambda: visits.coverage(store, "s", lo, lo + timedelta(days=1)) is not None
out = {"built": visits.refresh(store, now) > 0 and covered()}
# the newest row of the day names the layout a build before the hit arrays wrote (0)
store.command("INSERT INTO {db}.visit_days (site, day, hits, until, closed, build, built_at, layout) "
              "SELECT site, day, hits, until, closed, build, built_at + INTERVAL 1 SECOND, 0 FROM {db}.visit_days "
              "WHERE site = 's' AND day = {day:Date}", {"day": day})
out["old_layout_covered"] = covered()
out["old_layout_due"] = day in visits.due_days(store, now).get("s", {})
visits.refresh(store, now)
out["rebuilt"] = covered()
out["arrays"] = store.query("SELECT hit_path, hit_ms, hit_type FROM {db}.visits WHERE site = 's' AND build IN "
                            "(SELECT argMax(build, built_at) FROM {db}.visit_days WHERE site = 's' GROUP BY day)")
print(json.dumps(out))
store.close()
"""


def test_days_built_with_an_older_layout_are_read_from_the_hits_until_rebuilt(tmp_path):
    """Days built before the visits table held its hits' arrays (layout 0) are not read from the tables (the
    stats take the hits) and are due for a rebuild, which writes the arrays: an upgraded store gets them."""
    out = subprocess.run([sys.executable, "-c", LAYOUT_CHECK, str(tmp_path / "store")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.splitlines()[-1])
    assert found == {"built": True, "old_layout_covered": False, "old_layout_due": True, "rebuilt": True,
                     "arrays": [[["/a", "/b"], [0, 60000], ["pageview", "pageview"]]]}
