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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from analytics.store import Store

VISIT_GAP_MS = 30 * 60 * 1000
REALTIME_SECONDS = 5 * 60

# Filter name -> SQL over a hit (the per-hit tuple fields of `_SESSION_HITS`, or `events` columns).
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
    return (f"multiIf(lower({utm_medium}) IN {PAID_MEDIUMS}, 'paid', "
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


def _hit_match(q: StatsQuery, column: dict[str, str] | None = None) -> str:
    column = column or HIT_FILTERS
    conds = [f"{column[k]} = {{f_{k}:String}}" for k in q.hit_filters]
    return " AND ".join(conds) if conds else "1"


VISIT_ATTRS = ("referrer_host", "utm_source", "utm_medium", "utm_campaign")  # recorded on a visit's first hit
SOURCE = source_sql("referrer_host", "utm_source", "utm_medium")


def _hits_with_visits(q: StatsQuery, fields: tuple[str, ...], first_fields: tuple[str, ...] = ()) -> str:
    """SQL of one row per hit in range: `visitor`, visit number `sn`, `t` (ms), `pv`, `hm` (matches the
    hit filters), `x_<name>` for the `fields` asked for, and `v_<name>` for the visit's first hit's `first_fields`.
    A visitor's hits are sorted in one array; a gap over 30 minutes starts a new visit. Only the
    columns a query needs go into the arrays: their width is what this costs."""
    carried = tuple(dict.fromkeys(fields + first_fields))
    tuple_sql = ", ".join(["toUnixTimestamp64Milli(timestamp)", "toUInt8(type = 'pageview')",
                           f"toUInt8({_hit_match(q)})", *carried])
    at = {name: i + 4 for i, name in enumerate(carried)}
    columns = [f"h.{at[f]} AS x_{f}" for f in fields]
    columns += [f"hs[indexOf(sn_all, sn)].{at[f]} AS v_{f}" for f in first_fields]
    return f"""
        SELECT visitor, sn, h.1 AS t, h.2 AS pv, h.3 AS hm{"".join(", " + c for c in columns)}
        FROM (
            SELECT visitor_hash AS visitor, arraySort(x -> x.1, groupArray(({tuple_sql}))) AS hs,
                   arrayCumSum(arrayMap(i -> toUInt32(i = 1 OR hs[i].1 - hs[i - 1].1 > {VISIT_GAP_MS}),
                                        arrayEnumerate(hs))) AS sn_all
            FROM {{db}}.events WHERE {RANGE}
            GROUP BY visitor
        ) ARRAY JOIN hs AS h, sn_all AS sn"""


def _filtered_attrs(q: StatsQuery) -> tuple[str, ...]:
    """The visit attributes the visit filters look at (a source is made of three)."""
    return tuple(a for a in VISIT_ATTRS if a in q.visit_filters or ("source" in q.visit_filters and a != "utm_campaign"))


def _visit_match(q: StatsQuery, prefix: str = "") -> str:
    """The visit filters over the visit's attributes, named `<prefix>referrer_host` etc."""
    conds = []
    for k in q.visit_filters:
        column = source_sql(*(prefix + a for a in VISIT_ATTRS[:3])) if k == "source" else prefix + k
        conds.append(f"{column} = {{f_{k}:String}}")
    return " AND ".join(conds) if conds else "1"


def _visits(q: StatsQuery, pages: bool = False, attrs: bool = False) -> str:
    """SQL of one row per visit that matches the filters: visitor, started/ended (ms), pageviews,
    matched pageviews, and if asked its entry/exit page and its first hit's referrer and UTM tags."""
    attrs = attrs or bool(q.visit_filters)
    fields = (("path",) if pages else ()) + (VISIT_ATTRS if attrs else ())
    extra = ""
    if pages:
        extra += ", argMinIf(x_path, t, pv = 1) AS entry_page, argMaxIf(x_path, t, pv = 1) AS exit_page"
    if attrs:
        extra += "".join(f", argMin(x_{a}, t) AS {a}" for a in VISIT_ATTRS) + f", {SOURCE} AS source"
    return f"""
        SELECT visitor, sn, min(t) AS started, max(t) AS ended, countIf(pv = 1) AS visit_pageviews,
               countIf(pv = 1 AND hm = 1) AS matched_pageviews{extra}
        FROM ({_hits_with_visits(q, fields)})
        GROUP BY visitor, sn
        HAVING max(hm) = 1 AND {_visit_match(q)}"""


def _ratio(a: float, b: float, digits: int = 2) -> float:
    return round(a / b, digits) if b else 0.0


# Without visit filters a visitor's visits are measured inside one array per visitor: no row per
# hit and no second GROUP BY. `sn` numbers each hit's visit; `matched` lists the visits holding
# a hit that passes the hit filters.
def _summary_by_visitor(q: StatsQuery) -> str:
    return f"""
        SELECT visitor_hash,
               arraySort(x -> x.1, groupArray((toUnixTimestamp64Milli(timestamp), toUInt8(type = 'pageview'),
                                               toUInt8({_hit_match(q)})))) AS hs,
               arrayMap(h -> h.1, hs) AS ts,
               arrayCumSum(arrayMap(i -> toUInt32(i = 1 OR ts[i] - ts[i - 1] > {VISIT_GAP_MS}), arrayEnumerate(ts))) AS sn,
               arrayDistinct(arrayFilter((s, h) -> h.3 = 1, sn, hs)) AS matched,
               length(matched) AS n_visits,
               arrayCount(h -> h.2 = 1 AND h.3 = 1, hs) AS n_pageviews,
               arrayCount(k -> arrayCount((s, h) -> s = k AND h.2 = 1, sn, hs) <= 1, matched) AS n_bounces,
               arraySum(k -> arrayMax(arrayFilter((t, s) -> s = k, ts, sn)) - arrayMin(arrayFilter((t, s) -> s = k, ts, sn)),
                        matched) AS n_duration_ms
        FROM {{db}}.events WHERE {RANGE}
        GROUP BY visitor_hash"""


def _summary_of(store: Store, q: StatsQuery) -> dict[str, Any]:
    if q.visit_filters:
        sql = f"""SELECT uniqExact(visitor) AS visitors, count() AS visits, sum(matched_pageviews) AS pageviews,
                         countIf(visit_pageviews <= 1) AS bounces, sum(ended - started) AS duration_ms
                  FROM ({_visits(q)})"""
    else:
        sql = f"""SELECT countIf(n_visits > 0) AS visitors, sum(n_visits) AS visits, sum(n_pageviews) AS pageviews,
                         sum(n_bounces) AS bounces, sum(n_duration_ms) AS duration_ms
                  FROM ({_summary_by_visitor(q)})"""
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
    # Both periods at once: chDB releases the GIL, so the two scans share the cores.
    with ThreadPoolExecutor(2) as pool:
        current_job = pool.submit(_summary_of, store, q)
        previous = _summary_of(store, q.previous())
        current = current_job.result()
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
        hits = _hits_with_visits(q, (), _filtered_attrs(q))
        sql = f"""SELECT {bucket.replace('timestamp', 'fromUnixTimestamp64Milli(t)')} AS bucket,
                         uniqExact(visitor) AS visitors, countIf(pv = 1) AS pageviews
                  FROM ({hits}) WHERE hm = 1 AND {_visit_match(q, "v_")} GROUP BY bucket"""
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
        skip = {"entry_page": "entry_page != ''", "exit_page": "exit_page != ''",
                "utm_source": "utm_source != ''", "utm_medium": "utm_medium != ''",
                "utm_campaign": "utm_campaign != ''", "referrer_host": "referrer_host != ''"}.get(dimension, "1")
        pages = dimension in ("entry_page", "exit_page")
        sql = f"""SELECT {column} AS value, uniqExact(visitor) AS visitors, count() AS visits,
                         sum(matched_pageviews) AS pageviews
                  FROM ({_visits(q, pages=pages, attrs=not pages)}) WHERE {skip}
                  GROUP BY value ORDER BY visitors DESC, visits DESC, value LIMIT {{limit:UInt32}}"""
        return [{"value": r["value"], "visitors": int(r["visitors"]), "visits": int(r["visits"]),
                 "pageviews": int(r["pageviews"])} for r in store.query_dicts(sql, params)]
    kind = "event" if dimension == "event" else "pageview"
    if q.visit_filters:
        source = f"({_hits_with_visits(q, (column,), _filtered_attrs(q))})"
        where = f"hm = 1 AND {_visit_match(q, 'v_')} AND pv = {int(kind == 'pageview')}"
        column, visitor = f"x_{column}", "visitor"
    else:
        source = "{db}.events"
        where = f"{RANGE} AND {_hit_match(q)} AND type = '{kind}'"
        visitor = "visitor_hash"
    counted = "events" if kind == "event" else "pageviews"
    sql = f"""SELECT {column} AS value, uniqExact({visitor}) AS visitors, count() AS {counted}
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
