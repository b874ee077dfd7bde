"""Per-client-network limits: one fixed-window counter class for every limit the gateway keeps
(failed token checks, consent decisions), keyed by the truncated address of the client.

Keyed by the network (IPv4 /24, IPv6 /48), never by the full address: a limiter is something
the gateway keeps, and it keeps no full address. The number of tracked networks is bounded, so a
flood from many networks costs a fixed amount of memory; when it is full, expired windows go first,
then the oldest. Counts live in this process: with several workers each counts its own share, and
nginx's `limit_req` (nginx/consentgate.conf) is the limit across them.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request

from gateway.clientip import client_ip, truncate_ip
from gateway.config import GatewayConfig
from gateway.errors import GatewayError

DEFAULT_MAX_NETWORKS = 10_000  # ~2.6 MB at most per limiter (IPv6 keys, tracemalloc)


def client_network(request: Request, config: GatewayConfig) -> str:
    """The truncated client address: the key of every per-client limit."""
    return truncate_ip(client_ip(request, config.trusted_proxies))


class NetworkLimiter:
    """At most `limit` events per network in a window of `window` seconds, starting at its first event."""

    def __init__(self, limit: int, window: float = 60.0, max_networks: int = DEFAULT_MAX_NETWORKS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.max_networks = max_networks
        self._clock = clock
        # network -> [window start, events]; ordered by window start (a new window moves to the end)
        self._windows: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def _live(self, network: str, now: float) -> list[float] | None:
        entry = self._windows.get(network)
        if entry is not None and now - entry[0] >= self.window:
            del self._windows[network]
            return None
        return entry

    def _wait(self, entry: list[float], now: float) -> int:
        return max(1, math.ceil(entry[0] + self.window - now))

    def retry_after(self, network: str) -> int:
        """Seconds until the network may act again: 0 when it is under its limit now."""
        now = self._clock()
        entry = self._live(network, now)
        return self._wait(entry, now) if entry is not None and entry[1] >= self.limit else 0

    def add(self, network: str) -> int:
        """Counts one event; returns the seconds to wait when this event is over the limit, else 0."""
        now = self._clock()
        entry = self._live(network, now)
        if entry is None:
            self._make_room(now)
            entry = self._windows[network] = [now, 0]
        entry[1] += 1
        return self._wait(entry, now) if entry[1] > self.limit else 0

    def give_back(self, network: str) -> None:
        """Uncounts one event of the network's current window (one that `add` counted before it was known to
        be harmless)."""
        entry = self._live(network, self._clock())
        if entry is not None and entry[1] > 0:
            entry[1] -= 1

    def _make_room(self, now: float) -> None:
        while self._windows:
            network, (start, _) = next(iter(self._windows.items()))
            if now - start < self.window and len(self._windows) < self.max_networks:
                return
            del self._windows[network]


def too_many_requests(retry_after: int, detail: str) -> GatewayError:
    return GatewayError(429, "rate_limited", f"{detail}; try again in {retry_after} s",
                        {"Retry-After": str(retry_after)})


def limit_consent_rate(request: Request) -> None:
    """Counts a consent, a withdrawal or a visitor's privacy request (export, erasure, restriction) of the client's
    network; 429 over
    `[gateway] consent_rate_per_minute`. Called first in those handlers, before the body is read."""
    limiter: NetworkLimiter = request.app.state.consent_rate
    wait = limiter.add(client_network(request, request.app.state.services.config))
    if wait:
        raise too_many_requests(wait, f"more than {limiter.limit} consent decisions or privacy requests a minute from your network")
