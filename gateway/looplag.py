"""How late the event loop runs what is due: the answer to "is something holding up every request?".

A task asks to wake every INTERVAL and records how much later than asked it woke
(`consentgate_event_loop_lag_seconds` in /metrics). Every request waiting on the loop at
that moment waited that long on top of its own work: a lag of 250 ms is a 250 ms stall
for each of them, whatever its cause (a slow callback, the GIL held by another thread,
the process not scheduled). Each worker process watches its own loop.
"""
from __future__ import annotations

import asyncio

from prometheus_client import Histogram

from gateway.metrics import Metrics

INTERVAL = 0.1  # seconds between two looks: ten tiny timer callbacks a second
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLagMonitor:
    def __init__(self, metrics: Metrics, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.lag = Histogram("consentgate_event_loop_lag_seconds",
                             "How much later than asked the event loop ran a timer (a stall every request shared)",
                             buckets=BUCKETS, registry=metrics.registry)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lag.observe(max(0.0, loop.time() - asked))
