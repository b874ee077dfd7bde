"""POST /s/{site}/collect: the fast lane. Reads and checks the hit, runs the pipeline, answers 202.

Every page view takes this route, so it is answered before Starlette's middleware
stack (`GatewayApp.__call__` in gateway/app.py sends it here): the four layers
(errors, exceptions, CORS, access log) cost a quarter of a hit's time (py-spy), and
collect needs only a little of each, which it does itself here: the site's CORS
headers, a JSON error for a GatewayError, a 500 for anything unexpected, and the
truncating access log line.
"""
from __future__ import annotations

import logging
import time
from http.cookies import SimpleCookie

from starlette.types import Receive, Scope, Send

from gateway.bodies import parse_json_object, read_body
from gateway.clientip import client_ip_of
from gateway.collect.hit import parse_hit
from gateway.collect.pipeline import Dropped
from gateway.collect.useragent import edge_user_agent
from gateway.config import SiteConfig
from gateway.errors import GatewayError, error_body, spool_full, unknown_site
from gateway.logtext import log_path
from gateway.middleware.accesslog import log_request, min_logged_status
from gateway.middleware.cors import cors_response_headers
from gateway.services import Services
from gateway.sites import check_origin
from gateway.tokens import COOKIE

log = logging.getLogger("consentgate.errors")
RESULT_HEADER = b"x-consentgate-result"
_WANTED = {b"origin", b"user-agent", b"cookie", b"content-length"}


def collect_site(path: str) -> str | None:
    """The site of a collect path (/s/SITE/collect), else None."""
    if path.startswith("/s/") and path.endswith("/collect"):
        site = path[3:-8]
        if site and "/" not in site:
            return site
    return None


def _cookie(header: str, name: str) -> str:
    if name not in header:
        return ""
    morsel = SimpleCookie(header).get(name)
    return morsel.value if morsel else ""


class CollectLane:
    """Answers collect requests with raw ASGI messages: no Request or Response objects on the hot path."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.min_logged = min_logged_status(services.config.access_log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, site_name: str) -> None:
        started = time.perf_counter()
        headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}
        origin = headers.get(b"origin", "")
        site = self.services.config.sites.get(site_name)
        extra = cors_response_headers(origin) if origin and site is not None and origin in site.origins else []
        try:
            if site is None:
                raise unknown_site(site_name)
            outcome = await self.collect(scope, receive, site, headers)
            status, body, head = 202, b"", [(RESULT_HEADER, outcome.encode())]
        except GatewayError as exc:
            if exc.status < 500:
                self.services.metrics.count_rejected(exc.error)
            status, body = exc.status, error_body(exc.error, exc.detail)
            head = [(b"content-type", b"application/json"),
                    *((k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items())]
        except Exception:  # noqa: BLE001 - answered like the app's own handler: logged without body or address
            log.exception("unexpected error on POST %s", log_path(scope["path"]))
            status, body = 500, error_body("internal_error", "the gateway failed unexpectedly; the error was logged")
            head = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status,
                    "headers": [*head, (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})
        if self.min_logged is not None and status >= self.min_logged:
            log_request(scope, self.services.config.trusted_proxies, status, started)

    async def collect(self, scope: Scope, receive: Receive, site: SiteConfig, headers: dict[bytes, str]) -> str:
        """The hit's outcome for the result header: stored, forwarded, or dropped: <reason>."""
        services = self.services
        site_name = site.name
        check_origin(site, headers.get(b"origin", ""))  # 404/403 before reading a body we would refuse
        if services.spool_full():
            raise spool_full(services.config.max_spool_bytes)
        body = parse_json_object(await read_body(receive, headers.get(b"content-length", ""),
                                                 services.config.max_body_bytes))
        hit = parse_hit(site, body, _cookie(headers.get(b"cookie", ""), COOKIE),
                        edge_user_agent(headers.get(b"user-agent", "")),
                        client_ip_of(scope, services.config.trusted_proxies))
        for reason in hit.screened:
            services.metrics.count_screened(site_name, reason)
        try:
            services.pipeline.run(hit)
            result, reason, step = ("stored" if hit.stored else "forwarded"), "", ""
        except Dropped as drop:
            result, reason, step = "dropped", drop.reason, drop.step
        if hit.commit_ticket:
            await services.commit.wait(hit.commit_ticket)  # durability = machine: acknowledged means on disk
        services.metrics.count_hit(site_name, result, reason, step)
        return f"dropped: {reason}" if reason else result
