"""The stats API on a real gateway over a real store holding hits at known times.

Every expected number is computed here, in plain Python, from the hits the test wrote
(`reference_*`), never copied from the gateway's answer.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest

from harness import SITE_ORIGIN, STATS_TOKEN, UA_CHROME, GatewayProcess, grant, write_config
from stats_seed import Decision, Hit, seed, visits_of

TOKEN = STATS_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AMS = ZoneInfo("Europe/Amsterdam")
NY = ZoneInfo("America/New_York")
TODAY = datetime.now(AMS).date()
D0 = TODAY - timedelta(days=12)  # the test range is D0 .. D0 + 6
START, END = D0, D0 + timedelta(days=6)
XSS_PATH = "/<script>alert('x')</script>"
UNIQUE_PATH = "/only-in-the-stats-7f3a"  # a value no route may show without a token
FORMULA = '=HYPERLINK("http://evil.example","click")'  # a spreadsheet formula as a UTM tag
SOURCE_OF = {"google.com": "search", "facebook.com": "social", "evil.example": "referral"}


def at(day: date, hh: int, mm: int, zone: ZoneInfo = AMS) -> datetime:
    return datetime.combine(day, time(hh, mm), zone)


def day(n: int) -> date:
    return D0 + timedelta(days=n)


HITS = [
    # v1: a 3-page visit from Google with a signup event, then a direct bounce in the afternoon
    Hit("shop", "v1", at(day(0), 9, 0), "/", referrer_host="google.com"),
    Hit("shop", "v1", at(day(0), 9, 5), "/pricing"),
    Hit("shop", "v1", at(day(0), 9, 20), "/signup"),
    Hit("shop", "v1", at(day(0), 9, 21), "/signup", type="event", name="signup"),
    Hit("shop", "v1", at(day(0), 14, 0), "/"),
    # v2 (mobile, BE): from Facebook, then back after 45 minutes: two visits
    Hit("shop", "v2", at(day(0), 10, 0), "/blog", referrer_host="facebook.com", browser="Mobile Safari", os="iOS",
        device="mobile", country="BE"),
    Hit("shop", "v2", at(day(0), 10, 45), "/pricing", browser="Mobile Safari", os="iOS", device="mobile", country="BE"),
    # v3: a newsletter visit across local midnight (one visit, two days)
    Hit("shop", "v3", at(day(1), 23, 50), "/", utm_source="newsletter", utm_medium="email", utm_campaign="nov-digest"),
    Hit("shop", "v3", at(day(2), 0, 10), "/pricing"),
    # v4 (US): an attacker-shaped path and referrer
    Hit("shop", "v4", at(day(3), 12, 0), XSS_PATH, referrer_host="evil.example", country="US", browser="Firefox"),
    Hit("shop", "v4", at(day(3), 12, 3), UNIQUE_PATH, country="US", browser="Firefox"),
    # v5: 29-minute gaps keep one visit; a formula-shaped path for the CSV export
    Hit("shop", "v5", at(day(5), 8, 0), "/", referrer_host="google.com", utm_campaign=FORMULA),
    Hit("shop", "v5", at(day(5), 8, 29), "/features"),
    Hit("shop", "v5", at(day(5), 8, 58), "/pricing"),
    Hit("shop", "v5", at(day(5), 9, 0), "/contact"),
    Hit("shop", "v5", at(day(6), 23, 59), "/"),
    # the previous period (D0-7 .. D0-1) and outside both periods
    Hit("shop", "v6", at(day(-3), 11, 0), "/", referrer_host="google.com"),
    Hit("shop", "v6", at(day(-3), 11, 10), "/pricing"),
    Hit("shop", "v1", at(day(-7), 0, 5), "/blog"),
    Hit("shop", "v7", at(day(-30), 12, 0), "/"),
    Hit("shop", "v7", at(day(7), 0, 1), "/"),  # just after the range ends (local midnight)
    # another site: never in shop's numbers
    Hit("other", "x1", at(day(1), 12, 0), "/other-site-page"),
]
# New York: hits near midnight UTC, so the local day differs from the UTC and Amsterdam days.
NY_HITS = [
    Hit("ny", "n1", datetime.combine(day(2), time(3, 30), timezone.utc), "/late-night"),
    Hit("ny", "n2", datetime.combine(day(2), time(4, 30), timezone.utc), "/early"),
    Hit("ny", "n3", datetime.combine(day(2), time(5, 30), timezone.utc), "/morning"),
    Hit("ny", "n1", datetime.combine(day(3), time(16, 0), timezone.utc), "/afternoon"),
]
DECISIONS = [
    Decision("shop", "c1", at(day(0), 8, 0), "accept_all", True, True, True),
    Decision("shop", "c2", at(day(0), 9, 0), "accept_all", True, True, True),
    Decision("shop", "c3", at(day(1), 9, 0), "accept_all", True, True, True),
    Decision("shop", "c4", at(day(1), 10, 0), "reject_all"),
    Decision("shop", "c5", at(day(2), 10, 0), "reject_all"),
    Decision("shop", "c6", at(day(2), 11, 0), "custom", analytics=True),
    Decision("shop", "c7", at(day(4), 11, 0), "gpc"),
    Decision("shop", "c1", at(day(5), 12, 0), "withdraw"),
    Decision("shop", "c8", at(day(-2), 12, 0), "accept_all", True, True, True),  # previous period
]
HIT_FILTER_FIELD = {"page": "path", "event": "name", "country": "country", "browser": "browser", "os": "os",
                    "device": "device"}


# ---- the reference: plain Python over the hits -------------------------------------------------

def in_range(hits: list[Hit], start: date, end: date, zone: ZoneInfo = AMS, site: str = "shop") -> list[Hit]:
    return [h for h in hits if h.site == site and start <= h.at.astimezone(zone).date() <= end]


def source_of(first: Hit) -> str:
    if first.utm_medium == "email":
        return "email"
    if not first.referrer_host:
        return "direct"
    return SOURCE_OF[first.referrer_host]


def hit_matches(h: Hit, filters: dict[str, str]) -> bool:
    return all(getattr(h, HIT_FILTER_FIELD[k]) == v for k, v in filters.items() if k in HIT_FILTER_FIELD)


def visit_matches(v: list[Hit], filters: dict[str, str]) -> bool:
    first = v[0]
    attrs = {"referrer_host": first.referrer_host, "source": source_of(first), "utm_source": first.utm_source,
             "utm_medium": first.utm_medium, "utm_campaign": first.utm_campaign}
    return all(attrs[k] == val for k, val in filters.items() if k in attrs) and any(hit_matches(h, filters) for h in v)


def reference_summary(start: date, end: date, filters: dict[str, str]) -> dict:
    visits = [v for v in visits_of(in_range(HITS, start, end)) if visit_matches(v, filters)]
    pageviews = sum(1 for v in visits for h in v if h.type == "pageview" and hit_matches(h, filters))
    bounces = sum(1 for v in visits if sum(h.type == "pageview" for h in v) <= 1)
    duration = sum((v[-1].at - v[0].at).total_seconds() for v in visits)
    n = len(visits)
    return {"visitors": len({v[0].visitor for v in visits}), "visits": n, "pageviews": pageviews,
            "views_per_visit": round(pageviews / n, 2) if n else 0.0,
            "bounce_rate": round(100 * bounces / n, 1) if n else 0.0,
            "visit_duration": round(duration / n) if n else 0}


def matching_hits(start: date, end: date, filters: dict[str, str]) -> list[Hit]:
    visits = [v for v in visits_of(in_range(HITS, start, end)) if visit_matches(v, filters)]
    return [h for v in visits for h in v if hit_matches(h, filters)]


def reference_days(start: date, end: date, filters: dict[str, str]) -> list[dict]:
    hits = matching_hits(start, end, filters)
    out = []
    d = start
    while d <= end:
        own = [h for h in hits if h.at.astimezone(AMS).date() == d]
        out.append({"bucket": str(d), "visitors": len({h.visitor for h in own}),
                    "pageviews": sum(h.type == "pageview" for h in own)})
        d += timedelta(days=1)
    return out


def reference_pages(start: date, end: date, filters: dict[str, str]) -> dict[str, tuple[int, int]]:
    rows: dict[str, tuple[set, int]] = {}
    for h in matching_hits(start, end, filters):
        if h.type == "pageview":
            visitors, n = rows.get(h.path, (set(), 0))
            rows[h.path] = (visitors | {h.visitor}, n + 1)
    return {k: (len(v), n) for k, (v, n) in rows.items()}


def reference_sources(start: date, end: date) -> dict[str, tuple[int, int, int]]:
    rows: dict[str, list] = {}
    for v in visits_of(in_range(HITS, start, end)):
        row = rows.setdefault(source_of(v[0]), [set(), 0, 0])
        row[0].add(v[0].visitor)
        row[1] += 1
        row[2] += sum(h.type == "pageview" for h in v)
    return {k: (len(r[0]), r[1], r[2]) for k, r in rows.items()}


# ---- the gateway -----------------------------------------------------------------------------

SITES = {
    "shop": {"origins": [SITE_ORIGIN]},
    "other": {"origins": ["https://www.other.example"]},
    "ny": {"origins": ["https://ny.example"], "timezone": "America/New_York"},
    "live": {"origins": [SITE_ORIGIN]},
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("stats")
    config = write_config(folder, sites=SITES)
    seed(config, HITS + NY_HITS, DECISIONS)
    process = GatewayProcess(config, folder).start()
    yield process
    process.kill()


@pytest.fixture
def api(gw: GatewayProcess):
    with httpx.Client(base_url=f"{gw.url}/api/stats", timeout=30, headers=AUTH) as client:
        yield client


def rng(**extra: str) -> dict[str, str]:
    return {"from": str(START), "to": str(END), **extra}


# ---- summary ---------------------------------------------------------------------------------

@pytest.mark.parametrize("filters", [
    {}, {"page": "/pricing"}, {"source": "search"}, {"referrer_host": "facebook.com"}, {"country": "BE"},
    {"device": "mobile"}, {"utm_campaign": "nov-digest"}, {"event": "signup"}, {"page": "/pricing", "source": "direct"},
    {"browser": "Firefox"}, {"page": "/nowhere"},
])
def test_summary_matches_the_hits(api, filters):
    r = api.get("/shop/summary", params=rng(**filters))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["current"] == reference_summary(START, END, filters)
    prev_end = START - timedelta(days=1)
    prev_start = prev_end - timedelta(days=6)
    assert body["previous"] == reference_summary(prev_start, prev_end, filters)
    assert body["previous_period"] == {"from": str(prev_start), "to": str(prev_end)}
    for key, now in body["current"].items():
        before = body["previous"][key]
        assert body["change"][key] == (round(100 * (now - before) / before, 1) if before else None)


def test_summary_counts_real_visits(api):
    """Spot checks that do not go through the reference: v2 came back after 45 minutes (two visits),
    v3's visit crosses midnight (one), v5's 29-minute gaps keep one visit."""
    one_day = api.get("/shop/summary", params={"from": str(day(0)), "to": str(day(0))}).json()["current"]
    assert one_day["visitors"] == 2 and one_day["visits"] == 4
    midnight = api.get("/shop/summary", params={"from": str(day(1)), "to": str(day(2))}).json()["current"]
    assert midnight["visits"] == 1 and midnight["visit_duration"] == 20 * 60


def test_default_range_is_the_last_30_days_in_the_site_timezone(api):
    body = api.get("/shop/summary").json()
    assert body["to"] == str(datetime.now(AMS).date())
    assert date.fromisoformat(body["to"]) - date.fromisoformat(body["from"]) == timedelta(days=29)
    assert body["timezone"] == "Europe/Amsterdam"


# ---- timeseries ------------------------------------------------------------------------------

@pytest.mark.parametrize("filters", [{}, {"source": "search"}, {"page": "/"}, {"country": "US"},
                                     {"utm_campaign": "nov-digest", "country": "NL"}, {"source": "email", "page": "/pricing"}])
def test_daily_timeseries_is_exact_and_zero_filled(api, filters):
    body = api.get("/shop/timeseries", params=rng(interval="day", **filters)).json()
    assert body["interval"] == "day"
    assert body["results"] == reference_days(START, END, filters)


def test_weekly_and_monthly_buckets_add_up(api):
    days = reference_days(START, END, {})
    for interval, key in (("week", lambda d: d - timedelta(days=d.weekday())), ("month", lambda d: d.replace(day=1))):
        results = api.get("/shop/timeseries", params=rng(interval=interval)).json()["results"]
        expected: dict[str, int] = {}
        for row in days:
            bucket = str(key(date.fromisoformat(row["bucket"])))
            expected[bucket] = expected.get(bucket, 0) + row["pageviews"]
        assert {r["bucket"]: r["pageviews"] for r in results} == expected


def test_hourly_buckets_use_the_site_timezone(api):
    """The same instants land in New York's own days and hours."""
    start, end = day(1), day(3)
    results = api.get("/ny/timeseries", params={"from": str(start), "to": str(end), "interval": "hour"}).json()["results"]
    assert len(results) == 3 * 24
    expected: dict[str, int] = defaultdict(int)
    for h in NY_HITS:
        local = h.at.astimezone(NY)
        if start <= local.date() <= end:
            expected[local.strftime("%Y-%m-%dT%H:00")] += 1
    assert {r["bucket"]: r["pageviews"] for r in results if r["pageviews"]} == dict(expected)
    daily = api.get("/ny/timeseries", params={"from": str(start), "to": str(end)}).json()["results"]
    per_day: dict[str, int] = defaultdict(int)
    for h in NY_HITS:
        per_day[str(h.at.astimezone(NY).date())] += 1
    assert {r["bucket"]: r["pageviews"] for r in daily} == {str(start + timedelta(days=i)): per_day.get(
        str(start + timedelta(days=i)), 0) for i in range(3)}
    # hits of the UTC day 2 around 03:30 are the evening before in New York
    assert per_day[str(day(1))] >= 1


