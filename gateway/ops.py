"""Operator endpoints: liveness, readiness and Prometheus metrics."""
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


async def readyz(request: Request) -> JSONResponse:
    """503 while this gateway cannot keep what it would acknowledge: the store is not writable, the spool is at
    its limit, or its disk refuses flushes. A load balancer then sends traffic to another gateway."""
    services: Services = request.app.state.services
    checks = {
        "store_writable": services.writer.store_up,
        "spool_under_limit": not services.spool_full(),
        "spool_flushing": services.commit.failed is None,
    }
    sync = getattr(services, "revocation_sync", None)  # only when gateways share a store
    if sync is not None:
        checks["revocations_in_sync"] = bool(sync.ok)
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks, "spool_disk_bytes": services.spool.disk_bytes,
                         "max_spool_bytes": services.config.max_spool_bytes},
                        status_code=200 if ready else 503, headers=None if ready else {"Retry-After": "10"})


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    request.app.state.token_auth.require_metrics(request)  # only when [gateway] metrics_token is set
    return Response(services.metrics.exposition(), media_type="text/plain; version=0.0.4")
