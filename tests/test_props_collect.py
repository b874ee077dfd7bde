"""Custom event properties end to end (issue 12): `props` on a collect request to a real gateway, read back
from its real chDB store, its spool and logs, its /metrics and a real vendor server on loopback.

tests/test_pipeline.py checks the parts in-process; here every check goes through HTTP and the files
the gateway wrote, so a leak anywhere between the request and the disk (or a vendor) shows.
"""
from __future__ import annotations

import json
import uuid
from collections import Counter

import httpx
import pytest

from analytics.store import DATABASE
from forwarding_helpers import GATEWAY, metric, webhook
from harness import SITE_ORIGIN, UA_CHROME, grant, written_files
from vendor_servers import VendorServer

METRICS_TOKEN = "props-metrics-token-0123456789"
H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
PAGE = f"{SITE_ORIGIN}/pricing"
SCREENED = "consentgate_collect_props_screened_total"
DROPS = "consentgate_collect_drops_total"


def metrics_client(gw) -> httpx.Client:
    """A client that reads /metrics with the gateway's metrics token (and can send hits as well)."""
    return gw.client(headers={"Authorization": f"Bearer {METRICS_TOKEN}"})


def props_gateway(make_gateway, **site: object):
    return make_gateway(gateway={**GATEWAY, "metrics_token": METRICS_TOKEN, "access_log": "all"},
                        sites={"demo": {"origins": [SITE_ORIGIN], **site}})


def send_event(c: httpx.Client, token: str | None, props: object, name: str = "signup",
               ip: str = "203.0.113.77", **headers: str) -> httpx.Response:
    body: dict[str, object] = {"type": "event", "name": name, "url": PAGE, "props": props}
    if token:
        body["consent"] = token
    return c.post("/s/demo/collect", json=body, headers={**H, "X-Forwarded-For": ip, **headers})


def stored_props(gw) -> list[dict]:
    return gw.sql("SELECT name, props FROM {db}.events ORDER BY timestamp")


def spooled_events(gw) -> list[dict]:
    lines = [json.loads(x) for p in (gw.folder / "store" / "spool").glob("*.jsonl") for x in p.read_text().splitlines()]
    return [r for r in lines if r.get("kind") == "event"]


def everything_stored(gw) -> str:
    """Every row of every table of the store, as text (the gateway must be stopped)."""
    tables = [r["name"] for r in gw.sql(f"SELECT name FROM system.tables WHERE database = '{DATABASE}'")]
    assert {"events", "consents", "forwards"} <= set(tables)
    # one `consentgate sql` run for all tables (each run starts chDB): every row as its JSON text
    rows = gw.sql(" UNION ALL ".join(f"SELECT formatRowNoNewline('JSONEachRow', *) AS row FROM {{db}}.`{t}`"
                                     for t in tables))
    assert rows, "the store is empty: nothing to search"
    return "\n".join(r["row"] for r in rows)


def assert_nowhere(gw, needles: list[str], vendor: VendorServer | None = None) -> None:
    """None of `needles` is in the store, in any file the gateway wrote (store, spool, logs) or at the vendor."""
    stored = everything_stored(gw)
    files = [p for p in written_files(gw.folder) if p.suffix != ".toml"]
    assert any(p.suffix == ".log" for p in files) and any(p.suffix == ".jsonl" for p in files)
    contents = {p: p.read_bytes() for p in files}
    for needle in needles:
        assert needle not in stored, f"{needle!r} is in the store"
        for path, data in contents.items():
            assert needle.encode() not in data, f"{needle!r} found in {path}"
        if vendor is not None:
            assert not any(needle in r.raw() for r in vendor.requests()), f"{needle!r} reached the vendor"


# ---- stored exactly as sent ---------------------------------------------------------------------------------

def test_an_event_with_props_is_stored_with_exactly_those_props(make_gateway):
    gw = props_gateway(make_gateway)
    small = {"plan": "pro", "n": "3", "empty": "", "café": "☕ crème brûlée", "path": "/a/b?c=d"}
    at_limits = {f"{i:02d}".ljust(64, "k"): chr(ord("a") + i % 26) * 256 for i in range(30)}  # 30 x 64 x 256
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        results = [send_event(c, token, small, name="signup"), send_event(c, token, at_limits, name="limits"),
                   send_event(c, token, None, name="bare"), send_event(c, token, {}, name="nothing")]
        assert [(r.status_code, r.headers["x-consentgate-result"]) for r in results] == [(202, "stored")] * 4
    gw.stop()
    assert stored_props(gw) == [{"name": "signup", "props": small}, {"name": "limits", "props": at_limits},
                                {"name": "bare", "props": {}}, {"name": "nothing", "props": {}}]


# ---- each limit: a 400 that names it, and nothing kept ------------------------------------------------------

