"""SQL of the visitor's rights over stored rows: access (GDPR art. 15), erasure (art. 17), restriction (art. 18).

A visitor is one consent id. The tables that hold their rows, and the column naming them, come
from the schema (`analytics.schema.VISITOR_TABLES`), so a new table that holds visitor data is
erased once it is listed there. `hit_hours` holds no visitor id: deleting the visitor's `events`
changes the day's hit count, and analytics/visits.py rebuilds the day from the hits that remain;
marking the day unbuilt in `visit_days` makes the stats read the hits at once until then.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from analytics.store import Store


# The one definition of a restriction in force: a visitor's latest action in `restrictions` is `restrict`.
IN_FORCE = "argMax(action, timestamp) = 'restrict'"


def _restricted(key: str) -> str:
    """SQL of `key` (an expression of consent_id) for every visitor of {site:String} under a restriction in force.
    The table is small (one row per request)."""
    return f"SELECT {key} FROM {{db}}.restrictions WHERE site = {{site:String}} GROUP BY consent_id HAVING {IN_FORCE}"


# A restricted visitor's hits and visits are left out of every statistic: a condition on `visitor_hash`
# for queries that bind {site:String}.
NOT_RESTRICTED = f"visitor_hash NOT IN ({_restricted('sipHash64(consent_id)')})"
# The same for tables that name the visitor by `consent_id` (the consent log's decisions).
CONSENT_NOT_RESTRICTED = f"consent_id NOT IN ({_restricted('consent_id')})"


# The `method` of the withdrawal that logs an erasure, by who asked for it (gateway/privacy.py BY_VISITOR,
# BY_OPERATOR). Every gateway following the consent log acts on any of them (gateway/revocation_sync.py).
ERASURE_METHODS = {"visitor": "erase", "operator": "operator_erase"}


def is_erasure(method: str) -> bool:
    """Whether a consent-log withdrawal with this `method` records an erasure."""
    return method in ERASURE_METHODS.values()


def consent_hash(consent_id: str) -> str:
    """What the erasure log keeps of a consent id: its SHA-256, so an operator can later confirm that an
    id was erased (hash it again) without the log naming anyone."""
    return hashlib.sha256(consent_id.encode()).hexdigest()


def _where(column: str) -> str:
    value = "sipHash64({cid:String})" if column == "visitor_hash" else "{cid:String}"
    return f"site = {{site:String}} AND {column} = {value}"


def count_visitor_rows(store: Store, tables: Mapping[str, str], site: str, consent_id: str) -> dict[str, int]:
    """Rows per table that hold this visitor (`tables`: table -> the column naming the visitor)."""
    params = {"site": site, "cid": consent_id}
    return {table: int(store.query_value(f"SELECT count() FROM {{db}}.{table} WHERE {_where(column)}", params) or 0)
            for table, column in tables.items()}


def invalidate_visitor_days(store: Store, site: str, consent_id: str) -> None:
    """Forgets the built stats of every day the visitor has hits on: the stats read those days from the hits
    until the builder has rebuilt them (after an erasure or a restriction changes what they hold). The days
    are read now, while the visitor's hits still exist."""
    from analytics.visits import unbuild_days  # visits imports this module's restriction SQL

    days = [d for (d,) in store.query("SELECT DISTINCT toDate(timestamp) FROM {db}.events WHERE site = {site:String} "
                                      "AND visitor_id = {cid:String}", {"site": site, "cid": consent_id})]
    unbuild_days(store, site, days)


def delete_visitor_rows(store: Store, tables: Mapping[str, str], site: str, consent_id: str) -> dict[str, int]:
    """Deletes the visitor's rows from every table in `tables`, from disk too (purge); returns how many each held."""
    counts = count_visitor_rows(store, tables, site, consent_id)
    params = {"site": site, "cid": consent_id}
    invalidate_visitor_days(store, site, consent_id)
    store.delete([(table, _where(column), params) for table, column in tables.items() if counts[table]], purge=True)
    return counts


def export_visitor_rows(store: Store, tables: Mapping[str, tuple[str, str]], site: str, consent_id: str
                        ) -> dict[str, list[dict[str, Any]]]:
    """The visitor's rows, oldest first, per export section (`tables`: section -> (table, column naming the
    visitor)); the site column is left out (the export names the site once)."""
    params = {"site": site, "cid": consent_id}
    return {section: store.query_dicts(f"SELECT * EXCEPT (site) FROM {{db}}.{table} WHERE {_where(column)} "
                                       "ORDER BY timestamp", params)
            for section, (table, column) in tables.items()}


def restricted_consent_ids(store: Store) -> list[tuple[str, str]]:
    """(site, consent id) of every restriction in force: the latest action per visitor is `restrict`."""
    return [(str(site), str(cid)) for site, cid in store.query(
        f"SELECT site, consent_id FROM {{db}}.restrictions GROUP BY site, consent_id HAVING {IN_FORCE}")]


def restriction_changes_since(store: Store, since_ms: int) -> list[tuple[str, str, int]]:
    """(record id, consent id, ms) of every restriction or lift recorded from `since_ms` on, by any gateway."""
    return [(str(rid), str(cid), int(ms)) for rid, cid, ms in store.query(
        "SELECT toString(record_id), consent_id, toUnixTimestamp64Milli(timestamp) FROM {db}.restrictions "
        "WHERE timestamp >= fromUnixTimestamp64Milli({since:Int64})", {"since": since_ms})]


def restrictions_in_force(store: Store, consent_ids: list[str]) -> dict[str, bool]:
    """Whether each of these visitors is restricted now: their latest action, whichever gateway recorded it."""
    return {str(cid): bool(restricted) for cid, restricted in store.query(
        f"SELECT consent_id, {IN_FORCE} FROM {{db}}.restrictions WHERE consent_id IN {{ids:Array(String)}} "
        "GROUP BY consent_id", {"ids": consent_ids})}
