"""The OpenAPI 3.1 document of the stats API, built from the same tables the code validates with."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from analytics import stats
from gateway.stats_api import DEFAULT_DAYS, MAX_DAYS, MAX_HOURLY_DAYS, MAX_LIMIT

_FILTER_HELP = {
    "page": "only hits on this path, e.g. /pricing (visits that hold such a hit)",
    "event": "only custom events of this name",
    "country": "ISO country code, e.g. NL",
    "browser": "browser family, e.g. Firefox",
    "os": "operating system, e.g. iOS",
    "device": "desktop, mobile or tablet",
    "referrer_host": "visits that came from this host, e.g. google.com",
    "source": "visits of this channel: direct, search, social, email, paid, campaign, referral",
    "utm_source": "visits tagged with this utm_source",
    "utm_medium": "visits tagged with this utm_medium",
    "utm_campaign": "visits tagged with this utm_campaign",
}


def _param(name: str, description: str, schema: dict[str, Any], where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}


def _common() -> list[dict[str, Any]]:
    date_schema = {"type": "string", "format": "date"}
    return [
        _param("site", "site name from the gateway config", {"type": "string"}, "path"),
        _param("from", f"first day, in the site's timezone (default: {DEFAULT_DAYS - 1} days before 'to'; "
               f"at most {MAX_DAYS} days in a range)", date_schema),
        _param("to", "last day, included (default: today in the site's timezone)", date_schema),
        *(_param(name, _FILTER_HELP[name], {"type": "string"}) for name in stats.FILTERS),
    ]


def _ok(description: str, schema: dict[str, Any], csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {
        "200": {"description": description, "content": content},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": {"$ref": "#/components/responses/UnknownSite"},
    }


def _counts(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "integer"} for n in names}}


EXACT = {"exact": {"type": "boolean", "description": "false when a large range was answered from the per-visit and "
                                                   "per-hour tables (visitor counts within about 2 %); see docs/stats.md"}}


def _rows(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"results": {"type": "array", "items": item}, **EXACT}}


FORMAT = _param("format", "json (default) or csv; `Accept: text/csv` works too", {"type": "string", "enum": ["json", "csv"]})


def openapi_document() -> dict[str, Any]:
    metrics = {"type": "object", "properties": {
        **{n: {"type": "integer"} for n in ("visitors", "visits", "pageviews", "visit_duration")},
        "views_per_visit": {"type": "number"}, "bounce_rate": {"type": "number", "description": "percent"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "consentgate stats API", "version": "1",
                 "description": "Aggregated statistics of consented hits. Visits end after 30 minutes without a hit. "
                                "Dates are days in the site's timezone; both ends are included. See docs/stats.md."},
        "security": [{"statsToken": []}],
        "paths": {
            "/api/stats/sites": {"get": {"summary": "The sites this gateway serves", "parameters": [],
                                         "responses": _ok("sites", {"type": "object"})}},
            "/api/stats/{site}/summary": {"get": {
                "summary": "Visitors, visits, pageviews, views per visit, bounce rate, visit duration, "
                           "with the previous period of the same length and the change in percent",
                "parameters": _common(),
                "responses": _ok("totals", {"type": "object", "properties": {
                    "current": metrics, "previous": metrics, "change": {"type": "object"}, **EXACT}})}},
            "/api/stats/{site}/timeseries": {"get": {
                "summary": "Visitors and pageviews per bucket, zero-filled",
                "parameters": [*_common(), FORMAT, _param(
                    "interval", f"bucket size (hour for ranges up to {MAX_HOURLY_DAYS} days)",
                    {"type": "string", "enum": list(stats.INTERVALS), "default": "day"})],
                "responses": _ok("buckets", _rows(_counts("visitors", "pageviews") | {"bucket": {"type": "string"}}), True)}},
            "/api/stats/{site}/breakdown/{dimension}": {"get": {
                "summary": "Top values of a dimension by visitors",
                "parameters": [*_common(), FORMAT,
                               _param("dimension", "what to break down by", {"type": "string", "enum": list(stats.DIMENSIONS)}, "path"),
                               _param("limit", f"rows, 1 to {MAX_LIMIT}", {"type": "integer", "default": 10})],
                "responses": _ok("rows of value, visitors, pageviews (visits for visit dimensions, events for event)",
                                 _rows(_counts("visitors", "visits", "pageviews", "events") | {"value": {"type": "string"}}), True)}},
            "/api/stats/{site}/consent": {"get": {
                "summary": "Banner decisions per day and method, opt-in rate per category, withdrawals, "
                           "and how many deciding visitors refused analytics (the statistics cannot see them)",
                "parameters": [p for p in _common() if p["name"] in ("site", "from", "to")],
                "responses": _ok("consent statistics", {"type": "object"})}},
            "/api/stats/{site}/realtime": {"get": {
                "summary": "Visitors and pageviews in the last 5 minutes and their pages",
                "parameters": [p for p in _common() if p["name"] not in ("from", "to")],
                "responses": _ok("now", {"type": "object"})}},
        },
        "components": {
            "securitySchemes": {"statsToken": {"type": "http", "scheme": "bearer",
                                               "description": "one of the gateway's stats_tokens"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "detail"], "properties": {
                "error": {"type": "string"}, "detail": {"type": "string", "description": "what to do"}}}},
            "responses": {
                name: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                for name, text in (("BadRequest", "a bad parameter"), ("Unauthorized", "no or a wrong stats token"),
                                   ("UnknownSite", "no such site"))},
        },
    }


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())
