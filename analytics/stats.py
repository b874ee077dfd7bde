"""Aggregated usage statistics of the consented hits, computed by ClickHouse.

Every number is one SQL aggregate over `events` (or `consents`), site-first so the
primary key narrows the scan. Python only builds the SQL, zero-fills time buckets
and rounds ratios.

Definitions (also in docs/stats.md):
- a visit is a run of one visitor's hits with no gap over 30 minutes, inside the range;
- visitors = distinct `visitor_id` (counted by its 64-bit hash `visitor_hash`: exact unless two ids
  collide, odds below 1e-7 at a million visitors); bounce = a visit with at most one pageview;
  visit duration = last hit - first hit of a visit, averaged over visits;
- hit filters (page, event name, country, browser, os, device) keep the visits that hold
  a matching hit and count only matching pageviews; visit filters (referrer_host, source,
  utm_*) look at the visit's first hit, where the gateway records referrer and UTM tags.

Large ranges (StatsQuery.exact_below hits or more) are answered faster and nearly exactly: visits come
from the per-visit table (analytics/visits.py: closed days prebuilt, the last hours live), a
visit that crosses the range's first or last midnight counts whole on the day it started, and
distinct visitors are counted with a sketch (visits.SKETCH: exact up to hundreds, then about
1.6 % off), and hit breakdowns and timeseries merge hourly rollups (hit_hours). With filters, each
visit's hits come from its row's hit arrays (visits.HIT_ARRAYS): a hit filter is a lambda over them
(over_hits), and hit-level reports unroll them (table_hits); goals and funnels read them too.
Smaller ranges are sessionized from the hits, exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from analytics.channels import source_sql
from analytics.erasure import CONSENT_NOT_RESTRICTED, NOT_RESTRICTED
from analytics.store import Store
from analytics.visits import (HIT_ARRAYS, HOUR_DIMENSIONS, SKETCH, SKETCH_MERGE, SKETCH_STATE, VISIT_GAP_MS, Coverage,
                              coverage, hit_key_sql, visit_rows_sql)

REALTIME_SECONDS = 5 * 60

# Hit filter name -> the `events` column it compares.
HIT_FILTERS = {"page": "path", "event": "name", "country": "country", "browser": "browser",
               "os": "os", "device": "device"}
VISIT_FILTERS = ("referrer_host", "source", "utm_source", "utm_medium", "utm_campaign")
FILTERS = tuple(HIT_FILTERS) + VISIT_FILTERS
# `prop.NAME=VALUE`: a hit filter on a custom event property (events.props, filled by collect).
PROP_FILTER = "prop."
PROP_DIMENSION = "prop:"  # breakdown/prop:NAME
MAX_PROP_NAME = 64  # as collect stores property names
MAX_PROP_FILTERS = 5


def prop_name_problem(name: str) -> str:
    """Why `name` cannot be a property name (as collect stores them), or ''."""
    if not name:
        return "a property name must not be empty"
    if len(name) > MAX_PROP_NAME:
        return f"a property name is at most {MAX_PROP_NAME} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a property name holds no control characters"
    return ""


# The days a StatsQuery may cover, its previous() period included (the API refuses others): inside ClickHouse's
# DateTime64 (1900-2299), with room for any timezone's offset in bounds(), so no date arithmetic here overflows.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 31)


@dataclass(frozen=True)
class StatsQuery:
    """One stats request: a site, a date range in the site's timezone (both ends included), filters."""

    site: str
    start: date
    end: date
    tz: str = "Europe/Amsterdam"
    filters: dict[str, str] = field(default_factory=dict)
    exact_below: int = 100_000  # [gateway] stats_exact_below: ranges with fewer hits are computed from the hits

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def bounds(self) -> tuple[datetime, datetime]:
        """[from, to) as UTC instants: local midnight of `start` to local midnight after `end`."""
        zone = ZoneInfo(self.tz)
        lo = datetime.combine(self.start, time(0), zone).astimezone(timezone.utc)
        hi = datetime.combine(self.end + timedelta(days=1), time(0), zone).astimezone(timezone.utc)
        return lo, hi

    def previous(self) -> "StatsQuery":
        """The period of the same length just before this one."""
        end = self.start - timedelta(days=1)
        return StatsQuery(self.site, end - timedelta(days=self.days - 1), end, self.tz, self.filters, self.exact_below)

    def params(self) -> dict[str, Any]:
        lo, hi = self.bounds()
        out: dict[str, Any] = {"site": self.site, "lo": lo.replace(tzinfo=None), "hi": hi.replace(tzinfo=None),
                               "tz": self.tz}
        out.update({f"f_{k}": v for k, v in self.filters.items() if k in FILTERS})
        for i, (name, value) in enumerate(self.prop_filters):
            out[f"pk_{i}"], out[f"pv_{i}"] = name, value
        return out

    @property
    def prop_filters(self) -> list[tuple[str, str]]:
        """(property name, value) of the `prop.NAME` filters, in a fixed order (their parameters are numbered)."""
        return sorted((k[len(PROP_FILTER):], v) for k, v in self.filters.items() if k.startswith(PROP_FILTER))

    @property
    def hit_filters(self) -> dict[str, str]:
        return {k: v for k, v in self.filters.items() if k in HIT_FILTERS or k.startswith(PROP_FILTER)}

    @property
    def visit_filters(self) -> dict[str, str]:
        return {k: v for k, v in self.filters.items() if k in VISIT_FILTERS}


