"""Everything one gateway instance holds, built from its config in one place (no globals)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from analytics.spool import SpoolWriter
from analytics.store import Store, StoreUnavailable
from analytics.writer import BatchWriter
from banner.bundle import BannerBundle, build_bundles
from gateway.collect.geo import CountryLookup
from gateway.collect.pipeline import CollectPipeline, Hit
from gateway.collect.useragent import parse_user_agent
from gateway.config import GatewayConfig
from gateway.forwarding.forwarder import Forwarder
from gateway.metrics import Metrics
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
    forwarder: Forwarder | None = None  # sends consented hits to the sites' vendors

    def start(self) -> None:
        try:
            self.writer.ensure_schema()
        except StoreUnavailable as exc:
            log.error("store unavailable at start (%s): hits are spooled until it is back", exc)
        self.revocations.load(self._revocations_from_log())
        parse_user_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")  # loads the parser now, not on the first hit
        self.writer.start()
        if self.forwarder is not None:
            self.forwarder.start()  # after the revocations: a withdrawn consent is never sent

    def _revocations_from_log(self) -> list[tuple[str, int]]:
        """Every consent id whose latest decision superseded an earlier token, from store and spool."""
        latest: dict[str, tuple[int, str, int]] = {}  # consent id -> (time ms, action, decisions)
        rows: list[tuple[str, int, str, int]] = []
        try:
            rows = [tuple(r) for r in self.store.query(
                "SELECT consent_id, toUnixTimestamp64Milli(max(timestamp)), argMax(action, timestamp), count() "
                "FROM {db}.consents WHERE timestamp > now() - INTERVAL {days:UInt32} DAY "
                "GROUP BY consent_id HAVING count() > 1 OR argMax(action, timestamp) = 'withdraw'",
                {"days": self.config.consent_max_age_days})]
        except Exception as exc:  # noqa: BLE001
            log.error("could not read withdrawals from the store: %s", exc)
        for consent_id, at_ms, action, count in rows:
            latest[consent_id] = (int(at_ms), action, int(count))
        for record in self.writer.reader.pending():
            if record.get("kind") != "consent":
                continue
            at_ms = int(round(record["timestamp"] * 1000))
            before = latest.get(record["consent_id"], (0, "", 0))
            if at_ms >= before[0]:
                latest[record["consent_id"]] = (at_ms, record["action"], before[2] + 1)
        return [(cid, at if action == "withdraw" else at - 1)
                for cid, (at, action, count) in latest.items() if action == "withdraw" or count > 1]

    def stop(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()  # first: its last outcomes go into the spool the writer drains
        drained = self.writer.drain()
        log.info("stopped: spool %s", "fully written to the store" if drained else "kept for the next start")
        self.spool.close()
        self.countries.close()


def build_services(config: GatewayConfig) -> Services:
    metrics = Metrics()
    store = Store(config.store, config.retention_days)
    spool = SpoolWriter(config.spool_dir)
    writer = BatchWriter(store, spool, config.batch_size, config.flush_interval,
                         on_batch=lambda counts: [metrics.store_rows.labels(k).inc(n) for k, n in counts.items()])
    signer = TokenSigner(config.secret_keys, config.consent_max_age_days)
    revocations = RevocationList(config.consent_max_age_days * 86_400_000)
    countries = CountryLookup(config.geoip_db)

    def store_sink(hit: Hit) -> None:
        if hit.token is not None and hit.token.grants("analytics"):
            spool.append(hit.record)
            hit.stored = True

    forwarder = Forwarder(config, revocations, spool, writer.reader, store.existing_ids, metrics.registry)
    pipeline = CollectPipeline(config, signer, revocations, countries, sinks=[store_sink, forwarder.sink])
    metrics.gauge("consentgate_spool_backlog_bytes", "Spooled bytes not yet in the store", writer.backlog_bytes)
    metrics.gauge("consentgate_store_up", "1 when the last store write succeeded", lambda: float(writer.store_up))
    return Services(config, store, spool, writer, signer, revocations, countries, metrics, pipeline,
                    banners=build_bundles(config), forwarder=forwarder)
