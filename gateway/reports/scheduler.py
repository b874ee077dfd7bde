"""Sends each site's reports when they are due and remembers what went out.

A weekly report covers Monday to Sunday and is due on Monday at `[reports] send_hour` (default 7) in the
site's timezone; a monthly one covers a calendar month and is due on the 1st at that hour. The thread
looks once a minute. Whatever period is due and not yet in `report_runs` is sent (so a gateway that was
down on Monday morning sends it when it is back, and a restart does not send it twice), then recorded.
Several gateways share the work through `report_claims`: each claims a due period first, and only the
earliest live claim sends (`claim_period`), so two workers looking in the same second send one e-mail.
A claim's time is taken when its insert starts and it becomes visible when the insert ends, so each
scheduler reads the claims only CLAIM_SETTLE after writing its own: an earlier claim still being written
then is seen (measured under load: the four inserts of tests/test_reports.py end within ~20 ms).
A failed send is logged with what to fix and tried again 15 minutes later; it never stops the gateway.
"""
from __future__ import annotations

import logging
import threading
import time as time_module
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from analytics.report import last_closed_period
from analytics.store import Store
from gateway.config import GatewayConfig, SiteConfig
from gateway.mailer import MailError
from gateway.reports.send import send_report

log = logging.getLogger("consentgate.reports")
SCHEDULE_PERIODS = {"weekly": "week", "monthly": "month"}
RETRY_AFTER = timedelta(minutes=15)
CLAIM_SETTLE = 2.0  # seconds between writing a claim and reading who claimed first


def due_period(period: str, site: SiteConfig, send_hour: int, now: datetime) -> tuple[date, date] | None:
    """The period whose report is due at `now` (its send time has passed), by the site's clock."""
    local = now.astimezone(ZoneInfo(site.timezone))
    start, end = last_closed_period(period, local.date())
    send_at = datetime.combine(end + timedelta(days=1), time(send_hour), ZoneInfo(site.timezone))
    return (start, end) if local >= send_at else None


class ReportScheduler:
    def __init__(self, config: GatewayConfig, store: Store, interval: float = 60.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 claim_settle: float = CLAIM_SETTLE) -> None:
        self.config = config
        self.claim_settle = claim_settle
        self.store = store
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent: set[tuple[str, str, date]] = set()  # known to be in report_runs
        self._retry_at: dict[tuple[str, str, date], datetime] = {}
        self.owner = str(uuid.uuid4())  # this scheduler's claims: each look claims again under the same id

    @property
    def enabled(self) -> bool:
        return self.config.reports is not None and any(s.report_to for s in self.config.sites.values())

    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._loop, name="consentgate-reports", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                sent = self.run_once()
                if first:  # one line at start: the operator (and the tests) see the scheduler has looked
                    log.info("report scheduler: first look done, %d report(s) sent; looking every %g s", sent,
                             self.interval)
                    first = False
            except Exception as exc:  # noqa: BLE001 - the store may be down; next minute again
                log.error("report scheduler: %s", str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
            self._stop.wait(self.interval)

    def _already_sent(self, key: tuple[str, str, date]) -> bool:
        if key not in self._sent and self.store.query_value(
                "SELECT count() FROM {db}.report_runs WHERE site = {s:String} AND period = {p:String} "
                "AND period_start = {d:Date}", {"s": key[0], "p": key[1], "d": key[2]}):
            self._sent.add(key)
        return key in self._sent

    def run_once(self) -> int:
        """Sends what is due and not sent; returns how many reports went out."""
        assert self.config.reports is not None
        now = self.clock()
        sent = 0
        for site in self.config.sites.values():
            if not site.report_to:
                continue
            for schedule in site.report_schedule:
                period = SCHEDULE_PERIODS[schedule]
                due = due_period(period, site, self.config.reports.send_hour, now)
                if due is None:
                    continue
                key = (site.name, period, due[0])
                if now < self._retry_at.get(key, now) or self._already_sent(key):
                    continue
                if not claim_period(self.store, self.owner, *key, settle=lambda: self._stop.wait(self.claim_settle)):
                    continue  # another gateway sends it; the next look finds it in report_runs
                try:
                    send_report(self.config, self.store, site, period, due[0], due[1], site.report_to)
                except MailError as exc:
                    self._retry_at[key] = now + RETRY_AFTER
                    log.error("report %s %s of %s not sent (next try in 15 minutes): %s", site.name, period, due[0], exc)
                    continue
                self.store.client.insert(f"{self.store.db}.report_runs",
                                         [[site.name, period, due[0], datetime.now(timezone.utc), len(site.report_to)]],
                                         column_names=["site", "period", "period_start", "timestamp", "recipients"])
                self._sent.add(key)
                sent += 1
                log.info("report %s %s of %s sent to %d address(es)", site.name, period, due[0], len(site.report_to))
        return sent


def claim_period(store: Store, owner: str, site: str, period: str, start: date,
                 settle: Callable[[], object] = lambda: time_module.sleep(CLAIM_SETTLE)) -> bool:
    """Claims the report of one period for the scheduler `owner`: True when the earliest live claim is its own
    (it sends); False when another scheduler claimed first. The server's clock orders the claims, the id breaks
    a tie. The owner, not the attempt, is compared: a gateway that lost and looks again a minute later must
    not lose to its own older claim once the winner's has lapsed. `settle` waits between writing and reading:
    without it, a claim stamped earlier but still being written is not seen, and both send."""
    key = {"s": site, "p": period, "d": start}
    store.command("INSERT INTO {db}.report_claims (site, period, period_start, claim) "
                  "VALUES ({s:String}, {p:String}, {d:Date}, {c:UUID})", {**key, "c": owner})
    settle()
    first = store.query_value(f"""SELECT toString(claim) FROM {{db}}.report_claims
                                  WHERE site = {{s:String}} AND period = {{p:String}} AND period_start = {{d:Date}}
                                    AND claimed_at > now64(6) - INTERVAL {int(RETRY_AFTER.total_seconds())} SECOND
                                  ORDER BY claimed_at, claim LIMIT 1""", key)
    return first == owner


def start_report_scheduler(config: GatewayConfig, store: Store) -> ReportScheduler:
    """The gateway's scheduler, started when [reports] is configured and a site has report_to."""
    scheduler = ReportScheduler(config, store)
    scheduler.start()
    return scheduler