PERIOD = ("site = {site:String} AND timestamp >= toDateTime64({lo:DateTime64(3)}, 3, 'UTC') "
          "AND timestamp < toDateTime64({hi:DateTime64(3)}, 3, 'UTC')")
# The hits of a range: restricted visitors (GDPR art. 18) are left out of every statistic.
RANGE = f"{PERIOD} AND {NOT_RESTRICTED}"


def _hit_match(q: StatsQuery) -> str:
    conds = [f"{HIT_FILTERS[k]} = {{f_{k}:String}}" for k in q.hit_filters if k in HIT_FILTERS]
    conds += [f"props[{{pk_{i}:String}}] = {{pv_{i}:String}}" for i in range(len(q.prop_filters))]
    return " AND ".join(conds) if conds else "1"


SOURCE = source_sql("referrer_host", "utm_source", "utm_medium")


def _visit_match(q: StatsQuery) -> str:
    """The visit filters, over a hit's own referrer and UTM columns (a visit is judged by its first hit)."""
    conds = [f"{SOURCE if k == 'source' else k} = {{f_{k}:String}}" for k in q.visit_filters]
    return " AND ".join(conds) if conds else "1"




@dataclass(frozen=True)
class Plan:
    """How a range is answered: from the hits, exactly, or (large ranges without hit filters) from the
    visits and hit_hours tables, with sketched distinct counts."""

    coverage: Coverage | None = None  # the days the visits and hit_hours tables hold for the range, when used
    whole_hours: bool = True  # the range starts and ends on whole UTC hours (not so in a few timezones)

    @property
    def hours(self) -> bool:
        """hit_hours can answer: hits of the range are whole hours of it."""
        return self.coverage is not None and self.whole_hours

    @property
    def exact(self) -> bool:
        return self.coverage is None

    @property
    def uniq(self) -> str:
        return "uniqExact" if self.exact else SKETCH

    @property
    def uniq_if(self) -> str:
        """`uniq` with the -If combinator: (value, condition)."""
        return "uniqExactIf" if self.exact else SKETCH.replace("(", "If(", 1)


def plan(store: Store, q: StatsQuery) -> Plan:
    lo, hi = (t.replace(tzinfo=None) for t in q.bounds())
    cov = coverage(store, q.site, lo, hi)
    return Plan(cov if cov is not None and cov.hits >= q.exact_below else None,
                lo.minute == hi.minute == 0 and lo.second == hi.second == 0)


UNTIL = "toDateTime64({until:DateTime64(3)}, 3, 'UTC')"


def params_of(q: StatsQuery, how: Plan) -> dict[str, Any]:
    """The query parameters of a range answered as `how` says (with the tables: up to where they hold it)."""
    out = q.params()
    if how.coverage is not None:
        out["until"] = how.coverage.until
    return out


def _hour_rows(q: StatsQuery, cov: Coverage, dimension: str) -> str:
    """SQL of (hour, value, v: a sketch of the visitors, n: pageviews or events) of one `hit_hours`
    dimension over the range: the table's hours up to `cov.until`, the later hits grouped live."""
    column = HOUR_DIMENSIONS[dimension]
    kind = {"": "1", "event": "type = 'event'"}.get(dimension, "type = 'pageview'")
    counted = "countIf(type = 'pageview')" if dimension == "" else "count()"
    sql = f"""SELECT timestamp AS hour, value, visitors AS v, hits AS n FROM {{db}}.hit_hours
              WHERE site = {{site:String}} AND dimension = '{dimension}'
                AND timestamp >= toDateTime64({{lo:DateTime64(3)}}, 3, 'UTC') AND timestamp < {UNTIL}
                AND build IN ({", ".join(str(b) for b in cov.builds)})"""
    _, hi = q.bounds()
    if cov.until < hi.replace(tzinfo=None):
        sql += f""" UNION ALL
              SELECT toStartOfHour(timestamp) AS hour, {column} AS value, {SKETCH_STATE}(visitor_hash) AS v, {counted} AS n
              FROM {{db}}.events WHERE {RANGE} AND timestamp >= {UNTIL} AND {kind} GROUP BY hour, value"""
    return sql


def hit_columns_in(*sql: str) -> list[str]:
    """The hit columns (visits.HIT_ARRAYS) that SQL written over an `events` row reads. Found by name: the SQL of
    these modules names hit columns as plain words and puts every value in a {parameter}."""
    return [c for c in HIT_ARRAYS if any(re.search(rf"(?<![\w.{{]){c}\b", part) for part in sql)]


