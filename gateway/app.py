"""The Starlette application: every route and middleware wired in one place."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from gateway import consent, ops, privacy
from gateway.banner_script import banner_script
from gateway.collect.endpoint import CollectEndpoint
from gateway.config import GatewayConfig
from gateway.errors import EXCEPTION_HANDLERS
from gateway.middleware.accesslog import AccessLogMiddleware
from gateway.middleware.cors import SiteCORSMiddleware
from gateway.services import Services, build_services


def create_app(config: GatewayConfig, services: Services | None = None) -> Starlette:
    services = services or build_services(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.start()
        try:
            yield
        finally:
            # uvicorn has stopped taking requests and finished the open ones: write out the spool.
            services.stop()

    routes = [
        Route("/s/{site}/collect", CollectEndpoint(), methods=["POST"]),  # first: the route most requests take
        Route("/s/{site}/banner.js", banner_script, methods=["GET"]),
        Route("/s/{site}/consent", consent.give_consent, methods=["POST"]),
        Route("/s/{site}/consent", consent.read_consent, methods=["GET"]),
        Route("/s/{site}/consent", consent.withdraw_consent, methods=["DELETE"]),
        Route("/s/{site}/privacy/me", privacy.export_my_data, methods=["GET"]),
        Route("/s/{site}/privacy/me", privacy.erase_my_data, methods=["DELETE"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
    ]
    middleware = [
        Middleware(AccessLogMiddleware, trusted_proxies=config.trusted_proxies, mode=config.access_log),
        Middleware(SiteCORSMiddleware, config=config),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.services = services
    return app
