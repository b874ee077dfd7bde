"""Access log with the truncated client address only (uvicorn's own access log is turned off:
it would write the full IP). Every field is escaped (gateway.logtext): one request, one line."""
from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.clientip import Network, client_ip_of, truncate_ip
from gateway.logtext import log_path, log_text

log = logging.getLogger("consentgate.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: tuple[Network, ...], mode: str = "errors") -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies
        self.min_status = min_logged_status(mode)  # a line per hit costs ~30 us: errors only by default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.min_status is None or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if status >= self.min_status:
                log_request(scope, self.trusted_proxies, status, started)


def log_request(scope: Scope, trusted_proxies: tuple[Network, ...], status: int, started: float) -> None:
    """One access log line: the truncated client address, method, path, status and time; each escaped."""
    ip = truncate_ip(client_ip_of(scope, trusted_proxies))
    log.info('%s "%s %s" %d %.1fms', ip or "-", log_text(scope["method"], 20), log_path(scope["path"]),
             status, (time.perf_counter() - started) * 1000)


def min_logged_status(mode: str) -> int | None:
    """The least status logged for `access_log = mode` ("all", "errors"; anything else: none)."""
    return {"all": 0, "errors": 400}.get(mode)
