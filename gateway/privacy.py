"""The visitor's rights over their own data: access and portability (export), erasure, restriction.

The routes under /s/{site}/privacy/me answer only to a token that would be accepted at collect time
(valid, of this site and policy, not revoked), or to the token of the visitor's own withdrawal
(`DELETE /s/{site}/consent` returns one): an old token sits in localStorage, readable by every script
on the page, and must not read what the visitor did since. The same work is open to the operator
through the admin API (gateway/admin_api.py) for requests that arrive by e-mail.

Consent records are kept after an erasure: they are the proof of consent the controller must be able
to show (GDPR art. 7(1), 17(3)(b)); the erasure is logged as a withdrawal, and in `erasures` (who
asked, how many rows, a hash of the consent id; never the data).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from analytics.records import ErasureRecord, RestrictionRecord
from analytics.spool import blank_matching_lines
from analytics.erasure import (ERASURE_METHODS, consent_hash, delete_visitor_rows, export_visitor_rows,
                              invalidate_visitor_days)
from analytics.schema import TABLES, VISITOR_TABLES
from gateway.config import SiteConfig
from gateway.consent import current_token, record_withdrawal, refuse_when_spool_full, set_consent_cookie, site_for
from gateway.errors import GatewayError
from gateway.ratelimit import limit_consent_rate
from gateway.services import Services

log = logging.getLogger("consentgate.privacy")

# The sections of a visitor's export: their hits, the visits the statistics built from them, their decisions
# (kept after an erasure, as proof), who received their hits, and their restrictions; each a table and the
# column naming the visitor.
EXPORT_TABLES = {
    "events": ("events", VISITOR_TABLES["events"]),
    "visits": ("visits", VISITOR_TABLES["visits"]),
    "consents": ("consents", "consent_id"),
    "recipients": ("forwards", VISITOR_TABLES["forwards"]),
    "restrictions": ("restrictions", VISITOR_TABLES["restrictions"]),
}
# Spooled record kinds that name a visitor, and so leave the spool on erasure; `consent` records stay (proof).
ERASED_KINDS = frozenset({"event", "forward", "restriction"})
BY_VISITOR, BY_OPERATOR = "visitor", "operator"  # the keys of analytics.erasure.ERASURE_METHODS


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v if isinstance(v, (int, float, str, dict, list))
                else str(v)) for k, v in row.items()}


def _visitor(request: Request, services: Services) -> tuple[SiteConfig, str]:
    """The site and the consent id of a token valid now; 401 saying what to do otherwise."""
    site = site_for(request, services)
    token = current_token(request, services, site)
    if token is None:
        raise GatewayError(401, "no_valid_consent_token",
                           "send your current consent token (cookie cg_consent or header X-Consent-Token), or the one "
                           "your withdrawal returned; a withdrawn, expired or erased token no longer reaches any data")
    return site, token.consent_id


async def export_visitor(services: Services, site: SiteConfig, consent_id: str) -> dict[str, Any]:
    """Everything stored about one visitor, as JSON-ready lists per table (flushes the spool first, so
    the last seconds are included)."""
    await asyncio.to_thread(services.writer.flush_pending)
    out: dict[str, Any] = {"site": site.name, "consent_id": consent_id,
                           "restricted": services.restrictions.is_restricted(consent_id)}
    sections = await asyncio.to_thread(export_visitor_rows, services.store, EXPORT_TABLES, site.name, consent_id)
    return out | {name: [_jsonable(r) for r in rows] for name, rows in sections.items()}


def _erase_stored_and_queued(services: Services, site: str, consent_id: str) -> dict[str, int]:
    """Blanks the visitor's lines in the spool and in every vendor outbox, then deletes their rows, while
    the batch writer holds still (no batch in flight that could bring a line back)."""
    def is_visitors(record: dict[str, Any]) -> bool:
        return (record.get("kind") in ERASED_KINDS and record.get("site") == site
                and consent_id in (record.get("visitor_id"), record.get("consent_id")))

    def is_delivery(record: dict[str, Any]) -> bool:
        return record.get("site") == site and record.get("consent_id") == consent_id

    outboxes = services.forwarder.outboxes.values() if services.forwarder is not None else ()
    with services.writer.paused():
        # What is spooled but not yet stored counts with its table (the rest of the spool is in the store).
        queued = Counter(r["kind"] for r in services.writer.reader.pending() if is_visitors(r))
        services.spool.erase(is_visitors)
        outbox_lines = sum(outbox.writer.erase(is_delivery) for outbox in outboxes)
        if services.forwarder is not None:  # and the outboxes of vendors no longer configured
            outbox_lines += sum(blank_matching_lines(folder, is_delivery, services.commit.durable)
                                for folder in services.forwarder.orphaned_outboxes())
        stored = delete_visitor_rows(services.store, VISITOR_TABLES, site, consent_id)
    # Per table: the rows it held plus the lines on their way to it; and the deliveries still queued.
    counts = dict(stored)
    for kind, n in queued.items():
        counts[TABLES[kind][0]] += n
    counts["outbox_lines"] = outbox_lines
    return counts


async def erase_visitor(services: Services, request: Request, site: SiteConfig, consent_id: str,
                        by: str) -> dict[str, int]:
    """Erases one visitor everywhere and logs it; returns what was removed, per table and file kind.

    Order: the store must answer first (a 503 then changes nothing); the withdrawal revokes every token
    of the id, so no new hit of theirs is stored or queued; then spool, outboxes and tables."""
    refuse_when_spool_full(services)
    await asyncio.to_thread(services.store.query_value, "SELECT 1")
    await record_withdrawal(services, request, site, consent_id, ERASURE_METHODS[by])
    services.restrictions.forget(consent_id)  # deliveries in a worker's memory: not sent, not recorded
    counts = await asyncio.to_thread(_erase_stored_and_queued, services, site.name, consent_id)
    ticket = services.spool.append(ErasureRecord(record_id=str(uuid.uuid4()), site=site.name,
                                                 timestamp=round(time.time(), 3), consent_hash=consent_hash(consent_id),
                                                 erased_by=by, rows=counts))
    await services.commit.wait(ticket)
    log.info("erased a visitor of site %s at the request of the %s: %s", site.name, by, counts)
    return counts


async def set_restriction(services: Services, site: SiteConfig, consent_id: str, restrict: bool, by: str) -> None:
    """Restricts (art. 18) or lifts: recorded durably, in force at once. The visitor's days are dropped
    from the prebuilt stats, so every statistic reads them from the hits, without the visitor, until
    rebuilt.

    Order: the restriction is in the store before the days are marked unbuilt, between two builds. The builder
    reads the restrictions when it builds a day and rebuilds a closed day only when its hit count changes: a
    build that read the hits before the restriction would otherwise write the visitor's hours again, for good."""
    refuse_when_spool_full(services)
    await asyncio.to_thread(services.store.query_value, "SELECT 1")  # a store that is down: 503, nothing recorded
    ticket = services.spool.append(RestrictionRecord(record_id=str(uuid.uuid4()), site=site.name,
                                                     timestamp=round(time.time(), 3), consent_id=consent_id,
                                                     action="restrict" if restrict else "lift", requested_by=by))
    if restrict:
        services.restrictions.restrict(consent_id)
    else:
        services.restrictions.lift(consent_id)
    await services.commit.wait(ticket)
    await asyncio.to_thread(services.writer.flush_pending)  # the stats' SQL and the builder read it from the store
    drop = functools.partial(invalidate_visitor_days, services.store, site.name, consent_id)
    if services.visits is not None:
        await asyncio.to_thread(services.visits.between_builds, drop)
    else:
        await asyncio.to_thread(drop)


