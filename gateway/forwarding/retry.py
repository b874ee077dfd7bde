"""RetryPolicy: exponential backoff with jitter, and how long a hit may wait for its vendor."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.config import VendorConfig

# Answers worth another try: the vendor is overloaded, rate limiting or broken for now.
RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass
class RetryPolicy:
    initial: float
    maximum: float
    give_up_after: float  # seconds after collection
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def for_vendor(cls, vendor: VendorConfig) -> "RetryPolicy":
        return cls(vendor.retry_initial, vendor.retry_max, vendor.retry_hours * 3600)

    def delay(self, failed_attempts: int) -> float:
        """Wait before the next try: doubling per failure up to `maximum`, jittered to 50-100%
        so a backlog does not hit a recovering vendor in lockstep."""
        ceiling = min(self.maximum, self.initial * 2 ** max(failed_attempts - 1, 0))
        return ceiling * self.rng.uniform(0.5, 1.0)


def is_retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUS
