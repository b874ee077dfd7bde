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
        self.drops = Counter("consentgate_collect_drops", "Hits dropped, by the pipeline step that dropped them",
                             ["site", "step", "reason"], registry=r)
        self.screened = Counter("consentgate_collect_props_screened",
                                "Event property values dropped as personal data (email, ip, id)",
                                ["site", "reason"], registry=r)
        self._hit_children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def count_hit(self, site: str, result: str, reason: str, step: str = "") -> None:
        # .labels() costs a lock and a dict build per call; the few label combinations' children are cached.
        key = (site, result, reason, step)
        children = self._hit_children.get(key)
        if children is None:
            children = self._hit_children[key] = (
                self.hits.labels(site, result, reason), self.drops.labels(site, step, reason) if reason else None)
        children[0].inc()
        if children[1] is not None:
            children[1].inc()

    def count_rejected(self, error: str) -> None:
        """A request refused with a 4xx, by its short error name (never client data)."""
        self.rejected.labels(error).inc()

    def count_screened(self, site: str, reason: str) -> None:
        self.screened.labels(site, reason).inc()

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
