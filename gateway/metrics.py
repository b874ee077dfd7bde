"""Prometheus metrics, one registry per app (no global state). Labels never hold client data."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


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
        self._hit_children: dict[tuple[str, str, str], Any] = {}

    def count_hit(self, site: str, result: str, reason: str) -> None:
        # .labels() costs a lock and a dict build per call; the few (site, result, reason) children are cached.
        key = (site, result, reason)
        child = self._hit_children.get(key)
        if child is None:
            child = self._hit_children[key] = self.hits.labels(site, result, reason)
        child.inc()

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
