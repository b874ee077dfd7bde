"""Per-vendor forwarding metrics, registered on the gateway's own registry. Labels: site and vendor only."""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ForwardMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["site", "vendor"]
        self.sent = Counter("consentgate_forward_sent", "Hits a vendor accepted (2xx)", labels, registry=registry)
        self.failed = Counter("consentgate_forward_failed", "Failed attempts, by reason (timeout, connection, http_NNN)",
                              [*labels, "reason"], registry=registry)
        self.retried = Counter("consentgate_forward_retried", "Attempts that were retries", labels, registry=registry)
        self.dropped = Counter("consentgate_forward_dropped", "Hits not delivered: rejected, withdrawn, expired, dropped_full, error",
                               [*labels, "reason"], registry=registry)
        self.latency = Histogram("consentgate_forward_seconds", "Vendor request latency", labels, registry=registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self._depth = Gauge("consentgate_forward_queue_depth", "Hits in the outbox awaiting an outcome", labels,
                            registry=registry)
        self._breaker = Gauge("consentgate_forward_breaker_open", "1 while the vendor's circuit breaker is open",
                              labels, registry=registry)

    def watch(self, site: str, vendor: str, depth: Callable[[], float], breaker_open: Callable[[], float]) -> None:
        self._depth.labels(site, vendor).set_function(depth)
        self._breaker.labels(site, vendor).set_function(breaker_open)
