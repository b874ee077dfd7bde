"""Growth without limits (issue 8, finding 9): the spool and the vendor outboxes are bounded.

The store outage here is a real fault: another process holds chDB's lock on the
store folder, so the gateway's writer cannot open the store (as when a second
gateway or `consentgate sql` is started on it by mistake). When the holder goes,
the writer gets in and writes the spool.
"""
from __future__ import annotations

import subprocess
import sys

from forwarding_helpers import metric, wait_until, webhook
from harness import ROOT, SITE_ORIGIN, UA_CHROME, grant
from vendor_servers import VendorServer, fail_after

H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
MIB = 1024 * 1024
LONG_PATH = "/" + "p" * 1900  # ~2.3 KB a spooled line: the limit is reached in a few hundred hits


def hold_store_lock(path) -> subprocess.Popen:
    """A process that opens the embedded store and keeps it: nobody else can open it meanwhile."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, clickhouse_connect\n"
         f"c = clickhouse_connect.get_client(dsn='chdb://{path}')\nc.query('SELECT 1')\n"
         "print('holding', flush=True)\ntime.sleep(600)\n"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_spool_limit_refuses_with_503_keeps_every_acknowledged_hit_and_recovers(make_gateway, tmp_path):
    store = tmp_path / "gw0" / "store"
    store.mkdir(parents=True)
    holder = hold_store_lock(store)
    try:
        gw = make_gateway(gateway={"max_spool_bytes": MIB})
        acknowledged, refused = 0, 0
        with gw.client() as c:
            token = grant(c, analytics=True)["token"]
            assert c.get("/readyz").status_code == 503  # the store cannot be written
            for i in range(2000):
                r = c.post("/s/demo/collect", json={"url": f"https://www.example.com{LONG_PATH}?i={i}", "consent": token},
                           headers=H)
                if r.status_code == 202:
                    assert refused == 0, "a 202 after a 503: the limit must hold until the store is back"
                    acknowledged += 1
                else:
                    assert r.status_code == 503, r.text
                    assert r.json()["error"] == "spool_full" and int(r.headers["retry-after"]) > 0
                    refused += 1
                    if refused >= 20:
                        break
            assert refused == 20 and acknowledged > 100
            consent = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "method": "custom"}, headers=H)
            assert consent.status_code == 503 and consent.json()["error"] == "spool_full"
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["spool_under_limit"] is False
            assert metric(c, "consentgate_spool_disk_bytes") >= MIB
            assert metric(c, "consentgate_store_up") == 0
        holder.kill()
        holder.wait(10)
        holder = None
        with gw.client() as c:
            wait_until(lambda: c.get("/readyz").status_code == 200, 60, "readyz 200 after the store came back")
            r = c.post("/s/demo/collect", json={"url": "https://www.example.com/after", "consent": token}, headers=H)
            assert r.status_code == 202 and r.headers["x-consentgate-result"] == "stored"
        gw.stop()
    finally:
        if holder is not None:
            holder.kill()
    rows = gw.sql("SELECT count() AS n, uniqExact(event_id) AS u FROM {db}.events")
    assert rows == [{"n": acknowledged + 1, "u": acknowledged + 1}]  # every 202 once, no 503 stored
    assert gw.sql("SELECT count() AS n FROM {db}.consents") == [{"n": 1}]  # the refused consent was not kept


def test_outbox_limit_drops_the_oldest_undelivered_hits_with_a_record(make_gateway):
    vendor = VendorServer(behaviour=fail_after(0, 503)).start()  # the vendor is down for the whole test
    try:
        # One visitor sends 700 hits at once: the behavioural bot check (bot_hits_per_minute) is off here.
        gw = make_gateway(gateway={"trusted_proxies": ["127.0.0.1/32"], "bot_hits_per_minute": 0}, sites={"demo": {
            "origins": [SITE_ORIGIN], "vendors": [webhook("hook", f"{vendor.url}/hook", max_outbox_bytes=MIB)]}})
        sent = 0
        with gw.client() as c:
            token = grant(c, analytics=True, marketing=True)["token"]
            for i in range(700):
                r = c.post("/s/demo/collect", json={"url": f"https://www.example.com{LONG_PATH}?n={i}", "consent": token},
                           headers=H)
                assert r.status_code == 202, r.text
                sent += 1
            wait_until(lambda: metric(c, "consentgate_forward_dropped_total", site="demo", vendor="hook",
                                      reason="dropped_full") > 0, 60, "dropped_full deliveries")
            outbox_bytes = sum(p.stat().st_size for p in (gw.folder / "store" / "outbox").rglob("*.jsonl"))
        gw.stop()
    finally:
        vendor.stop()
    assert outbox_bytes < 2 * MIB  # bounded near the limit while the vendor stays down
    dropped = gw.sql("SELECT e.path AS path FROM {db}.forwards f JOIN {db}.events e ON f.event_id = e.event_id "
                     "WHERE f.status = 'dropped_full' ORDER BY e.timestamp")
    assert dropped, "no forwards row records the dropped deliveries"
    kept = gw.sql("SELECT count() AS n FROM {db}.events")[0]["n"]
    assert kept == sent  # the store keeps every hit: only the vendor's copy is dropped
