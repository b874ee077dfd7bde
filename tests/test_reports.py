"""E-mail reports on a real gateway, sent to a real SMTP server started here (aiosmtpd on loopback).

The figures in the e-mail are compared with a plain-Python reference computed from the seeded hits
and decisions; both parts (text and HTML) carry them; no visitor id or address is in the message;
a restart does not send a period twice; a broken SMTP setup is a clear error and never stops the gateway.
"""
from __future__ import annotations

import email
import email.policy
import html
import re
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiosmtpd.controller import Controller

from harness import ROOT, GatewayProcess, free_port, write_config
from stats_seed import Decision, Hit, seed

AMS = ZoneInfo("Europe/Amsterdam")
ADMIN_TOKEN = "admin-token-for-report-tests-0123456789"
TO = "marketing@example.com"
SENDER = "stats@example.com"
TODAY = datetime.now(AMS).date()
WEEK = TODAY - timedelta(days=TODAY.weekday() + 7)  # Monday of the last closed week
BEFORE = WEEK - timedelta(days=7)
XSS = "/<b>bold</b>-page"
SOURCE_OF = {"google.com": "search", "facebook.com": "social", "": "direct"}


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, clock(hh, mm), AMS)


def _visit(visitor: str, day: date, hh: int, paths: list[str], referrer: str = "") -> list[Hit]:
    """One visit: hits five minutes apart, the first with the referrer."""
    return [Hit("shop", visitor, at(day, hh, 5 * i), p, referrer_host=referrer if i == 0 else "")
            for i, p in enumerate(paths)]


HITS = [
    # the last closed week
    *_visit("visitor-a1f0", WEEK, 9, ["/", "/pricing", "/signup"], "google.com"),
    *_visit("visitor-b2e1", WEEK + timedelta(days=1), 10, ["/pricing"], "facebook.com"),
    *_visit("visitor-c3d2", WEEK + timedelta(days=2), 11, ["/", XSS]),
    *_visit("visitor-d4c3", WEEK + timedelta(days=4), 15, ["/pricing", "/"], "google.com"),
    *_visit("visitor-e5b4", WEEK + timedelta(days=6), 20, ["/blog"]),
    # the week before
    *_visit("visitor-a1f0", BEFORE + timedelta(days=1), 9, ["/", "/blog"], "google.com"),
    *_visit("visitor-f6a5", BEFORE + timedelta(days=3), 12, ["/pricing"]),
    # outside both: the Monday the report is sent on is not in it
    *_visit("visitor-g7f6", WEEK + timedelta(days=7), 1, ["/too-late"]),
]
DECISIONS = [
    Decision("shop", "c" * 32, at(WEEK, 8), "accept_all", analytics=True, marketing=True),
    Decision("shop", "d" * 32, at(WEEK + timedelta(days=1), 8), "custom", analytics=True),
    Decision("shop", "e" * 32, at(WEEK + timedelta(days=2), 8), "reject_all"),
    Decision("shop", "f" * 32, at(WEEK + timedelta(days=3), 8), "accept_all", analytics=True),
    Decision("shop", "e" * 32, at(WEEK + timedelta(days=3), 9), "withdraw"),
    Decision("shop", "1" * 32, at(BEFORE, 8), "accept_all", analytics=True),
    Decision("shop", "2" * 32, at(BEFORE + timedelta(days=2), 8), "reject_all"),
]


# ---- the plain-Python reference -------------------------------------------------------------------

def reference(start: date, end: date) -> dict:
    hits = [h for h in HITS if start <= h.at.astimezone(AMS).date() <= end]
    pages: dict[str, set[str]] = defaultdict(set)
    views: dict[str, int] = defaultdict(int)
    for h in hits:
        pages[h.path].add(h.visitor)
        views[h.path] += 1
    sources: dict[str, set[str]] = defaultdict(set)
    for h in hits:
        if h.referrer_host or not any(o.visitor == h.visitor and o.at < h.at and o.at >= h.at - timedelta(minutes=30)
                                      for o in hits):
            sources[SOURCE_OF[h.referrer_host]].add(h.visitor)  # a visit's first hit tells its source
    grants = [d for d in DECISIONS if d.method != "withdraw" and start <= d.at.astimezone(AMS).date() <= end]
    return {
        "visitors": len({h.visitor for h in hits}),
        "pageviews": len(hits),
        "decisions": len(grants),
        "consent_rate": round(100 * sum(d.analytics for d in grants) / len(grants), 1) if grants else 0.0,
        "pages": sorted(((p, len(v)) for p, v in pages.items()), key=lambda x: (-x[1], -views[x[0]], x[0]))[:5],
        "sources": {s: len(v) for s, v in sources.items()},
        "signups": len({h.visitor for h in hits if h.path == "/signup" and h.type == "pageview"}),
    }


