"""The visitor's rights against real gateways: stale tokens (issue 8 finding 3), erasure everywhere,
restriction, objection, and the operator's `consentgate privacy` command through the admin API."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from forwarding_helpers import GATEWAY, metric, send_hit, wait_until, webhook
from harness import ROOT, SECRET, SITE_ORIGIN, STATS_TOKEN, UA_CHROME, grant
from vendor_servers import VendorServer, refuse

from gateway.tokens import TokenSigner

H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"


def export(c, token: str):
    return c.get("/s/demo/privacy/me", headers={**H, "X-Consent-Token": token})


def withdraw(c, token: str) -> dict:
    r = c.request("DELETE", "/s/demo/consent", headers={**H, "X-Consent-Token": token})
    assert r.status_code == 200, r.text
    return r.json()


def test_privacy_routes_refuse_stale_tokens_and_erasure_starts_a_new_consent_id(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        first = grant(c, analytics=True)
        c.cookies.clear()
        send_hit(c, first["token"], "/before")
        withdrawal = withdraw(c, first["token"])
        # The token of the withdrawal itself: grants nothing, still reaches the visitor's data.
        assert withdrawal["withdrawn"] is True and withdrawal["consent_id"] == first["consent_id"]
        assert withdrawal["choices"] == {"necessary": True, "preferences": False, "analytics": False, "marketing": False}
        assert export(c, first["token"]).status_code == 401  # withdrawn: the old token reads nothing
        assert c.request("DELETE", "/s/demo/privacy/me", headers={**H, "X-Consent-Token": first["token"]}).status_code == 401
        mine = export(c, withdrawal["token"])
        assert mine.status_code == 200 and [e["path"] for e in mine.json()["events"]] == ["/before"]
        # A stale token cannot buy a fresh one either: neither by deciding again nor by withdrawing.
        laundered = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "consent": first["token"]}, headers=H).json()
        assert laundered["consent_id"] != first["consent_id"]
        c.cookies.clear()
        # Deciding again with the withdrawal token keeps the id and supersedes that token.
        again = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "consent": withdrawal["token"]}, headers=H).json()
        c.cookies.clear()
        assert again["consent_id"] == first["consent_id"]
        send_hit(c, again["token"], "/after-reconsent")
        assert export(c, withdrawal["token"]).status_code == 401
        assert [e["path"] for e in export(c, again["token"]).json()["events"]] == ["/before", "/after-reconsent"]
        # An expired token (genuine signature, same secret) reaches nothing.
        signer = TokenSigner((SECRET,), 182)
        long_ago = int(time.time() * 1000) - 200 * 86_400_000
        expired = signer.dumps(signer.issue(again["consent_id"], "demo", {"analytics": True}, 1, long_ago))
        assert export(c, expired).status_code == 401
        # After an erasure the erased token reaches nothing, and the next decision is a new visitor.
        assert c.request("DELETE", "/s/demo/privacy/me", headers={**H, "X-Consent-Token": again["token"]}).status_code == 200
        assert export(c, again["token"]).status_code == 401
        fresh = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "consent": again["token"]}, headers=H).json()
        assert fresh["consent_id"] not in (first["consent_id"], laundered["consent_id"])
        assert export(c, fresh["token"]).json()["events"] == []
        c.cookies.clear()
        assert "token" not in withdraw(c, first["token"])  # withdrawing with a stale token works, but buys no token


def test_the_export_holds_the_visits_built_from_the_visitors_hits(make_gateway):
    """Everything stored about the visitor: also the visits (sessions) the statistics build from their hits,
    which erasure already deletes. Two pageviews two days ago, ten minutes apart: one visit of two pageviews."""
    from datetime import timedelta, timezone

    from stats_seed import Hit, seed

    gw = make_gateway(start=False)
    signer = TokenSigner((SECRET,), 182)
    visitor, other = "ab" * 16, "cd" * 16
    token = signer.dumps(signer.issue(visitor, "demo", {"analytics": True}, 1))
    noon = (datetime.now(timezone.utc) - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
    seed(gw.config_path, [Hit("demo", visitor, noon, "/first"), Hit("demo", visitor, noon + timedelta(minutes=10), "/second"),
                          Hit("demo", other, noon, "/someone-else")])
    gw.start()
    with gw.client() as c:
        assert c.get("/api/stats/demo/summary", headers={"Authorization": f"Bearer {STATS_TOKEN}"}).status_code == 200
        wait_until(lambda: export(c, token).json()["visits"], 60, "the visits built")  # the first stats call starts the builder
        mine = export(c, token).json()
    assert [(v["entry_page"], v["exit_page"], v["pageviews"], v["duration_ms"]) for v in mine["visits"]] == [
        ("/first", "/second", 2, 600_000)]
    assert [e["path"] for e in mine["events"]] == ["/first", "/second"]


def _lines_naming(folder: Path, consent_id: str) -> list[dict]:
    found = []
    for path in folder.rglob("*.jsonl"):
        for line in path.read_bytes().splitlines():
            if consent_id.encode() in line:
                found.append(json.loads(line))
    return found


def test_erasure_leaves_no_line_or_row_after_restart_and_replay(make_gateway):
    vendor = VendorServer(refuse(503)).start()  # down: every delivery stays queued in the outbox
    try:
        gw = make_gateway(gateway=GATEWAY, sites={"demo": {"origins": [SITE_ORIGIN],
                                                          "vendors": [webhook("hook", f"{vendor.url}/hook")]}})
        with gw.client() as c:
            gone = grant(c, analytics=True, marketing=True)
            c.cookies.clear()
            stays = grant(c, analytics=True, marketing=True)
            c.cookies.clear()
            for i in range(3):
                send_hit(c, gone["token"], f"/gone-{i}")
                send_hit(c, stays["token"], f"/stays-{i}")
            data = gw.folder / "store"
            wait_until(lambda: len(vendor.requests()) >= 2, what="the vendor was tried")
            assert len(_lines_naming(data / "outbox", gone["consent_id"])) == 3
            assert {r["kind"] for r in _lines_naming(data / "spool", gone["consent_id"])} == {"consent", "event"}
            erased = c.request("DELETE", "/s/demo/privacy/me", headers={**H, "X-Consent-Token": gone["token"]}).json()
            assert erased["events"] == 3 and erased["removed"]["outbox_lines"] == 3
            # Only the consent log still names the visitor (proof of consent); no event, no delivery.
            assert _lines_naming(data / "outbox", gone["consent_id"]) == []
            assert {r["kind"] for r in _lines_naming(data / "spool", gone["consent_id"])} == {"consent"}
            assert len(_lines_naming(data / "outbox", stays["consent_id"])) == 3
        gw.kill()  # no drain: the next start replays the spool from its checkpoint
        gw.start()
        with gw.client() as c:
            wait_until(lambda: metric(c, "consentgate_spool_backlog_bytes") == 0, what="the spool replayed")
        gw.stop()
        gone_id, stays_id = gone["consent_id"], stays["consent_id"]
        assert gw.sql(f"SELECT count() AS n FROM {{db}}.events WHERE visitor_id = '{gone_id}'") == [{"n": 0}]
        assert gw.sql(f"SELECT count() AS n FROM {{db}}.forwards WHERE consent_id = '{gone_id}'") == [{"n": 0}]
        assert gw.sql(f"SELECT count() AS n FROM {{db}}.events WHERE visitor_id = '{stays_id}'") == [{"n": 3}]
        assert gw.sql(f"SELECT action, method FROM {{db}}.consents WHERE consent_id = '{gone_id}' ORDER BY timestamp") == [
            {"action": "grant", "method": "custom"}, {"action": "withdraw", "method": "erase"}]
        log = gw.sql("SELECT consent_hash, erased_by, rows FROM {db}.erasures")
        assert len(log) == 1 and log[0]["consent_hash"] == hashlib.sha256(gone_id.encode()).hexdigest()
        assert log[0]["erased_by"] == "visitor" and log[0]["rows"]["events"] == 3
        assert gone_id not in json.dumps(log)
        assert _lines_naming(gw.folder / "store" / "outbox", gone_id) == []
    finally:
        vendor.stop()


def test_erasure_reaches_the_outbox_of_a_vendor_no_longer_configured(make_gateway):
    """A renamed or removed vendor leaves its outbox behind (its hits are never sent, in case the name comes
    back): the queued hits are still the visitor's, and an erasure blanks them too."""
    from harness import write_config

    vendor = VendorServer(refuse(503)).start()  # down: the deliveries stay queued
    try:
        sites = {"demo": {"origins": [SITE_ORIGIN], "vendors": [webhook("hook", f"{vendor.url}/hook")]}}
        gw = make_gateway(gateway=GATEWAY, sites=sites)
        with gw.client() as c:
            gone = grant(c, analytics=True, marketing=True)
            for i in range(2):
                send_hit(c, gone["token"], f"/queued-{i}")
        outbox = gw.folder / "store" / "outbox"
        assert len(_lines_naming(outbox, gone["consent_id"])) == 2
        gw.stop()
        sites["demo"]["vendors"] = [webhook("hook-renamed", f"{vendor.url}/hook")]
        assert write_config(gw.folder, GATEWAY, sites) == gw.config_path
        gw.start()
        assert "belongs to no configured vendor" in gw.logs()
        with gw.client() as c:
            erased = c.request("DELETE", "/s/demo/privacy/me", headers={**H, "X-Consent-Token": gone["token"]}).json()
        assert erased["removed"]["outbox_lines"] == 2
        assert _lines_naming(outbox, gone["consent_id"]) == []
    finally:
        vendor.stop()