def over_hits(function: str, sql: str) -> str:
    """SQL applying an array function (arrayExists, arrayCount, arrayMap) to `sql`, written over an `events` row,
    for each hit of a `visits` row: a lambda whose parameters are named like the hit columns it reads."""
    columns = hit_columns_in(sql) or ["type"]
    return f"{function}(({', '.join(columns)}) -> {sql}, {', '.join(HIT_ARRAYS[c] for c in columns)})"


VISIT_ARRAYS = ("hit_key", "hit_ms", *HIT_ARRAYS.values())


def arrays_named(sql: str) -> list[str]:
    """The array columns of `visits` (hit_key, hit_ms, HIT_ARRAYS) that SQL written over a visits row reads."""
    return [a for a in VISIT_ARRAYS if re.search(rf"\b{a}\b", sql)]


def visit_rows(q: StatsQuery, cov: Coverage, value: str = "", arrays: tuple[str, ...] = (), where: str = "") -> str:
    """SQL of the range's visits that pass the filters, as visitor_hash, start (the first hit's time),
    pv (pageviews; with hit filters the matching ones), bounce (at most one pageview), ms (duration), the
    column `value` and the `arrays` (columns of visits.HIT_ARRAYS, and hit_ms): rows of the visits table up
    to `cov.until`, visits starting later sessionized live. A hit filter tests each visit's hit arrays. `where`:
    a further condition on the visit's columns and arrays (say, that a hit completes a funnel's first step)."""
    match = _hit_match(q)
    # Each hit filter first asks whether the visit holds its value at all, with `has` on one array: a page by
    # the hits' numbers (visits.hit_key: 111 against 187 ms for 30 days, 1.25M visits, filtered by page), a
    # country, browser, OS, device or event name by its own array (a country: 78 against 124 ms). One such
    # filter alone is the whole test; with others, the hits must match them all at once (arrayExists).
    page_key = hit_key_sql("pageview", "{f_page:String}")
    holds = [f"has(hit_key, {page_key})" if k == "page" else f"has({HIT_ARRAYS[HIT_FILTERS[k]]}, {{f_{k}:String}})"
             for k in q.hit_filters if k in HIT_FILTERS]
    one_test = len(q.hit_filters) == 1 and len(holds) == 1
    cond = " AND ".join([*(f"{k} = {{f_{k}:String}}" for k in q.visit_filters), *holds]) or "1"
    pv = "pageviews"
    if q.hit_filters and not one_test:
        cond += f" AND {over_hits('arrayExists', match)}"
    if one_test and "page" in q.hit_filters:
        pv = f"countEqual(hit_key, {page_key})"
    elif q.hit_filters:
        pv = over_hits("arrayCount", f"type = 'pageview' AND {match}")
    if where:
        cond += f" AND {where}"
    # The live branch computes only the arrays asked for: also those the filters, pv and `where` read.
    raw = list(dict.fromkeys(["visitor_hash", "timestamp", "pageviews", "duration_ms", *q.visit_filters,
                              *([value] if value else []), *arrays, *arrays_named(f"{cond} {pv}")]))
    columns = ", ".join(raw)
    # The filters go into each branch: over a UNION ALL, ClickHouse filters only after reading every row's
    # arrays (measured: 241 against 156 ms for a 30-day summary filtered by page, the live branch empty).
    sql = f"""SELECT {columns} FROM {{db}}.visits
              WHERE site = {{site:String}} AND timestamp >= toDateTime64({{lo:DateTime64(3)}}, 3, 'UTC')
                AND timestamp < {UNTIL} AND build IN ({", ".join(str(b) for b in sorted(set(cov.builds)))}) AND {NOT_RESTRICTED}
                AND {cond}"""
    _, hi = q.bounds()
    if cov.until < hi.replace(tzinfo=None):
        # the hits of the 30 minutes before `until` tell which later hits continue a visit the table holds
        recent = f"site = {{site:String}} AND timestamp >= {UNTIL} - INTERVAL 30 MINUTE AND {RANGE}"
        sql += (f" UNION ALL SELECT {columns} FROM ({visit_rows_sql(recent, tuple(raw[4:]))})"
                f" WHERE timestamp >= {UNTIL} AND {cond}")
    picked = "".join(f", {c}" for c in dict.fromkeys([*([value] if value else []), *arrays]))
    return f"""SELECT visitor_hash, timestamp AS start, {pv} AS pv, pageviews <= 1 AS bounce, duration_ms AS ms{picked}
               FROM ({sql})"""


