"""Server-side forwarding to vendors, end to end: a real gateway process, real vendor HTTP servers
on 127.0.0.1, the real chDB store. Expected bodies are computed here from the documented recipes."""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from forwarding_helpers import GATEWAY, metric, send_hit, wait_until, webhook
from harness import SECRET, SITE_ORIGIN, UA_CHROME, grant, written_files
from vendor_servers import VendorServer

HOOK_SECRET = "whsec-test-0123456789"
FULL_IPS = ("203.0.113.77", "2001:db8:1234:5678::1", "2001:db8:1234:5678:0:0:0:1")


def vendor_pseudonym(site: str, vendor: str, consent_id: str) -> bytes:
    """docs/vendors.md: HMAC-SHA256(secret_key, "consentgate.vendor-id\\n{site}\\n{vendor}\\n{consent_id}")."""
    return hmac.new(SECRET.encode(), f"consentgate.vendor-id\n{site}\n{vendor}\n{consent_id}".encode(),
                    hashlib.sha256).digest()


def verify_signature(header: str, body: bytes, secret: str) -> int:
    """The receiver's side of docs/vendors.md: returns the signed timestamp, or fails."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), "signature does not verify"
    return int(parts["t"])


@pytest.fixture
def vendor():
    server = VendorServer().start()
    yield server
    server.stop()


def test_consent_decides_who_receives_what(make_gateway, vendor):
    """Analytics-only consent: no vendor request ever. Marketing consent: one request per hit and vendor,
    with the documented body; HMAC verifies; no full IP anywhere a vendor (or the disk, or the log) sees."""
    vendors = [
        webhook("hook", f"{vendor.url}/hook", secret=HOOK_SECRET),
        {"name": "ga", "category": "marketing", "type": "ga4", "url": f"{vendor.url}/mp/collect",
         "measurement_id": "G-TEST123", "api_secret": "ga-api-secret-xyz"},
        {"name": "meta", "category": "marketing", "type": "meta_capi", "url": f"{vendor.url}/meta",
         "pixel_id": "1234567890", "access_token": "meta-access-token-xyz"},
    ]
    gw = make_gateway(gateway=GATEWAY, sites={"demo": {"origins": [SITE_ORIGIN], "vendors": vendors}})
    # One client per visitor: a client keeps its cg_consent cookie, and with it its consent id.
    with gw.client() as c, gw.client() as c2, gw.client() as c3:
        analytics_only = grant(c, analytics=True, marketing=False)
        for i in range(2):
            assert send_hit(c, analytics_only["token"], f"/analytics-only-{i}").headers["x-consentgate-result"] == "stored"
        everything = grant(c2, preferences=True, analytics=True, marketing=True)
        for i in range(3):
            r = send_hit(c2, everything["token"], f"/all-{i}", referrer="https://news.example.org/story?id=9",
                         query="?utm_source=news&utm_medium=email&utm_campaign=spring&email=a@b.example")
            assert r.headers["x-consentgate-result"] == "stored"
        marketing_only = grant(c3, analytics=False, marketing=True)
        r = send_hit(c3, marketing_only["token"], "/marketing-only", ip="2001:db8:1234:5678::1")
        assert r.headers["x-consentgate-result"] == "forwarded"
        vendor.wait_for(lambda v: len(v.accepted()) >= 12)
        wait_until(lambda: metric(c, "consentgate_forward_sent_total", vendor="meta") == 4, what="metrics")
        assert metric(c, "consentgate_forward_queue_depth", site="demo", vendor="hook") == 0
    gw.stop()
    requests = vendor.requests()
    assert len(requests) == 12 and all(r.status == 200 for r in requests)
    assert not any("analytics-only" in r.raw() for r in requests)
    for leaked in FULL_IPS:
        assert not any(leaked in r.raw() for r in requests), leaked
        assert leaked not in gw.logs()
        assert not any(leaked.encode() in p.read_bytes() for p in written_files(gw.folder) if p.suffix != ".toml")

    events = {e["path"]: e for e in gw.sql(
        "SELECT toString(event_id) AS event_id, path, visitor_id, toUnixTimestamp64Milli(timestamp) AS ms, type, name, "
        "url, hostname, referrer, referrer_host, utm_source, utm_medium, utm_campaign, browser, browser_version, "
        "os, device, country, ip FROM {db}.events")}
    assert set(events) == {"/analytics-only-0", "/analytics-only-1", "/all-0", "/all-1", "/all-2"}
    forwards = gw.sql("SELECT toString(record_id) AS record_id, toString(event_id) AS event_id, consent_id, "
                      "vendor, status, attempts FROM {db}.forwards")
    assert len(forwards) == 12 and {f["status"] for f in forwards} == {"delivered"}
    assert {f["consent_id"] for f in forwards} == {everything["consent_id"], marketing_only["consent_id"]}

    hooks = [r for r in requests if r.path == "/hook"]
    assert len(hooks) == 4
    for r in hooks:
        verify_signature(r.headers["x-consentgate-signature"], r.body, HOOK_SECRET)
        body = r.json()
        assert r.headers["x-consentgate-delivery"] == body["delivery_id"]
        assert {"record_id": body["delivery_id"], "event_id": body["event"]["event_id"], "vendor": "hook"} \
            .items() <= next(f for f in forwards if f["record_id"] == body["delivery_id"]).items()
        if body["event"]["path"] == "/marketing-only":
            assert body["event"]["ip"] == "2001:db8:1234::" and body["consent"]["analytics"] is False
            continue
        stored = events[body["event"]["path"]]
        assert body["visitor_id"] == vendor_pseudonym("demo", "hook", everything["consent_id"]).hex()[:32]
        assert body["site"] == "demo" and body["vendor"] == "hook"
        assert body["consent"] == {"preferences": True, "analytics": True, "marketing": True}
        expected = {k: v for k, v in stored.items() if k not in ("visitor_id", "ms")}
        expected |= {"user_agent": UA_CHROME, "timestamp": body["event"]["timestamp"]}
        assert body["event"] == expected
        assert round(body["event"]["timestamp"] * 1000) == stored["ms"]
        assert stored["ip"] == "203.0.113.0" and stored["utm_campaign"] == "spring"
    # A tampered body does not verify.
    with pytest.raises(AssertionError):
        verify_signature(hooks[0].headers["x-consentgate-signature"], hooks[0].body + b" ", HOOK_SECRET)

    for r in (r for r in requests if r.path == "/mp/collect"):
        assert r.query == {"measurement_id": "G-TEST123", "api_secret": "ga-api-secret-xyz"}
        body = r.json()
        path = body["events"][0]["params"]["page_location"].removeprefix(SITE_ORIGIN).split("?")[0]
        consent_id = marketing_only["consent_id"] if path == "/marketing-only" else everything["consent_id"]
        digest = vendor_pseudonym("demo", "ga", consent_id)
        assert body["client_id"] == f"{int.from_bytes(digest[:4], 'big')}.{int.from_bytes(digest[4:8], 'big')}"
        assert consent_id not in r.raw()
        assert body["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
        if path == "/marketing-only":
            continue
        utm = urlencode({"utm_source": "news", "utm_medium": "email", "utm_campaign": "spring"})
        assert body["events"] == [{"name": "page_view", "params": {
            "engagement_time_msec": 1, "page_location": f"{SITE_ORIGIN}{path}?{utm}",
            "page_referrer": "https://news.example.org/story"}}]
        assert body["timestamp_micros"] // 1000 == events[path]["ms"]

    metas = [r for r in requests if r.path == "/meta/1234567890/events"]
    assert len(metas) == 4
    for r in metas:
        body = r.json()
        assert body["access_token"] == "meta-access-token-xyz" and len(body["data"]) == 1
        event = body["data"][0]
        path = event["event_source_url"].removeprefix(SITE_ORIGIN).split("?")[0]
        consent_id = marketing_only["consent_id"] if path == "/marketing-only" else everything["consent_id"]
        pseudo_hex = vendor_pseudonym("demo", "meta", consent_id).hex()
        assert event["user_data"] == {
            "external_id": [hashlib.sha256(pseudo_hex.strip().lower().encode()).hexdigest()],
            "client_ip_address": "2001:db8:1234::" if path == "/marketing-only" else "203.0.113.0",
            "client_user_agent": UA_CHROME}
        assert event["event_name"] == "PageView" and event["action_source"] == "website"
        if path != "/marketing-only":
            assert event["event_id"] == events[path]["event_id"]
            assert event["event_time"] == events[path]["ms"] // 1000


def test_fields_and_categories_limit_what_each_vendor_gets(make_gateway, vendor):
    """A webhook limited to `fields = ["path"]` gets only that beside the event's identity; a GA4 vendor
    of category `analytics` gets analytics-only visitors, with the ad signals DENIED."""
    vendors = [
        webhook("slim", f"{vendor.url}/slim", fields=["path"]),
        {"name": "ga", "category": "analytics", "type": "ga4", "url": f"{vendor.url}/mp/collect",
         "measurement_id": "G-A", "api_secret": "s"},
    ]
    gw = make_gateway(gateway=GATEWAY, sites={"demo": {"origins": [SITE_ORIGIN], "vendors": vendors}})
    with gw.client() as c, gw.client() as c2:
        analytics_only = grant(c, analytics=True, marketing=False)["token"]
        send_hit(c, analytics_only, "/analytics-only")
        send_hit(c2, grant(c2, analytics=True, marketing=True)["token"], "/everything")
        vendor.wait_for(lambda v: len(v.accepted()) == 3)
    gw.stop()
    requests = vendor.requests()
    assert len(requests) == 3
    [slim] = [r.json() for r in requests if r.path == "/slim"]
    assert set(slim["event"]) == {"event_id", "type", "name", "timestamp", "path"}
    assert slim["event"]["path"] == "/everything"
    signals = {r.json()["events"][0]["params"]["page_location"].removeprefix(SITE_ORIGIN): r.json()["consent"]
               for r in requests if r.path == "/mp/collect"}
    assert signals == {"/analytics-only": {"ad_user_data": "DENIED", "ad_personalization": "DENIED"},
                       "/everything": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}}
