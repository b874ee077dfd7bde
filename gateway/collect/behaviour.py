"""Behavioural bot signal: a visitor (consent id) sending more hits a minute than a person does.

A leaky bucket per visitor, kept as one number (GCRA: the time its bucket will be empty): each hit adds
one, the bucket drains `hits_per_minute` a minute, and a hit that finds more than `hits_per_minute` in it
is too fast. So a person's burst (a page with a few events, quick clicks) passes, and a visitor who keeps
sending faster than the limit is flagged for as long as it does. Flagged hits fill the bucket too (up
to twice the limit): a bot is not let through at exactly the limit rate, and one that stops is clear
again within two minutes.

Memory is bounded under a flood of distinct visitor ids: at most `max_visitors` entries (a 32-character
id and a float, ~165 bytes each: 11 MB at the default 65,536, 15 MB while the dict resizes; measured with
tracemalloc), least recently seen dropped first. A dropped visitor starts again with an empty bucket,
so an attacker who rotates through more ids than that only dilutes his own rate; each id costs him a
consent, which is rate-limited per network.
"""
from __future__ import annotations

import threading

DEFAULT_MAX_VISITORS = 65_536


class VisitorRate:
    def __init__(self, hits_per_minute: int, max_visitors: int = DEFAULT_MAX_VISITORS) -> None:
        if hits_per_minute < 1 or max_visitors < 1:
            raise ValueError("hits_per_minute and max_visitors must be >= 1")
        self.hits_per_minute = hits_per_minute
        self.max_visitors = max_visitors
        self._interval = 60.0 / hits_per_minute  # seconds one hit takes to drain
        self._window = 60.0  # a full bucket (hits_per_minute hits) takes this long to drain
        self._empty_at: dict[str, float] = {}  # visitor -> when its bucket is empty; least recently seen first
        self._lock = threading.Lock()

    def too_fast(self, visitor_id: str, now: float) -> bool:
        """Counts one hit of `visitor_id` at `now` (monotonic seconds); True when the visitor exceeds the rate."""
        with self._lock:
            empty_at = self._empty_at.pop(visitor_id, now)
            if len(self._empty_at) >= self.max_visitors:
                del self._empty_at[next(iter(self._empty_at))]  # the least recently seen
            # The bucket holds (empty_at - now) / interval hits; this hit adds one, capped at twice the limit.
            empty_at = min(max(empty_at, now) + self._interval, now + 2 * self._window)
            self._empty_at[visitor_id] = empty_at
            return empty_at - now > self._window + 1e-9

    def __len__(self) -> int:
        return len(self._empty_at)