def table_hits(q: StatsQuery, cov: Coverage, reads: str, value: str = "", where: str = "") -> str:
    """SQL of the hits of the range's visits that pass q's filters, from the visits table (see visit_rows):
    one row per hit with visitor_hash, the hit columns that the SQL `reads` (written over an `events` row)
    needs, timestamp (the hit's) when `reads` names it, and the visit's column `value`. A visit counts whole,
    like every answer from the tables."""
    columns = hit_columns_in(reads)
    # Unrolling the hits' times costs a third of a breakdown's time (30 days by page, filtered by source:
    # 218 -> 153 ms without): only for callers that read them.
    timed = re.search(r"(?<![\w.{])timestamp\b", reads) is not None or not columns
    arrays = (*(["hit_ms"] if timed else []), *(HIT_ARRAYS[c] for c in columns))
    joined = ", ".join([*(["hit_ms AS at_ms"] if timed else []), *(f"{HIT_ARRAYS[c]} AS {c}" for c in columns)])
    picked = ", ".join([*(["addMilliseconds(start, at_ms) AS timestamp"] if timed else []),
                        *columns, *([value] if value else [])])
    return f"""SELECT visitor_hash, {picked}
               FROM ({visit_rows(q, cov, value, arrays, where)}) ARRAY JOIN {joined}"""


def _ratio(a: float, b: float, digits: int = 2) -> float:
    return round(a / b, digits) if b else 0.0


# Visits are measured inside one array per visitor, in linear array passes: no row per hit and
# no second GROUP BY. Each hit is packed into one UInt64 - time in ms, then the bits
# is-pageview, matches-the-hit-filters, matches-the-visit-filters (judged on the hit's own
# referrer and UTM tags; a visit keeps the judgement of its first hit) - so one numeric sort
# orders them all. S and E hold the first and last hit index of each visit; `vm` says which
# visits pass the filters.
VISIT_VALUE_AT = {  # which hit of a visit gives its value
    "first": "vals[a]",
    # a visit's first (last) pageview; nearly always its first (last) hit, so look there first
    "entry": "if(pv[a] = 1, vals[a], vals[arrayFirstIndex((p, i) -> p = 1 AND i >= a AND i <= b, pv, arrayEnumerate(pv))])",
    "exit": "if(pv[b] = 1, vals[b], vals[arrayLastIndex((p, i) -> p = 1 AND i >= a AND i <= b, pv, arrayEnumerate(pv))])",
}


def _visits_by_visitor(q: StatsQuery, value: str = "", pick: str = "first") -> str:
    """SQL of one row per visitor with n_visits, n_pageviews (matching), n_bounces, n_duration_ms of
    their visits that pass the filters, and `passing`: (time ms, is-pageview, value) of each hit that
    passes. With `value` (SQL over a hit) also `matched`: (the visit's value picked by `pick`, its
    matching pageviews) of each passing visit."""
    values = f", arraySort((v, k) -> k, groupArray({value}), raw) AS vals" if value else ""
    value_of_hit = "vals[i]" if value else "''"
    matched = (f""",
               arrayFilter((x, m) -> m, arrayMap((a, b) -> ({VISIT_VALUE_AT[pick]}, chpv[b] - chpv[a] + pv[a] * hm[a]),
                                                  S, E), vm) AS matched""" if value else "")
    return f"""
        SELECT visitor_hash,
               groupArray(toUInt64(toUnixTimestamp64Milli(timestamp)) * 8 + toUInt8(type = 'pageview') * 4
                          + toUInt8({_hit_match(q)}) * 2 + toUInt8({_visit_match(q)})) AS raw,
               arraySort(raw) AS packed{values},
               arrayMap(x -> toInt64(intDiv(x, 8)), packed) AS ts,
               arrayMap(x -> toUInt32(bitAnd(x, 4) > 0), packed) AS pv,
               arrayMap(x -> toUInt32(bitAnd(x, 2) > 0), packed) AS hm,
               arrayMap(x -> toUInt8(bitAnd(x, 1)), packed) AS vf,
               arrayMap(i -> toUInt32(i = 1 OR ts[i] - ts[i - 1] > {VISIT_GAP_MS}), arrayEnumerate(ts)) AS starts,
               arrayFilter((i, st) -> st = 1, arrayEnumerate(ts), starts) AS S,
               arrayPushBack(arrayMap(i -> toUInt32(i - 1), arrayPopFront(S)), toUInt32(length(ts))) AS E,
               arrayCumSum(pv) AS cpv,
               arrayCumSum(hm) AS chm,
               arrayCumSum(arrayMap((p, h) -> p * h, pv, hm)) AS chpv,
               arrayMap((a, b) -> vf[a] = 1 AND chm[b] - chm[a] + hm[a] > 0, S, E) AS vm,
               arrayCount(m -> m, vm) AS n_visits,
               arraySum((m, a, b) -> if(m, chpv[b] - chpv[a] + pv[a] * hm[a], 0), vm, S, E) AS n_pageviews,
               arrayCount((m, a, b) -> m AND cpv[b] - cpv[a] + pv[a] <= 1, vm, S, E) AS n_bounces,
               arraySum((m, a, b) -> if(m, ts[b] - ts[a], 0), vm, S, E) AS n_duration_ms,
               arrayCumSum(starts) AS sn,
               arrayFilter((x, i) -> hm[i] = 1 AND vf[S[sn[i]]] = 1, arrayMap(i -> (ts[i], pv[i], {value_of_hit}), arrayEnumerate(ts)),
                           arrayEnumerate(ts)) AS passing{matched}
        FROM {{db}}.events WHERE {RANGE} AND {_with_a_matching_hit(q)}
        GROUP BY visitor_hash"""


