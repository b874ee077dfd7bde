"""`GET /api/consents/{site}`: the auditor export of every consent decision and the wording it was made on.

Stats-token auth, site-scoped. `from`/`to` are UTC days (inclusive); `format` json (default) or csv.
The answer is streamed: decisions leave the store block by block (analytics/consent_log.py), so the
gateway's memory does not grow with the range. JSON names each banner version once, under
`banner_versions`; CSV repeats the wording on each row, so any row stands alone in a spreadsheet.
In both, a version's `shown` object is what was hashed: sha256 of its canonical JSON (sorted keys,
no spaces, UTF-8), first 32 hex digits, is the decision's `banner_version`.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from analytics.consent_log import DECISION_COLUMNS, ShownVersion, banner_versions, decisions
from analytics.store import Store
from gateway.errors import bad_request, unknown_site
from gateway.services import Services
from gateway.stats_api import NO_STORE, _cell, _check_params, _date, _wants_csv
from gateway.stats_auth import require_stats_access

PARAMS = ("from", "to", "format")
ROWS_PER_CHUNK = 2000  # decisions per write: few syscalls, little memory
FLAGS = ("preferences", "analytics", "marketing", "gpc")
CSV_COLUMNS = (*DECISION_COLUMNS, "banner_language", "wording")
EARLIEST, LATEST = date(2000, 1, 1), date(2199, 12, 31)  # what ClickHouse's DateTime64 and this product can hold


def _iso(value: datetime) -> str:
    # The store returns naive UTC datetimes.
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _decision(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(DECISION_COLUMNS, row))
    out["timestamp"] = _iso(out["timestamp"])
    for flag in FLAGS:
        out[flag] = bool(out[flag])
    return out


def _version_json(version: ShownVersion) -> dict[str, Any]:
    return {"language": version.language, "first_seen": _iso(version.first_seen), "shown": version.shown}


def json_body(site: str, start: date, end: date, versions: dict[str, ShownVersion],
              rows: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    """{"site", "from", "to", "banner_versions": {hash: {...}}, "decisions": [...], "count"}, in chunks."""
    head = {"site": site, "from": start.isoformat(), "to": end.isoformat(),
            "banner_versions": {h: _version_json(v) for h, v in versions.items()}}
    yield orjson.dumps(head)[:-1] + b',"decisions":['
    count = 0
    lead = b"\n"  # before the first decision; between chunks, a comma
    chunk: list[bytes] = []
    for row in rows:
        chunk.append(orjson.dumps(_decision(row)))
        count += 1
        if len(chunk) == ROWS_PER_CHUNK:
            yield lead + b",\n".join(chunk)
            lead, chunk = b",\n", []
    if chunk:
        yield lead + b",\n".join(chunk)
    # The count closes the document: a cut-off download is invalid JSON, never a shorter valid log.
    yield b'\n],"count":' + str(count).encode() + b"}\n"


def csv_body(versions: dict[str, ShownVersion], rows: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    """One row per decision, each with the wording of its banner version (empty when unknown)."""
    wording = {h: json.dumps(v.shown, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
               for h, v in versions.items()}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for n, row in enumerate(rows, 1):
        d = _decision(row)
        version = versions.get(d["banner_version"])
        writer.writerow([_cell(int(d[c]) if c in FLAGS else d[c]) for c in DECISION_COLUMNS]
                        + [version.language if version else "", wording.get(d["banner_version"], "")])
        if n % ROWS_PER_CHUNK == 0:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode("utf-8")


def _range(params: dict[str, str], keep_days: int) -> tuple[date, date]:
    end = _date(params["to"], "to") if "to" in params else datetime.now(timezone.utc).date()
    if not EARLIEST <= end <= LATEST:
        raise bad_request(f"'to' must be a day between {EARLIEST} and {LATEST}, got {end}")
    start = _date(params["from"], "from") if "from" in params else end - timedelta(days=min(keep_days, (end - EARLIEST).days))
    if start > end:
        raise bad_request(f"'from' ({start}) is after 'to' ({end}): swap them")
    return max(start, EARLIEST), end


def _utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


async def export_consents(request: Request) -> StreamingResponse:
    services: Services = request.app.state.services
    name = request.path_params["site"]
    await require_stats_access(services.config, request, name)
    if name not in services.config.sites:
        raise unknown_site(name)
    params = _check_params(request, PARAMS)
    as_csv = _wants_csv(request, params)
    start, end = _range(params, services.config.consent_retention_days)
    lo, hi = _utc(start), _utc(end + timedelta(days=1))
    store: Store = services.store
    # The versions first: small, and a store that is down answers 503 here, before any byte is sent.
    versions = await run_in_threadpool(banner_versions, store, name, lo, hi)
    rows = decisions(store, name, lo, hi)
    filename = f"consents-{name}-{start}-{end}.{'csv' if as_csv else 'json'}"
    headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="{filename}"'}
    if as_csv:
        return StreamingResponse(csv_body(versions, rows), media_type="text/csv; charset=utf-8", headers=headers)
    return StreamingResponse(json_body(name, start, end, versions, rows), media_type="application/json",
                             headers=headers)
