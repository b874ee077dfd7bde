"""CircuitBreaker: stops hammering a vendor that keeps failing, and probes it now and then."""
from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Closed: every request goes. After `failures` consecutive failures it opens for `reset_after`
    seconds (nothing goes), then lets exactly one probe through (half-open): a success closes it,
    a failure opens it again."""

    def __init__(self, failures: int, reset_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.reset_after = reset_after
        self.clock = clock
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.probing or self.clock() - self.opened_at >= self.reset_after else "open"

    def acquire(self) -> float:
        """0 when the caller may send now (as the probe, when half-open); else seconds to wait first."""
        if self.opened_at is None:
            return 0.0
        remaining = self.opened_at + self.reset_after - self.clock()
        if remaining > 0:
            return remaining
        if self.probing:
            return min(1.0, self.reset_after)  # the probe's answer decides; ask again soon
        self.probing = True
        return 0.0

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self.probing = False

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self.probing or self.consecutive_failures >= self.threshold:
            self.opened_at = self.clock()
        self.probing = False
