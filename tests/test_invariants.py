"""The privacy invariants of design.md, each proven against a real gateway and its real chDB store."""
from __future__ import annotations

import json



import httpx
from mmdb_writer import MMDBWriter, MmdbU32
from netaddr import IPSet

from harness import SITE_ORIGIN, UA_CHROME, free_port, grant, written_files

H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
URL = "https://www.example.com/"


def hit(c: httpx.Client, token: str | None, path: str = "/", **headers: str) -> str:
    body = {"url": URL.rstrip("/") + path}
    if token:
        body["consent"] = token
    r = c.post("/s/demo/collect", json=body, headers={**H, **headers})
    assert r.status_code == 202, r.text
    return r.headers["x-consentgate-result"]


def spooled_events(gw) -> list[dict]:
    lines = []
    for path in (gw.folder / "store" / "spool").glob("*.jsonl"):
        lines += [json.loads(x) for x in path.read_text().splitlines()]
    return [r for r in lines if r.get("kind") == "event"]


def test_no_consent_no_row_and_nothing_spooled(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        refused = grant(c, analytics=False, marketing=False)["token"]
        results = [hit(c, None, "/anon"), hit(c, refused, "/refused")]
    assert results == ["dropped: no_consent", "dropped: no_consent"]
    assert spooled_events(gw) == []  # nothing written, not even to the spool
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 0}]
    # the refusal itself is proof of consent and is kept
    assert gw.sql("SELECT method, analytics FROM {db}.consents") == [{"method": "custom", "analytics": 0}]


def test_analytics_only_consent_stores_the_hit(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        consent = grant(c, analytics=True)
        assert hit(c, consent["token"], "/pricing?utm_source=news&utm_campaign=nov&email=a@b.example",
                   Referer="ignored") == "stored"
    gw.stop()
    rows = gw.sql("SELECT visitor_id, path, url, utm_source, utm_campaign, browser, os, device FROM {db}.events")
    assert rows == [{"visitor_id": consent["consent_id"], "path": "/pricing", "url": "https://www.example.com/pricing",
                     "utm_source": "news", "utm_campaign": "nov", "browser": "Chrome", "os": "Windows", "device": "desktop"}]


def test_marketing_only_consent_is_not_stored(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        token = grant(c, analytics=False, marketing=True)["token"]
        assert hit(c, token).startswith("dropped")  # no vendor configured, no analytics: nowhere to go
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 0}]


def test_withdrawal_drops_the_next_hit_even_with_the_old_token(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        assert hit(c, token, "/before") == "stored"
        assert c.request("DELETE", "/s/demo/consent", headers=H).json()["withdrawn"] is True
        assert hit(c, token, "/after") == "dropped: withdrawn"  # a banner that kept the token cannot bypass it
    # the withdrawal survives a restart (rebuilt from the consent log)
    gw.stop()
    gw.start()
    with gw.client() as c:
        assert hit(c, token, "/after-restart") == "dropped: withdrawn"
    gw.stop()
    assert gw.sql("SELECT path FROM {db}.events") == [{"path": "/before"}]
    assert [r["action"] for r in gw.sql("SELECT action FROM {db}.consents ORDER BY timestamp")] == ["grant", "withdraw"]


def test_policy_bump_invalidates_old_tokens(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        assert hit(c, token) == "stored"
    gw.stop()
    text = gw.config_path.read_text().replace('origins = ["https://www.example.com"]',
                                              'origins = ["https://www.example.com"]\npolicy_version = 2')
    gw.config_path.write_text(text)
    gw.start()
    with gw.client() as c:
        assert hit(c, token) == "dropped: old_policy"
        assert c.get("/s/demo/consent", headers={**H, "X-Consent-Token": token}).json() == {"choices": None, "policy_version": 2}
        fresh = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "consent": token}, headers=H).json()
        assert fresh["policy_version"] == 2 and hit(c, fresh["token"]) == "stored"
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 2}]


def make_geoip(path) -> None:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City", languages=["en"],
                        description={"en": "consentgate test"})
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "GB", "names": {"en": "United Kingdom"},
                                                                  "geoname_id": MmdbU32(2635167)}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "NL", "names": {"en": "Netherlands"},
                                                                 "geoname_id": MmdbU32(2750405)}})
    writer.to_db_file(str(path))


def test_full_ip_is_never_written_and_geoip_uses_it_first(make_gateway, tmp_path):
    make_geoip(tmp_path / "geo.mmdb")
    gw = make_gateway(gateway={"trusted_proxies": ["127.0.0.1/32"], "geoip_db": str(tmp_path / "geo.mmdb"),
                               "access_log": "all"})
    full_ips = ["203.0.113.77", "2001:db8:1234:5678:9abc::42"]
    with gw.client() as c:
        for ip in full_ips:
            token = grant(c, analytics=True)["token"]
            # XFF from a trusted proxy; the left-most entry is what the client claims and is not believed
            assert hit(c, token, "/geo", **{"X-Forwarded-For": f"198.51.100.250, {ip}"}) == "stored"
            c.delete("/s/demo/consent", headers={**H, "X-Forwarded-For": ip})
        c.get("/s/demo/privacy/me", headers={"X-Consent-Token": token, "X-Forwarded-For": full_ips[1]})
    gw.stop()
    rows = gw.sql("SELECT ip, country FROM {db}.events ORDER BY country")
    assert rows == [{"ip": "203.0.113.0", "country": "GB"}, {"ip": "2001:db8:1234::", "country": "NL"}]
    consent_ips = {r["ip"] for r in gw.sql("SELECT ip FROM {db}.consents")}
    assert consent_ips == {"203.0.113.0", "2001:db8:1234::", "127.0.0.0"}
    # Search everything: every row of every table as text, and every file the gateway wrote (spool, logs, store).
    everything = json.dumps([gw.sql(f"SELECT * FROM {{db}}.{t}") for t in ("events", "consents", "forwards")])
    needles = ["203.0.113.77", "2001:db8:1234:5678", "5678:9abc", "198.51.100.250"]
    for needle in needles:
        assert needle not in everything
    files = written_files(gw.folder)
    assert any(p.suffix == ".log" for p in files) and any(p.suffix == ".jsonl" for p in files)
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, f"{needle} found in {path}"