async def export_my_data(request: Request) -> JSONResponse:
    # Limited like the decisions: each export flushes the spool and scans four tables for the visitor.
    limit_consent_rate(request)
    services: Services = request.app.state.services
    site, consent_id = _visitor(request, services)
    out = await export_visitor(services, site, consent_id)
    return JSONResponse(out, headers={"Content-Disposition": f'attachment; filename="consentgate-{site.name}-{consent_id}.json"',
                                      "Cache-Control": "no-store"})


async def erase_my_data(request: Request) -> JSONResponse:
    limit_consent_rate(request)  # 429 past [gateway] consent_rate_per_minute for the client's network
    services: Services = request.app.state.services
    site, consent_id = _visitor(request, services)
    counts = await erase_visitor(services, request, site, consent_id, BY_VISITOR)
    response = JSONResponse({"erased": True, "consent_id": consent_id, "events": counts["events"],
                             "recipients": counts["forwards"], "removed": counts,
                             "kept": "consent records, as proof of consent"})
    set_consent_cookie(response, request, services, None)
    return response


async def restrict_my_data(request: Request) -> JSONResponse:
    limit_consent_rate(request)  # each call scans the visitor's days and deletes prebuilt stats
    services: Services = request.app.state.services
    site, consent_id = _visitor(request, services)
    await set_restriction(services, site, consent_id, True, BY_VISITOR)
    return JSONResponse({"restricted": True, "consent_id": consent_id})


async def lift_my_restriction(request: Request) -> JSONResponse:
    limit_consent_rate(request)  # each call scans the visitor's days and deletes prebuilt stats
    services: Services = request.app.state.services
    site, consent_id = _visitor(request, services)
    await set_restriction(services, site, consent_id, False, BY_VISITOR)
    return JSONResponse({"restricted": False, "consent_id": consent_id})
