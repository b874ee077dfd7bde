"""Bounds found in review (round 7): extreme stats dates, non-ASCII site names, loose e-mail addresses,
restricted visitors in the consent statistics. Each test runs real parts: a gateway subprocess, or
parse_config in-process."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from forwarding_helpers import wait_until
from harness import SECRET, SITE_ORIGIN, STATS_TOKEN, UA_CHROME

from gateway.config import ConfigError, parse_config

H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}
ADMIN_TOKEN = "admin-token-for-review-tests-0123456789"
# The days the stats API answers for (the documented range, written out here rather than read from the code).
FIRST, LAST = "2000-01-01", "2199-12-31"


def _json_400(r: httpx.Response, what: str) -> dict[str, Any]:
    assert r.status_code == 400, (what, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), (what, r.headers)
    body = r.json()
    assert body["error"] and body["detail"], (what, body)
    return body


# ---- 1. extreme dates ----------------------------------------------------------------------------------

RANGE_ROUTES = ("summary", "timeseries", "breakdown/page", "consent", "realtime", "conversions")


def test_dates_outside_the_stats_range_are_a_400_that_names_the_range(make_gateway):
    gw = make_gateway()
    with gw.client(headers=AUTH) as c:
        for query in ("from=0001-01-01&to=0001-01-01", "to=9999-12-31", "to=0001-01-10",
                      "from=1999-12-31&to=2000-01-05", "from=2199-12-01&to=2200-01-01"):
            for route in RANGE_ROUTES:
                detail = _json_400(c.get(f"/api/stats/demo/{route}?{query}"), f"{route}?{query}")["detail"]
                assert FIRST in detail and LAST in detail, (route, query, detail)
        # The summary compares with the period of the same length before: 2000-01-05..2000-01-20 (16 days)
        # would compare with 1999-12-20..2000-01-04, so it is refused, naming the earliest 'from' of that length.
        detail = _json_400(c.get("/api/stats/demo/summary?from=2000-01-05&to=2000-01-20"), "previous period")["detail"]
        assert FIRST in detail and "2000-01-17" in detail, detail
        # 'to' alone near the start: the default 30 days before it would begin before the range.
        _json_400(c.get("/api/stats/demo/summary?to=2000-01-10"), "default from before the range")
        # The edges themselves are answered.
        for route in RANGE_ROUTES:
            for query in (f"from={FIRST}&to=2000-01-31", f"from=2199-12-01&to={LAST}"):
                if route == "summary" and query.startswith(f"from={FIRST}"):
                    continue  # its previous period lies before the range (checked above)
                r = c.get(f"/api/stats/demo/{route}?{query}")
                assert r.status_code == 200, (route, query, r.text[:500])
        r = c.get("/api/stats/demo/summary?from=2000-01-17&to=2000-02-01")  # previous: 2000-01-01..2000-01-16
        assert r.status_code == 200 and r.json()["previous_period"] == {"from": FIRST, "to": "2000-01-16"}, r.text
        assert c.get("/healthz").status_code == 200
    assert "Traceback" not in gw.logs()


# ---- 2. site names -----------------------------------------------------------------------------------

def _raw(sites: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"gateway": {"secret_key": SECRET, "stats_tokens": [STATS_TOKEN]}, "sites": sites, **extra}


def _problems(raw: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, tmp_path, env={})
    return err.value.problems


@pytest.mark.parametrize("name", ["сайт", "café", "site²", "ｓｉｔｅ", "日本"])
def test_a_non_ascii_site_name_is_a_config_problem_that_says_what_is_allowed(name, tmp_path):
    problems = _problems(_raw({name: {"origins": [SITE_ORIGIN]}}), tmp_path)
    mine = [p for p in problems if p.startswith(f"sites.{name}:")]
    assert len(mine) == 1 and "A-Z" in mine[0] and "0-9" in mine[0] and "'-'" in mine[0] and "'_'" in mine[0], problems


def test_ascii_site_names_with_dash_and_underscore_still_load(tmp_path):
    names = ["shop", "my-shop_2", "A_b-C9"]
    config = parse_config(_raw({n: {"origins": [SITE_ORIGIN]} for n in names}), tmp_path, env={})
    assert sorted(config.sites) == sorted(names)
    for bad in ("my site", "a.b", "a/b", "-", "__"):
        assert any(p.startswith(f"sites.{bad}:") for p in _problems(_raw({bad: {"origins": [SITE_ORIGIN]}}), tmp_path)), bad


# ---- 3. e-mail addresses -----------------------------------------------------------------------------

BAD_ADDRESSES = ["a\x00b@example.com", "a\x07b@example.com", "a\x7fb@example.com", "a\x1b@example.com",
                 "a:b@example.com", "group:a@example.com", "jörg@example.com", "用户@example.com",
                 "a b@example.com", "a\tb@example.com", "a@example.com\r\nBcc: x@evil.example",
                 "a\nb@example.com", "a\u2028b@example.com", "a..b@example.com", ".a@example.com",
                 "a@ex..ample.com", "a@exämple.com"]
GOOD_ADDRESSES = ["marketing@example.com", "first.last+tag@sub.example.co.uk", "o_k-1@example.nl",
                  "x#y$z&1=2?3^4`5{6}7|8~9!@example.org", "o'brien@example.ie"]


def _reports(sender: str = "stats@example.com") -> dict[str, Any]:
    return {"smtp_host": "127.0.0.1", "from": sender}


def test_bad_addresses_are_config_problems_and_good_ones_load(tmp_path):
    problems = _problems(_raw({"demo": {"origins": [SITE_ORIGIN], "report_to": BAD_ADDRESSES}}, reports=_reports()),
                         tmp_path)
    for i, address in enumerate(BAD_ADDRESSES):
        assert any(p.startswith(f"sites.demo.report_to[{i}]: expected an e-mail address") for p in problems), \
            (address, problems)
    for address in BAD_ADDRESSES:
        problems = _problems(_raw({"demo": {"origins": [SITE_ORIGIN]}}, reports=_reports(address)), tmp_path)
        assert any(p.startswith("reports.from: expected an e-mail address") for p in problems), (address, problems)
    config = parse_config(_raw({"demo": {"origins": [SITE_ORIGIN], "report_to": GOOD_ADDRESSES}},
                               reports=_reports(GOOD_ADDRESSES[1])), tmp_path, env={})
    assert config.sites["demo"].report_to == tuple(GOOD_ADDRESSES)
    assert config.reports is not None and config.reports.sender == GOOD_ADDRESSES[1]


def test_the_report_send_api_refuses_bad_addresses_with_a_400(make_gateway):
    gw = make_gateway(gateway={"admin_tokens": [ADMIN_TOKEN]})  # no [reports]: a good request gets 409
    with gw.client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as c:
        for address in BAD_ADDRESSES:
            body = _json_400(c.post("/api/admin/demo/reports/send", json={"to": ["ok@example.com", address]}), address)
            assert "e-mail addresses like" in body["detail"], body
            assert f"to[1] is not one: {address[:80]!r}" in body["detail"], body  # which one, escaped
        for address in GOOD_ADDRESSES:  # past the address check, stopped only by the missing [reports] table
            r = c.post("/api/admin/demo/reports/send", json={"to": [address]})
            assert r.status_code == 409 and r.json()["error"] == "reports_off", (address, r.text)
    assert "Traceback" not in gw.logs()


# ---- 4. restricted visitors in the consent statistics ------------------------------------------------

def _decide(c: httpx.Client, choices: dict[str, bool], method: str, token: str | None = None) -> dict[str, Any]:
    """A banner decision; with `token` it continues that visitor's consent id."""
    headers = {**H, **({"X-Consent-Token": token} if token else {})}
    r = c.post("/s/demo/consent", json={"choices": choices, "method": method, "language": "en"}, headers=headers)
    assert r.status_code == 200, r.text
    c.cookies.clear()  # each visitor is named by its token only
    return r.json()


