"""The visitor's own data: GET exports it (access, portability), DELETE erases it (erasure, objection).

The signed token proves whose data it is; an expired token or one of an older
policy still does, because rights outlive consent. Consent records themselves
are kept after erasure: they are the proof of consent the controller must be
able to show (GDPR art. 7(1), 17(3)(b)); the erasure is logged as a withdrawal.
"""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.consent import own_consent_id, record_withdrawal, set_consent_cookie, site_for
from gateway.errors import GatewayError
from gateway.services import Services

EXPORT_TABLES = {
    "events": "SELECT * EXCEPT (site) FROM {db}.events WHERE site = {site:String} AND visitor_id = {cid:String} ORDER BY timestamp",
    "consents": "SELECT * EXCEPT (site) FROM {db}.consents WHERE site = {site:String} AND consent_id = {cid:String} ORDER BY timestamp",
    "recipients": "SELECT * EXCEPT (site) FROM {db}.forwards WHERE site = {site:String} AND consent_id = {cid:String} ORDER BY timestamp",
}


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else str(v) if not isinstance(v, (int, float, str)) else v)
            for k, v in row.items()}


def _require_consent_id(request: Request, services: Services) -> tuple[Any, str]:
    site = site_for(request, services)
    consent_id = own_consent_id(request, services, site)
    if consent_id is None:
        raise GatewayError(401, "no_consent_token",
                           "send your consent token (cookie cg_consent or header X-Consent-Token) to reach your data")
    return site, consent_id


async def _flush_spool(services: Services) -> None:
    """Writes what is spooled now, so export and erasure also cover the last few seconds."""
    await asyncio.to_thread(services.writer.flush_pending)


async def export_my_data(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    site, consent_id = _require_consent_id(request, services)
    await _flush_spool(services)
    out: dict[str, Any] = {"site": site.name, "consent_id": consent_id}
    for name, sql in EXPORT_TABLES.items():
        rows = await asyncio.to_thread(services.store.query_dicts, sql, {"site": site.name, "cid": consent_id})
        out[name] = [_jsonable(r) for r in rows]
    return JSONResponse(out, headers={"Content-Disposition": f'attachment; filename="consentgate-{site.name}-{consent_id}.json"'})


async def erase_my_data(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    site, consent_id = _require_consent_id(request, services)
    record_withdrawal(services, request, site, consent_id, "erase")
    await _flush_spool(services)
    counts = {}
    for table, column in (("events", "visitor_id"), ("forwards", "consent_id")):
        params = {"site": site.name, "cid": consent_id}
        where = f"site = {{site:String}} AND {column} = {{cid:String}}"
        counts[table] = await asyncio.to_thread(services.store.query_value, f"SELECT count() FROM {{db}}.{table} WHERE {where}", params)
        await asyncio.to_thread(services.store.command, f"DELETE FROM {{db}}.{table} WHERE {where}", params)
    # the per-visit table of the stats (analytics/visits.py) knows the visitor by the hash of the id
    await asyncio.to_thread(services.store.command, "DELETE FROM {db}.visits WHERE site = {site:String} "
                            "AND visitor_hash = sipHash64({cid:String})", {"site": site.name, "cid": consent_id})
    response = JSONResponse({"erased": True, "consent_id": consent_id, "events": counts["events"],
                             "recipients": counts["forwards"], "kept": "consent records, as proof of consent"})
    set_consent_cookie(response, request, services, None)
    return response
