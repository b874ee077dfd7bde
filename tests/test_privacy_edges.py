"""Privacy edges found in review (round 7), against real gateways and real chDB stores: a corrupt GeoIP
database keeps the full address out of the log, an operator's erasure holds at every gateway on the
store, a restriction cannot be missed by the hourly rollups, and the restrict routes are rate limited."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mmdb_writer import MMDBWriter, MmdbU32
from netaddr import IPSet

import maxminddb
from harness import ROOT, SITE_ORIGIN, UA_CHROME, gateways_on_one_store, grant, write_config, written_files

H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
ADMIN_TOKEN = "admin-token-for-review-tests-0123456789"
PROXIED = {"trusted_proxies": ["127.0.0.1/32"]}  # the tests' clients are told apart by X-Forwarded-For


def collect(c: httpx.Client, token: str, path: str = "/", **headers: str) -> str:
    r = c.post("/s/demo/collect", json={"url": f"{SITE_ORIGIN}{path}", "consent": token}, headers={**H, **headers})
    assert r.status_code == 202, r.text
    return r.headers["x-consentgate-result"]


# ---- 1. a GeoIP database whose search tree is corrupt -----------------------------------------------

def corrupt_geoip(path: Path) -> None:
    """A real database (as tests/test_invariants.py builds it) whose search tree is overwritten: it opens,
    and every lookup fails in maxminddb's C extension with "Error looking up <full ip>. ..."."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City", languages=["en"],
                        description={"en": "consentgate test"})
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "GB", "geoname_id": MmdbU32(2635167)}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "NL", "geoname_id": MmdbU32(2750405)}})
    writer.to_db_file(str(path))
    with maxminddb.open_database(str(path)) as reader:
        meta = reader.metadata()
    tree_bytes = meta.node_count * meta.record_size * 2 // 8
    data = bytearray(path.read_bytes())
    data[:tree_bytes] = b"\xff" * tree_bytes  # every record points past the data section
    path.write_bytes(bytes(data))


def test_a_corrupt_geoip_database_stores_the_hit_without_country_and_logs_no_address(make_gateway, tmp_path):
    geo = tmp_path / "corrupt.mmdb"
    corrupt_geoip(geo)
    full_ips = ["203.0.113.77", "2001:db8:1234:5678:9abc::42"]
    with maxminddb.open_database(str(geo)) as reader:  # the fault is real: the message names the address
        with pytest.raises(maxminddb.InvalidDatabaseError, match="203.0.113.77"):
            reader.get(full_ips[0])
    gw = make_gateway(gateway={**PROXIED, "geoip_db": str(geo), "access_log": "all"})
    with gw.client() as c:
        for ip in full_ips:
            token = grant(c, analytics=True)["token"]
            c.cookies.clear()
            assert collect(c, token, "/geo", **{"X-Forwarded-For": ip}) == "stored"
    gw.stop()
    rows = gw.sql("SELECT ip, country FROM {db}.events ORDER BY ip")
    assert rows == [{"ip": "2001:db8:1234::", "country": ""}, {"ip": "203.0.113.0", "country": ""}]
    logs = gw.logs()
    failures = [line for line in logs.splitlines() if "GeoIP lookup failed" in line]
    assert len(failures) == 1 and "InvalidDatabaseError" in failures[0], logs[-3000:]  # once, by type
    needles = ["203.0.113.77", "2001:db8:1234:5678", "5678:9abc"]
    for path in written_files(gw.folder):
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, f"{needle} found in {path}"


# ---- 2. an operator's erasure at one gateway of several ---------------------------------------------

@pytest.fixture
def two_gateways(tmp_path: Path) -> Iterator[list[httpx.Client]]:
    """Two gateways on one chDB store; the second learns the first's decisions once a second."""
    with gateways_on_one_store(tmp_path, [{"revocation_sync_interval": interval, "admin_tokens": [ADMIN_TOKEN]}
                                          for interval in (0.5, 1.0)]) as clients:
        yield clients


