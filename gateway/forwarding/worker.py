"""VendorWorker: sends one vendor's outbox, each delivery to a final outcome.

Deliveries run concurrently (at most `max_concurrency` requests at a time, at
most MAX_IN_FLIGHT read into memory); a failure waits out its backoff without
holding a request slot. Outcomes: delivered (2xx), rejected (a 4xx other than
408/425/429: never retried), withdrawn (the consent was taken back before the
send), expired (undelivered after `retry_hours`), dropped_full (the outbox grew
past `max_outbox_bytes` while the vendor was down: the oldest go first), error
(a bug; logged).
Each outcome is spooled as a `forwards` row before the outbox checkpoint may pass it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from gateway.forwarding.breaker import CircuitBreaker
from gateway.forwarding.metrics import ForwardMetrics
from gateway.forwarding.outbox import Batch, CommitTracker, Delivery, Outbox
from gateway.forwarding.retry import RetryPolicy, is_retryable
from gateway.forwarding.vendors import Vendor, VendorRequest
from gateway.restrictions import RestrictionList
from gateway.revocations import RevocationList

log = logging.getLogger("consentgate.forwarding")
MAX_IN_FLIGHT = 1000
READ_BATCH = 100
IDLE_POLL = 0.05  # seconds between looks at an idle outbox's wakeup flag


class VendorWorker:
    def __init__(self, site: str, vendor: Vendor, outbox: Outbox, revocations: RevocationList,
                 record_outcome: Callable[[dict[str, Any]], int], metrics: ForwardMetrics,
                 retry: RetryPolicy, breaker: CircuitBreaker, restrictions: RestrictionList | None = None) -> None:
        self.site = site
        self.vendor = vendor
        self.outbox = outbox
        self.revocations = revocations
        self.record_outcome = record_outcome
        self.metrics = metrics
        self.retry = retry
        self.breaker = breaker
        self.restrictions = restrictions if restrictions is not None else RestrictionList()
        self.tracker = CommitTracker()
        self._stopping = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._was_open = False
        self._last_outcome = 0  # commit ticket of the last outcome row spooled

    async def run(self, client: httpx.AsyncClient, stopping: asyncio.Event, already_done: set[str]) -> None:
        """Reads ahead of the checkpoint and starts a task per delivery until `stopping` is set; then
        lets requests in progress finish (their outcomes count) and leaves the rest in the outbox."""
        self._client, self._stopping = client, stopping
        self._slots = asyncio.Semaphore(self.vendor.config.max_concurrency)
        tasks: set[asyncio.Task[None]] = set()
        cursor = self.outbox.reader.position
        while not stopping.is_set():
            self._commit()
            room = MAX_IN_FLIGHT - len(tasks)
            if room <= 0:
                await asyncio.wait(tasks, timeout=IDLE_POLL, return_when=asyncio.FIRST_COMPLETED)
                continue
            records, after = self.outbox.reader.read(min(room, READ_BATCH), cursor)
            if after == cursor:
                # Idle: look at the files again only once the sink appended something.
                appended = self.outbox.writer.wakeup
                while not appended.is_set() and not stopping.is_set():
                    await self._pause(IDLE_POLL)
                    self._commit()  # deliveries in flight keep finishing
                appended.clear()  # before the next read: an append after it sets it again
                continue
            cursor = after
            batch = self.tracker.add(after, len(records))
            for record in records:
                delivery = self._readable(record)
                if delivery is None or delivery.delivery_id in already_done:  # its outcome was spooled before a crash
                    already_done.discard(delivery.delivery_id if delivery else "")
                    self.outbox.finished()
                    self.tracker.close_one(batch)
                    continue
                task = asyncio.create_task(self._deliver(delivery, batch))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        self._commit()

    def _readable(self, record: dict[str, Any]) -> Delivery | None:
        try:
            return Delivery.from_record(record)
        except (KeyError, TypeError):
            log.error("the outbox of %s (site %s) holds a record it cannot read: skipped", self.vendor.name, self.site)
            return None

    async def _pause(self, seconds: float) -> None:
        """Sleeps, but wakes at once when the gateway stops."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _deliver(self, delivery: Delivery, batch: Batch) -> None:
        assert self._slots is not None
        attempts = 0
        try:
            while True:
                async with self._slots:
                    if self._stopping.is_set():
                        return  # not sent: stays in the outbox for the next start
                    if self.revocations.is_revoked(delivery.consent_id, delivery.issued_ms):
                        return self._finish(delivery, batch, "withdrawn", attempts)
                    if self.restrictions.is_restricted(delivery.consent_id):  # art. 18: kept, never sent
                        return self._finish(delivery, batch, "restricted", attempts)
                    if time.time() - delivery.event["timestamp"] > self.retry.give_up_after:
                        return self._finish(delivery, batch, "expired", attempts)
                    if self.outbox.over_limit():  # in-flight deliveries are the oldest: they go first
                        return self._finish(delivery, batch, "dropped_full", attempts)
                    request = self.vendor.build(delivery, time.time())  # before the breaker: may raise
                    wait = self.breaker.acquire()
                    if wait == 0:
                        attempts += 1
                        outcome = await self._send(request, delivery, attempts)
                        if outcome != "retry":
                            return self._finish(delivery, batch, outcome, attempts)
                        wait = self.retry.delay(attempts)
                await self._pause(wait)
        except Exception as exc:  # noqa: BLE001 - a bug must not stall the outbox; no hit content in the log
            log.error("forwarding to %s (site %s) failed unexpectedly: %s", self.vendor.name, self.site,
                      type(exc).__name__)
            self._finish(delivery, batch, "error", attempts)

    async def _send(self, request: VendorRequest, delivery: Delivery, attempts: int) -> str:
        """One attempt: 'delivered', 'rejected' or 'retry'."""
        assert self._client is not None
        labels = (self.site, self.vendor.name)
        if attempts > 1:
            self.metrics.retried.labels(*labels).inc()
        started = time.perf_counter()
        try:
            response = await self._client.post(request.url, content=request.body, headers=request.headers)
            status, reason = response.status_code, f"http_{response.status_code}"
        except httpx.HTTPError as exc:
            # Only the error's type: its text may hold the URL, and so a vendor credential.
            status, reason = 0, "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        if 200 <= status < 300:
            self.breaker.record_success()
            self._log_breaker()
            return "delivered"
        self.metrics.failed.labels(*labels, reason).inc()
        if status == 0 or is_retryable(status):
            self.breaker.record_failure()
            self._log_breaker(reason)
            return "retry"
        self.breaker.record_success()  # the vendor is up; it refuses this request
        log.warning("vendor %s (site %s) rejected event %s with HTTP %d; not retried: check the vendor's "
                    "credentials and settings with `consentgate vendors test`", self.vendor.name, self.site,
                    delivery.event["event_id"], status)
        return "rejected"

    def _log_breaker(self, reason: str = "") -> None:
        is_open = self.breaker.opened_at is not None
        if is_open and not self._was_open:
            log.warning("vendor %s (site %s) failing (%s): circuit open, hits wait in its outbox and are "
                        "retried", self.vendor.name, self.site, reason)
        elif self._was_open and not is_open:
            log.info("vendor %s (site %s) answers again: sending its backlog", self.vendor.name, self.site)
        self._was_open = is_open

    def _finish(self, delivery: Delivery, batch: Batch, status: str, attempts: int) -> None:
        if not self.restrictions.is_erased(delivery.consent_id):  # an erased visitor leaves no forwards row
            self._last_outcome = max(self._last_outcome,
                                     self.record_outcome(delivery.outcome(status, attempts, time.time())))
        self.outbox.finished()
        self.tracker.close_one(batch)
        labels = (self.site, self.vendor.name)
        if status == "delivered":
            self.metrics.sent.labels(*labels).inc()
        else:
            self.metrics.dropped.labels(*labels, status).inc()

    def _commit(self) -> None:
        position = self.tracker.committable()
        if position is not None:
            # The checkpoint may pass a delivery only once its outcome row is on disk (durability = machine).
            self.outbox.writer.commit.wait_sync(self._last_outcome, 5.0)
            self.outbox.commit(position)
