"""Goals on a real gateway over a real store: config goals (read-only) and goals made through the API
(create, list, delete; who may), and their reports - conversions, conversion rate, revenue, over time and
by source, page and country - each compared with a plain-Python reference over the seeded hits."""
from __future__ import annotations

import fnmatch
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from analytics.goals import GoalError, parse_goal
from gateway.config import ConfigError, parse_config
from harness import SITE_ORIGIN, STATS_TOKEN, GatewayProcess, write_config
from test_stats_visits import TABLES, wait_for_tables
from stats_seed import Hit, channel_of, hit_passes, seed, visit_passes, visits_of

AMS = ZoneInfo("Europe/Amsterdam")
D0 = datetime.now(AMS).date() - timedelta(days=10)
START, END = D0, D0 + timedelta(days=6)
AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}
OTHER_TOKEN = "other-site-token-0123456789abc"  # reads only site "other"


def at(day: int, hh: int, mm: int) -> datetime:
    return datetime.combine(D0 + timedelta(days=day), time(hh, mm), AMS)


def buy(visitor: str, when: datetime, amount: str, plan: str = "pro", **kw) -> Hit:
    return Hit("shop", visitor, when, "/checkout", type="event", name="purchase",
               props=(("amount", amount), ("plan", plan)), **kw)


HITS = [
    Hit("shop", "a", at(0, 9, 0), "/", referrer_host="google.com"),
    Hit("shop", "a", at(0, 9, 1), "/pricing"),
    Hit("shop", "a", at(0, 9, 2), "/pricing/teams"),
    buy("a", at(0, 9, 5), "49.50"),
    buy("a", at(2, 9, 5), "10", plan="basic"),  # another visit, days later
    Hit("shop", "b", at(1, 10, 0), "/blog/x", referrer_host="facebook.com", country="BE"),
    Hit("shop", "b", at(1, 10, 5), "/pricing", country="BE"),
    buy("b", at(1, 10, 6), "99", country="BE"),
    Hit("shop", "c", at(3, 11, 0), "/", country="DE"),
    Hit("shop", "c", at(3, 11, 1), "/pricing_old", country="DE"),  # `_` is no wildcard
    buy("c", at(3, 11, 2), "not-a-number", country="DE"),  # revenue 0
    Hit("shop", "d", at(4, 8, 0), "/", utm_source="newsletter", utm_medium="email"),
    Hit("shop", "d", at(4, 8, 1), "/signup"),
    Hit("shop", "d", at(4, 8, 2), "/signup", type="event", name="signup", props=(("plan", "pro"),)),
    Hit("shop", "e", at(5, 12, 0), "/"),
    Hit("shop", "e", at(-2, 12, 0), "/pricing"),  # outside the range
    buy("e", at(-2, 12, 1), "1000"),
]
CONFIG_GOALS = [
    {"name": "Saw pricing", "page": "/pricing*"},
    {"name": "Purchase", "event": "purchase", "revenue_property": "amount"},
]
API_GOALS = [
    {"name": "Pro purchase", "event": "purchase", "props": {"plan": "pro"}, "revenue_property": "amount"},
    {"name": "Signup page", "page": "/signup"},
]