def test_empty_range_gives_zeros(api):
    empty = {"from": "2020-01-01", "to": "2020-01-07"}
    summary = api.get("/shop/summary", params=empty).json()["current"]
    assert summary == {"visitors": 0, "visits": 0, "pageviews": 0, "views_per_visit": 0.0, "bounce_rate": 0.0,
                       "visit_duration": 0}
    series = api.get("/shop/timeseries", params=empty).json()["results"]
    assert [r["bucket"] for r in series] == [f"2020-01-0{i}" for i in range(1, 8)]
    assert all(r["visitors"] == 0 and r["pageviews"] == 0 for r in series)
    assert api.get("/shop/breakdown/page", params=empty).json()["results"] == []


# ---- breakdowns ------------------------------------------------------------------------------

@pytest.mark.parametrize("filters", [{}, {"source": "search"}, {"device": "mobile"}, {"referrer_host": "facebook.com"},
                                     {"source": "email", "utm_campaign": "nov-digest"}])
def test_page_breakdown(api, filters):
    rows = api.get("/shop/breakdown/page", params=rng(limit="100", **filters)).json()["results"]
    assert {r["value"]: (r["visitors"], r["pageviews"]) for r in rows} == reference_pages(START, END, filters)
    assert [r["visitors"] for r in rows] == sorted((r["visitors"] for r in rows), reverse=True)