def _expected(decisions: list[tuple[str, str, dict[str, bool]]]) -> dict[str, Any]:
    """The consent statistics of (visitor, method, choices) grants and (visitor, 'withdraw', {}) withdrawals."""
    grants = [(v, m, ch) for v, m, ch in decisions if m != "withdraw"]
    latest: dict[str, bool] = {}
    for visitor, method, choices in decisions:  # in the order sent: the latest decision counts
        latest[visitor] = method != "withdraw" and choices.get("analytics", False)
    return {
        "decisions": len(grants),
        "methods": {m: sum(1 for _, gm, _ in grants if gm == m) for m in ("accept_all", "reject_all", "custom", "gpc")},
        "withdrawals": sum(1 for _, m, _ in decisions if m == "withdraw"),
        "categories": {cat: sum(1 for _, _, ch in grants if ch.get(cat)) for cat in ("analytics", "marketing", "preferences")},
        "visitors_with_analytics": sum(latest.values()),
        "visitors_without_analytics": sum(not v for v in latest.values()),
    }


def _observed(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/api/stats/demo/consent", headers=AUTH)
    assert r.status_code == 200, r.text
    s = r.json()
    return {"decisions": s["decisions"], "methods": s["methods"], "withdrawals": s["withdrawals"],
            "categories": {cat: round(s["opt_in_rate"][cat] * s["decisions"] / 100) if s["decisions"] else 0
                           for cat in ("analytics", "marketing", "preferences")},
            "visitors_with_analytics": s["visitors_with_analytics"],
            "visitors_without_analytics": s["visitors_without_analytics"],
            "daily_total": sum(sum(v for k, v in day.items() if k != "day") for day in s["daily"])}


def test_consent_statistics_leave_out_a_restricted_visitor_until_the_restriction_is_lifted(make_gateway):
    gw = make_gateway()
    every = {"preferences": True, "analytics": True, "marketing": True}
    none = {"preferences": False, "analytics": False, "marketing": False}
    sent: list[tuple[str, str, dict[str, bool]]] = []
    with gw.client() as c:
        a = _decide(c, every, "accept_all")
        sent.append(("a", "accept_all", every))
        b = _decide(c, none, "reject_all")
        sent.append(("b", "reject_all", none))
        _decide(c, {"analytics": True}, "custom")
        sent.append(("c", "custom", {"analytics": True}))
        # The visitor who will object: three decisions of their own, then a withdrawal.
        r1 = _decide(c, {"analytics": True, "marketing": True}, "custom")
        sent.append(("r", "custom", {"analytics": True, "marketing": True}))
        r2 = _decide(c, every, "accept_all", r1["token"])
        sent.append(("r", "accept_all", every))
        assert r2["consent_id"] == r1["consent_id"]
        r3 = _decide(c, {"preferences": True}, "custom", r2["token"])
        sent.append(("r", "custom", {"preferences": True}))
        w = c.request("DELETE", "/s/demo/consent", headers={**H, "X-Consent-Token": r3["token"]})
        assert w.status_code == 200 and w.json()["withdrawn"] is True, w.text
        sent.append(("r", "withdraw", {}))
        r_token = w.json()["token"]  # the withdrawal's own token still reaches the privacy routes
        c.cookies.clear()
        _decide(c, none, "reject_all", b["token"])  # another visitor changes their mind too
        sent.append(("b", "reject_all", none))
        assert a["consent_id"] != r1["consent_id"]

        everyone = _expected(sent)
        without_r = _expected([d for d in sent if d[0] != "r"])
        assert everyone != without_r  # the restricted visitor's decisions make a difference to every figure below
        want = {**everyone, "daily_total": everyone["decisions"] + everyone["withdrawals"]}
        wait_until(lambda: _observed(c) == want, what="every decision in the consent statistics")  # batch writer
        before = _observed(c)

        r = c.post("/s/demo/privacy/me/restrict", headers={**H, "X-Consent-Token": r_token})
        assert r.status_code == 200 and r.json()["restricted"] is True, r.text
        restricted = _observed(c)
        assert restricted == {**without_r, "daily_total": without_r["decisions"] + without_r["withdrawals"]}, restricted
        assert restricted["decisions"] == before["decisions"] - 3 and restricted["withdrawals"] == before["withdrawals"] - 1

        r = c.request("DELETE", "/s/demo/privacy/me/restrict", headers={**H, "X-Consent-Token": r_token})
        assert r.status_code == 200 and r.json()["restricted"] is False, r.text
        assert _observed(c) == before