# ---- a real SMTP server ---------------------------------------------------------------------------

class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's handler name
        self.messages.append((list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.original_content or envelope.content,
                                                       policy=email.policy.default)))
        return "250 OK"

    def wait_for(self, n: int, timeout: float = 60) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.messages) >= n, f"{len(self.messages)} e-mails arrived, expected {n}"
        return self.messages


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def write_report_config(folder: Path, smtp_port: int, extra: str = "", schedule: tuple[str, ...] = ("weekly",)) -> Path:
    config = write_config(folder, gateway={"admin_tokens": [ADMIN_TOKEN]}, sites={
        "shop": {"origins": ["https://www.shop.example"], "timezone": "Europe/Amsterdam", "report_to": [TO],
                 "report_schedule": list(schedule), "goals": [{"name": "Signup", "page": "/signup"}]}})
    # send_hour 0: the last closed week is due from Monday 00:00, so its report goes out at start today.
    config.write_text(config.read_text() + f'\n[reports]\nsmtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\n'
                      f'smtp_security = "none"\nfrom = "{SENDER}"\nsend_hour = 0\n{extra}')
    return config


def parts(message) -> tuple[str, str]:
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def first_looks(gw: GatewayProcess) -> int:
    return gw.logs().count("report scheduler: first look done")


def wait_first_look(gw: GatewayProcess, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while first_looks(gw) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first_looks(gw) >= n, gw.logs()[-2000:]


def assert_figures(text: str, page: str, ref: dict, before: dict) -> None:
    for name, key in (("Visitors", "visitors"), ("Pageviews", "pageviews"), ("Banner decisions", "decisions")):
        assert re.search(rf"^{name}\s+{ref[key]}\s+\(before: {before[key]},", text, re.M), (name, text)
        assert re.search(rf">{name}</div><div[^>]*>{ref[key]}</div><div[^>]*>before: {before[key]} ", page), name
    rate, rate_before = f"{ref['consent_rate']:g} %", f"{before['consent_rate']:g} %"
    assert re.search(rf"^Consent rate \(analytics\)\s+{rate}\s+\(before: {rate_before},", text, re.M), text
    for path, visitors in ref["pages"]:
        assert re.search(rf"^  {re.escape(path)}\s+{visitors}\s+\(", text, re.M), (path, text)
        assert f">{html.escape(path)}</td>" in page
    for source, visitors in ref["sources"].items():
        assert re.search(rf"^  {source}\s+{visitors}\s+\(", text, re.M), (source, text)
    assert re.search(rf"^  Signup\s+{ref['signups']}\s+\({before['signups']}\)", text, re.M), text
    assert ">Signup</td>" in page


def test_the_weekly_report_arrives_once_with_the_right_figures(smtp, tmp_path, browser):
    controller, inbox = smtp
    config = write_report_config(tmp_path, controller.port)
    seed(config, HITS, DECISIONS)
    gw = GatewayProcess(config, tmp_path).start()
    try:
        (rcpt, message), = inbox.wait_for(1)
        wait_first_look(gw, 1)
        assert rcpt == [TO] and message["To"] == TO and message["From"] == SENDER
        assert message["Subject"].startswith("shop: weekly report, ")
        text, page = parts(message)
        ref, before = reference(WEEK, WEEK + timedelta(days=6)), reference(BEFORE, BEFORE + timedelta(days=6))
        assert ref["visitors"] == 5 and before["visitors"] == 2 and ref["signups"] == 1  # checked by hand
        assert_figures(text, page, ref, before)
        assert "/too-late" not in text
        # Visitor-controlled text is escaped in the HTML part.
        assert "<b>bold</b>" not in page and html.escape(XSS) in page
        screenshot_of_the_html_part(browser, page)
        # Nothing about one person: no visitor ids, no consent ids, no addresses.
        raw = message.as_string()
        for secret in ["visitor-", "c" * 32, "203.0.113"]:
            assert secret not in raw
        gw.stop()
        # A restart looks again, finds the week in report_runs and sends nothing.
        gw.start()
        wait_first_look(gw, 2)
        time.sleep(1)
        assert len(inbox.messages) == 1
        assert "1 report(s) sent" in gw.logs() and "0 report(s) sent" in gw.logs()
    finally:
        gw.kill()


def screenshot_of_the_html_part(browser, page_html: str) -> None:
    """The HTML part as chromium draws it (docs/screenshots/report-email.png with CONSENTGATE_SCREENSHOTS):
    offline, no script, its KPI table visible."""
    import os
    import tempfile

    shots = Path(os.environ.get("CONSENTGATE_SCREENSHOTS") or tempfile.mkdtemp(prefix="cg-shots-"))
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 760, "height": 900}, offline=True)
    try:
        view = ctx.new_page()
        view.set_content(page_html)
        assert view.locator("h1").inner_text().startswith("shop")
        assert view.locator("h2").all_inner_texts()[:2] == ["Top pages", "Top sources"]
        shots.mkdir(parents=True, exist_ok=True)
        view.screenshot(path=str(shots / "report-email.png"), full_page=True)
    finally:
        ctx.close()


