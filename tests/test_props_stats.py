"""Custom event properties in the stats API: breakdown by a property (`breakdown/prop:NAME`) and filters on
properties (`prop.NAME=VALUE`), on a real gateway over a real store; every expected number is computed
here from the seeded hits (tests/stats_seed.py references)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from harness import SITE_ORIGIN, STATS_TOKEN, GatewayProcess, write_config
from test_stats_visits import TABLES, wait_for_tables
from stats_seed import Hit, hit_passes, seed, visit_passes, visits_of

AMS = ZoneInfo("Europe/Amsterdam")
D0 = datetime.now(AMS).date() - timedelta(days=10)
START, END = D0, D0 + timedelta(days=6)


def at(day: int, hh: int, mm: int) -> datetime:
    return datetime.combine(D0 + timedelta(days=day), time(hh, mm), AMS)


def ev(visitor: str, when: datetime, name: str, path: str = "/", **props: str) -> Hit:
    return Hit("shop", visitor, when, path, type="event", name=name, props=tuple(sorted(props.items())))


HITS = [
    Hit("shop", "a", at(0, 9, 0), "/", referrer_host="google.com"),
    ev("a", at(0, 9, 2), "signup", "/signup", plan="pro", seats="3"),
    ev("a", at(0, 9, 3), "download", "/docs", file="guide.pdf"),
    Hit("shop", "b", at(1, 10, 0), "/pricing", country="BE"),
    ev("b", at(1, 10, 1), "signup", "/signup", plan="free"),
    ev("b", at(3, 10, 1), "signup", "/signup", plan="pro"),  # a second visit, days later
    Hit("shop", "c", at(2, 11, 0), "/", referrer_host="facebook.com"),
    ev("c", at(2, 11, 5), "signup", "/signup", plan="pro"),
    Hit("shop", "c", at(2, 11, 6), "/welcome", props=(("plan", "pro"),)),  # a pageview may carry props too
    Hit("shop", "d", at(4, 8, 0), "/", referrer_host="google.com", country="DE"),
    ev("d", at(4, 8, 1), "signup", "/signup", plan="business"),
    ev("d", at(4, 8, 2), "signup", "/signup", plan="business"),
    ev("e", at(5, 12, 0), "signup", "/signup", plan=""),  # an empty value is no value
    ev("e", at(-3, 12, 0), "signup", "/signup", plan="pro"),  # outside the range
    Hit("other", "x", at(1, 12, 0), "/", type="event", name="signup", props=(("plan", "other-site"),)),
]
AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}


@pytest.fixture(scope="module", params=["hits", "tables"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A client of a gateway answering from the hits (exact), or from the tables (every range large: the
    visits table's hit arrays; no visit of the test data crosses the range's first or last midnight)."""
    folder = tmp_path_factory.mktemp("props")
    config = write_config(folder, gateway=TABLES if request.param == "tables" else {},
                          sites={"shop": {"origins": [SITE_ORIGIN]}, "other": {"origins": ["https://o.example"]}})
    seed(config, HITS)
    gw = GatewayProcess(config, folder).start()
    if request.param == "tables":
        wait_for_tables(gw.url, "shop", rng())
    with httpx.Client(base_url=f"{gw.url}/api/stats", timeout=30, headers=AUTH) as client:
        client.tables = request.param == "tables"  # type: ignore[attr-defined]
        yield client
    gw.kill()


def rng(**extra: str) -> dict[str, str]:
    return {"from": str(START), "to": str(END), **extra}


def in_range(start: date = START, end: date = END) -> list[Hit]:
    return [h for h in HITS if h.site == "shop" and start <= h.at.astimezone(AMS).date() <= end]


def passing_hits(filters: dict[str, str]) -> list[Hit]:
    """The hits that pass the filters, in the visits that pass them (as every report counts them)."""
    return [h for v in visits_of(in_range()) if visit_passes(v, filters) for h in v if hit_passes(h, filters)]


def reference_prop(name: str, filters: dict[str, str]) -> dict[str, tuple[int, int]]:
    rows: dict[str, tuple[set[str], int]] = {}
    for h in passing_hits(filters):
        value = dict(h.props).get(name, "")
        if value:
            seen, n = rows.get(value, (set(), 0))
            rows[value] = (seen | {h.visitor}, n + 1)
    return {k: (len(v), n) for k, (v, n) in rows.items()}


