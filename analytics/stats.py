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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from analytics.store import Store

VISIT_GAP_MS = 30 * 60 * 1000
REALTIME_SECONDS = 5 * 60

# Hit filter name -> the `events` column it compares.
HIT_FILTERS = {"page": "path", "event": "name", "country": "country", "browser": "browser",
               "os": "os", "device": "device"}
VISIT_FILTERS = ("referrer_host", "source", "utm_source", "utm_medium", "utm_campaign")
FILTERS = tuple(HIT_FILTERS) + VISIT_FILTERS

SEARCH_HOSTS = ("google.", "bing.com", "duckduckgo.com", "yahoo.", "ecosia.org", "baidu.com", "yandex.",
                "startpage.com", "qwant.com", "search.brave.com", "kagi.com")
SOCIAL_HOSTS = ("facebook.com", "instagram.com", "linkedin.com", "lnkd.in", "t.co", "twitter.com", "x.com",
                "reddit.com", "news.ycombinator.com", "youtube.com", "pinterest.com", "tiktok.com",
                "mastodon.social", "threads.net", "bsky.app")
PAID_MEDIUMS = ("cpc", "ppc", "paid", "paidsearch", "paid_social", "display", "cpm")


def _host_in(column: str, hosts: tuple[str, ...]) -> str:
    """True when the host is one of `hosts` or a subdomain; an entry ending in '.' matches any TLD."""
    tests = []
    for h in hosts:
        if h.endswith("."):  # google. = google.com, google.nl, www.google.co.uk, ...
            tests.append(f"({column} LIKE '{h}%' OR {column} LIKE '%.{h}%')")
        else:
            tests.append(f"({column} = '{h}' OR endsWith({column}, '.{h}'))")
    return "(" + " OR ".join(tests) + ")"


def source_sql(host: str, utm_source: str, utm_medium: str) -> str:
    """The marketing channel of a visit from its referrer host and UTM tags."""
    # Most hits carry neither referrer nor UTM tags: answer those first, so the host tests
    # below run (short-circuit) only on the few that do.
    return (f"multiIf({host} = '' AND {utm_source} = '' AND {utm_medium} = '', 'direct', "
            f"lower({utm_medium}) IN {PAID_MEDIUMS}, 'paid', "
            f"lower({utm_medium}) IN ('email', 'e-mail', 'newsletter') OR lower({utm_source}) = 'newsletter', 'email', "
            f"{_host_in(host, SEARCH_HOSTS)}, 'search', "
            f"{_host_in(host, SOCIAL_HOSTS)} OR lower({utm_medium}) = 'social', 'social', "
            f"{host} = '' AND {utm_source} = '', 'direct', "
            f"{host} = '', 'campaign', 'referral')")


@dataclass(frozen=True)
class StatsQuery:
    """One stats request: a site, a date range in the site's timezone (both ends included), filters."""

    site: str
    start: date
    end: date
    tz: str = "Europe/Amsterdam"
    filters: dict[str, str] = field(default_factory=dict)

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
        return StatsQuery(self.site, end - timedelta(days=self.days - 1), end, self.tz, self.filters)

    def params(self) -> dict[str, Any]:
        lo, hi = self.bounds()
        out: dict[str, Any] = {"site": self.site, "lo": lo.replace(tzinfo=None), "hi": hi.replace(tzinfo=None),
                               "tz": self.tz}
        out.update({f"f_{k}": v for k, v in self.filters.items()})
        return out

    @property
    def hit_filters(self) -> dict[str, str]:
        return {k: v for k, v in self.filters.items() if k in HIT_FILTERS}

    @property
    def visit_filters(self) -> dict[str, str]:
        return {k: v for k, v in self.filters.items() if k in VISIT_FILTERS}


RANGE = ("site = {site:String} AND timestamp >= toDateTime64({lo:DateTime64(3)}, 3, 'UTC') "
         "AND timestamp < toDateTime64({hi:DateTime64(3)}, 3, 'UTC')")


def _hit_match(q: StatsQuery) -> str:
    conds = [f"{HIT_FILTERS[k]} = {{f_{k}:String}}" for k in q.hit_filters]
    return " AND ".join(conds) if conds else "1"


