"""POST /s/{site}/collect: runs the pipeline and answers 202 with the result in a header.

A plain ASGI endpoint rather than a Request/Response one: this is the route every
page view takes, and Starlette's request and response objects cost more than the
whole pipeline. Errors are still raised as GatewayError and answered by the
app's exception handlers.
"""
from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.types import Receive, Scope, Send

from gateway.bodies import parse_json_object, read_body
from gateway.clientip import client_ip_of
from gateway.collect.pipeline import Dropped, Hit
from gateway.collect.useragent import edge_user_agent
from gateway.errors import spool_full
from gateway.consent import COOKIE
from gateway.services import Services

RESULT_HEADER = b"x-consentgate-result"
_WANTED = {b"origin", b"user-agent", b"cookie", b"content-length"}


def _cookie(header: str, name: str) -> str:
    if name not in header:
        return ""
    morsel = SimpleCookie(header).get(name)
    return morsel.value if morsel else ""


class CollectEndpoint:
    """An ASGI app (a class, so Starlette's Route passes it raw scope, receive and send)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await collect(scope, receive, send)


async def collect(scope: Scope, receive: Receive, send: Send) -> None:
    services: Services = scope["app"].state.services
    headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}
    site_name = scope["path_params"]["site"]
    hit = Hit(
        site_name=site_name,
        body={},
        origin=headers.get(b"origin", ""),
        cookie_token=_cookie(headers.get(b"cookie", ""), COOKIE),
        user_agent=edge_user_agent(headers.get(b"user-agent", "")),
        client_ip=client_ip_of(scope, services.config.trusted_proxies),
    )
    services.pipeline.check_site_origin(hit)  # 404/403 before reading a body we would refuse
    if services.spool_full():
        raise spool_full(services.config.max_spool_bytes)
    body = await read_body(receive, headers.get(b"content-length", ""), services.config.max_body_bytes)
    hit.body = parse_json_object(body)
    try:
        hit = services.pipeline.run(hit)
        result, reason = ("stored" if hit.stored else "forwarded"), ""
    except Dropped as drop:
        result, reason = "dropped", drop.reason
    if hit.commit_ticket:
        await services.commit.wait(hit.commit_ticket)  # durability = machine: acknowledged means on disk
    services.metrics.count_hit(site_name, result, reason)
    outcome = f"dropped: {reason}" if reason else result
    await send({"type": "http.response.start", "status": 202,
                "headers": [(RESULT_HEADER, outcome.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
