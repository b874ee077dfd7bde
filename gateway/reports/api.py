"""`POST /api/admin/{site}/reports/send`: one report now, to the given addresses (`consentgate report send`).

An admin token (`[gateway] admin_tokens`), not a stats token: it makes the gateway send e-mail to any
address. The period is the last closed week or month in the site's timezone.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from analytics.report import PERIODS, last_closed_period
from gateway.sites import site_named
from gateway.admin_api import _admin_services
from gateway.bodies import read_json_object
from gateway.config import is_email
from gateway.errors import GatewayError, bad_request
from gateway.mailer import MailError
from gateway.reports.send import send_report

MAX_RECIPIENTS = 20


async def send_now(request: Request) -> JSONResponse:
    services = _admin_services(request)
    site = site_named(services.config, request.path_params["site"])
    body = await read_json_object(request, 8192)
    unknown = sorted(set(body) - {"to", "period"})
    if unknown:
        raise bad_request(f"unknown field {unknown[0][:40]!r}: send to (a list of addresses) and period")
    to = body.get("to")
    wanted = f"'to' must be a list of 1 to {MAX_RECIPIENTS} e-mail addresses like [\"marketing@example.com\"]"
    if not isinstance(to, list) or not 1 <= len(to) <= MAX_RECIPIENTS:
        raise bad_request(wanted)
    for i, address in enumerate(to):
        if not (isinstance(address, str) and is_email(address)):  # named, escaped and cut: the caller finds it
            raise bad_request(f"{wanted}; to[{i}] is not one: {str(address)[:80]!r}")
    period = body.get("period", "week")
    if period not in PERIODS:
        raise bad_request(f"'period' must be one of {', '.join(PERIODS)}, got {str(period)[:20]!r}")
    if services.config.reports is None:
        raise GatewayError(409, "reports_off", "this gateway sends no e-mail: add a [reports] table with smtp_host "
                           "and from to its config, then restart it")
    start, end = last_closed_period(period, datetime.now(ZoneInfo(site.timezone)).date())
    try:
        await run_in_threadpool(send_report, services.config, services.store, site, period, start, end, to)
    except MailError as exc:
        raise GatewayError(503, "mail_failed", str(exc), {"Retry-After": "60"}) from None
    return JSONResponse({"sent": True, "site": site.name, "period": period, "from": str(start), "to": str(end),
                         "recipients": to}, headers={"Cache-Control": "no-store"})