def test_limit_keeps_the_top_rows(api):
    rows = api.get("/shop/breakdown/page", params=rng(limit="2")).json()["results"]
    expected = reference_pages(START, END, {})
    assert len(rows) == 2
    top = sorted(expected.values(), reverse=True)[:2]
    assert sorted(((r["visitors"], r["pageviews"]) for r in rows), reverse=True) == top


def test_sources_are_grouped_into_channels(api):
    rows = api.get("/shop/breakdown/source", params=rng()).json()["results"]
    assert {r["value"]: (r["visitors"], r["visits"], r["pageviews"]) for r in rows} == reference_sources(START, END)


def test_visit_breakdown_with_a_page_filter_counts_visits_holding_the_page(api):
    rows = api.get("/shop/breakdown/source", params=rng(page="/pricing")).json()["results"]
    expected: dict[str, list] = {}
    for v in visits_of(in_range(HITS, START, END)):
        if visit_matches(v, {"page": "/pricing"}):
            row = expected.setdefault(source_of(v[0]), [set(), 0, 0])
            row[0].add(v[0].visitor)
            row[1] += 1
            row[2] += sum(h.type == "pageview" and h.path == "/pricing" for h in v)
    assert {r["value"]: (r["visitors"], r["visits"], r["pageviews"]) for r in rows} == {
        k: (len(r[0]), r[1], r[2]) for k, r in expected.items()}