def test_report_send_from_the_cli_sends_one_now(smtp, tmp_path):
    controller, inbox = smtp
    config = write_report_config(tmp_path, controller.port, schedule=("monthly",))
    seed(config, HITS, DECISIONS)
    gw = GatewayProcess(config, tmp_path).start()
    try:
        inbox.wait_for(1)  # the scheduler's monthly report
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "report", "send", "--config", str(config), "--site",
                              "shop", "--to", "agency@example.org", "--period", "week", "--url", gw.url],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        rcpt, message = inbox.wait_for(2)[1]
        assert rcpt == ["agency@example.org"] and message["Subject"].startswith("shop: weekly report")
        text, page = parts(message)
        assert_figures(text, page, reference(WEEK, WEEK + timedelta(days=6)), reference(BEFORE, BEFORE + timedelta(days=6)))
        monthly_text, _ = parts(inbox.messages[0][1])
        month_end = TODAY.replace(day=1) - timedelta(days=1)
        month = reference(month_end.replace(day=1), month_end)
        assert inbox.messages[0][1]["Subject"].startswith("shop: monthly report")
        assert re.search(rf"^Visitors\s+{month['visitors']}\s+\(", monthly_text, re.M), monthly_text
        assert re.search(rf"^Pageviews\s+{month['pageviews']}\s+\(", monthly_text, re.M), monthly_text
        # Bad requests are clear 4xx; the route needs an admin token.
        with gw.client() as c:
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            for body in ({"to": "x@example.com"}, {"to": ["not an address"]}, {"to": ["a@example.com\r\nBcc: b@x.io"]},
                         {"to": [TO], "period": "year"}, {"to": [TO], "cc": []}):
                r = c.post("/api/admin/shop/reports/send", json=body, headers=admin)
                assert r.status_code == 400 and r.json()["detail"], (body, r.text)
            assert c.post("/api/admin/shop/reports/send", json={"to": [TO]}).status_code == 401
            assert c.post("/api/admin/nosuch/reports/send", json={"to": [TO]}, headers=admin).status_code == 404
        assert len(inbox.messages) == 2
    finally:
        gw.kill()


