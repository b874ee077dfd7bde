"""POST /s/{site}/collect: runs the pipeline and answers 202 with the result in a header."""
from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from gateway.bodies import read_json_object
from gateway.clientip import client_ip
from gateway.collect.pipeline import Dropped, Hit
from gateway.consent import COOKIE
from gateway.services import Services

RESULT_HEADER = "X-Consentgate-Result"


async def collect(request: Request) -> Response:
    services: Services = request.app.state.services
    started = time.perf_counter()
    site_name = request.path_params["site"]
    hit = Hit(
        site_name=site_name,
        body={},
        origin=request.headers.get("origin", ""),
        cookie_token=request.cookies.get(COOKIE, ""),
        user_agent=request.headers.get("user-agent", ""),
        client_ip=client_ip(request, services.config.trusted_proxies),
    )
    hit = services.pipeline.check_site_origin(hit)  # 404/403 before reading a body we would refuse
    hit.body = await read_json_object(request, services.config.max_body_bytes)
    label = site_name if hit.site else "unknown"
    try:
        hit = services.pipeline.run(hit)
        result, reason = ("stored" if hit.stored else "forwarded"), ""
    except Dropped as drop:
        result, reason = "dropped", drop.reason
    services.metrics.hits.labels(label, result, reason).inc()
    services.metrics.collect_seconds.observe(time.perf_counter() - started)
    header = f"dropped: {reason}" if reason else result
    return Response(status_code=202, headers={RESULT_HEADER: header})