def _with_a_matching_hit(q: StatsQuery) -> str:
    """SQL over an `events` row: its visitor has a hit that passes the hit filters. Only those visitors can
    have a visit that passes, so only their hits need sessionizing (a filter by a country or page keeps
    a small share of them)."""
    if not q.hit_filters:
        return "1"
    return f"visitor_hash IN (SELECT visitor_hash FROM {{db}}.events WHERE {RANGE} AND {_hit_match(q)})"


def visit_hits_sql(q: StatsQuery, carried: dict[str, str], visitors: str = "1", source: bool = False) -> str:
    """SQL of the range's hits in the visits that pass q's filters (of the visitors `visitors` selects: SQL
    over an `events` row), one row each: visitor_hash, ms (the time in ms), visit (its number among the
    visitor's visits), the `carried` columns (alias -> SQL over the hit) and, with `source`, visit_source (the
    channel of the visit's first hit). Sessionized in one array per visitor like _visits_by_visitor (the
    sort key packs time and filter flags into one number; the carried values follow its order), then
    unrolled, so goals and funnels can use ClickHouse's own aggregates per visit."""
    values = [*carried.values(), *([SOURCE] if source else [])]
    follow = (f", arraySort((c, k) -> k, groupArray(tuple({', '.join(values)})), raw) AS C" if values else "")
    unpack = "".join(f", hit.{i + 1} AS {name}" for i, name in enumerate(carried))
    if source:
        unpack += f", C[S[visit]].{len(values)} AS visit_source"
    joined = ", C AS hit" if values else ""
    return f"""
        SELECT visitor_hash, toInt64(intDiv(k, 4)) AS ms, visit{unpack}
        FROM (
            SELECT visitor_hash,
                   groupArray(toUInt64(toUnixTimestamp64Milli(timestamp)) * 4 + toUInt64({_visit_match(q)}) * 2
                              + toUInt64({_hit_match(q)})) AS raw,
                   arraySort(raw) AS K{follow},
                   arrayMap(x -> toInt64(intDiv(x, 4)), K) AS ts,
                   arrayMap(i -> toUInt32(i = 1 OR ts[i] - ts[i - 1] > {VISIT_GAP_MS}), arrayEnumerate(ts)) AS starts,
                   arrayCumSum(starts) AS sn,
                   arrayFilter(i -> starts[i] = 1, arrayEnumerate(ts)) AS S,
                   arrayPushBack(arrayMap(i -> toUInt32(i - 1), arrayPopFront(S)), toUInt32(length(ts))) AS E,
                   arrayCumSum(arrayMap(x -> toUInt32(bitAnd(x, 1)), K)) AS chm,
                   arrayMap((a, b) -> bitTest(K[a], 1) AND chm[b] - chm[a] + toUInt32(bitAnd(K[a], 1)) > 0, S, E) AS ok
            FROM {{db}}.events WHERE {RANGE} AND {visitors}
            GROUP BY visitor_hash
        ) ARRAY JOIN K AS k{joined}, sn AS visit
        WHERE ok[visit]"""


def _summary_of(store: Store, q: StatsQuery, how: Plan) -> dict[str, Any]:
    params = q.params()
    if how.coverage is not None:
        params["until"] = how.coverage.until
        sql = f"""SELECT {SKETCH}(visitor_hash) AS visitors, count() AS visits, sum(pv) AS pageviews,
                         countIf(bounce) AS bounces, sum(ms) AS duration_ms
                  FROM ({visit_rows(q, how.coverage)})"""
    else:
        sql = f"""SELECT countIf(n_visits > 0) AS visitors, sum(n_visits) AS visits, sum(n_pageviews) AS pageviews,
                         sum(n_bounces) AS bounces, sum(n_duration_ms) AS duration_ms
                  FROM ({_visits_by_visitor(q)})"""
    row = store.query_dicts(sql, params)[0]
    visits = int(row["visits"])
    return {
        "visitors": int(row["visitors"]),
        "visits": visits,
        "pageviews": int(row["pageviews"]),
        "views_per_visit": _ratio(int(row["pageviews"]), visits),
        "bounce_rate": _ratio(100 * int(row["bounces"]), visits, 1),
        "visit_duration": round(int(row["duration_ms"]) / 1000 / visits) if visits else 0,
    }


def _change(now: float, before: float) -> float | None:
    return round(100 * (now - before) / before, 1) if before else None


def summary_current(store: Store, q: StatsQuery, how: Plan | None = None) -> dict[str, Any]:
    """The range's totals alone (no previous period), with `exact`. `how`: the range's plan, when the caller has it."""
    how = how or plan(store, q)
    return {**_summary_of(store, q, how), "exact": how.exact}