def test_kill_9_after_n_acknowledged_hits_loses_nothing_and_stores_nothing_twice(make_gateway):
    gw = make_gateway(gateway={"flush_interval": 0.5})
    n = 300
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        results = [hit(c, token, f"/p{i}") for i in range(n)]
    assert results.count("stored") == n
    gw.kill()  # SIGKILL: some hits are in the store, the rest only in the spool
    gw.start()
    gw.stop()
    rows = gw.sql("SELECT count() AS n, uniqExact(path) AS paths, uniqExact(event_id) AS ids FROM {db}.events")
    assert rows == [{"n": n, "paths": n, "ids": n}]


def test_replay_of_an_already_stored_batch_does_not_duplicate(make_gateway):
    # A crash between "insert into ClickHouse" and "move the spool checkpoint" cannot be timed from outside,
    # so this recreates its aftermath: a stored batch whose checkpoint still points before it.
    gw = make_gateway()
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
    gw.stop()
    spool = gw.folder / "store" / "spool"
    saved = (spool / "store.checkpoint").read_bytes()
    segments_before = {p.name for p in spool.glob("*.jsonl")}
    gw.start()
    with gw.client() as c:
        for i in range(20):
            hit(c, token, f"/r{i}")
    gw.stop()  # everything stored, checkpoint moved past the 20 hits
    kept = {p.name: p.read_bytes() for p in spool.glob("*.jsonl")}
    assert len(kept) >= 1 and set(kept) - segments_before  # the new segment is still on disk
    (spool / "store.checkpoint").write_bytes(saved)  # the checkpoint "did not move"
    gw.start()
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 20}]


def test_store_outage_spools_and_nothing_acknowledged_is_lost(make_gateway, tmp_path):
    data_dir = tmp_path / "data"
    down = f"http://default:@127.0.0.1:{free_port()}/consentgate"  # nothing listens there
    gw = make_gateway(gateway={"store": down, "data_dir": str(data_dir)})
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        results = [hit(c, token, f"/o{i}") for i in range(25)]
        health = c.get("/healthz").json()
    assert results == ["stored"] * 25  # acknowledged: on disk in the spool
    assert health["store"] == "down" and health["spool_backlog_bytes"] > 0
    gw.stop()
    assert "kept for the next start" in gw.logs()
    # The store comes back (here: the embedded one); the spool is replayed into it.
    text = gw.config_path.read_text().replace(down, f"chdb://{tmp_path / 'chdb'}")
    gw.config_path.write_text(text)
    gw.start()
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 25}]
    assert gw.sql("SELECT count() AS n FROM {db}.consents") == [{"n": 1}]


def test_sigterm_leaves_a_complete_store(make_gateway):
    gw = make_gateway(gateway={"flush_interval": 30})  # the writer would wait 30 s: only the shutdown drain writes
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        for i in range(40):
            hit(c, token, f"/t{i}")
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 40}]


def test_privacy_export_and_erasure(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        mine = grant(c, analytics=True)
        hit(c, mine["token"], "/mine")
        hit(c, mine["token"], "/mine2")
        c.cookies.clear()
        other = grant(c, analytics=True)
        hit(c, other["token"], "/theirs")
        c.cookies.clear()
        assert c.get("/s/demo/privacy/me").status_code == 401
        export = c.get("/s/demo/privacy/me", headers={"X-Consent-Token": mine["token"]}).json()
        assert sorted(e["path"] for e in export["events"]) == ["/mine", "/mine2"]
        assert [x["action"] for x in export["consents"]] == ["grant"]
        erased = c.delete("/s/demo/privacy/me", headers={"X-Consent-Token": mine["token"]}).json()
        assert erased["events"] == 2
        assert hit(c, mine["token"], "/after-erase") == "dropped: withdrawn"
        # an erased token reaches nothing any more (issue 8 finding 3)
        assert c.get("/s/demo/privacy/me", headers={"X-Consent-Token": mine["token"]}).status_code == 401
    gw.stop()
    assert gw.sql("SELECT path FROM {db}.events") == [{"path": "/theirs"}]


def test_bots_are_dropped_before_anything_is_written(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        assert hit(c, token, "/b", **{"User-Agent": "curl/8.5.0"}) == "dropped: bot"
        assert hit(c, token, "/b", **{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0"}) == "dropped: bot"
        metrics = c.get("/metrics").text
    assert 'consentgate_collect_hits_total{reason="bot",result="dropped",site="demo"} 2.0' in metrics
    assert spooled_events(gw) == []


def test_untrusted_peer_cannot_choose_its_address(make_gateway):
    gw = make_gateway()  # no trusted proxies
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        hit(c, token, "/x", **{"X-Forwarded-For": "203.0.113.5"})
    gw.stop()
    assert gw.sql("SELECT ip FROM {db}.events") == [{"ip": "127.0.0.0"}]