SOURCE = source_sql("referrer_host", "utm_source", "utm_medium")


def _visit_match(q: StatsQuery) -> str:
    """The visit filters, over a hit's own referrer and UTM columns (a visit is judged by its first hit)."""
    conds = [f"{SOURCE if k == 'source' else k} = {{f_{k}:String}}" for k in q.visit_filters]
    return " AND ".join(conds) if conds else "1"


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
        FROM {{db}}.events WHERE {RANGE}
        GROUP BY visitor_hash"""


def _summary_of(store: Store, q: StatsQuery) -> dict[str, Any]:
    sql = f"""SELECT countIf(n_visits > 0) AS visitors, sum(n_visits) AS visits, sum(n_pageviews) AS pageviews,
                     sum(n_bounces) AS bounces, sum(n_duration_ms) AS duration_ms
              FROM ({_visits_by_visitor(q)})"""
    row = store.query_dicts(sql, q.params())[0]
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


def summary(store: Store, q: StatsQuery) -> dict[str, Any]:
    """Totals for the range and for the period of the same length before it."""
    current = _summary_of(store, q)
    previous = _summary_of(store, q.previous())
    return {"current": current, "previous": previous,
            "change": {k: _change(current[k], previous[k]) for k in current}}


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


def timeseries(store: Store, q: StatsQuery, interval: str = "day") -> list[dict[str, Any]]:
    """Visitors and pageviews per bucket, zero-filled."""
    bucket = INTERVALS[interval]
    if q.visit_filters:  # visit-level filters need the visit of every hit
        sql = f"""SELECT {bucket.replace('timestamp', "fromUnixTimestamp64Milli(hit.1, 'UTC')")} AS bucket,
                         uniqExact(visitor_hash) AS visitors, countIf(hit.2 = 1) AS pageviews
                  FROM ({_visits_by_visitor(q)}) ARRAY JOIN passing AS hit GROUP BY bucket"""
    else:
        sql = f"""SELECT {bucket} AS bucket, uniqExact(visitor_hash) AS visitors, countIf(type = 'pageview') AS pageviews
                  FROM {{db}}.events WHERE {RANGE} AND {_hit_match(q)} GROUP BY bucket"""
    found = {r["bucket"]: r for r in store.query_dicts(sql, q.params())}
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
    level, _ = DIMENSIONS[dimension]
    if level == "visit":
        return ["value", "visitors", "visits", "pageviews"]
    return ["value", "visitors", "events" if dimension == "event" else "pageviews"]


def breakdown(store: Store, q: StatsQuery, dimension: str, limit: int = 10) -> list[dict[str, Any]]:
    """Top values of one dimension by visitors: value, visitors, pageviews (visits for visit dimensions,
    events for `event`)."""
    level, column = DIMENSIONS[dimension]
    params = {**q.params(), "limit": limit}
    if level == "visit":
        value, pick = VISIT_DIMENSIONS[dimension]
        skip = "1" if dimension == "source" else "value != ''"
        sql = f"""SELECT visit.1 AS value, uniqExact(visitor_hash) AS visitors, count() AS visits,
                         sum(visit.2) AS pageviews
                  FROM ({_visits_by_visitor(q, value, pick)}) ARRAY JOIN matched AS visit
                  WHERE {skip}
                  GROUP BY value ORDER BY visitors DESC, visits DESC, value LIMIT {{limit:UInt32}}"""
        return [{"value": r["value"], "visitors": int(r["visitors"]), "visits": int(r["visits"]),
                 "pageviews": int(r["pageviews"])} for r in store.query_dicts(sql, params)]
    kind = "event" if dimension == "event" else "pageview"
    if q.visit_filters:
        source = f"({_visits_by_visitor(q, column)}) ARRAY JOIN passing AS hit"
        where = f"hit.2 = {int(kind == 'pageview')}"
        column = "hit.3"
    else:
        source = "{db}.events"
        where = f"{RANGE} AND {_hit_match(q)} AND type = '{kind}'"
    counted = "events" if kind == "event" else "pageviews"
    sql = f"""SELECT {column} AS value, uniqExact(visitor_hash) AS visitors, count() AS {counted}
              FROM {source} WHERE {where}
              GROUP BY value ORDER BY visitors DESC, {counted} DESC, value LIMIT {{limit:UInt32}}"""
    return [{"value": r["value"], "visitors": int(r["visitors"]), counted: int(r[counted])}
            for r in store.query_dicts(sql, params)]


CONSENT_METHODS = ("accept_all", "reject_all", "custom", "gpc")


def consent(store: Store, q: StatsQuery) -> dict[str, Any]:
    """Banner decisions per day and method, opt-in rate per category, withdrawals, and how many
    deciding visitors the statistics cannot see (their latest decision refuses analytics)."""
    params = q.params()
    rows = store.query_dicts(f"""
        SELECT toString(toDate(timestamp, {{tz:String}})) AS day, if(action = 'withdraw', 'withdraw', method) AS method,
               count() AS decisions
        FROM {{db}}.consents WHERE {RANGE} GROUP BY day, method""", params)
    per_day = {label: {m: 0 for m in (*CONSENT_METHODS, "withdraw")} for label in bucket_labels(q, "day")}
    for r in rows:
        if r["day"] in per_day and r["method"] in per_day[r["day"]]:
            per_day[r["day"]][r["method"]] = int(r["decisions"])
    totals = store.query_dicts(f"""
        SELECT countIf(action = 'grant') AS decisions, countIf(action = 'withdraw') AS withdrawals,
               {", ".join(f"countIf(action = 'grant' AND method = '{m}') AS {m}" for m in CONSENT_METHODS)},
               countIf(action = 'grant' AND analytics = 1) AS analytics, countIf(action = 'grant' AND marketing = 1) AS marketing,
               countIf(action = 'grant' AND preferences = 1) AS preferences
        FROM {{db}}.consents WHERE {RANGE}""", params)[0]
    people = store.query_dicts(f"""
        SELECT countIf(latest_analytics = 1) AS with_analytics, countIf(latest_analytics = 0) AS without_analytics
        FROM (SELECT consent_id, argMax(analytics * (action = 'grant'), timestamp) AS latest_analytics
              FROM {{db}}.consents WHERE {RANGE} GROUP BY consent_id)""", params)[0]
    decisions = int(totals["decisions"])
    seen, unseen = int(people["with_analytics"]), int(people["without_analytics"])
    return {
        "decisions": decisions,
        "methods": {m: int(totals[m]) for m in CONSENT_METHODS},
        "withdrawals": int(totals["withdrawals"]),
        "opt_in_rate": {c: _ratio(100 * int(totals[c]), decisions, 1) for c in ("analytics", "marketing", "preferences")},
        "visitors_with_analytics": seen,
        "visitors_without_analytics": unseen,
        "visible_share": _ratio(100 * seen, seen + unseen, 1),
        "daily": [{"day": day, **counts} for day, counts in per_day.items()],
    }


def realtime(store: Store, q: StatsQuery, limit: int = 10) -> dict[str, Any]:
    """Visitors and pageviews in the last 5 minutes and the pages they are on."""
    params = {**q.params(), "seconds": REALTIME_SECONDS, "limit": limit}
    recent = f"site = {{site:String}} AND timestamp >= now64(3) - INTERVAL {{seconds:UInt32}} SECOND AND {_hit_match(q)}"
    totals = store.query_dicts(f"""SELECT uniqExact(visitor_hash) AS visitors, countIf(type = 'pageview') AS pageviews
                                   FROM {{db}}.events WHERE {recent}""", params)[0]
    pages = store.query_dicts(f"""SELECT path AS value, uniqExact(visitor_hash) AS visitors, count() AS pageviews
                                  FROM {{db}}.events WHERE {recent} AND type = 'pageview'
                                  GROUP BY value ORDER BY visitors DESC, pageviews DESC, value LIMIT {{limit:UInt32}}""",
                              params)
    return {"seconds": REALTIME_SECONDS, "visitors": int(totals["visitors"]), "pageviews": int(totals["pageviews"]),
            "pages": [{"value": p["value"], "visitors": int(p["visitors"]), "pageviews": int(p["pageviews"])} for p in pages]}
