"""POST /s/{site}/collect: the fast lane. Reads and checks the hit, runs the pipeline, answers 202.

Every page view takes this route, so it skips what other routes pay for, twice over:
- `GatewayHttpProtocol` (gateway/http_protocol.py) answers it inside uvicorn's HTTP protocol: the body
  is gathered by the parser's callbacks and the hit is handled when its message completes, with no
  ASGI task, no receive/send coroutines and no Starlette middleware (bench/collect_bench.py measured
  the shell of an ASGI request at more than all of the lane's own work);
- any other server (tests' in-process clients, another ASGI server) reaches `CollectLane.__call__`
  before Starlette's middleware stack (`GatewayApp.__call__` in gateway/app.py).
Both run the same `CollectLane.answer`: the site's CORS headers, a JSON error for a GatewayError, a 500
for anything unexpected, the commit ticket to wait for, and the truncating access log line.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

from starlette.types import Receive, Scope, Send

from gateway.bodies import body_too_large, parse_json_object, read_body
from gateway.clientip import client_ip_of
from gateway.collect.hit import parse_hit
from gateway.collect.pipeline import Dropped
from gateway.collect.useragent import edge_user_agent
from gateway.errors import GatewayError, error_body, spool_full, spool_unwritable, unknown_site
from gateway.logtext import log_path
from gateway.middleware.accesslog import log_request, min_logged_status
from gateway.middleware.cors import cors_response_headers
from gateway.services import Services
from gateway.sites import check_origin
from gateway.tokens import COOKIE

log = logging.getLogger("consentgate.errors")
RESULT_HEADER = b"x-consentgate-result"
RESULT_VALUES = {"stored": b"stored", "forwarded": b"forwarded"}
JSON_TYPE = (b"content-type", b"application/json")
_WANTED = {b"origin", b"user-agent", b"cookie", b"content-length"}
Headers = list[tuple[bytes, bytes]]


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


@dataclass(slots=True)
class CollectAnswer:
    """What a collect request gets: sent once `ticket` is on disk (0: at once), then `CollectLane.sent`.
    `outcome` is the hit's (result, reason, step) for /metrics, counted once it is answered."""

    status: int
    headers: Headers
    body: bytes
    ticket: int = 0
    outcome: tuple[str, str, str] | None = None


class CollectRequest:
    """A collect request's head as the lane reads it: the site, the few headers it uses, and the CORS
    headers its answer carries (the site's, when the Origin is one of them)."""

    __slots__ = ("scope", "site_name", "site", "headers", "cors", "started")

    def __init__(self, lane: "CollectLane", scope: Scope, site_name: str) -> None:
        self.started = time.perf_counter()
        self.scope = scope
        self.site_name = site_name
        self.headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}
        origin = self.headers.get(b"origin", "")
        self.site = lane.services.config.sites.get(site_name)
        self.cors: Headers = (lane.cors_headers(origin)
                              if origin and self.site is not None and origin in self.site.origins else [])

    @property
    def content_length(self) -> str:
        return self.headers.get(b"content-length", "")