@pytest.mark.parametrize("dimension,field", [
    ("referrer_host", "referrer_host"), ("utm_source", "utm_source"), ("utm_medium", "utm_medium"),
    ("utm_campaign", "utm_campaign"),
])
def test_visit_attribute_breakdowns(api, dimension, field):
    rows = api.get(f"/shop/breakdown/{dimension}", params=rng()).json()["results"]
    expected: dict[str, list] = {}
    for v in visits_of(in_range(HITS, START, END)):
        value = getattr(v[0], field)
        if value:
            row = expected.setdefault(value, [set(), 0])
            row[0].add(v[0].visitor)
            row[1] += 1
    assert {r["value"]: (r["visitors"], r["visits"]) for r in rows} == {k: (len(s), n) for k, (s, n) in expected.items()}


@pytest.mark.parametrize("dimension", ["entry_page", "exit_page"])
def test_entry_and_exit_pages(api, dimension):
    rows = api.get(f"/shop/breakdown/{dimension}", params=rng()).json()["results"]
    expected: dict[str, int] = defaultdict(int)
    for v in visits_of(in_range(HITS, START, END)):
        pages = [h.path for h in v if h.type == "pageview"]
        expected[pages[0] if dimension == "entry_page" else pages[-1]] += 1
    assert {r["value"]: r["visits"] for r in rows} == dict(expected)


