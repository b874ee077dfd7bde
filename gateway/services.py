"""Everything one gateway instance holds, built from its config in one place (no globals)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from analytics.erasure import delete_visitor_rows, restricted_consent_ids
from analytics.schema import VISITOR_TABLES
from analytics.spool import SEGMENT_BYTES, GroupCommit, SpoolWriter
from analytics.store import Store, StoreUnavailable
from analytics.visits import VisitBuilder
from analytics.writer import BatchWriter
from banner.bundle import BannerBundle, build_bundles
from gateway.backup import remove_backup_scratch
from gateway.banner_versions import BannerVersionLog
from gateway.collect.geo import CountryLookup
from gateway.collect.behaviour import VisitorRate
from gateway.collect.hit import Hit
from gateway.collect.pipeline import CollectPipeline
from gateway.collect.useragent import parse_user_agent
from gateway.config import GatewayConfig
from gateway.forwarding.forwarder import Forwarder
from gateway.metrics import Metrics
from gateway.reports.scheduler import ReportScheduler, start_report_scheduler
from gateway.restrictions import RestrictionList
from gateway.revocation_sync import RevocationSync, revocations_from_log, revocations_from_log_spool_only
from gateway.revocations import RevocationList
from gateway.tokens import TokenSigner

log = logging.getLogger("consentgate")


@dataclass
class Services:
    config: GatewayConfig
    store: Store
    spool: SpoolWriter
    writer: BatchWriter
    signer: TokenSigner
    revocations: RevocationList
    countries: CountryLookup
    metrics: Metrics
    pipeline: CollectPipeline
    banners: dict[str, BannerBundle] = field(default_factory=dict)  # site -> prebuilt banner.js
    banner_log: BannerVersionLog = field(default_factory=BannerVersionLog)  # versions spooled today
    forwarder: Forwarder | None = None  # sends consented hits to the sites' vendors
    commit: GroupCommit = field(default_factory=lambda: GroupCommit(durable=False))  # flushes every spool
    restrictions: RestrictionList = field(default_factory=RestrictionList)  # art. 18: no stats, no forwarding
    revocation_sync: RevocationSync | None = None  # learns other gateways' decisions (shared store)
    reports: ReportScheduler | None = None  # sends the sites' e-mail reports when due (started by start())
    visits: VisitBuilder | None = None  # the stats' derived tables; started by the first stats request

    def spool_full(self) -> bool:
        """True when the spool holds more than max_spool_bytes: new records are refused (503), never dropped."""
        return self.spool.disk_bytes >= self.config.max_spool_bytes

    def start(self) -> None:
        if left := remove_backup_scratch(self.config.data_dir):
            log.warning("removed %d backup scratch copies a stopped gateway left in %s", left, self.config.data_dir)
        self.commit.start()
        try:
            self.writer.ensure_schema()
        except StoreUnavailable as exc:
            log.error("store unavailable at start (%s): hits are spooled until it is back", exc)
        # One pass over the spool's backlog for both: only decision and restriction lines are parsed.
        spooled = list(self.writer.reader.pending(kinds=("consent", "restriction")))
        self.revocations.load(self._revocations_from_log(spooled))
        self.restrictions.load(self._restrictions_from_log(spooled))
        if self.revocation_sync is not None:
            self.revocation_sync.start()  # other gateways' decisions from now on (and the last minute)
        parse_user_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")  # loads the parser now, not on the first hit
        self.writer.start()
        if self.forwarder is not None:
            self.forwarder.start()  # after the revocations: a withdrawn consent is never sent
        self.reports = start_report_scheduler(self.config, self.store)

    def _revocations_from_log(self, spooled: list[dict[str, Any]]) -> list[tuple[str, int]]:
        """Every consent id's latest revocation by the one rule (gateway/revocations.py), from store and spool."""
        try:
            return revocations_from_log(self.store, spooled, self.config.consent_max_age_days)
        except Exception as exc:  # noqa: BLE001 - the sync (if on) retries; the spool still holds our own
            log.error("could not read withdrawals from the store: %s", exc)
            return revocations_from_log_spool_only(spooled)

    def _restrictions_from_log(self, spooled: list[dict[str, Any]]) -> list[str]:
        """The consent ids restricted now (GDPR art. 18), from store and spool: the latest action wins."""
        latest: dict[str, tuple[float, str]] = {}
        try:
            latest = {cid: (0.0, "restrict") for _, cid in restricted_consent_ids(self.store)}
        except Exception as exc:  # noqa: BLE001
            log.error("could not read restrictions from the store: %s", exc)
        for record in spooled:
            if record.get("kind") == "restriction" and record["timestamp"] >= latest.get(record["consent_id"], (0.0, ""))[0]:
                latest[record["consent_id"]] = (record["timestamp"], record["action"])
        return [cid for cid, (_, action) in latest.items() if action == "restrict"]

    def stop(self) -> None:
        if self.reports is not None:
            self.reports.stop()
        if self.revocation_sync is not None:
            self.revocation_sync.stop()
        if self.forwarder is not None:
            self.forwarder.stop()  # first: its last outcomes go into the spool the writer drains
        drained = self.writer.drain()
        log.info("stopped: spool %s", "fully written to the store" if drained else "kept for the next start")
        self.commit.stop()
        self.spool.close()
        self.countries.close()
        if self.visits is not None:
            self.visits.stop()
        self.store.close()  # last, with no thread left inside it: chDB's engine must stop before the interpreter


