"""The consent log for auditors: every decision of a site in a time range, and the banner wording
each one was made on (GDPR art. 7(1): the controller must be able to show what was consented to).

Decisions are read as a stream of row blocks (clickhouse-connect's `query_row_block_stream`, which
chDB streams too), in the table's own order (site, timestamp, consent_id), so a year of a large
site leaves the gateway block by block instead of being loaded into memory.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from analytics.store import Store

# One exported decision, in this order (CSV columns, JSON keys). `action` is grant or withdraw; a refusal
# is a grant of nothing (method reject_all), a GPC signal method gpc.
DECISION_COLUMNS: tuple[str, ...] = (
    "timestamp", "consent_id", "action", "method", "preferences", "analytics", "marketing", "gpc",
    "policy_version", "language", "page", "banner_version",
)
_RANGE = "site = {site:String} AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}"
DECISIONS_SQL = f"SELECT {', '.join(DECISION_COLUMNS)} FROM {{db}}.consents WHERE {_RANGE} ORDER BY timestamp, consent_id"
# Only the versions the range names; rows of one (site, hash) not merged yet are folded here.
VERSIONS_SQL = (
    "SELECT hash, any(language), any(content), min(first_seen) FROM {db}.banner_versions "
    "WHERE site = {site:String} AND hash IN (SELECT DISTINCT banner_version FROM {db}.consents WHERE "
    + _RANGE + ") GROUP BY hash ORDER BY hash"
)


@dataclass(frozen=True)
class ShownVersion:
    """What a banner version showed: `shown` is the JSON object whose hash the version is."""

    hash: str
    language: str
    shown: dict[str, Any]
    first_seen: datetime


def banner_versions(store: Store, site: str, start: datetime, end: datetime) -> dict[str, ShownVersion]:
    """The wording of every banner version named by a decision of the site in [start, end)."""
    rows = store.query(VERSIONS_SQL, {"site": site, "start": start, "end": end})
    return {h: ShownVersion(h, language, json.loads(content), first_seen) for h, language, content, first_seen in rows}


def decisions(store: Store, site: str, start: datetime, end: datetime) -> Iterator[tuple[Any, ...]]:
    """Every decision of the site in [start, end), oldest first, as tuples in DECISION_COLUMNS order."""
    sql = DECISIONS_SQL.replace("{db}.", f"{store.db}.")
    with store.client.query_row_block_stream(sql, parameters={"site": site, "start": start, "end": end}) as stream:
        for block in stream:
            yield from block


# The last two decisions of each consent id (all the revocation rule needs: is the latest the id's first?).
_HISTORY_SQL = (
    "SELECT consent_id, arraySlice(arraySort(groupArray((toUnixTimestamp64Milli(timestamp), action, "
    "toString(record_id)))), -2) FROM {db}.consents "
    "WHERE timestamp > now() - INTERVAL {days:UInt32} DAY AND (%s) GROUP BY consent_id %s"
)


def decision_histories(store: Store, days: int, consent_ids: list[str] | None = None, revoking_only: bool = False
                       ) -> dict[str, list[tuple[int, str, str]]]:
    """Per consent id of the last `days`, its last two decisions as (ms, action, record id): of the ids in
    `consent_ids`, or (`revoking_only`) of every id whose history can revoke a token (more than one
    decision, or a withdrawal)."""
    where = "consent_id IN {ids:Array(String)}" if consent_ids is not None else "1"
    having = "HAVING count() > 1 OR has(groupArray(action), 'withdraw')" if revoking_only else ""
    rows = store.query(_HISTORY_SQL % (where, having), {"days": days, "ids": consent_ids or []})
    return {cid: [(int(ms), action, rid) for ms, action, rid in history] for cid, history in rows}


def decisions_since(store: Store, since_ms: int) -> list[tuple[str, str, str, int, str, str]]:
    """Every decision recorded from `since_ms` on, by any gateway: (record id, site, consent id, ms, action,
    method)."""
    return [(str(rid), str(site), str(cid), int(ms), str(action), str(method)) for rid, site, cid, ms, action, method
            in store.query("SELECT toString(record_id), site, consent_id, toUnixTimestamp64Milli(timestamp), action, "
                           "method FROM {db}.consents WHERE timestamp >= fromUnixTimestamp64Milli({since:Int64})",
                           {"since": since_ms})]