@pytest.mark.parametrize("dimension,field", [("browser", "browser"), ("os", "os"), ("device", "device"),
                                             ("country", "country")])
def test_hit_attribute_breakdowns(api, dimension, field):
    rows = api.get(f"/shop/breakdown/{dimension}", params=rng()).json()["results"]
    expected: dict[str, list] = {}
    for h in in_range(HITS, START, END):
        if h.type == "pageview":
            row = expected.setdefault(getattr(h, field), [set(), 0])
            row[0].add(h.visitor)
            row[1] += 1
    assert {r["value"]: (r["visitors"], r["pageviews"]) for r in rows} == {k: (len(s), n) for k, (s, n) in expected.items()}


def test_event_breakdown(api):
    rows = api.get("/shop/breakdown/event", params=rng()).json()["results"]
    events = [h for h in in_range(HITS, START, END) if h.type == "event"]
    assert rows == [{"value": "signup", "visitors": len({h.visitor for h in events}), "events": len(events)}]


def test_attacker_shaped_values_come_back_verbatim_in_json(api):
    pages = {r["value"] for r in api.get("/shop/breakdown/page", params=rng(limit="100")).json()["results"]}
    assert XSS_PATH in pages
    r = api.get("/shop/summary", params=rng(page=XSS_PATH))
    assert r.json()["current"] == reference_summary(START, END, {"page": XSS_PATH})
    assert r.headers["content-type"].startswith("application/json")


# ---- CSV -------------------------------------------------------------------------------------