OVER_LIMITS = [
    ({f"k{i}": "v" for i in range(31)}, ["31 properties", "at most 30"]),
    ({"k" * 65: "v"}, ["1 to 64 characters", "got 65"]),
    ({"": "v"}, ["1 to 64 characters", "got 0"]),
    ({"plan": "v" * 257}, ["'props.plan'", "longer than 256 characters"]),
    ({"n": 3}, ["'props.n' must be a string", "got int"]),
    ({"ok": "yes", "flag": True}, ["'props.flag' must be a string", "got bool"]),
    ({"none": None}, ["'props.none' must be a string", "got NoneType"]),
    ({"nested": {"a": "b"}}, ["'props.nested' must be a string", "got dict"]),
    ({"list": ["a"]}, ["'props.list' must be a string", "got list"]),
    (["plan", "pro"], ["'props' must be an object", "got list"]),
    ("plan=pro", ["'props' must be an object", "got str"]),
    (7, ["'props' must be an object", "got int"]),
]


def test_props_over_a_limit_answer_400_naming_it_and_store_nothing(make_gateway):
    gw = props_gateway(make_gateway)
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        for props, words in OVER_LIMITS:
            r = send_event(c, token, props)
            assert r.status_code == 400, (props, r.status_code, r.text)
            body = r.json()
            assert set(body) == {"error", "detail"} and body["error"] == "bad_request", body
            for word in words:
                assert word in body["detail"], (word, body["detail"])
            assert "x-consentgate-result" not in r.headers  # refused before the pipeline, not dropped by it
    assert spooled_events(gw) == []
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 0}]


# ---- personal data: screened out, counted by reason; look-alikes kept --------------------------------------

def personal_values() -> dict[str, tuple[str, str]]:
    """Property -> (value, the reason it must be dropped for), each written as a site might send it."""
    return {
        "mail": ("jan.jansen+news@example.nl", "email"),
        "contact": ("Jan <jan@example.org>", "email"),
        "ipv4": ("198.51.100.23", "ip"),
        "ipv4_text": ("client 203.0.113.91 via proxy", "ip"),
        "ipv6": ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "ip"),
        "ipv6_short": ("2001:db8::beef", "ip"),
        "ipv6_upper": ("2001:DB8:0:0:0:0:0:AB", "ip"),
        "mapped": ("::ffff:192.0.2.44", "ip"),
        "mapped_hex": ("::ffff:c000:22d", "ip"),  # ::ffff:192.0.2.45 written in hex
        "consent_id": (uuid.uuid4().hex, "id"),  # the shape of a consent id (gateway/consent.py)
        "uuid": (str(uuid.uuid4()), "id"),
        "uuid_upper": (str(uuid.uuid4()).upper(), "id"),
    }


LOOK_ALIKES = {"version": "v1.2.3", "semver": "1.2.3", "time": "12:30", "clock": "12:30:45", "pair": "a:b",
               "date": "2024-01-01T12:30:00", "price": "19.99", "twitter": "@consentgate", "hex": "deadbeef" * 3,
               "marker": "kept-marker-7f3a9c"}


def test_personal_data_values_are_dropped_everywhere_and_counted_by_reason(make_gateway):
    personal = personal_values()
    gw = props_gateway(make_gateway)
    hits = 2
    with gw.client() as c, metrics_client(gw) as m:
        token = grant(c, analytics=True)["token"]
        for _ in range(hits):
            r = send_event(c, token, {**{k: v for k, (v, _) in personal.items()}, **LOOK_ALIKES})
            assert (r.status_code, r.headers["x-consentgate-result"]) == (202, "stored")
        expected = Counter(reason for _, reason in personal.values())
        expected = {reason: float(count * hits) for reason, count in expected.items()}
        counted = {reason: metric(m, SCREENED, site="demo", reason=reason) for reason in ("email", "ip", "id")}
        assert counted == expected
        assert metric(m, SCREENED, site="other") == 0.0
    gw.stop()
    assert stored_props(gw) == [{"name": "signup", "props": LOOK_ALIKES}] * hits
    # The search finds what is there: the kept marker is in the store and the spool ...
    assert LOOK_ALIKES["marker"] in everything_stored(gw)
    assert any(LOOK_ALIKES["marker"].encode() in p.read_bytes() for p in (gw.folder / "store" / "spool").glob("*.jsonl"))
    # ... and no screened value is anywhere: not a row, not a file, not a log line.
    # (the bare addresses too: a value cut short or rewritten would not hold the whole text)
    assert_nowhere(gw, [v for v, _ in personal.values()] + ["jan@example.org", "jan.jansen", "203.0.113.91",
                                                             "8a2e:370:7348", "db8::beef", "192.0.2.44", "c000:22d"])


# Values a person reads as an IP address that the screening missed (finding: an IP at the end of a sentence,
# after "ip:", or with a trailing colon was kept in full, against invariant 3). Fails on the screening as
# first built; the fix is in the report (gateway/collect/props.py is not this test's to change).
MISSED_IPS = {
    "v4_full_stop": "my address is 203.0.113.77.",
    "v4_leading_dot": "host.203.0.113.78",
    "v6_full_stop": "my address is 2001:db8::7.",
    "v6_after_label": "ip:2001:db8::8",
    "v6_trailing_colon": "2001:db8::9:",
    "mapped_full_stop": "from ::ffff:192.0.2.46.",
}