def summary(store: Store, q: StatsQuery) -> dict[str, Any]:
    """Totals for the range and for the period of the same length before it (see `compared`)."""
    return compared(summary_current(store, q), summary_current(store, q.previous()))


def compared(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """A range's totals (summary_current) beside the previous period's, with the change of each in percent;
    `exact` is False when either was counted the fast, nearly exact way (a large range)."""
    now = {k: v for k, v in current.items() if k != "exact"}
    before = {k: v for k, v in previous.items() if k != "exact"}
    return {"current": now, "previous": before, "change": {k: _change(now[k], before[k]) for k in now},
            "exact": current["exact"] and previous["exact"]}


INTERVALS = {  # name -> ClickHouse bucket of a timestamp in the site's timezone, as a label string
    "hour": "formatDateTime(toStartOfHour(timestamp, {tz:String}), '%Y-%m-%dT%H:00')",
    "day": "toString(toDate(timestamp, {tz:String}))",
    "week": "toString(toMonday(timestamp, {tz:String}))",
    "month": "toString(toStartOfMonth(timestamp, {tz:String}))",
}


def bucket_labels(q: StatsQuery, interval: str) -> list[str]:
    """Every bucket of the range, so empty buckets show as zero."""
    if interval == "hour":
        return [f"{q.start + timedelta(days=d)}T{h:02d}:00" for d in range(q.days) for h in range(24)]
    labels: list[str] = []
    day = q.start
    while day <= q.end:
        if interval == "day":
            label = day
        elif interval == "week":
            label = day - timedelta(days=day.weekday())
        else:
            label = day.replace(day=1)
        if not labels or labels[-1] != str(label):
            labels.append(str(label))
        day += timedelta(days=1)
    return labels


def timeseries(store: Store, q: StatsQuery, interval: str = "day", how: Plan | None = None) -> list[dict[str, Any]]:
    """Visitors and pageviews per bucket, zero-filled. `how`: the range's plan, when the caller has it."""
    bucket = INTERVALS[interval]
    how = how or plan(store, q)
    params = q.params()
    if how.hours and not q.filters:
        params["until"] = how.coverage.until
        sql = f"""SELECT {bucket.replace('timestamp', 'hour')} AS bucket, {SKETCH_MERGE}(v) AS visitors, sum(n) AS pageviews
                  FROM ({_hour_rows(q, how.coverage, '')}) GROUP BY bucket"""
    elif how.coverage is not None and q.visit_filters:  # the hits of the passing visits, from the visits table
        params["until"] = how.coverage.until
        match = _hit_match(q)
        sql = f"""SELECT {bucket} AS bucket, {how.uniq}(visitor_hash) AS visitors, countIf(type = 'pageview') AS pageviews
                  FROM ({table_hits(q, how.coverage, f"timestamp type {match}")}) WHERE {match} GROUP BY bucket"""
    elif q.visit_filters:  # visit-level filters need the visit of every hit
        sql = f"""SELECT {bucket.replace('timestamp', "fromUnixTimestamp64Milli(hit.1, 'UTC')")} AS bucket,
                         uniqExact(visitor_hash) AS visitors, countIf(hit.2 = 1) AS pageviews
                  FROM ({_visits_by_visitor(q)}) ARRAY JOIN passing AS hit GROUP BY bucket"""
    else:
        sql = f"""SELECT {bucket} AS bucket, {how.uniq}(visitor_hash) AS visitors, countIf(type = 'pageview') AS pageviews
                  FROM {{db}}.events WHERE {RANGE} AND {_hit_match(q)} GROUP BY bucket"""
    found = {r["bucket"]: r for r in store.query_dicts(sql, params)}
    return [{"bucket": label, "visitors": int(found.get(label, {}).get("visitors", 0)),
             "pageviews": int(found.get(label, {}).get("pageviews", 0))} for label in bucket_labels(q, interval)]


# Dimension -> (level, SQL of its value). Hit dimensions count hits; visit dimensions count visits.
DIMENSIONS: dict[str, tuple[str, str]] = {
    "page": ("hit", "path"),
    "entry_page": ("visit", "entry_page"),
    "exit_page": ("visit", "exit_page"),
    "referrer_host": ("visit", "referrer_host"),
    "source": ("visit", "source"),
    "utm_source": ("visit", "utm_source"),
    "utm_medium": ("visit", "utm_medium"),
    "utm_campaign": ("visit", "utm_campaign"),
    "browser": ("hit", "browser"),
    "os": ("hit", "os"),
    "device": ("hit", "device"),
    "country": ("hit", "country"),
    "event": ("hit", "name"),
}


# Visit dimension -> (SQL over a hit, which hit of the visit gives the value).
VISIT_DIMENSIONS: dict[str, tuple[str, str]] = {
    "entry_page": ("path", "entry"),
    "exit_page": ("path", "exit"),
    "referrer_host": ("referrer_host", "first"),
    "source": (SOURCE, "first"),
    "utm_source": ("utm_source", "first"),
    "utm_medium": ("utm_medium", "first"),
    "utm_campaign": ("utm_campaign", "first"),
}


def breakdown_columns(dimension: str) -> list[str]:
    if dimension.startswith(PROP_DIMENSION):
        return ["value", "visitors", "events"]
    level, _ = DIMENSIONS[dimension]
    if level == "visit":
        return ["value", "visitors", "visits", "pageviews"]
    return ["value", "visitors", "events" if dimension == "event" else "pageviews"]


def breakdown(store: Store, q: StatsQuery, dimension: str, limit: int = 10, how: Plan | None = None) -> list[dict[str, Any]]:
    """Top values of one dimension by visitors: value, visitors, pageviews (visits for visit dimensions,
    events for `event`). `how`: the range's plan, when the caller has it already."""
    if dimension.startswith(PROP_DIMENSION):
        return _prop_breakdown(store, q, dimension[len(PROP_DIMENSION):], limit, how or plan(store, q))
    level, column = DIMENSIONS[dimension]
    how = how or plan(store, q)
    params = {**q.params(), "limit": limit}
    skip = "1" if dimension == "source" else "value != ''"
    if level == "visit" and how.coverage is not None:
        params["until"] = how.coverage.until
        sql = f"""SELECT {column} AS value, {SKETCH}(visitor_hash) AS visitors, count() AS visits,
                         sum(pv) AS pageviews
                  FROM ({visit_rows(q, how.coverage, column)})
                  WHERE {skip}
                  GROUP BY value ORDER BY visitors DESC, visits DESC, value LIMIT {{limit:UInt32}}"""
        return [{"value": r["value"], "visitors": int(r["visitors"]), "visits": int(r["visits"]),
                 "pageviews": int(r["pageviews"])} for r in store.query_dicts(sql, params)]
    if level == "visit":
        value, pick = VISIT_DIMENSIONS[dimension]
        sql = f"""SELECT visit.1 AS value, uniqExact(visitor_hash) AS visitors, count() AS visits,
                         sum(visit.2) AS pageviews
                  FROM ({_visits_by_visitor(q, value, pick)}) ARRAY JOIN matched AS visit
                  WHERE {skip}
                  GROUP BY value ORDER BY visitors DESC, visits DESC, value LIMIT {{limit:UInt32}}"""
        return [{"value": r["value"], "visitors": int(r["visitors"]), "visits": int(r["visits"]),
                 "pageviews": int(r["pageviews"])} for r in store.query_dicts(sql, params)]
    kind = "event" if dimension == "event" else "pageview"
    counted = "events" if kind == "event" else "pageviews"
    if how.hours and not q.filters:
        params["until"] = how.coverage.until
        sql = f"""SELECT value, {SKETCH_MERGE}(v) AS visitors, sum(n) AS {counted}
                  FROM ({_hour_rows(q, how.coverage, dimension)})
                  GROUP BY value ORDER BY visitors DESC, {counted} DESC, value LIMIT {{limit:UInt32}}"""
        return [{"value": r["value"], "visitors": int(r["visitors"]), counted: int(r[counted])}
                for r in store.query_dicts(sql, params)]
    # With hit filters alone, one scan of the matching hits is as fast as the tables, and exact but for the sketch.
    if how.coverage is not None and q.visit_filters:  # the hits of the passing visits, from the visits table
        params["until"] = how.coverage.until
        where = f"{_hit_match(q)} AND type = '{kind}'"
        source = f"({table_hits(q, how.coverage, f'{column} {where}')})"
    elif q.visit_filters:
        source = f"({_visits_by_visitor(q, column)}) ARRAY JOIN passing AS hit"
        where = f"hit.2 = {int(kind == 'pageview')}"
        column = "hit.3"
    else:
        source = "{db}.events"
        where = f"{RANGE} AND {_hit_match(q)} AND type = '{kind}'"
    sql = f"""SELECT {column} AS value, {how.uniq}(visitor_hash) AS visitors, count() AS {counted}
              FROM {source} WHERE {where}
              GROUP BY value ORDER BY visitors DESC, {counted} DESC, value LIMIT {{limit:UInt32}}"""
    return [{"value": r["value"], "visitors": int(r["visitors"]), counted: int(r[counted])}
            for r in store.query_dicts(sql, params)]


def _prop_breakdown(store: Store, q: StatsQuery, name: str, limit: int, how: Plan) -> list[dict[str, Any]]:
    """Top values of one custom property by visitors: value, visitors, events (hits carrying the property,
    of any type, that pass the filters)."""
    params = {**q.params(), "limit": limit, "prop": name}
    value = "props[{prop:String}]"
    if how.coverage is not None and q.visit_filters:  # the hits of the passing visits, from the visits table
        params["until"] = how.coverage.until
        where = f"{_hit_match(q)} AND mapContains(props, {{prop:String}})"
        source, column = f"({table_hits(q, how.coverage, f'{value} {where}')})", value
    elif q.visit_filters:
        source, column, where = f"({_visits_by_visitor(q, value)}) ARRAY JOIN passing AS hit", "hit.3", "1"
    else:
        source, column = "{db}.events", value
        where = f"{RANGE} AND {_hit_match(q)} AND mapContains(props, {{prop:String}})"
    sql = f"""SELECT {column} AS value, {how.uniq}(visitor_hash) AS visitors, count() AS events
              FROM {source} WHERE {where} AND value != ''
              GROUP BY value ORDER BY visitors DESC, events DESC, value LIMIT {{limit:UInt32}}"""
    return [{"value": r["value"], "visitors": int(r["visitors"]), "events": int(r["events"])}
            for r in store.query_dicts(sql, params)]


CONSENT_METHODS = ("accept_all", "reject_all", "custom", "gpc")
# The decisions of a range: a restricted visitor's are left out too, like their hits (the consent log keeps them).
CONSENT_RANGE = f"{PERIOD} AND {CONSENT_NOT_RESTRICTED}"


def consent(store: Store, q: StatsQuery) -> dict[str, Any]:
    """Banner decisions per day and method, opt-in rate per category, withdrawals, and how many
    deciding visitors the statistics cannot see (their latest decision refuses analytics); restricted
    visitors are left out."""
    params = q.params()
    # One scan gives the days and the totals: grants and withdrawals per day and method, with the
    # categories the grants include.
    rows = store.query_dicts(f"""
        SELECT toString(toDate(timestamp, {{tz:String}})) AS day, action, if(action = 'withdraw', 'withdraw', method) AS method,
               count() AS decisions, sum(analytics) AS analytics, sum(marketing) AS marketing, sum(preferences) AS preferences
        FROM {{db}}.consents WHERE {CONSENT_RANGE} GROUP BY day, action, method""", params)
    per_day = {label: {m: 0 for m in (*CONSENT_METHODS, "withdraw")} for label in bucket_labels(q, "day")}
    totals = {k: 0 for k in ("decisions", "withdrawals", *CONSENT_METHODS, "analytics", "marketing", "preferences")}
    for r in rows:
        if r["day"] in per_day and r["method"] in per_day[r["day"]]:
            per_day[r["day"]][r["method"]] += int(r["decisions"])
        if r["action"] == "withdraw":
            totals["withdrawals"] += int(r["decisions"])
        elif r["action"] == "grant":
            totals["decisions"] += int(r["decisions"])
            if r["method"] in CONSENT_METHODS:
                totals[r["method"]] += int(r["decisions"])
            for category in ("analytics", "marketing", "preferences"):
                totals[category] += int(r[category])
    # Consent ids grouped by a 64-bit hash: twice as fast as by the 32-character id (exact unless two collide).
    people = store.query_dicts(f"""
        SELECT countIf(latest_analytics = 1) AS with_analytics, countIf(latest_analytics = 0) AS without_analytics
        FROM (SELECT cityHash64(consent_id) AS id, argMax(analytics * (action = 'grant'), timestamp) AS latest_analytics
              FROM {{db}}.consents WHERE {CONSENT_RANGE} GROUP BY id)""", params)[0]
    decisions = totals["decisions"]
    seen, unseen = int(people["with_analytics"]), int(people["without_analytics"])
    return {
        "decisions": decisions,
        "methods": {m: totals[m] for m in CONSENT_METHODS},
        "withdrawals": totals["withdrawals"],
        "opt_in_rate": {c: _ratio(100 * totals[c], decisions, 1) for c in ("analytics", "marketing", "preferences")},
        "visitors_with_analytics": seen,
        "visitors_without_analytics": unseen,
        "visible_share": _ratio(100 * seen, seen + unseen, 1),
        "daily": [{"day": day, **counts} for day, counts in per_day.items()],
    }


def realtime(store: Store, q: StatsQuery, limit: int = 10) -> dict[str, Any]:
    """Visitors and pageviews in the last 5 minutes and the pages they are on."""
    params = {**q.params(), "seconds": REALTIME_SECONDS, "limit": limit}
    recent = (f"site = {{site:String}} AND timestamp >= now64(3) - INTERVAL {{seconds:UInt32}} SECOND "
              f"AND {_hit_match(q)} AND {NOT_RESTRICTED}")
    totals = store.query_dicts(f"""SELECT uniqExact(visitor_hash) AS visitors, countIf(type = 'pageview') AS pageviews
                                   FROM {{db}}.events WHERE {recent}""", params)[0]
    pages = store.query_dicts(f"""SELECT path AS value, uniqExact(visitor_hash) AS visitors, count() AS pageviews
                                  FROM {{db}}.events WHERE {recent} AND type = 'pageview'
                                  GROUP BY value ORDER BY visitors DESC, pageviews DESC, value LIMIT {{limit:UInt32}}""",
                              params)
    return {"seconds": REALTIME_SECONDS, "visitors": int(totals["visitors"]), "pageviews": int(totals["pageviews"]),
            "pages": [{"value": p["value"], "visitors": int(p["visitors"]), "pageviews": int(p["pageviews"])} for p in pages]}
