"""Delivery guarantees of forwarding, with real vendor servers misbehaving on purpose: slow, failing,
down, refusing; a gateway killed with SIGKILL; consent withdrawn while hits wait in the outbox."""
from __future__ import annotations

import statistics
import time
from collections import Counter

from forwarding_helpers import GATEWAY, consent_and_send, metric, send_hit, wait_until, webhook, webhook_gateway
from harness import SITE_ORIGIN, UA_CHROME, grant
from vendor_servers import VendorServer, fail_after, fail_first, refuse, slow


def event_ids(requests) -> list[str]:
    return [r.json()["event"]["event_id"] for r in requests]


def test_a_slow_vendor_does_not_slow_collect(make_gateway):
    """Hits of site `slow` are forwarded to a vendor that takes 3 s per request (one at a time); hits of
    site `plain` are not forwarded. Sent interleaved in one run, their collect latencies compare."""
    delay = 3.0
    vendor = VendorServer(slow(delay)).start()
    try:
        gw = make_gateway(gateway=GATEWAY, sites={
            "slow": {"origins": [SITE_ORIGIN], "vendors": [webhook("sloth", f"{vendor.url}/hook", max_concurrency=1)]},
            "plain": {"origins": [SITE_ORIGIN]},
        })
        timings: dict[str, list[float]] = {"slow": [], "plain": []}
        with gw.client() as a, gw.client() as b:
            tokens = {"slow": grant(a, site="slow", analytics=True, marketing=True)["token"],
                      "plain": grant(b, site="plain", analytics=True, marketing=True)["token"]}
            clients = {"slow": a, "plain": b}
            for i in range(5):  # warm both paths up
                for site in timings:
                    send_hit(clients[site], tokens[site], "/warm", site=site)
            for i in range(40):
                for site in timings:
                    started = time.perf_counter()
                    r = send_hit(clients[site], tokens[site], f"/p{i}", site=site)
                    timings[site].append(time.perf_counter() - started)
                    assert r.headers["x-consentgate-result"] == "stored"
            received = len(vendor.requests())
            depth = metric(a, "consentgate_forward_queue_depth", site="slow", vendor="sloth")
        median = {site: statistics.median(t) for site, t in timings.items()}
        print(f"collect median: forwarded to a {delay}s vendor {median['slow'] * 1000:.2f} ms, "
              f"not forwarded {median['plain'] * 1000:.2f} ms, ratio {median['slow'] / median['plain']:.2f}")
        # The vendor was busy the whole time (the backlog waited in the outbox), yet collect kept its speed.
        assert received < 45 and depth > 0
        assert median["slow"] < 3 * median["plain"]
        # Had collect waited for the vendor, every one of these would have taken at least `delay`.
        assert max(timings["slow"]) < delay
        gw.stop()
    finally:
        vendor.stop()


