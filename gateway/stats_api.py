"""`/api/stats/...`: aggregated statistics for marketing, as JSON or CSV.

Every route checks the stats token first, then parses and validates the query string
(a bad parameter is a 400 that says what to send), then runs its ClickHouse queries
in a worker thread (chDB releases the GIL while it works).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from analytics import stats
from analytics.visits import VisitBuilder
from gateway.config import SiteConfig
from gateway.errors import bad_request, unknown_site
from gateway.services import Services
from gateway.stats_auth import require_stats_access

DEFAULT_DAYS = 30
MAX_DAYS = 800
MAX_HOURLY_DAYS = 31
MAX_LIMIT = 1000
MAX_FILTER_LENGTH = 512
COMMON_PARAMS = ("from", "to", "format", *stats.FILTERS)
NO_STORE = {"Cache-Control": "no-store"}


def _services(request: Request) -> Services:
    """The gateway's services, once the caller's token may read the site of the path (401/403/404/429)."""
    services: Services = request.app.state.services
    require_stats_access(services.config, request, request.path_params.get("site"))
    VisitBuilder.ensure(services.store)  # keeps the per-visit table of large ranges up to date
    return services


def _site(request: Request, services: Services) -> SiteConfig:
    name = request.path_params["site"]
    site = services.config.sites.get(name)
    if site is None:
        raise unknown_site(name)
    return site


def _date(value: str, key: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise bad_request(f"'{key}' must be a date like 2026-11-01 (YYYY-MM-DD), got {value[:40]!r}") from None


def _check_params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise bad_request(f"unknown parameter {key[:40]!r}: use {', '.join(allowed)}")
        if key in params:
            raise bad_request(f"parameter {key!r} is given twice: give it once")
        params[key] = value
    return params


def stats_query(request: Request, site: SiteConfig, extra: tuple[str, ...] = ()) -> tuple[stats.StatsQuery, dict[str, str]]:
    """The site, range and filters of a request; the other accepted parameters are returned as given."""
    params = _check_params(request, COMMON_PARAMS + extra)
    today = datetime.now(ZoneInfo(site.timezone)).date()
    end = _date(params["to"], "to") if "to" in params else today
    start = _date(params["from"], "from") if "from" in params else end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise bad_request(f"'from' ({start}) is after 'to' ({end}): swap them")
    if (end - start).days + 1 > MAX_DAYS:
        raise bad_request(f"the range is longer than {MAX_DAYS} days: pick a shorter one")
    filters: dict[str, str] = {}
    for key in stats.FILTERS:
        if key in params:
            value = params[key]
            if len(value) > MAX_FILTER_LENGTH:
                raise bad_request(f"filter {key!r} is longer than {MAX_FILTER_LENGTH} characters")
            filters[key] = value
    return stats.StatsQuery(site.name, start, end, site.timezone, filters), params


def _wants_csv(request: Request, params: dict[str, str]) -> bool:
    fmt = params.get("format", "")
    if fmt and fmt not in ("json", "csv"):
        raise bad_request(f"'format' must be json or csv, got {fmt[:20]!r}")
    if fmt:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return accept.split(",")[0].split(";")[0].strip().lower() == "text/csv"


def _refuse_csv(request: Request, params: dict[str, str]) -> None:
    if _wants_csv(request, params):
        raise bad_request("CSV is available for timeseries and breakdown; ask this one as JSON")


def _cell(value: Any) -> Any:
    # Values come from visitors (paths, referrers, UTM tags): a leading =, +, - or @ would
    # run as a formula in a spreadsheet, so such a cell starts with a quote.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_response(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c, "")) for c in columns])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{filename}"'})


def _envelope(q: stats.StatsQuery, **data: Any) -> JSONResponse:
    return JSONResponse({"site": q.site, "from": str(q.start), "to": str(q.end), "timezone": q.tz,
                         "filters": q.filters, **data}, headers=NO_STORE)


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)


async def list_sites(request: Request) -> JSONResponse:
    """The sites the caller's token may read (a site token: only its own)."""
    services: Services = request.app.state.services
    access = require_stats_access(services.config, request)
    _check_params(request, ())
    sites = [s for s in services.config.sites.values() if access.can_read(s.name)]
    return JSONResponse({"sites": [{"name": s.name, "timezone": s.timezone} for s in sites]}, headers=NO_STORE)


async def summary(request: Request) -> JSONResponse:
    services = _services(request)
    q, params = stats_query(request, _site(request, services))
    _refuse_csv(request, params)
    result = await _run(stats.summary, services.store, q)
    previous = q.previous()
    return _envelope(q, previous_period={"from": str(previous.start), "to": str(previous.end)}, **result)


async def timeseries(request: Request) -> Response:
    services = _services(request)
    q, params = stats_query(request, _site(request, services), ("interval",))
    interval = params.get("interval", "day")
    if interval not in stats.INTERVALS:
        raise bad_request(f"'interval' must be one of {', '.join(stats.INTERVALS)}, got {interval[:20]!r}")
    if interval == "hour" and q.days > MAX_HOURLY_DAYS:
        raise bad_request(f"hourly buckets cover at most {MAX_HOURLY_DAYS} days: use interval=day or a shorter range")
    csv_wanted = _wants_csv(request, params)
    how = await _run(stats.plan, services.store, q)
    rows = await _run(stats.timeseries, services.store, q, interval, how)
    if csv_wanted:
        return csv_response(rows, ["bucket", "visitors", "pageviews"], f"{q.site}-timeseries-{q.start}-{q.end}.csv")
    return _envelope(q, interval=interval, exact=how.exact, results=rows)


async def breakdown(request: Request) -> Response:
    services = _services(request)
    site = _site(request, services)
    dimension = request.path_params["dimension"]
    if dimension not in stats.DIMENSIONS:
        raise bad_request(f"unknown dimension {dimension[:40]!r}: use one of {', '.join(stats.DIMENSIONS)}")
    q, params = stats_query(request, site, ("limit",))
    raw_limit = params.get("limit", "10")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise bad_request(f"'limit' must be a whole number from 1 to {MAX_LIMIT}, got {raw_limit[:20]!r}")
    csv_wanted = _wants_csv(request, params)
    how = await _run(stats.plan, services.store, q)
    rows = await _run(stats.breakdown, services.store, q, dimension, int(raw_limit), how)
    if csv_wanted:
        return csv_response(rows, stats.breakdown_columns(dimension), f"{q.site}-{dimension}-{q.start}-{q.end}.csv")
    return _envelope(q, dimension=dimension, exact=how.exact, results=rows)


async def consent(request: Request) -> JSONResponse:
    services = _services(request)
    q, params = stats_query(request, _site(request, services))
    _refuse_csv(request, params)
    if q.filters:
        raise bad_request(f"consent statistics cannot be filtered (by {', '.join(q.filters)}): decisions are not "
                          "hits; remove the filter")
    return _envelope(q, **await _run(stats.consent, services.store, q))


async def realtime(request: Request) -> JSONResponse:
    services = _services(request)
    q, params = stats_query(request, _site(request, services))
    _refuse_csv(request, params)
    if q.visit_filters:
        raise bad_request(f"realtime cannot be filtered by {', '.join(q.visit_filters)}: use "
                          f"{', '.join(stats.HIT_FILTERS)}")
    return _envelope(q, **await _run(stats.realtime, services.store, q))