@pytest.fixture(scope="module", params=["hits", "tables"])
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A gateway answering from the hits (small ranges, exact), or from the tables (every range large: filtered
    ranges, goals and funnels read the visits table's hit arrays)."""
    folder = tmp_path_factory.mktemp("goals")
    config = write_config(folder, gateway=TABLES if request.param == "tables" else {}, sites={
        "shop": {"origins": [SITE_ORIGIN], "currency": "USD", "goals": CONFIG_GOALS},
        "other": {"origins": ["https://o.example"], "stats_tokens": [OTHER_TOKEN]},
    })
    seed(config, HITS)
    process = GatewayProcess(config, folder).start()
    process.tables = request.param == "tables"
    if process.tables:
        wait_for_tables(process.url, "shop", rng())
    yield process
    process.kill()


@pytest.fixture(scope="module")
def api(gw: GatewayProcess):
    with httpx.Client(base_url=f"{gw.url}/api/stats", timeout=30, headers=AUTH) as client:
        made = [client.post("/shop/goals", json=g) for g in API_GOALS]
        assert [r.status_code for r in made] == [201, 201], [r.text for r in made]
        yield client


def rng(**extra: str) -> dict[str, str]:
    return {"from": str(START), "to": str(END), **extra}


# ---- the reference -----------------------------------------------------------------------------

def matches(goal: dict, h: Hit) -> bool:
    if "page" in goal:
        return h.type == "pageview" and fnmatch.fnmatchcase(h.path, goal["page"].replace("[", "[[]"))
    props = dict(h.props)
    return (h.type == "event" and h.name == goal["event"]
            and all(props.get(k, "") == v for k, v in goal.get("props", {}).items()))


def revenue(goal: dict, h: Hit) -> float:
    try:
        return float(dict(h.props).get(goal.get("revenue_property", ""), ""))
    except ValueError:
        return 0.0


def counted_hits(filters: dict[str, str], start: date = START, end: date = END) -> list[tuple[Hit, list[Hit]]]:
    """Every hit of the visits that pass the filters, with its visit."""
    hits = [h for h in HITS if h.site == "shop" and start <= h.at.astimezone(AMS).date() <= end]
    return [(h, v) for v in visits_of(hits) if visit_passes(v, filters) for h in v]


def reference_report(goal: dict, filters: dict[str, str]) -> dict:
    counted = counted_hits(filters)
    visitors = len({h.visitor for h, _ in counted})
    done = [h for h, _ in counted if matches(goal, h)]
    conversions = len({h.visitor for h in done})
    return {"conversions": conversions, "completions": len(done),
            "conversion_rate": round(100 * conversions / visitors, 2) if visitors else 0.0,
            "revenue": round(sum(revenue(goal, h) for h in done), 2) if "revenue_property" in goal else None}


# ---- definitions -------------------------------------------------------------------------------

def test_config_and_api_goals_are_listed(api):
    body = api.get("/shop/goals").json()
    assert body["currency"] == "USD"
    listed = body["goals"]
    assert [g["name"] for g in listed] == [g["name"] for g in CONFIG_GOALS + API_GOALS]
    assert [g["editable"] for g in listed] == [False, False, True, True]
    assert listed[0]["id"] == "config:Saw pricing" and listed[2]["props"] == {"plan": "pro"}
    assert api.get("/other/goals").json()["goals"] == []


@pytest.mark.parametrize("filters", [{}, {"country": "BE"}, {"source": "search"}, {"page": "/"},
                                     {"prop.plan": "basic"}, {"utm_medium": "email"}])
def test_conversions_match_the_hits(gw, api, filters):
    """From the tables too: no visit of the test data crosses the range's first or last midnight."""
    body = api.get("/shop/conversions", params=rng(**filters)).json()
    assert body["currency"] == "USD" and body["exact"] is not gw.tables
    assert body["visitors"] == len({h.visitor for h, _ in counted_hits(filters)})
    by_name = {r["name"]: r for r in body["results"]}
    for goal in CONFIG_GOALS + API_GOALS:
        got = by_name[goal["name"]]
        assert {k: got[k] for k in ("conversions", "completions", "conversion_rate", "revenue")} == \
            reference_report(goal, filters), goal["name"]


def test_revenue_spot_check(api):
    """Without the reference: a's 49.50 and 10, b's 99, c's unreadable amount, e's purchase outside the range."""
    rows = {r["name"]: r for r in api.get("/shop/conversions", params=rng()).json()["results"]}
    assert rows["Purchase"]["revenue"] == 158.5 and rows["Purchase"]["conversions"] == 3
    assert rows["Pro purchase"]["revenue"] == 148.5 and rows["Saw pricing"]["revenue"] is None


def goal_id(api, name: str) -> str:
    return next(g["id"] for g in api.get("/shop/goals").json()["goals"] if g["name"] == name)


@pytest.mark.parametrize("name", ["Purchase", "Saw pricing"])
def test_goal_over_time(api, name):
    goal = next(g for g in CONFIG_GOALS + API_GOALS if g["name"] == name)
    body = api.get(f"/shop/goals/{goal_id(api, name)}/timeseries", params=rng()).json()
    done = [h for h, _ in counted_hits({}) if matches(goal, h)]
    expected = []
    for i in range(7):
        day = [h for h in done if h.at.astimezone(AMS).date() == START + timedelta(days=i)]
        expected.append({"bucket": str(START + timedelta(days=i)), "conversions": len({h.visitor for h in day}),
                         "completions": len(day),
                         "revenue": round(sum(revenue(goal, h) for h in day), 2) if "revenue_property" in goal else None})
    assert body["results"] == expected


@pytest.mark.parametrize("dimension", ["source", "page", "country"])
@pytest.mark.parametrize("filters", [{}, {"country": "BE"}])
def test_goal_breakdowns(api, dimension, filters):
    goal = CONFIG_GOALS[1]
    rows = api.get(f"/shop/goals/{goal_id(api, 'Purchase')}/breakdown/{dimension}",
                   params=rng(limit="50", **filters)).json()["results"]
    expected: dict[str, list] = {}
    for h, visit in counted_hits(filters):
        if matches(goal, h):
            value = {"source": channel_of(visit[0]), "page": h.path, "country": h.country}[dimension]
            row = expected.setdefault(value, [set(), 0, 0.0])
            row[0].add(h.visitor)
            row[1] += 1
            row[2] += revenue(goal, h)
    assert {r["value"]: (r["conversions"], r["completions"], r["revenue"]) for r in rows} == \
        {k: (len(s), n, round(v, 2)) for k, (s, n, v) in expected.items()}


# ---- editing -----------------------------------------------------------------------------------

def test_create_and_delete_a_goal(api):
    made = api.post("/shop/goals", json={"name": "Blog", "page": "/blog/*"})
    assert made.status_code == 201 and made.json()["editable"] is True
    rows = {r["name"]: r for r in api.get("/shop/conversions", params=rng()).json()["results"]}
    assert rows["Blog"]["conversions"] == 1
    gone = api.delete(f"/shop/goals/{made.json()['id']}")
    assert gone.status_code == 200 and gone.json() == {"deleted": made.json()["id"]}
    assert "Blog" not in [g["name"] for g in api.get("/shop/goals").json()["goals"]]
    assert api.delete(f"/shop/goals/{made.json()['id']}").status_code == 404


def test_config_goals_cannot_be_deleted(api):
    r = api.delete("/shop/goals/config:Purchase")
    assert r.status_code == 409 and "config file" in r.json()["detail"]


@pytest.mark.parametrize("body,words", [
    ({"name": "x"}, "exactly one of page"),
    ({"name": "x", "page": "/a", "event": "b"}, "exactly one of page"),
    ({"name": "x", "page": "pricing"}, "starts with '/'"),
    ({"name": "x", "page": "/a", "props": {"k": "v"}}, "only an event goal matches properties"),
    ({"name": "x", "page": "/a", "revenue_property": "amount"}, "only an event goal carries revenue"),
    ({"name": "x", "event": "e", "props": {f"k{i}": "v" for i in range(6)}}, "at most 5 properties"),
    ({"name": "x", "event": "e", "props": {"": "v"}}, "must not be empty"),
    ({"name": "x", "event": "e", "props": ["plan"]}, "expected an object"),
    ({"name": "x" * 81, "event": "e"}, "longer than 80"),
    ({"name": "x", "event": 5}, "expected a string"),
    ({"name": "x", "event": "e", "colour": "red"}, "unknown key"),
    ({"event": "e"}, "name: missing"),
    ({"name": "Purchase", "event": "e"}, "already has a goal named"),
])
def test_bad_goals_are_refused_with_a_message(api, body, words):
    r = api.post("/shop/goals", json=body)
    assert r.status_code in (400, 409), r.text
    assert words in r.json()["detail"]


def test_bad_bodies_are_400(api):
    assert api.post("/shop/goals", content=b"[1]").status_code == 400
    assert api.post("/shop/goals", content=b"{").status_code == 400
    assert api.post("/shop/goals", content=b"{" + b" " * 20000 + b"}").status_code == 413


def test_a_token_of_another_site_can_neither_read_nor_edit(gw, api):
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    assert httpx.get(f"{gw.url}/api/stats/shop/goals", headers=other).status_code == 403
    assert httpx.get(f"{gw.url}/api/stats/shop/conversions", headers=other).status_code == 403
    r = httpx.post(f"{gw.url}/api/stats/shop/goals", headers=other, json={"name": "mine", "page": "/"})
    assert r.status_code == 403
    r = httpx.delete(f"{gw.url}/api/stats/shop/goals/{goal_id(api, 'Signup page')}", headers=other)
    assert r.status_code == 403
    assert httpx.post(f"{gw.url}/api/stats/shop/goals", json={"name": "anon", "page": "/"}).status_code == 401
    assert "mine" not in [g["name"] for g in api.get("/shop/goals").json()["goals"]]


def test_a_dashboard_session_edits_only_from_the_gateway_page(gw, api):
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        assert c.post("/dashboard/login", data={"token": STATS_TOKEN}).status_code == 303
        foreign = c.post("/api/stats/shop/goals", json={"name": "csrf", "page": "/"},
                         headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and foreign.json()["error"] == "bad_origin"
        own = c.post("/api/stats/shop/goals", json={"name": "from the dashboard", "page": "/"},
                     headers={"Origin": gw.url})
        assert own.status_code == 201, own.text
        assert c.delete(f"/api/stats/shop/goals/{own.json()['id']}", headers={"Origin": gw.url}).status_code == 200
    assert "csrf" not in [g["name"] for g in api.get("/shop/goals").json()["goals"]]


def test_goal_report_parameters_are_checked(api):
    assert api.get("/shop/goals/nope/timeseries", params=rng()).status_code == 404
    r = api.get(f"/shop/goals/{goal_id(api, 'Purchase')}/breakdown/browser", params=rng())
    assert r.status_code == 400 and "source, page, country" in r.json()["detail"]
    r = api.get("/shop/conversions", params=rng(format="csv"))
    assert r.status_code == 400


# ---- config ------------------------------------------------------------------------------------

def config_with(site: dict) -> dict:
    return {"gateway": {"secret_key": "k" * 40}, "sites": {"s": {"origins": ["https://a.example"], **site}}}


def test_config_goals_are_validated():
    with pytest.raises(ConfigError) as err:
        parse_config(config_with({"currency": "euro", "goals": [{"name": "a", "page": "x"}, {"name": "b"},
                                                                 {"name": "c", "event": "e"}, {"name": "c", "page": "/"}],
                                  "funnels": [{"name": "f", "steps": [{"page": "/"}]}]}), ROOT_DIR, {})
    text = str(err.value)
    for words in ("sites.s.currency: expected an ISO 4217 code", "sites.s.goals[0].page: a path pattern starts with '/'",
                  "sites.s.goals[1]: give exactly one of page", "sites.s.goals: the name 'c' is used twice",
                  "sites.s.funnels[0].steps: expected a list of 2 to 8 steps"):
        assert words in text
    good = parse_config(config_with({"goals": CONFIG_GOALS}), ROOT_DIR, {}).sites["s"]
    assert good.currency == "EUR" and [g.id for g in good.goals] == ["config:Saw pricing", "config:Purchase"]


def test_page_patterns_escape_like_wildcards():
    from analytics.goals import like_pattern
    assert like_pattern("/a_b%c\\d*") == "/a\\_b\\%c\\\\d%"
    with pytest.raises(GoalError):
        parse_goal({"name": "x", "page": "/a\nb"})


ROOT_DIR = __import__("pathlib").Path(__file__).resolve().parent


def test_a_shared_link_reads_goals_but_cannot_change_them(gw, api):
    """A shared link's session (gateway/shared_links.py) is read-only: it sees the conversions, makes and
    deletes no goal or funnel, from the gateway's own page or not."""
    made = api.post("/shop/shared-links", json={"label": "agency"})
    assert made.status_code == 201, made.text
    path = "/" + made.json()["url"].split("/", 3)[3]
    with httpx.Client(base_url=gw.url, timeout=10) as visitor:
        assert visitor.get(path).status_code == 200 and "cg_share" in visitor.cookies
        assert visitor.get("/api/stats/shop/conversions", params=rng()).status_code == 200
        own = {"Origin": gw.url}
        r = visitor.post("/api/stats/shop/goals", json={"name": "agency goal", "page": "/"}, headers=own)
        assert r.status_code == 403 and "shared link" in r.json()["detail"]
        r = visitor.delete(f"/api/stats/shop/goals/{goal_id(api, 'Signup page')}", headers=own)
        assert r.status_code == 403
        r = visitor.post("/api/stats/shop/funnels", headers=own,
                         json={"name": "agency funnel", "steps": [{"page": "/"}, {"page": "/a"}]})
        assert r.status_code == 403
    assert "agency goal" not in [g["name"] for g in api.get("/shop/goals").json()["goals"]]
