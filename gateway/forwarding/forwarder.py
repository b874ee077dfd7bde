"""Forwarder: the collect sink that queues consented hits per vendor, and the thread that sends them.

The sink runs inside the collect request and only appends to outboxes (one
write per vendor), so a slow or dead vendor never slows the 202. Sending runs
on the forwarder's own event loop in its own thread.

Exactly once: an outbox checkpoint never passes a delivery before its outcome
row is in the main spool. After a crash, deliveries past the checkpoint whose
outcome is already spooled or stored are not sent again.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from analytics.spool import GroupCommit, SpoolReader, SpoolWriter
from analytics.store import StoreUnavailable
from gateway.collect.hit import Hit
from gateway.config import GatewayConfig
from gateway.forwarding.breaker import CircuitBreaker
from gateway.forwarding.metrics import ForwardMetrics
from gateway.forwarding.outbox import Delivery, Outbox, outbox_folder
from gateway.forwarding.retry import RetryPolicy
from gateway.forwarding.vendors import build_vendor
from gateway.forwarding.worker import VendorWorker
from gateway.restrictions import RestrictionList
from gateway.revocations import RevocationList

log = logging.getLogger("consentgate.forwarding")
ExistingIds = Callable[[str, list[str]], set[str]]


class Forwarder:
    def __init__(self, config: GatewayConfig, revocations: RevocationList, spool: SpoolWriter,
                 store_reader: SpoolReader, existing_ids: ExistingIds, registry: CollectorRegistry,
                 commit: GroupCommit | None = None, restrictions: RestrictionList | None = None) -> None:
        self.spool = spool
        self.restrictions = restrictions if restrictions is not None else RestrictionList()  # art. 18: not forwarded
        self.store_reader = store_reader  # to find outcomes spooled but not yet stored
        self.existing_ids = existing_ids  # to find outcomes already stored
        self.metrics = ForwardMetrics(registry)
        self.outboxes: dict[tuple[str, str], Outbox] = {}
        self.workers: list[VendorWorker] = []
        for site in config.sites.values():
            for vendor_config in site.vendors:
                outbox = Outbox(outbox_folder(config.data_dir, site.name, vendor_config.name), commit,
                                vendor_config.max_outbox_bytes)
                self.outboxes[(site.name, vendor_config.name)] = outbox
                breaker = CircuitBreaker(vendor_config.breaker_failures, vendor_config.breaker_reset)
                self.workers.append(VendorWorker(
                    site.name, build_vendor(vendor_config, config.secret_keys[-1]), outbox, revocations,
                    spool.append, self.metrics, RetryPolicy.for_vendor(vendor_config), breaker,
                    restrictions=self.restrictions))
                self.metrics.watch(site.name, vendor_config.name, lambda o=outbox: o.depth,
                                   lambda b=breaker: float(b.opened_at is not None))
        self.data_dir = config.data_dir
        self._warn_orphaned_outboxes()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    def orphaned_outboxes(self) -> list[Path]:
        """Outbox folders of no configured vendor (renamed or removed) that still hold queued hits: never sent,
        but still the visitors' data (an erasure blanks their lines too)."""
        known = {outbox.writer.folder for outbox in self.outboxes.values()}
        return [folder for folder in sorted((self.data_dir / "outbox").glob("*/*"))
                if folder.is_dir() and folder not in known and any(folder.glob("*.jsonl"))]

    def _warn_orphaned_outboxes(self) -> None:
        for folder in self.orphaned_outboxes():
            log.warning("outbox %s belongs to no configured vendor (renamed or removed?): its hits are not "
                        "sent; restore the vendor's name to send them, or delete the folder", folder)

    def sink(self, hit: Hit) -> None:
        """Queues the hit for every vendor of the site whose category the visitor granted."""
        assert hit.token is not None
        if self.restrictions.is_restricted(hit.token.consent_id):
            return
        for vendor in hit.site.vendors:
            if hit.token.grants(vendor.category):
                ticket = self.outboxes[(hit.site.name, vendor.name)].append(Delivery.from_hit(hit, vendor.name))
                hit.commit_ticket = max(hit.commit_ticket, ticket)
                hit.forwarded = True

    def start(self) -> None:
        if not self.workers:
            return
        # httpx logs each request line at INFO, and a GA4 URL carries its api_secret: keep those out of the log.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="consentgate-forwarder",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """Lets requests in flight finish (their outcomes are spooled); the rest waits in the outboxes."""
        if self._thread is not None and self._thread.is_alive() and self._loop is not None \
                and self._stopping is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop ended on its own meanwhile
                pass
            self._thread.join(timeout)
        for outbox in self.outboxes.values():
            outbox.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._ready.set()
        try:
            done = await self._outcomes_already_recorded()
            if done is not None:
                await self._send_until_stopped(done)
        except Exception:  # noqa: BLE001 - say so loudly: hits now wait in the outboxes until a restart
            log.exception("forwarding stopped by an unexpected error; queued hits stay in the outboxes")

    async def _send_until_stopped(self, done: set[str]) -> None:
        assert self._stopping is not None
        clients = [httpx.AsyncClient(timeout=w.vendor.config.timeout, follow_redirects=False,
                                     limits=httpx.Limits(max_connections=w.vendor.config.max_concurrency))
                   for w in self.workers]
        try:
            await asyncio.gather(*(w.run(c, self._stopping, done) for w, c in zip(self.workers, clients)))
        finally:
            for client in clients:
                await client.aclose()

    async def _outcomes_already_recorded(self) -> set[str] | None:
        """Delivery ids past an outbox checkpoint whose outcome exists (a crash came between the two).
        Waits for the store if it is down: sending before knowing could deliver a hit twice.
        None when the gateway stopped meanwhile."""
        assert self._stopping is not None
        waiting = {r.get("delivery_id") for outbox in self.outboxes.values() for r in outbox.reader.pending()}
        waiting.discard(None)
        if not waiting:
            return set()
        # The spool first, then the store: a row the batch writer moves in between is found in the store.
        done = set(_outcome_ids(self.store_reader.pending(kinds=("forward",)), waiting))
        rest = sorted(waiting - done)
        delay = 1.0
        while True:
            try:
                for i in range(0, len(rest), 10_000):
                    done |= self.existing_ids("forward", rest[i:i + 10_000])
                break
            except StoreUnavailable as exc:
                log.warning("store unavailable (%s): forwarding waits until it can check what was already "
                            "delivered", exc)
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    return None
                except asyncio.TimeoutError:
                    delay = min(delay * 2, 30.0)
        if done:
            log.info("%d queued hit(s) were already delivered before the last stop: not sent again", len(done))
        return done


def _outcome_ids(records: Iterable[dict[str, Any]], wanted: set[str]) -> Iterable[str]:
    for record in records:
        if record.get("kind") == "forward" and record.get("record_id") in wanted:
            yield record["record_id"]