def admin_events(c: httpx.Client, consent_id: str) -> list[str]:
    r = c.get(f"/api/admin/demo/visitors/{consent_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    return [e["path"] for e in r.json()["events"]]


def test_operator_erasure_at_one_gateway_erases_what_another_stores_afterwards(two_gateways):
    a, b = two_gateways
    erased = grant(a, analytics=True)
    a.cookies.clear()
    other = grant(a, analytics=True)
    assert collect(b, other["token"], "/other") == "stored"
    r = a.request("DELETE", f"/api/admin/demo/visitors/{erased['consent_id']}",
                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    # b stores the visitor's hits until it learns of the erasure from the consent log; they reach the
    # store after a's delete.
    late, deadline = 0, time.monotonic() + 10
    while collect(b, erased["token"], f"/late-{late}") == "stored":
        late += 1
        assert time.monotonic() < deadline, "b never learned of the erasure"
        time.sleep(0.05)
    assert late >= 1  # else this test proves nothing
    deadline = time.monotonic() + 10
    while (left := admin_events(a, erased["consent_id"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []
    assert admin_events(a, other["consent_id"]) == ["/other"]  # the store still takes and keeps hits


# ---- 3. a restriction and a rebuild of the hourly rollups -------------------------------------------

# The start of every restriction scene below, run in a child process (chDB: one store per process): the real
# Services, Store, visit builder and set_restriction; `hit`, two visitors and helpers; a scene prints its findings.
SCENE = """
import asyncio, json, sys, threading, time, uuid
from datetime import datetime, timedelta, timezone
from analytics import stats, visits
from analytics.records import EventRecord
from gateway.config import load_config
from gateway.privacy import BY_OPERATOR, set_restriction
from gateway.services import build_services

config = load_config(sys.argv[1])
services = build_services(config)
services.start()
store = services.store
now = datetime.now(timezone.utc)
kept, restricted = uuid.uuid4().hex, uuid.uuid4().hex

def at_ten(days_ago):
    day = (now - timedelta(days=days_ago)).date()
    return day, datetime(day.year, day.month, day.day, 10, tzinfo=timezone.utc).timestamp()

def hit(visitor, at, browser):
    return EventRecord(event_id=str(uuid.uuid4()), site="demo", timestamp=at, type="pageview", name="",
                       visitor_id=visitor, url="https://www.example.com/", hostname="www.example.com", path="/",
                       referrer="", referrer_host="", utm_source="", utm_medium="", utm_campaign="", browser=browser,
                       browser_version="120", os="Windows", device="desktop", country="NL", ip="203.0.113.0", props={})

def restrict():
    asyncio.run(set_restriction(services, config.sites["demo"], restricted, True, BY_OPERATOR))

def browsers(first, last):
    q = stats.StatsQuery("demo", first, last, tz="UTC", exact_below=0)
    return bool(stats.plan(store, q).hours), stats.breakdown(store, q, "browser")

def report(**found):
    services.stop()
    print(json.dumps(found))
"""
ONLY_CHROME = [{"value": "Chrome", "visitors": 1, "pageviews": 1}]  # the visitor who did not restrict


def run_scene(tmp_path: Path, scene: str, **gateway: object) -> dict:
    config = write_config(tmp_path, {"data_dir": str(tmp_path / "data"), **gateway})
    out = subprocess.run([sys.executable, "-c", SCENE + scene, str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


RESTRICT_AMID_REBUILD = """
day, ten = at_ten(3)  # a closed day: rebuilt only when its hit count changes
store.insert([hit(kept, ten, "Chrome"), hit(restricted, ten + 60, "Firefox"), hit(restricted, ten + 120, "Firefox")])
visits.refresh(store, now)
# The builder's thread may rebuild at any moment: here, right after the prebuilt days are marked unbuilt.
real_unbuild, rebuilding = visits.unbuild_days, []
def unbuild_then_rebuild(*args):
    real_unbuild(*args)
    if not rebuilding:
        rebuilding.append(1)
        visits.refresh(store, now)
visits.unbuild_days = unbuild_then_rebuild
restrict()
visits.unbuild_days = real_unbuild
visits.refresh(store, now)
hours, found = browsers(day, day)
report(rebuilt_between=bool(rebuilding), hours=hours, browsers=found)
"""


def test_a_rebuild_next_to_a_restriction_leaves_the_visitor_out_of_the_hourly_stats(tmp_path):
    """No fake: unbuild_days is wrapped only to run a real rebuild right after the prebuilt days are marked
    unbuilt, the moment the builder's thread may pick to run."""
    found = run_scene(tmp_path, RESTRICT_AMID_REBUILD)
    assert found["rebuilt_between"] and found["hours"]  # the breakdown is read from hit_hours
    assert found["browsers"] == ONLY_CHROME


# ---- 4. the restrict routes count towards the consent rate limit ------------------------------------

def test_restrict_routes_are_rate_limited_per_network(make_gateway):
    gw = make_gateway(gateway={**PROXIED, "consent_rate_per_minute": 2})
    visitor = {"X-Forwarded-For": "2001:db8:1::1"}  # the grant counts on its own network
    with gw.client() as c:
        r = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "method": "custom"}, headers={**H, **visitor})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        c.cookies.clear()
        asking = {**H, "X-Consent-Token": token, "X-Forwarded-For": "203.0.113.20"}
        answers = [c.post("/s/demo/privacy/me/restrict", headers=asking) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        refused = answers[2]
        assert refused.headers["content-type"].startswith("application/json")
        assert refused.json()["error"] == "rate_limited" and 1 <= int(refused.headers["retry-after"]) <= 60
        # Lifting and the export count on the same budget of the network.
        assert c.request("DELETE", "/s/demo/privacy/me/restrict", headers=asking).status_code == 429
        assert c.get("/s/demo/privacy/me", headers=asking).status_code == 429
        # Another network is not held up.
        lift = c.request("DELETE", "/s/demo/privacy/me/restrict", headers={**asking, **visitor})
        assert lift.status_code == 200 and lift.json()["restricted"] is False


# ---- 5. a restriction made at one gateway of several -------------------------------------------------

def test_a_restriction_at_one_gateway_holds_at_the_others_and_so_does_its_lift(two_gateways):
    """Every gateway on the store follows `restrictions` as it follows the consent log: b, which did not take the
    request, then treats the visitor as restricted (its export says so, its forwarder sends nothing), and lifts
    it when a lifts it."""
    a, b = two_gateways
    visitor = grant(a, analytics=True, marketing=True)
    headers = {**H, "X-Consent-Token": visitor["token"]}

    def restricted_at_b() -> bool:
        r = b.get("/s/demo/privacy/me", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["restricted"]

    assert restricted_at_b() is False
    assert a.post("/s/demo/privacy/me/restrict", headers=headers).status_code == 200
    deadline = time.monotonic() + 10
    while not restricted_at_b():
        assert time.monotonic() < deadline, "b never learned of the restriction"
        time.sleep(0.2)
    assert a.request("DELETE", "/s/demo/privacy/me/restrict", headers=headers).status_code == 200
    deadline = time.monotonic() + 10
    while restricted_at_b():
        assert time.monotonic() < deadline, "b never learned that the restriction was lifted"
        time.sleep(0.2)


# ---- 6. a restriction while the builder is half-way through a build ---------------------------------

RESTRICT_DURING_BUILD = """
day, ten = at_ten(3)  # a closed day: rebuilt only when its hit count changes
store.insert([hit(kept, ten, "Chrome"), hit(restricted, ten + 60, "Firefox"), hit(restricted, ten + 120, "Firefox")])
# The interleaving to reproduce: the builder has read the hits (the visitor not yet restricted) and written the
# day's hours; before it records the day as built, the restriction request runs to its end.
client_class = type(store.client)  # each thread has its own client: wrap the method for all of them
real_insert, requests = client_class.insert, []
def insert(client, table, *args, **kwargs):
    if table.endswith(".visit_days") and not requests:
        request = threading.Thread(target=restrict)
        requests.append(request)
        request.start()
        time.sleep(1.5)  # long enough for the request, unless it waits for this build
    return real_insert(client, table, *args, **kwargs)
client_class.insert = insert
services.visits.start()
deadline = time.monotonic() + 60
while not requests and time.monotonic() < deadline:
    time.sleep(0.1)
requests[0].join(60)
while time.monotonic() < deadline:  # the builder rebuilds the day within a pass or two
    hours, found = browsers(day, day)
    if hours and found == [{"value": "Chrome", "visitors": 1, "pageviews": 1}]:
        break
    time.sleep(0.5)
report(hours=hours, browsers=found)
"""


def test_a_restriction_during_a_build_is_not_undone_by_it(tmp_path):
    """The builder's thread, half-way through a day (hours written, day not yet recorded as built), and a
    restriction request at that moment: the request marks the day unbuilt only once the build has ended, so the
    next pass rebuilds it without the visitor. The store's insert is wrapped only to start the request at that
    moment and give it time."""
    found = run_scene(tmp_path, RESTRICT_DURING_BUILD, stats_refresh_seconds=0.2)
    assert found["hours"], found  # the breakdown is read from hit_hours
    assert found["browsers"] == ONLY_CHROME, found


# ---- 7. a restricted visitor on a site's first built day ---------------------------------------------

RESTRICT_ON_FIRST_DAY = """
first, ten = at_ten(4)  # the site's first day with hits; built with the next day in one build
store.insert([hit(restricted, ten, "Firefox"), hit(kept, ten + 86_400, "Chrome")])
visits.refresh(store, now)
restrict()
# No rebuild yet (the builder's next pass is up to stats_refresh_seconds away): the stats of both days now.
report(browsers=browsers(first, first + timedelta(days=1))[1])
"""


def test_a_restricted_visitor_on_the_sites_first_built_day_is_left_out_before_the_rebuild(tmp_path):
    """The visitor's day is marked unbuilt, not deleted from visit_days: with no row, the site's first built day
    counted as "before the first built day, so empty", and the range read its old hours from the build it shared
    with the next day, the restricted visitor included."""
    assert run_scene(tmp_path, RESTRICT_ON_FIRST_DAY)["browsers"] == ONLY_CHROME