def build_services(config: GatewayConfig) -> Services:
    metrics = Metrics()
    store = Store(config.store, config.retention_days, consent_retention_days=config.consent_retention_days)
    store.fsync_inserts = config.durability == "machine"
    store.cluster = config.cluster
    commit = GroupCommit(durable=config.durability == "machine", interval=config.commit_interval_ms / 1000)
    # Segments of at most an eighth of the limit: once the store is back, passed segments are deleted
    # and the spool falls well under the limit (the segment being written is never deleted).
    spool = SpoolWriter(config.spool_dir, min(SEGMENT_BYTES, max(64 * 1024, config.max_spool_bytes // 8)), commit)
    writer = BatchWriter(store, spool, config.batch_size, config.flush_interval,
                         on_batch=lambda counts: [metrics.store_rows.labels(k).inc(n) for k, n in counts.items()])
    signer = TokenSigner(config.secret_keys, config.consent_max_age_days)
    revocations = RevocationList(config.consent_max_age_days * 86_400_000)
    restrictions = RestrictionList()
    countries = CountryLookup(config.geoip_db)

    def store_sink(hit: Hit) -> None:
        if hit.token is not None and hit.token.grants("analytics"):
            hit.commit_ticket = max(hit.commit_ticket, spool.append(hit.record, defer=True))  # answered after its flush
            hit.stored = True

    forwarder = Forwarder(config, revocations, spool, writer.reader, store.existing_ids, metrics.registry, commit,
                          restrictions=restrictions)
    rate = VisitorRate(config.bot_hits_per_minute) if config.bot_hits_per_minute else None
    pipeline = CollectPipeline(signer, revocations, countries, sinks=[store_sink, forwarder.sink],
                               too_fast=rate.too_fast if rate is not None else None)
    metrics.gauge("consentgate_spool_backlog_bytes", "Spooled bytes not yet in the store", writer.backlog_bytes)
    metrics.gauge("consentgate_spool_disk_bytes", "Bytes of spool segments on disk (limit: max_spool_bytes)",
                  lambda: float(spool.disk_bytes))
    metrics.gauge("consentgate_spool_flushes", "Group-commit flushes (fdatasync rounds) since start",
                  lambda: float(commit.flushes))
    metrics.gauge("consentgate_store_up", "1 when the last store write succeeded", lambda: float(writer.store_up))
    visits = VisitBuilder(store, config.stats_refresh_seconds, config.bot_zero_second_visits)
    metrics.gauge("consentgate_stats_bot_visitor_days", "Visitor-days left out of the stats for zero-second visits in "
                  "bulk (bot_zero_second_visits), by the builds since start", visits.bot_visitor_days)
    sync = None
    if config.revocation_sync_interval > 0:
        def erase_late_rows(site: str, consent_id: str) -> None:
            # Another gateway erased this visitor: hits we spooled before we learned it reach the store now.
            restrictions.forget(consent_id)  # queued deliveries: not sent, and no outcome recorded under the id
            writer.flush_pending()
            delete_visitor_rows(store, VISITOR_TABLES, site, consent_id)

        sync = RevocationSync(store, revocations, config.consent_max_age_days, config.revocation_sync_interval,
                              on_erasure=erase_late_rows, restrictions=restrictions)
        metrics.gauge("consentgate_revocation_sync_lag_seconds",
                      "Seconds since this gateway last read the other gateways' revocations", sync.lag_seconds)
    return Services(config, store, spool, writer, signer, revocations, countries, metrics, pipeline,
                    banners=build_bundles(config), forwarder=forwarder, commit=commit, restrictions=restrictions,
                    revocation_sync=sync, visits=visits)