def test_outage_retries_and_refusals(make_gateway):
    """flaky answers 500 three times then 200; down has nothing listening until the hits are queued;
    picky refuses with 400. Every hit reaches flaky and down exactly once; picky gets each once only."""
    flaky = VendorServer(fail_first(3, 500)).start()
    down = VendorServer()  # not started: connection refused
    picky = VendorServer(refuse(400)).start()
    try:
        gw = make_gateway(gateway=GATEWAY, sites={"demo": {"origins": [SITE_ORIGIN], "vendors": [
            webhook("flaky", f"{flaky.url}/hook"), webhook("down", f"{down.url}/hook"),
            webhook("picky", f"{picky.url}/hook")]}})
        with gw.client() as c:
            visitor = grant(c, analytics=True, marketing=True)
            outage_started = time.monotonic()
            for i in range(6):
                send_hit(c, visitor["token"], f"/page-{i}")
            wait_until(lambda: metric(c, "consentgate_forward_breaker_open", vendor="down") == 1, what="breaker open")
            time.sleep(1.5)  # the vendor stays down a while with the backlog waiting
            failed_while_down = metric(c, "consentgate_forward_failed_total", vendor="down", reason="connection")
            outage = time.monotonic() - outage_started
            down.start()
            down.wait_for(lambda v: len(v.accepted()) == 6)
            flaky.wait_for(lambda v: len(v.accepted()) == 6)
            picky.wait_for(lambda v: len(v.requests()) == 6)
            wait_until(lambda: all(metric(c, "consentgate_forward_queue_depth", vendor=v) == 0
                                   for v in ("flaky", "down", "picky")), what="outboxes empty")
            assert metric(c, "consentgate_forward_retried_total", vendor="flaky") == 3
            assert metric(c, "consentgate_forward_failed_total", vendor="flaky", reason="http_500") == 3
            assert metric(c, "consentgate_forward_dropped_total", vendor="picky", reason="rejected") == 6
            assert metric(c, "consentgate_forward_sent_total", vendor="down") == 6
        # The breaker kept a dead vendor from being hammered: the attempts that open it (up to 4 at once),
        # then about one probe per breaker_reset (0.4 s); not every queued hit retrying on its own backoff.
        assert failed_while_down <= 3 + 4 + 2 * outage / 0.4, (failed_while_down, outage)
        time.sleep(1.0)  # several retry_max periods: a refused hit is never retried
        gw.stop()
        assert len(picky.requests()) == 6
        for server in (flaky, down):
            assert Counter(event_ids(server.accepted())).most_common(1)[0][1] == 1
        stored = {e["event_id"] for e in gw.sql("SELECT toString(event_id) AS event_id FROM {db}.events")}
        assert set(event_ids(flaky.accepted())) == set(event_ids(down.accepted())) == stored
        rows = gw.sql("SELECT vendor, status, count() AS n, sum(attempts) AS attempts FROM {db}.forwards "
                      "GROUP BY vendor, status ORDER BY vendor")
        assert rows[0] == {"vendor": "down", "status": "delivered", "n": 6, "attempts": rows[0]["attempts"]}
        assert rows[0]["attempts"] >= 6 + failed_while_down  # every failed attempt is counted
        assert rows[1:] == [{"vendor": "flaky", "status": "delivered", "n": 6, "attempts": 9},
                            {"vendor": "picky", "status": "rejected", "n": 6, "attempts": 6}]
        refusals = [line for line in gw.logs().splitlines() if "rejected event" in line]
        assert len(refusals) == 6 and all("HTTP 400" in line for line in refusals)
        assert not any(visitor["consent_id"] in line or "/page-" in line or "203.0.113" in line for line in refusals)
    finally:
        for server in (flaky, down, picky):
            server.stop()


def test_restart_after_sigkill_delivers_the_rest_exactly_once(make_gateway):
    """The vendor accepts 3 hits, then answers 503; the gateway is killed with hits still queued.
    After a restart (vendor healthy again) every hit arrives, each accepted exactly once."""
    vendor = VendorServer(fail_after(3, 503)).start()
    try:
        gw = webhook_gateway(make_gateway, vendor.url)
        with gw.client() as c:
            consent_and_send(c, 8)
        vendor.wait_for(lambda v: len(v.accepted()) == 3 and len(v.requests()) >= 6)
        gw.kill()
        vendor.behaviour = fail_after(10**9)
        gw.start()
        vendor.wait_for(lambda v: len(v.accepted()) == 8)
        with gw.client() as c:
            wait_until(lambda: metric(c, "consentgate_forward_queue_depth", vendor="hook") == 0, what="outbox empty")
        gw.stop()
        accepted = event_ids(vendor.accepted())
        stored = {e["event_id"] for e in gw.sql("SELECT toString(event_id) AS event_id FROM {db}.events")}
        assert len(accepted) == 8 and set(accepted) == stored
        rows = gw.sql("SELECT toString(event_id) AS event_id, status FROM {db}.forwards")
        assert sorted(r["event_id"] for r in rows) == sorted(stored)
        assert {r["status"] for r in rows} == {"delivered"}
    finally:
        vendor.stop()


