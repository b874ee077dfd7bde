"""The Starlette application: every route and middleware wired in one place."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import admin_api, consent, consents_api, cookies, ops, privacy, share_api, stats_api
from gateway.banner_script import banner_script
from gateway.collect.endpoint import CollectLane, collect_site
from gateway.config import GatewayConfig
from gateway.dashboard import routes as dashboard
from gateway.errors import EXCEPTION_HANDLERS
from gateway.looplag import LoopLagMonitor
from gateway.middleware.accesslog import AccessLogMiddleware
from gateway.middleware.cors import SiteCORSMiddleware
from gateway.openapi import openapi_json, public_openapi_json
from gateway.reports import api as report_api
from gateway.ratelimit import NetworkLimiter
from gateway.services import Services, build_services
from gateway.stats_auth import TokenAuth


class GatewayApp(Starlette):
    """Starlette, with `POST /s/{site}/collect` (most requests) answered before the middleware stack:
    the collect lane does its own CORS, errors and access log (gateway/collect/endpoint.py)."""

    collect_lane: CollectLane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            site = collect_site(scope["path"])
            if site is not None:
                scope["app"] = self
                await self.collect_lane(scope, receive, send, site)
                return
        await super().__call__(scope, receive, send)


class CollectRoute:
    """The collect route inside the router (an ASGI app: Route passes it the raw scope)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["app"].collect_lane(scope, receive, send, scope["path_params"]["site"])


def create_app(config: GatewayConfig, services: Services | None = None) -> GatewayApp:
    services = services or build_services(config)

    loop_lag = LoopLagMonitor(services.metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.start()
        watching = asyncio.create_task(loop_lag.run())
        try:
            yield
        finally:
            watching.cancel()
            # uvicorn has stopped taking requests and finished the open ones: write out the spool.
            services.stop()

    routes = [
        # Answered by the fast lane before the middleware (GatewayApp); routed here too for other mountings.
        Route("/s/{site}/collect", CollectRoute(), methods=["POST"]),
        Route("/s/{site}/banner.js", banner_script, methods=["GET"]),
        Route("/s/{site}/consent", consent.give_consent, methods=["POST"]),
        Route("/s/{site}/consent", consent.read_consent, methods=["GET"]),
        Route("/s/{site}/consent", consent.withdraw_consent, methods=["DELETE"]),
        Route("/s/{site}/privacy/me", privacy.export_my_data, methods=["GET"]),
        Route("/s/{site}/privacy/me", privacy.erase_my_data, methods=["DELETE"]),
        Route("/s/{site}/privacy/me/restrict", privacy.restrict_my_data, methods=["POST"]),
        Route("/s/{site}/privacy/me/restrict", privacy.lift_my_restriction, methods=["DELETE"]),
        Route("/s/{site}/cookies", cookies.declaration_page, methods=["GET"]),
        Route("/s/{site}/cookies.json", cookies.declaration_json, methods=["GET"]),
        Route("/s/{site}/cookies.js", cookies.declaration_script, methods=["GET"]),
        Route("/s/{site}/cookies-page.js", cookies.page_script, methods=["GET"]),
        Route("/api/admin/{site}/visitors/{consent_id}", admin_api.export_visitor_data, methods=["GET"]),
        Route("/api/admin/{site}/visitors/{consent_id}", admin_api.erase_visitor_data, methods=["DELETE"]),
        Route("/api/admin/{site}/visitors/{consent_id}/restriction", admin_api.restrict_visitor, methods=["POST"]),
        Route("/api/admin/{site}/visitors/{consent_id}/restriction", admin_api.lift_restriction, methods=["DELETE"]),
        Route("/api/admin/backup", admin_api.backup_store, methods=["GET"]),
        Route("/api/admin/{site}/reports/send", report_api.send_now, methods=["POST"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route("/openapi.json", public_openapi_json, methods=["GET"]),  # every public route
        Route("/api/stats/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/stats/sites", stats_api.list_sites, methods=["GET"]),
        Route("/api/stats/{site}/summary", stats_api.summary, methods=["GET"]),
        Route("/api/stats/{site}/timeseries", stats_api.timeseries, methods=["GET"]),
        Route("/api/stats/{site}/breakdown/{dimension}", stats_api.breakdown, methods=["GET"]),
        Route("/api/stats/{site}/consent", stats_api.consent, methods=["GET"]),
        Route("/api/stats/{site}/realtime", stats_api.realtime, methods=["GET"]),
        Route("/api/stats/{site}/goals", stats_api.list_goals, methods=["GET"]),
        Route("/api/stats/{site}/goals", stats_api.create_goal, methods=["POST"]),
        Route("/api/stats/{site}/goals/{goal_id}", stats_api.delete_goal, methods=["DELETE"]),
        Route("/api/stats/{site}/goals/{goal_id}/timeseries", stats_api.goal_timeseries, methods=["GET"]),
        Route("/api/stats/{site}/goals/{goal_id}/breakdown/{dimension}", stats_api.goal_breakdown, methods=["GET"]),
        Route("/api/stats/{site}/conversions", stats_api.conversions, methods=["GET"]),
        Route("/api/stats/{site}/funnels", stats_api.list_funnels, methods=["GET"]),
        Route("/api/stats/{site}/funnels", stats_api.create_funnel, methods=["POST"]),
        Route("/api/stats/{site}/funnels/{funnel_id}", stats_api.funnel_report, methods=["GET"]),
        Route("/api/stats/{site}/funnels/{funnel_id}", stats_api.delete_funnel, methods=["DELETE"]),
        Route("/api/stats/{site}/shared-links", share_api.list_links, methods=["GET"]),
        Route("/api/stats/{site}/shared-links", share_api.create_link, methods=["POST"]),
        Route("/api/stats/{site}/shared-links/{link_id}", share_api.revoke_link, methods=["DELETE"]),
        Route("/share/{secret}", share_api.open_shared_link, methods=["GET"]),
        Route("/share/{secret}", share_api.unlock_shared_link, methods=["POST"]),
        Route("/api/consents/{site}", consents_api.export_consents, methods=["GET"]),
        Route("/dashboard", dashboard.dashboard, methods=["GET"]),
        Route("/dashboard/login", dashboard.login, methods=["POST"]),
        Route("/dashboard/logout", dashboard.logout, methods=["POST"]),
        Route("/dashboard/assets/{name}", dashboard.asset, methods=["GET"]),
    ]
    middleware = [
        Middleware(AccessLogMiddleware, trusted_proxies=config.trusted_proxies, mode=config.access_log),
        Middleware(SiteCORSMiddleware, config=config),
    ]
    app = GatewayApp(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.collect_lane = CollectLane(services)
    app.state.services = services
    app.state.token_auth = TokenAuth(config)  # stats/metrics tokens, dashboard sessions, failed-check limit
    app.state.consent_rate = NetworkLimiter(config.consent_rate_per_minute)  # consent, withdraw, erase
    return app