class CollectLane:
    """Answers collect requests with raw messages: no Request or Response objects on the hot path."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.min_logged = min_logged_status(services.config.access_log)
        self.max_body_bytes = services.config.max_body_bytes
        self._cors: dict[str, Headers] = {}

    def cors_headers(self, origin: str) -> Headers:
        """The CORS headers of an answer to `origin`, one of a site's configured origins (so few: kept)."""
        headers = self._cors.get(origin)
        if headers is None:
            headers = self._cors[origin] = cors_response_headers(origin)
        return headers

    def request(self, scope: Scope, site_name: str) -> CollectRequest:
        return CollectRequest(self, scope, site_name)

    def refusal(self, request: CollectRequest) -> CollectAnswer | None:
        """The answer to a request refused before its body is read (unknown site, foreign origin, a
        declared body over the limit, a full spool), else None: read the body."""
        try:
            self._check_head(request)
        except Exception as exc:  # noqa: BLE001 - see _failed
            return self._failed(request, exc)
        return None

    def answer(self, request: CollectRequest, body: bytes) -> CollectAnswer:
        """The answer to a whole request (its body read)."""
        try:
            return self._collect(request, body)
        except Exception as exc:  # noqa: BLE001 - see _failed
            return self._failed(request, exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, site_name: str) -> None:
        """The lane as an ASGI app (for servers other than uvicorn with GatewayHttpProtocol)."""
        request = self.request(scope, site_name)
        answer = self.refusal(request)
        if answer is None:
            try:
                body = await read_body(receive, "", self.max_body_bytes)
            except GatewayError as exc:
                answer = self.error(request, exc)
            else:
                answer = self.answer(request, body)
        if answer.ticket:
            await self.services.commit.wait(answer.ticket)  # durability = machine: acknowledged means on disk
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})
        self.sent(request, answer)

    def sent(self, request: CollectRequest, answer: CollectAnswer) -> None:
        """After the answer went out (or its client went away): the hit counted, the access log line. Never
        raises: it runs inside the HTTP parser or a group commit's callback, where an error would cost the
        connection its next requests."""
        try:
            if answer.outcome is not None:
                self.services.metrics.count_hit(request.site_name, *answer.outcome)
            if self.min_logged is not None and answer.status >= self.min_logged:
                log_request(request.scope, self.services.config.trusted_proxies, answer.status, request.started)
        except Exception:  # noqa: BLE001 - logged without body or address
            log.exception("counting or logging a collect answer failed on POST %s", log_path(request.scope["path"]))

    def _failed(self, request: CollectRequest, exc: Exception) -> CollectAnswer:
        """A GatewayError's JSON answer; anything else is answered like the app's own handler: a 500, logged
        without body or address."""
        if isinstance(exc, GatewayError):
            return self.error(request, exc)
        log.error("unexpected error on POST %s", log_path(request.scope["path"]), exc_info=exc)
        body = error_body("internal_error", "the gateway failed unexpectedly; the error was logged")
        return self._finish(request, 500, [JSON_TYPE], body)

    def error(self, request: CollectRequest, exc: GatewayError) -> CollectAnswer:
        if exc.status < 500:
            self.services.metrics.count_rejected(exc.error)
        head = [JSON_TYPE, *((k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items())]
        return self._finish(request, exc.status, head, error_body(exc.error, exc.detail))

    @staticmethod
    def _finish(request: CollectRequest, status: int, head: Headers, body: bytes, ticket: int = 0,
                outcome: tuple[str, str, str] | None = None) -> CollectAnswer:
        return CollectAnswer(status, [*head, (b"content-length", str(len(body)).encode()), *request.cors], body,
                             ticket, outcome)

    def _check_head(self, request: CollectRequest) -> None:
        site = request.site
        if site is None:
            raise unknown_site(request.site_name)
        check_origin(site, request.headers.get(b"origin", ""))  # 404/403 before reading a body we would refuse
        if self.services.spool_full():
            raise spool_full(self.services.config.max_spool_bytes)
        if self.services.commit.failed is not None:  # a hit now would wait for a disk that refuses: say so at once
            raise spool_unwritable()
        length = request.content_length
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise body_too_large(self.max_body_bytes)
        return None

    def _collect(self, request: CollectRequest, body: bytes) -> CollectAnswer:
        """Parses the hit and runs the pipeline; the answer's ticket is the spool lines' commit ticket."""
        services = self.services
        site = request.site
        assert site is not None
        site_name = site.name
        headers = request.headers
        hit = parse_hit(site, parse_json_object(body), _cookie(headers.get(b"cookie", ""), COOKIE),
                        edge_user_agent(headers.get(b"user-agent", "")),
                        client_ip_of(request.scope, services.config.trusted_proxies))
        for reason in hit.screened:
            services.metrics.count_screened(site_name, reason)
        try:
            services.pipeline.run(hit)
            result, reason, step = ("stored" if hit.stored else "forwarded"), "", ""
        except Dropped as drop:
            result, reason, step = "dropped", drop.reason, drop.step
        header = (RESULT_HEADER, f"dropped: {reason}".encode() if reason else RESULT_VALUES[result])
        return self._finish(request, 202, [header], b"", hit.commit_ticket, (result, reason, step))
