"""Operator endpoints: liveness and Prometheus metrics."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.services import Services


async def healthz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    return JSONResponse({
        "status": "ok",
        "store": "up" if services.writer.store_up else "down",
        "spool_backlog_bytes": services.writer.backlog_bytes(),
    })


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    return Response(services.metrics.exposition(), media_type="text/plain; version=0.0.4")