def test_breakdown_csv_matches_json_and_defuses_formulas(api):
    for dimension, counted in (("page", "pageviews"), ("utm_campaign", "visits")):
        as_json = api.get(f"/shop/breakdown/{dimension}", params=rng(limit="100")).json()["results"]
        r = api.get(f"/shop/breakdown/{dimension}", params=rng(limit="100", format="csv"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["value"] for row in rows] == [("'" + j["value"]) if j["value"].startswith("=") else j["value"]
                                                  for j in as_json]
        assert [(int(row["visitors"]), int(row[counted])) for row in rows] == [(j["visitors"], j[counted]) for j in as_json]
    assert "'" + FORMULA in [row["value"] for row in rows]


def test_timeseries_csv_by_accept_header(api):
    r = api.get("/shop/timeseries", params=rng(), headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [{"bucket": row["bucket"], "visitors": int(row["visitors"]), "pageviews": int(row["pageviews"])}
            for row in rows] == reference_days(START, END, {})


# ---- consent ---------------------------------------------------------------------------------

def test_consent_statistics(api):
    body = api.get("/shop/consent", params=rng()).json()
    inside = [d for d in DECISIONS if START <= d.at.astimezone(AMS).date() <= END]
    grants = [d for d in inside if d.method != "withdraw"]
    assert body["decisions"] == len(grants)
    assert body["methods"] == {m: sum(d.method == m for d in grants) for m in ("accept_all", "reject_all", "custom", "gpc")}
    assert body["withdrawals"] == sum(d.method == "withdraw" for d in inside)
    for cat in ("analytics", "marketing", "preferences"):
        assert body["opt_in_rate"][cat] == round(100 * sum(getattr(d, cat) for d in grants) / len(grants), 1)
    latest = {}
    for d in sorted(inside, key=lambda d: d.at):
        latest[d.consent_id] = d.analytics and d.method != "withdraw"
    assert body["visitors_with_analytics"] == sum(latest.values())
    assert body["visitors_without_analytics"] == len(latest) - sum(latest.values())
    assert len(body["daily"]) == 7
    first = body["daily"][0]
    assert first["day"] == str(START) and first["accept_all"] == 2


# ---- realtime --------------------------------------------------------------------------------

def test_realtime_shows_hits_of_the_last_minutes(gw, api):
    for path, visitor_pages in (("/now-a", 2), ("/now-b", 1)):
        with gw.client() as c:  # a client each: two visitors, two consent ids
            token = grant(c, site="live", analytics=True)["token"]
            for _ in range(visitor_pages):
                r = c.post("/s/live/collect", json={"url": f"https://www.example.com{path}", "consent": token},
                           headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME})
                assert r.headers["x-consentgate-result"] == "stored"
    import time as clock
    deadline = clock.monotonic() + 20
    body: dict = {}
    while clock.monotonic() < deadline:
        body = api.get("/live/realtime").json()
        if body["pageviews"] == 3:
            break
        clock.sleep(0.2)
    assert body["visitors"] == 2 and body["pageviews"] == 3
    assert body["pages"] == [{"value": "/now-a", "visitors": 1, "pageviews": 2},
                             {"value": "/now-b", "visitors": 1, "pageviews": 1}]
    filtered = api.get("/live/realtime", params={"page": "/now-b"}).json()
    assert (filtered["visitors"], filtered["pageviews"]) == (1, 1)
    # old hits are not "now"
    assert api.get("/shop/realtime").json()["visitors"] == 0


# ---- bad parameters --------------------------------------------------------------------------

@pytest.mark.parametrize("path,params,words", [
    ("/shop/summary", {"from": "2026-13-01"}, "'from' must be a date"),
    ("/shop/summary", {"to": "yesterday"}, "'to' must be a date"),
    ("/shop/summary", {"from": "2026-02-10", "to": "2026-02-01"}, "after 'to'"),
    ("/shop/summary", {"from": "2020-01-01", "to": "2026-01-01"}, "longer than"),
    ("/shop/summary", {"colour": "red"}, "unknown parameter 'colour'"),
    ("/shop/summary", {"format": "xml"}, "'format' must be json or csv"),
    ("/shop/summary", {"format": "csv"}, "CSV is available for timeseries and breakdown"),
    ("/shop/summary", {"page": "/" + "x" * 600}, "longer than 512"),
    ("/shop/timeseries", {"interval": "minute"}, "'interval' must be one of"),
    ("/shop/timeseries", {"interval": "hour", "from": "2026-01-01", "to": "2026-03-01"}, "hourly buckets"),
    ("/shop/breakdown/colour", {}, "unknown dimension 'colour'"),
    ("/shop/breakdown/page", {"limit": "0"}, "'limit' must be a whole number"),
    ("/shop/breakdown/page", {"limit": "ten"}, "'limit' must be a whole number"),
    ("/shop/consent", {"page": "/"}, "cannot be filtered"),
    ("/shop/realtime", {"source": "search"}, "realtime cannot be filtered by source"),
])
def test_bad_parameters_are_400_with_a_clear_message(api, path, params, words):
    r = api.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request" and words in r.json()["detail"]


def test_repeated_parameter_is_400(api):
    r = api.get("/shop/summary?page=/a&page=/b")
    assert r.status_code == 400 and "given twice" in r.json()["detail"]


def test_unknown_site_is_404(api):
    r = api.get("/nosuchsite/summary")
    assert r.status_code == 404 and r.json()["error"] == "unknown_site"


# ---- auth ------------------------------------------------------------------------------------

STATS_PATHS = ["/api/stats/sites", "/api/stats/shop/summary", "/api/stats/shop/timeseries",
               "/api/stats/shop/breakdown/page", "/api/stats/shop/consent", "/api/stats/shop/realtime",
               "/api/stats/shop/breakdown/page?format=csv"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer"}, {"Cookie": "cg_stats=forged.value.here"}])
def test_stats_routes_need_a_stats_token(gw, headers):
    for path in STATS_PATHS:
        r = httpx.get(gw.url + path, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"] == "unauthorized" and "Bearer" in r.json()["detail"]
        assert UNIQUE_PATH not in r.text


def test_no_stats_leak_from_unauthenticated_routes(gw):
    """Values only the stats hold (paths, campaigns, referrers) appear on no route without a token."""
    secrets = [UNIQUE_PATH, "nov-digest", "evil.example", "Mobile Safari", "alert('x')"]
    paths = ["/dashboard", "/api/stats/openapi.json", "/healthz", "/metrics", "/dashboard/assets/dashboard.js",
             "/s/shop/consent", "/s/shop/privacy/me", "/api/stats/shop", "/api/stats/shop/breakdown"]
    for path in paths:
        r = httpx.get(gw.url + path)
        assert r.status_code < 500, path
        for secret in secrets:
            assert secret not in r.text, (path, secret)


def test_dashboard_session_login_and_logout(gw):
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        page = c.get("/dashboard")
        assert page.status_code == 200 and 'name="token"' in page.text and "/pricing" not in page.text
        bad = c.post("/dashboard/login", data={"token": "nope"})
        assert bad.status_code == 401 and "cg_stats" not in bad.headers.get("set-cookie", "")
        assert c.get("/api/stats/sites").status_code == 401
        ok = c.post("/dashboard/login", data={"token": TOKEN})
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN not in ok.headers["set-cookie"]
        assert c.get("/api/stats/shop/summary", params=rng()).json()["current"] == reference_summary(START, END, {})
        shell = c.get("/dashboard")
        assert 'id="timeseries"' in shell.text
        csp = shell.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        c.post("/dashboard/logout")
        assert c.get("/api/stats/sites").status_code == 401


def test_sites_list(api):
    sites = api.get("/sites").json()["sites"]
    assert {"name": "ny", "timezone": "America/New_York", "can_write": True} in sites and {s["name"] for s in sites} == {"shop", "other", "ny", "live"}


def test_openapi_document_lists_every_route(gw):
    doc = httpx.get(f"{gw.url}/api/stats/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/stats/{site}/summary", "/api/stats/{site}/timeseries", "/api/stats/{site}/breakdown/{dimension}",
                 "/api/stats/{site}/consent", "/api/stats/{site}/realtime"):
        assert path in doc["paths"]
    dims = next(p for p in doc["paths"]["/api/stats/{site}/breakdown/{dimension}"]["get"]["parameters"] if p["name"] == "dimension")
    assert "referrer_host" in dims["schema"]["enum"] and "event" in dims["schema"]["enum"]


def test_chart_library_is_served_by_the_gateway(gw):
    r = httpx.get(f"{gw.url}/dashboard/assets/chart.umd.min.js")
    assert r.status_code == 200 and "Chart" in r.text[:5000] and r.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{gw.url}/dashboard/assets/../../config.py").status_code == 404