def test_erased_rows_are_gone_from_disk_not_only_hidden(make_gateway):
    """A lightweight DELETE only masks rows, which stay in their part until a merge; an erasure also rewrites the
    parts (APPLY DELETED MASK), so not even a read that ignores the mask finds the visitor."""
    gw = make_gateway(gateway=GATEWAY)
    with gw.client() as c:
        gone = grant(c, analytics=True)
        c.cookies.clear()
        stays = grant(c, analytics=True)
        c.cookies.clear()
        for i in range(3):
            send_hit(c, gone["token"], f"/gone-{i}")
            send_hit(c, stays["token"], f"/stays-{i}")
        wait_until(lambda: metric(c, "consentgate_spool_backlog_bytes") == 0, what="the hits in the store")
        erased = c.request("DELETE", "/s/demo/privacy/me", headers={**H, "X-Consent-Token": gone["token"]}).json()
        assert erased["events"] == 3
    gw.stop()
    unmasked = "SETTINGS apply_deleted_mask = 0"
    assert gw.sql(f"SELECT count() AS n FROM {{db}}.events WHERE visitor_id = '{gone['consent_id']}' {unmasked}") == [
        {"n": 0}]
    assert gw.sql(f"SELECT count() AS n FROM {{db}}.events WHERE visitor_id = '{stays['consent_id']}' {unmasked}") == [
        {"n": 3}]


