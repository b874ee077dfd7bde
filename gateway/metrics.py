"""Prometheus metrics, one registry per app (no global state). Labels never hold client data."""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.hits = Counter("consentgate_collect_hits", "Hits by result and drop reason",
                            ["site", "result", "reason"], registry=r)
        self.decisions = Counter("consentgate_consent_decisions", "Consent decisions",
                                 ["site", "action", "method"], registry=r)
        self.rejected = Counter("consentgate_requests_rejected", "Requests refused with a 4xx",
                                ["error"], registry=r)
        self.store_rows = Counter("consentgate_store_rows_written", "Rows written to ClickHouse",
                                  ["table"], registry=r)
        self.collect_seconds = Histogram("consentgate_collect_seconds", "Time to acknowledge a hit",
                                         registry=r, buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .5))

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