@pytest.mark.parametrize("filters", [{}, {"country": "BE"}, {"source": "search"}, {"event": "signup"},
                                     {"prop.plan": "pro"}, {"page": "/welcome"}])
def test_breakdown_by_a_property(api, filters):
    r = api.get("/shop/breakdown/prop:plan", params=rng(limit="100", **filters))
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert {row["value"]: (row["visitors"], row["events"]) for row in rows} == reference_prop("plan", filters)
    assert [row["visitors"] for row in rows] == sorted((row["visitors"] for row in rows), reverse=True)
    assert r.json()["dimension"] == "prop:plan" and r.json()["exact"] is not api.tables


def test_property_breakdown_sees_pageviews_and_nothing_of_another_site(api):
    rows = {row["value"]: row for row in api.get("/shop/breakdown/prop:plan", params=rng()).json()["results"]}
    assert "other-site" not in rows and "" not in rows
    assert rows["pro"]["events"] == 4  # a, b's second visit, c's event and c's pageview
    files = api.get("/shop/breakdown/prop:file", params=rng()).json()["results"]
    assert files == [{"value": "guide.pdf", "visitors": 1, "events": 1}]
    assert api.get("/shop/breakdown/prop:nosuchprop", params=rng()).json()["results"] == []


@pytest.mark.parametrize("filters", [{"prop.plan": "pro"}, {"prop.plan": "business"},
                                     {"prop.plan": "pro", "source": "search"}, {"prop.plan": "pro", "prop.seats": "3"}])
def test_summary_filtered_by_a_property(api, filters):
    body = api.get("/shop/summary", params=rng(**filters)).json()
    visits = [v for v in visits_of(in_range()) if visit_passes(v, filters)]
    assert body["current"]["visitors"] == len({v[0].visitor for v in visits})
    assert body["current"]["visits"] == len(visits)
    assert body["current"]["pageviews"] == sum(h.type == "pageview" for h in passing_hits(filters))
    assert body["filters"] == filters


def test_timeseries_and_page_breakdown_filtered_by_a_property(api):
    filters = {"prop.plan": "pro"}
    series = api.get("/shop/timeseries", params=rng(**filters)).json()["results"]
    hits = passing_hits(filters)
    expected = {str(START + timedelta(days=i)): len({h.visitor for h in hits if h.at.astimezone(AMS).date() ==
                                                     START + timedelta(days=i)}) for i in range(7)}
    assert {r["bucket"]: r["visitors"] for r in series} == expected
    pages = api.get("/shop/breakdown/event", params=rng(**filters)).json()["results"]
    assert pages == [{"value": "signup", "visitors": 3, "events": 3}]


def test_csv_of_a_property_breakdown(api):
    r = api.get("/shop/breakdown/prop:plan", params=rng(format="csv"))
    assert r.status_code == 200 and r.text.splitlines()[0] == "value,visitors,events"
    assert 'filename="shop-prop-plan-' in r.headers["content-disposition"]


@pytest.mark.parametrize("path,params,words", [
    ("/shop/breakdown/prop:", {}, "a property name must not be empty"),
    ("/shop/breakdown/prop:" + "k" * 65, {}, "at most 64 characters"),
    ("/shop/summary", {"prop.": "x"}, "a property name must not be empty"),
    ("/shop/summary", {"prop." + "k" * 65: "x"}, "at most 64 characters"),
    ("/shop/summary", {"prop.a\x01b": "x"}, "no control characters"),
    ("/shop/summary", {"prop.plan": "x" * 600}, "longer than 512"),
    ("/shop/summary", {f"prop.k{i}": "x" for i in range(6)}, "at most 5 prop.NAME filters"),
    ("/shop/summary", {"props.plan": "x"}, "unknown parameter"),
    ("/shop/consent", {"prop.plan": "pro"}, "cannot be filtered"),
])
def test_bad_property_names_are_400(api, path, params, words):
    r = api.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request" and words in r.json()["detail"]


def test_a_property_breakdown_needs_a_token(api):
    r = httpx.get(str(api.base_url).rstrip("/") + "/shop/breakdown/prop:plan")
    assert r.status_code == 401 and "pro" not in r.text