def _stats(c, path: str) -> dict:
    # the site's today (its timezone, Europe/Amsterdam by default): from 23:00 UTC the machine's date is a day behind
    today = datetime.now(ZoneInfo("Europe/Amsterdam")).strftime("%Y-%m-%d")
    r = c.get(f"/api/stats/demo/{path}", params={"from": today, "to": today},
              headers={"Authorization": f"Bearer {STATS_TOKEN}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_restriction_keeps_data_but_leaves_stats_and_forwarding_until_lifted(make_gateway):
    vendor = VendorServer().start()
    try:
        gw = make_gateway(gateway=GATEWAY, sites={"demo": {"origins": [SITE_ORIGIN],
                                                          "vendors": [webhook("hook", f"{vendor.url}/hook")]}})
        with gw.client() as c:
            restricted = grant(c, analytics=True, marketing=True)
            c.cookies.clear()
            other = grant(c, analytics=True, marketing=True)
            c.cookies.clear()
            r = c.post("/s/demo/privacy/me/restrict", headers={**H, "X-Consent-Token": restricted["token"]})
            assert r.status_code == 200 and r.json()["restricted"] is True
            send_hit(c, restricted["token"], "/restricted")
            send_hit(c, other["token"], "/other")
            vendor.wait_for(lambda v: len(v.accepted()) >= 1)
            time.sleep(1.0)  # a restricted hit, if it were forwarded, would have arrived by now
            assert any("/other" in r.raw() for r in vendor.accepted())
            assert all("/restricted" not in r.raw() for r in vendor.requests())
            wait_until(lambda: _stats(c, "summary")["current"]["pageviews"] == 1, what="other's hit in the stats")
            assert _stats(c, "summary")["current"]["visitors"] == 1
            assert [p["value"] for p in _stats(c, "breakdown/page")["results"]] == ["/other"]
            assert _stats(c, "realtime")["pageviews"] == 1
            # The data is kept: the visitor's export still holds the hit.
            mine = export(c, restricted["token"]).json()
            assert mine["restricted"] is True and [e["path"] for e in mine["events"]] == ["/restricted"]
        gw.stop()  # the restriction outlives a restart
        gw.start()
        with gw.client() as c:
            send_hit(c, restricted["token"], "/restricted-2")
            time.sleep(1.0)
            assert all("/restricted" not in r.raw() for r in vendor.requests())
            assert _stats(c, "summary")["current"]["visitors"] == 1
            r = c.request("DELETE", "/s/demo/privacy/me/restrict", headers={**H, "X-Consent-Token": restricted["token"]})
            assert r.status_code == 200 and r.json()["restricted"] is False
            lifted = _stats(c, "summary")["current"]
            assert (lifted["visitors"], lifted["pageviews"]) == (2, 3)
            send_hit(c, restricted["token"], "/lifted")
            vendor.wait_for(lambda v: any("/lifted" in r.raw() for r in v.accepted()))
    finally:
        vendor.stop()


def test_objection_to_marketing_stops_forwarding_at_once(make_gateway):
    vendor = VendorServer().start()
    try:
        gw = make_gateway(gateway=GATEWAY, sites={"demo": {"origins": [SITE_ORIGIN],
                                                          "vendors": [webhook("hook", f"{vendor.url}/hook")]}})
        with gw.client() as c:
            both = grant(c, analytics=True, marketing=True)
            send_hit(c, both["token"], "/consented")
            vendor.wait_for(lambda v: len(v.accepted()) == 1)
            # Art. 21: the visitor objects to marketing by taking that one category back.
            narrowed = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "method": "custom"}, headers=H).json()
            c.cookies.clear()
            assert send_hit(c, narrowed["token"], "/objected").headers["x-consentgate-result"] == "stored"
            assert send_hit(c, both["token"], "/old-token").headers["x-consentgate-result"] == "dropped: withdrawn"
            time.sleep(1.0)
            assert len(vendor.requests()) == 1 and "/consented" in vendor.requests()[0].raw()
    finally:
        vendor.stop()