def test_a_broken_smtp_setup_is_a_clear_error_and_the_gateway_keeps_running(tmp_path):
    closed = free_port()  # nothing listens here
    config = write_report_config(tmp_path, closed)
    gw = GatewayProcess(config, tmp_path).start()
    try:
        wait_first_look(gw, 1)
        assert "report shop week" in gw.logs() and "cannot reach the SMTP server 127.0.0.1" in gw.logs()
        with gw.client() as c:
            assert c.get("/healthz").status_code == 200
            r = c.post("/api/admin/shop/reports/send", json={"to": [TO]},
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert r.status_code == 503 and "check [reports] smtp_host" in r.json()["detail"]
        assert "Traceback" not in gw.logs()
    finally:
        gw.kill()


def test_a_missing_smtp_password_is_named_not_a_crash(smtp, tmp_path):
    controller, inbox = smtp
    config = write_report_config(tmp_path, controller.port,
                                 'smtp_user = "reports"\nsmtp_password_env = "CG_TEST_SMTP_PASSWORD_UNSET"\n')
    gw = GatewayProcess(config, tmp_path).start()
    try:
        wait_first_look(gw, 1)
        assert "set the environment variable CG_TEST_SMTP_PASSWORD_UNSET" in gw.logs()
        assert inbox.messages == [] and httpx.get(f"{gw.url}/healthz").status_code == 200
    finally:
        gw.kill()


def test_bad_report_config_names_its_keys(tmp_path):
    config = write_report_config(tmp_path, 25)
    config.write_text(config.read_text().replace('smtp_security = "none"', 'smtp_security = "ssl"')
                      .replace(f'report_to = ["{TO}"]', 'report_to = ["someone"]'))
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "reports.smtp_security: expected starttls, tls or none" in out.stderr
    assert "sites.shop.report_to[0]: expected an e-mail address" in out.stderr


def test_reports_fall_due_on_monday_and_the_first_at_the_send_hour():
    from gateway.config import SiteConfig
    from gateway.reports.scheduler import due_period

    site = SiteConfig("shop", ("https://www.shop.example",), timezone="Europe/Amsterdam")
    monday = date(2026, 11, 30)
    assert due_period("week", site, 7, datetime.combine(monday, clock(6, 59), AMS)) is None
    assert due_period("week", site, 7, datetime.combine(monday, clock(7, 0), AMS)) == (date(2026, 11, 23), date(2026, 11, 29))
    assert due_period("week", site, 7, datetime.combine(monday + timedelta(days=3), clock(1), AMS)) == \
        (date(2026, 11, 23), date(2026, 11, 29))  # down on Monday: sent when back
    first = date(2026, 12, 1)
    assert due_period("month", site, 7, datetime.combine(first, clock(6), AMS)) is None
    assert due_period("month", site, 7, datetime.combine(first, clock(7), AMS)) == (date(2026, 11, 1), date(2026, 11, 30))


RACE = r"""
import sys, threading
from analytics.store import Store
from gateway.config import load_config
from gateway.reports.scheduler import ReportScheduler

config = load_config(sys.argv[1])
store = Store(config.store)
store.migrate()
# Four gateways' schedulers (workers, or machines sharing one ClickHouse server) look in the same instant.
schedulers = [ReportScheduler(config, store) for _ in range(4)]
go = threading.Barrier(len(schedulers))
sent = []
def look(s):
    go.wait()
    sent.append(s.run_once())
threads = [threading.Thread(target=look, args=(s,)) for s in schedulers]
[t.start() for t in threads]
[t.join() for t in threads]
# A late look by each, and by a fresh scheduler (a restarted worker), finds the week sent.
sent += [s.run_once() for s in schedulers] + [ReportScheduler(config, store).run_once()]
# The monthly period: a gateway claimed it 20 minutes ago and died; another lost to it 10 minutes ago and
# looks again now. The dead one's claim has lapsed: the one still looking must send, not lose to its own
# older claim.
from dataclasses import replace
config = replace(config, sites={**config.sites, "shop": replace(config.sites["shop"], report_schedule=("monthly",))})
dead, alive = ReportScheduler(config, store), ReportScheduler(config, store)
from gateway.reports.scheduler import due_period
from datetime import datetime, timezone
start, _ = due_period("month", config.sites["shop"], config.reports.send_hour, datetime.now(timezone.utc))
for owner, minutes in ((dead.owner, 20), (alive.owner, 10)):
    store.command("INSERT INTO {db}.report_claims (site, period, period_start, claim, claimed_at) VALUES "
                  "('shop', 'month', {d:Date}, {c:UUID}, now64(6) - INTERVAL {m:UInt32} MINUTE)",
                  {"d": start, "c": owner, "m": minutes})
sent.append(alive.run_once())
print(sum(sent))
store.close()
"""


def run_schedulers(script: str, smtp_port: int, tmp_path) -> str:
    """Runs a script of schedulers over a seeded store (its own process: chDB's lock); returns its last line."""
    config = write_report_config(tmp_path, smtp_port)
    seed(config, HITS, DECISIONS)
    r = subprocess.run([sys.executable, "-c", script, str(config)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_several_gateways_looking_at_once_send_the_report_once(smtp, tmp_path):
    controller, inbox = smtp
    assert run_schedulers(RACE, controller.port, tmp_path) == "2"  # the week once, and the month by the gateway still looking
    time.sleep(0.5)
    assert len(inbox.messages) == 2 and all(rcpt == [TO] for rcpt, _ in inbox.messages)
    assert sorted(m["Subject"].split(",")[0] for _, m in inbox.messages) == ["shop: monthly report", "shop: weekly report"]


LATE_CLAIM = r"""
import sys, threading, time, uuid
from analytics.store import Store
from gateway.config import load_config
from gateway.reports.scheduler import ReportScheduler

config = load_config(sys.argv[1])
store = Store(config.store)
store.migrate()
first = ReportScheduler(config, store, claim_settle=1.5)
sent = []
looking = threading.Thread(target=lambda: sent.append(first.run_once()))
looking.start()
while not store.query_value("SELECT count() FROM {db}.report_claims"):  # its claim is written
    time.sleep(0.02)
# Another gateway's claim, stamped before the first one's but written after it: its insert was slow (a
# loaded server). Under load this happened by itself (tests above, run beside other tests: 3 e-mails).
slow = ReportScheduler(config, store, claim_settle=0.1)
store.command("INSERT INTO {db}.report_claims (site, period, period_start, claim, claimed_at) "
              "SELECT site, period, period_start, {c:UUID}, claimed_at - INTERVAL 1 MILLISECOND FROM {db}.report_claims",
              {"c": slow.owner})
looking.join()
sent.append(slow.run_once())
print(sent)
store.close()
"""


def test_a_claim_stamped_earlier_but_written_later_still_wins(smtp, tmp_path):
    controller, inbox = smtp
    assert run_schedulers(LATE_CLAIM, controller.port, tmp_path) == "[0, 1]"  # the first sees the earlier claim after settling: only the slow one sends
    time.sleep(0.5)
    assert len(inbox.messages) == 1