def test_outcome_recorded_before_a_crash_is_not_sent_again(make_gateway):
    """A crash between spooling a delivery's outcome and moving the outbox checkpoint cannot be timed
    for real, so this test makes that state: after the deliveries (outcomes in the spool after SIGKILL,
    in the store after SIGTERM) it deletes the outbox checkpoint. A restart must not resend them."""
    vendor = VendorServer().start()
    try:
        gw = webhook_gateway(make_gateway, vendor.url)
        with gw.client() as c:
            token = consent_and_send(c, 4)
            vendor.wait_for(lambda v: len(v.accepted()) == 4)
            wait_until(lambda: metric(c, "consentgate_forward_queue_depth", vendor="hook") == 0, what="outbox empty")
        for restart, stop in enumerate((gw.kill, gw.stop)):
            stop()
            outboxes = [p for p in gw.folder.rglob("outbox/demo/*") if p.is_dir()]
            assert len(outboxes) == 1
            # (After SIGKILL the checkpoint may not have moved yet: the same state.)
            (outboxes[0] / "forwarder.checkpoint").unlink(missing_ok=True)
            gw.start()
            with gw.client() as c:
                send_hit(c, token, f"/after-restart-{restart}")
                vendor.wait_for(lambda v: len(v.accepted()) == 5 + restart)
                wait_until(lambda: metric(c, "consentgate_forward_queue_depth", vendor="hook") == 0, what="empty")
        gw.stop()
        assert "already delivered before the last stop: not sent again" in gw.logs()
        accepted = event_ids(vendor.accepted())
        assert len(accepted) == len(set(accepted)) == 6
        assert gw.sql("SELECT count() AS n, uniqExact(record_id) AS ids FROM {db}.forwards") == [{"n": 6, "ids": 6}]
    finally:
        vendor.stop()


def test_withdrawal_stops_hits_still_queued(make_gateway):
    """Hits wait for a vendor that is down. One visitor withdraws, another narrows to analytics only,
    a third keeps consent. When the vendor is back, only the third visitor's hits reach it."""
    vendor = VendorServer()  # down for now
    try:
        gw = webhook_gateway(make_gateway, vendor.url)
        with gw.client() as withdrawer, gw.client() as narrower, gw.client() as keeper:
            tokens = {name: grant(client, analytics=True, marketing=True)
                      for name, client in (("withdrawer", withdrawer), ("narrower", narrower), ("keeper", keeper))}
            for name, client in (("withdrawer", withdrawer), ("narrower", narrower), ("keeper", keeper)):
                for i in range(3):
                    send_hit(client, tokens[name]["token"], f"/{name}-{i}")
            wait_until(lambda: metric(keeper, "consentgate_forward_failed_total", vendor="hook") >= 3, what="failures")
            r = withdrawer.request("DELETE", "/s/demo/consent", json={"consent": tokens["withdrawer"]["token"]},
                                   headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME})
            assert r.json()["withdrawn"] is True
            narrowed = grant(narrower, analytics=True, marketing=False)
            assert narrowed["consent_id"] == tokens["narrower"]["consent_id"]
            # The old token no longer counts at collect either.
            r = send_hit(withdrawer, tokens["withdrawer"]["token"], "/withdrawer-late")
            assert r.headers["x-consentgate-result"] == "dropped: withdrawn"
            vendor.start()
            wait_until(lambda: metric(keeper, "consentgate_forward_queue_depth", vendor="hook") == 0, what="empty")
        gw.stop()
        paths = sorted(r.json()["event"]["path"] for r in vendor.requests())
        assert paths == ["/keeper-0", "/keeper-1", "/keeper-2"]
        rows = gw.sql("SELECT consent_id, status, count() AS n FROM {db}.forwards GROUP BY consent_id, status")
        by_visitor = {r["consent_id"]: (r["status"], r["n"]) for r in rows}
        assert by_visitor == {tokens["withdrawer"]["consent_id"]: ("withdrawn", 3),
                              tokens["narrower"]["consent_id"]: ("withdrawn", 3),
                              tokens["keeper"]["consent_id"]: ("delivered", 3)}
    finally:
        vendor.stop()