def _privacy_cli(gw, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "privacy", *args, "--config", str(gw.config_path),
                           "--site", "demo", "--url", gw.url], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_operator_exports_and_erases_through_the_admin_api(make_gateway):
    gw = make_gateway(gateway={"admin_tokens": [ADMIN_TOKEN]})
    with gw.client() as c:
        visitor = grant(c, analytics=True)
        c.cookies.clear()
        send_hit(c, visitor["token"], "/by-mail")
        cid = visitor["consent_id"]
        assert c.get(f"/api/admin/demo/visitors/{cid}").status_code == 401
        wrong = c.get(f"/api/admin/demo/visitors/{cid}", headers={"Authorization": "Bearer " + "x" * 40})
        assert wrong.status_code == 401 and "admin_tokens" in wrong.json()["detail"]
        bad = c.get("/api/admin/demo/visitors/not-an-id", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    out = _privacy_cli(gw, "export", "--consent-id", cid)
    assert out.returncode == 0, out.stderr
    assert [e["path"] for e in json.loads(out.stdout)["events"]] == ["/by-mail"]
    out = _privacy_cli(gw, "erase", "--consent-id", cid)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["removed"]["events"] == 1
    out = _privacy_cli(gw, "export", "--consent-id", cid, "--token", "y" * 40)
    assert out.returncode == 1 and "HTTP 401" in out.stderr
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 0}]
    assert gw.sql("SELECT erased_by FROM {db}.erasures") == [{"erased_by": "operator"}]
    assert gw.sql(f"SELECT method FROM {{db}}.consents WHERE action = 'withdraw' AND consent_id = '{cid}'") == [
        {"method": "operator_erase"}]


def test_admin_api_is_off_without_tokens_and_short_tokens_are_refused(make_gateway, tmp_path):
    gw = make_gateway()
    with gw.client() as c:
        r = c.get("/api/admin/demo/visitors/" + "a" * 32, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 404 and "admin_tokens" in r.json()["detail"]
    config = tmp_path / "short.toml"
    config.write_text(gw.config_path.read_text().replace("[gateway]", '[gateway]\nadmin_tokens = ["short-admin-token"]'))
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "gateway.admin_tokens[0]: too short" in out.stderr