def test_ips_at_the_edge_of_a_sentence_are_screened_too(make_gateway):
    gw = props_gateway(make_gateway)
    with gw.client() as c, metrics_client(gw) as m:
        token = grant(c, analytics=True)["token"]
        r = send_event(c, token, {**MISSED_IPS, "plan": "pro"})
        assert r.headers["x-consentgate-result"] == "stored"
        assert metric(m, SCREENED, site="demo", reason="ip") == float(len(MISSED_IPS))
    gw.stop()
    assert stored_props(gw) == [{"name": "signup", "props": {"plan": "pro"}}]
    assert_nowhere(gw, ["203.0.113.77", "203.0.113.78", "2001:db8::7", "2001:db8::8", "2001:db8::9", "192.0.2.46"])


def test_a_key_that_is_personal_data_is_not_stored(make_gateway):
    gw = props_gateway(make_gateway)
    key_mail, key_ip = "jan@example.nl", "203.0.113.79"
    with gw.client() as c, metrics_client(gw) as m:
        token = grant(c, analytics=True)["token"]
        r = send_event(c, token, {key_mail: "subscribed", key_ip: "seen", "plan": "pro"})
        assert r.headers["x-consentgate-result"] == "stored"
        assert metric(m, SCREENED, site="demo", reason="email") + metric(m, SCREENED, site="demo", reason="ip") == 2.0
    gw.stop()
    assert stored_props(gw) == [{"name": "signup", "props": {"plan": "pro"}}]
    assert_nowhere(gw, [key_mail, key_ip])


# ---- vendors never receive props ----------------------------------------------------------------------------

def test_a_marketing_vendor_gets_the_event_but_not_its_props(make_gateway):
    vendor = VendorServer().start()
    try:
        gw = props_gateway(make_gateway, vendors=[webhook("hook", f"{vendor.url}/hook")])
        props = {"plan": "pro-plan-5b1e", "coupon": "SPRING-2f9d", "mail": "jan@example.nl"}
        with gw.client() as c:
            token = grant(c, analytics=True, marketing=True)["token"]
            r = send_event(c, token, props, name="checkout_done")
            assert r.headers["x-consentgate-result"] == "stored"
            vendor.wait_for(lambda v: len(v.accepted()) >= 1)
        gw.stop()
        [received] = vendor.requests()
        event = received.json()["event"]
        assert (event["type"], event["name"]) == ("event", "checkout_done")  # the hit did reach the vendor
        assert "props" not in event
        for text in [*props, *props.values()]:
            assert text not in received.raw(), f"{text!r} reached the vendor"
        # the store kept the harmless two (the e-mail address was screened before anything kept it)
        assert stored_props(gw) == [{"name": "checkout_done", "props": {"plan": "pro-plan-5b1e", "coupon": "SPRING-2f9d"}}]
    finally:
        vendor.stop()


# ---- drops counted by the step that dropped them ------------------------------------------------------------

BOT_AGENTS = ["curl/8.5.0", "python-requests/2.31.0",
              "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
              "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0"]


def test_drops_are_counted_by_step_and_reason(make_gateway):
    gw = props_gateway(make_gateway)
    with gw.client() as c, metrics_client(gw) as m:
        refused = grant(c, analytics=False, marketing=False)["token"]
        c.cookies.clear()
        token = grant(c, analytics=True)["token"]
        c.cookies.clear()  # each hit carries only the token its body names
        sent: list[tuple[str, str]] = []  # (step, reason) expected of each hit, "" for a stored one
        for i in range(3):
            assert send_event(c, None, {"i": str(i)}).headers["x-consentgate-result"] == "dropped: no_consent"
            sent.append(("consent", "no_consent"))
        for i in range(2):
            assert send_event(c, refused, {"i": str(i)}).headers["x-consentgate-result"] == "dropped: no_consent"
            sent.append(("consent", "no_consent"))
        for agent in BOT_AGENTS:
            r = send_event(c, token, {"plan": "pro"}, **{"User-Agent": agent})
            assert r.headers["x-consentgate-result"] == "dropped: bot", agent
            sent.append(("bot", "bot"))
        for i in range(2):
            assert send_event(c, token, {"i": str(i)}).headers["x-consentgate-result"] == "stored"
            sent.append(("", ""))
        expected = Counter(s for s in sent if s[0])
        assert expected == {("consent", "no_consent"): 5, ("bot", "bot"): len(BOT_AGENTS)}
        for (step, reason), count in expected.items():
            assert metric(m, DROPS, site="demo", step=step, reason=reason) == float(count), (step, reason)
        # no other step dropped anything, and the per-result counter agrees
        text = m.get("/metrics").text
        drop_lines = [line for line in text.splitlines() if line.startswith(DROPS + "{")]
        assert len(drop_lines) == len(expected), drop_lines
        assert metric(m, "consentgate_collect_hits_total", site="demo", result="stored") == 2.0
    gw.stop()
    assert gw.sql("SELECT count() AS n FROM {db}.events") == [{"n": 2}]
