"""Funnels on a real gateway over a real store: ClickHouse's windowFunnel per visit, checked against a
plain-Python reference over the seeded hits, with filters; config and API funnels; bad funnels refused."""
from __future__ import annotations

import fnmatch
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from harness import SITE_ORIGIN, STATS_TOKEN, GatewayProcess, write_config
from test_stats_visits import TABLES, wait_for_tables
from stats_seed import Hit, seed, visit_passes, visits_of

AMS = ZoneInfo("Europe/Amsterdam")
D0 = datetime.now(AMS).date() - timedelta(days=10)
START, END = D0, D0 + timedelta(days=6)
AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}


def at(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(D0 + timedelta(days=day), time(hh, mm, ss), AMS)


def signup(visitor: str, when: datetime, plan: str = "pro", **kw) -> Hit:
    return Hit("shop", visitor, when, "/signup", type="event", name="signup", props=(("plan", plan),), **kw)


HITS = [
    # a: the whole funnel in one visit, from Google
    Hit("shop", "a", at(0, 9, 0), "/", referrer_host="google.com"),
    Hit("shop", "a", at(0, 9, 1), "/pricing"),
    Hit("shop", "a", at(0, 9, 2), "/blog/aside"),  # other hits between steps do not matter
    signup("a", at(0, 9, 3)),
    # b: pricing before home does not count; home, then pricing again: step 2
    Hit("shop", "b", at(1, 10, 0), "/pricing", country="BE"),
    Hit("shop", "b", at(1, 10, 1), "/", country="BE"),
    Hit("shop", "b", at(1, 10, 2), "/pricing", country="BE"),
    # c: home and pricing, then the signup 45 minutes later: another visit, so the funnel stops at step 2
    Hit("shop", "c", at(2, 11, 0), "/"),
    Hit("shop", "c", at(2, 11, 1), "/pricing"),
    signup("c", at(2, 11, 46)),
    # d: a second visit completes it; the first only reaches step 1
    Hit("shop", "d", at(3, 8, 0), "/", country="DE"),
    Hit("shop", "d", at(4, 8, 0), "/", country="DE", referrer_host="google.com"),
    Hit("shop", "d", at(4, 8, 1), "/pricing/teams", country="DE"),
    signup("d", at(4, 8, 2), plan="free", country="DE"),
    # e: pricing and signup without the home page: never enters
    Hit("shop", "e", at(5, 12, 0), "/pricing"),
    signup("e", at(5, 12, 1)),
    # f: the funnel crosses the end of the range: only the hits inside count
    Hit("shop", "f", at(6, 23, 50), "/"),
    Hit("shop", "f", at(6, 23, 55), "/pricing"),
    signup("f", at(7, 0, 5)),
]
CONFIG_FUNNEL = {"name": "Signup", "steps": [{"page": "/"}, {"page": "/pricing*"}, {"event": "signup"}]}
# Every step an equality: from the tables, the steps are found among the visits' numeric hit keys.
EXACT_FUNNEL = {"name": "Exact steps", "steps": [{"page": "/"}, {"page": "/pricing"}, {"event": "signup"}]}
API_FUNNEL = {"name": "Pro signup", "steps": [{"name": "Pricing", "page": "/pricing*"},
                                              {"name": "Pro", "event": "signup", "props": {"plan": "pro"}}]}


@pytest.fixture(scope="module", params=["hits", "tables"])
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A gateway answering from the hits (small ranges, exact), or from the tables (every range large: filtered
    ranges, goals and funnels read the visits table's hit arrays)."""
    folder = tmp_path_factory.mktemp("funnels")
    config = write_config(folder, gateway=TABLES if request.param == "tables" else {},
                          sites={"shop": {"origins": [SITE_ORIGIN], "funnels": [CONFIG_FUNNEL, EXACT_FUNNEL]}})
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
        made = client.post("/shop/funnels", json=API_FUNNEL)
        assert made.status_code == 201, made.text
        yield client


def rng(**extra: str) -> dict[str, str]:
    return {"from": str(START), "to": str(END), **extra}


def step_matches(step: dict, h: Hit) -> bool:
    if "page" in step:
        return h.type == "pageview" and fnmatch.fnmatchcase(h.path, step["page"])
    return h.type == "event" and h.name == step["event"] and all(
        dict(h.props).get(k, "") == v for k, v in step.get("props", {}).items())


def level_of(visit: list[Hit], steps: list[dict]) -> int:
    """How far a visit gets: each step needs a later hit than the step before (the earliest one serves best)."""
    level, last = 0, None
    for h in visit:
        if level < len(steps) and step_matches(steps[level], h) and (last is None or h.at > last):
            level, last = level + 1, h.at
    return level


def reference(steps: list[dict], filters: dict[str, str], whole: bool = False) -> list[tuple[int, int, int]]:
    """(visitors, visits, drop-off) per step. `whole`: as the tables count a range, the visits starting in it
    with all their hits (f's signup after midnight counts); else only the hits in the range."""
    if whole:
        visits_in = [v for v in visits_of(HITS) if START <= v[0].at.astimezone(AMS).date() <= END]
    else:
        visits_in = visits_of([h for h in HITS if START <= h.at.astimezone(AMS).date() <= END])
    visits = [(v[0].visitor, level_of(v, steps)) for v in visits_in if visit_passes(v, filters)]
    out, before = [], None
    for k in range(1, len(steps) + 1):
        visitors = len({who for who, level in visits if level >= k})
        out.append((visitors, sum(level >= k for _, level in visits), 0 if before is None else before - visitors))
        before = visitors
    return out


def funnel_id(api, name: str) -> str:
    return next(f["id"] for f in api.get("/shop/funnels").json()["funnels"] if f["name"] == name)


@pytest.mark.parametrize("funnel", [CONFIG_FUNNEL, EXACT_FUNNEL, API_FUNNEL], ids=["config", "exact", "api"])
@pytest.mark.parametrize("filters", [{}, {"country": "DE"}, {"source": "search"}, {"page": "/blog/aside"},
                                     {"prop.plan": "free"}, {"country": "NL", "source": "direct"}])
def test_funnel_matches_the_hits(gw, api, funnel, filters):
    r = api.get(f"/shop/funnels/{funnel_id(api, funnel['name'])}", params=rng(**filters))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(s["visitors"], s["visits"], s["dropoff"]) for s in body["results"]] == reference(funnel["steps"], filters,
                                                                                             whole=gw.tables)
    first = body["results"][0]["visitors"]
    assert [s["conversion_rate"] for s in body["results"]] == [
        round(100 * s["visitors"] / first, 2) if first else 0.0 for s in body["results"]]
    assert body["exact"] is not gw.tables and body["filters"] == filters


def test_funnel_spot_check(gw, api):
    """Without the reference: a and d complete it; b, c and f stop at pricing (c's signup is another visit, f's
    after the range: the tables count f's visit whole, as it started in the range); e never saw the home page
    before pricing."""
    steps = api.get(f"/shop/funnels/{funnel_id(api, 'Signup')}", params=rng()).json()["results"]
    assert [s["visitors"] for s in steps] == [5, 5, 3 if gw.tables else 2]
    assert [s["name"] for s in steps] == ["/", "/pricing*", "signup"]


def test_funnels_are_listed_created_and_deleted(api):
    listed = api.get("/shop/funnels").json()["funnels"]
    assert [(f["name"], f["editable"]) for f in listed] == [("Signup", False), ("Exact steps", False), ("Pro signup", True)]
    assert listed[2]["steps"][1] == {"name": "Pro", "kind": "event", "event": "signup", "props": {"plan": "pro"}}
    made = api.post("/shop/funnels", json={"name": "Tmp", "steps": [{"page": "/"}, {"page": "/x"}]})
    assert made.status_code == 201
    assert api.delete(f"/shop/funnels/{made.json()['id']}").status_code == 200
    assert api.get(f"/shop/funnels/{made.json()['id']}").status_code == 404
    assert api.delete("/shop/funnels/config:Signup").status_code == 409


@pytest.mark.parametrize("body,words", [
    ({"name": "x", "steps": [{"page": "/"}]}, "2 to 8 steps"),
    ({"name": "x", "steps": [{"page": "/"}] * 9}, "2 to 8 steps"),
    ({"name": "x", "steps": "/,/pricing"}, "2 to 8 steps"),
    ({"name": "", "steps": [{"page": "/"}, {"page": "/a"}]}, "name: expected a name"),
    ({"name": "x", "steps": [{"page": "/"}, {"page": "a"}]}, "steps[1].page: a path pattern starts with '/'"),
    ({"name": "x", "steps": [{"page": "/"}, {"event": "e", "revenue_property": "amount"}]}, "no revenue"),
    ({"name": "Signup", "steps": [{"page": "/"}, {"page": "/a"}]}, "already has a funnel named"),
])
def test_bad_funnels_are_refused_with_a_message(api, body, words):
    r = api.post("/shop/funnels", json=body)
    assert r.status_code in (400, 409) and words in r.json()["detail"], r.text
