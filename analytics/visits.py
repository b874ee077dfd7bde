"""The stats' tables derived from `events`: `visits` (one row per visit) and `hit_hours` (per hour and
dimension value: pageviews and a sketch of the visitors), so large ranges need not scan millions of hits.

A visit is a run of one visitor's hits with no gap over 30 minutes (see analytics/stats.py); it
belongs to the UTC day of its first hit. `VisitBuilder` builds both tables per UTC day in a background
thread, up to the live cut (the start of the last full hour): the hits after it are computed at query
time, so a range that includes today still counts hits stored seconds ago.

Freshness: a day is rebuilt when its number of hits before the cut changes (late inserts, erasure,
retention), when the cut moves on (hourly, for today's hours), and once more when it is closed
(BUILD_AFTER past its end, when visits that cross midnight have ended). The builder looks every
`[gateway] stats_refresh_seconds` (default 30). A visit that started before the cut and is still going on
(over an hour long) misses its newest hits until the next hourly rebuild. A rebuild writes rows under a
new `build` id, makes it current in `visit_days`, then deletes the old rows: readers only take current
builds, so they never see a day twice or not at all. Erasure deletes the visitor's visits at once
(gateway/privacy.py); the hour sketches hold no visitor id and follow at the day's rebuild.

Bots that look like visitors: a visitor with `[gateway] bot_zero_second_visits` (default 20) or more visits
of one hit and zero seconds starting on one UTC day is left out of that day's built rows (visits and
hit_hours); the builder counts these visitor-days for /metrics.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, TypeVar

from analytics.channels import source_sql
from analytics.erasure import NOT_RESTRICTED
from analytics.store import Store

log = logging.getLogger("consentgate.visits")
T = TypeVar("T")

VISIT_GAP_MS = 30 * 60 * 1000  # a longer gap between two hits starts a new visit
BUILD_AFTER = timedelta(hours=3)  # a day is closed (built for good) this long after it ends
LIVE = timedelta(hours=1)  # hits of the last full hour and after are computed at query time
DEFAULT_REFRESH_SECONDS = 30.0  # [gateway] stats_refresh_seconds: how often the builder looks for days to build
DEFAULT_ZERO_SECOND_VISITS = 20  # [gateway] bot_zero_second_visits: that many in a day make a visitor a bot
MAX_RUN_DAYS = 7  # days sessionized by one INSERT: bounds its memory
# Distinct visitors of large ranges: exact for a few hundred, then HyperLogLog with 4096 cells (about
# 1.6 % standard error). Its sketches merge 10x faster than uniqExact sets and 3x faster than the
# default precision's (an hour per value: 30 days of hit_hours merge in 10-40 ms).
SKETCH = "uniqCombined64(12)"
SKETCH_STATE, SKETCH_MERGE = "uniqCombined64State(12)", "uniqCombined64Merge(12)"  # hit_hours.visitors


# Column of `visits` -> (the hit columns it needs, SQL of its value over one visit: the hits `h` sorted by
# time, `pv` their pageview flags, `a` and `b` the visit's first and last hit; {col} is a hit's column).
FIRST_PAGEVIEW = "arrayFirstIndex((p, i) -> p = 1 AND i >= a AND i <= b, pv, arrayEnumerate(pv))"
LAST_PAGEVIEW = "arrayLastIndex((p, i) -> p = 1 AND i >= a AND i <= b, pv, arrayEnumerate(pv))"
VISIT_VALUES: dict[str, tuple[tuple[str, ...], str]] = {
    # a visit's first (last) pageview; '' for a visit of custom events only (h[0] is the default)
    "entry_page": (("path",), f"h[{FIRST_PAGEVIEW}].{{path}}"),
    "exit_page": (("path",), f"h[{LAST_PAGEVIEW}].{{path}}"),
    # the gateway keeps referrer and UTM tags on a visit's first hit
    "referrer_host": (("referrer_host",), "h[a].{referrer_host}"),
    "source": (("referrer_host", "utm_source", "utm_medium"),
               source_sql("h[a].{referrer_host}", "h[a].{utm_source}", "h[a].{utm_medium}")),
    "utm_source": (("utm_source",), "h[a].{utm_source}"),
    "utm_medium": (("utm_medium",), "h[a].{utm_medium}"),
    "utm_campaign": (("utm_campaign",), "h[a].{utm_campaign}"),
}
# The visit's hits, in time order, as arrays (layout 2): filtered ranges, goals and funnels read one row per visit
# and test its hits with array functions instead of sessionizing millions of hits. `hit_ms`: each hit's time
# after the visit's first; HIT_ARRAYS: hit column -> the `visits` column holding it per hit.
HIT_ARRAYS = {c: f"hit_{c}" for c in ("type", "path", "name", "country", "browser", "os", "device", "props")}
VISIT_VALUES["hit_ms"] = ((), "arrayMap(t -> toUInt32(t - ts[a]), arraySlice(ts, a, b - a + 1))")
VISIT_VALUES.update({array: ((c,), f"arrayMap(x -> x.{{{c}}}, arraySlice(h, a, b - a + 1))") for c, array in HIT_ARRAYS.items()})
# Each hit as one number (layout 3; see hit_key_sql): equality goals and funnel steps compare these.
VISIT_VALUES["hit_key"] = (("type", "path", "name"),
                           "arrayMap(x -> sipHash64(x.{type}, if(x.{type} = 'pageview', x.{path}, x.{name})), "
                           "arraySlice(h, a, b - a + 1))")
# What a build writes: a day built with an older layout is built again, and read from the hits until then.
LAYOUT = 3


def hit_key_sql(kind: str, value: str) -> str:
    """SQL of the `hit_key` of a pageview of path `value` (kind 'pageview') or an event named `value` ('event'),
    `value` being SQL (a query parameter)."""
    return f"sipHash64('{kind}', {value})"


def visit_rows_sql(where: str, values: tuple[str, ...] = tuple(VISIT_VALUES)) -> str:
    """SQL of one row per visit of the `events` rows matching `where`: site, timestamp (of its first hit),
    visitor_hash, duration_ms, hits, pageviews and the `values` (columns of VISIT_VALUES). Each visitor's
    hits are sorted in one array, carrying only the hit columns the values need: the fewer, the faster."""
    hit_columns = sorted({c for v in values for c in VISIT_VALUES[v][0]})
    position = {c: i + 3 for i, c in enumerate(hit_columns)}  # 1 is the time, 2 the pageview flag
    exprs = [VISIT_VALUES[v][1].format(**{c: position[c] for c in VISIT_VALUES[v][0]}) for v in values]
    carried = "".join(f", {c}" for c in hit_columns)
    picked = "".join(f", {e}" for e in exprs)
    named = "".join(f", v.{i + 5} AS {v}" for i, v in enumerate(values))
    return f"""
        SELECT site, v.1 AS timestamp, visitor_hash, toUInt32(v.2) AS duration_ms, v.3 AS hits, v.4 AS pageviews{named}
        FROM (
            SELECT site, visitor_hash,
                   arraySort(x -> x.1, groupArray((timestamp, type = 'pageview'{carried}))) AS h,
                   arrayMap(x -> toUnixTimestamp64Milli(x.1), h) AS ts,
                   arrayMap(x -> toUInt32(x.2), h) AS pv,
                   arrayFilter(i -> i = 1 OR ts[i] - ts[i - 1] > {VISIT_GAP_MS}, arrayEnumerate(ts)) AS S,
                   arrayPushBack(arrayMap(i -> toUInt32(i - 1), arrayPopFront(S)), toUInt32(length(ts))) AS E,
                   arrayCumSum(pv) AS cpv,
                   arrayMap((a, b) -> (h[a].1, ts[b] - ts[a], toUInt32(b - a + 1), toUInt32(cpv[b] - cpv[a] + pv[a]){picked}),
                            S, E) AS visits
            FROM {{db}}.events WHERE {where}
            GROUP BY site, visitor_hash
        ) ARRAY JOIN visits AS v"""


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)  # naive UTC, as the store's parameters take it


# Dimension of `hit_hours` -> the hit column it groups by. '' holds all hits (visitors and pageviews per
# hour, for timeseries); `event` counts custom events by name, the others pageviews.
HOUR_DIMENSIONS = {"": "''", "page": "path", "browser": "browser", "os": "os", "device": "device",
                   "country": "country", "event": "name"}


def build_days(store: Store, site: str, first: date, last: date, hits: dict[date, int], until: datetime,
               closed: bool, zero_second_visits: int = 0) -> tuple[int, dict[date, int]]:
    """(Re)builds `site`'s visits that start on the UTC days first..last before `until` (naive UTC), and
    the hit hours before it. `hits`: each day's hits before `until`, read before building; `closed`:
    the days are over and settled; `zero_second_visits` (0: off): a visitor with that many one-hit visits
    of zero seconds starting on a day is left out of the day. Returns the number of visits written and,
    per day, the visitors left out."""
    build = time.time_ns()
    lo, hi = _midnight(first), _midnight(last + timedelta(days=1))
    # Hits from 30 minutes before: a visit already running at midnight belongs to the day before.
    # Hits up to a day after: a visit that crosses midnight keeps all its hits.
    window = ("site = {site:String} AND timestamp >= toDateTime64({lo:DateTime64(3)}, 3, 'UTC') - INTERVAL 30 MINUTE "
              f"AND timestamp < toDateTime64({{hi:DateTime64(3)}}, 3, 'UTC') + INTERVAL 1 DAY AND {NOT_RESTRICTED}")
    params = {"site": site, "lo": lo, "hi": hi, "until": until, "build": build, "first": first, "last": last}
    inside = ("timestamp >= toDateTime64({lo:DateTime64(3)}, 3, 'UTC') "
              "AND timestamp < toDateTime64({until:DateTime64(3)}, 3, 'UTC')")
    bulk, keep = zero_second_visitors(store, window, inside, params, zero_second_visits), "1"
    if bulk:
        params["bots"] = bulk
        keep = "(visitor_hash, toDate(timestamp)) NOT IN {bots:Array(Tuple(UInt64, Date))}"
    columns = "site, timestamp, visitor_hash, duration_ms, hits, pageviews, " + ", ".join(VISIT_VALUES)
    store.command(f"""INSERT INTO {{db}}.visits ({columns}, build)
                      SELECT *, {{build:UInt64}} FROM ({visit_rows_sql(window)}) WHERE {inside} AND {keep}""", params)
    dimensions = ", ".join(f"('{d}', {c})" for d, c in HOUR_DIMENSIONS.items())
    store.command(f"""INSERT INTO {{db}}.hit_hours
                      SELECT site, toStartOfHour(timestamp) AS hour, d.1 AS dimension, d.2 AS value,
                             countIf(dimension != '' OR type = 'pageview'), {SKETCH_STATE}(visitor_hash), {{build:UInt64}}
                      FROM {{db}}.events ARRAY JOIN [{dimensions}] AS d
                      WHERE site = {{site:String}} AND {inside} AND {NOT_RESTRICTED} AND {keep}
                        AND (dimension = '' OR (dimension = 'event') = (type = 'event'))
                      GROUP BY site, hour, dimension, value""", params)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    store.client.insert(f"{store.db}.visit_days",
                        [[site, d, hits.get(d, 0), min(until, _midnight(d + timedelta(days=1))), int(closed), build, now,
                          LAYOUT] for d in days],
                        column_names=["site", "day", "hits", "until", "closed", "build", "built_at", "layout"])
    written = int(store.query_value("SELECT count() FROM {db}.visits WHERE build = {build:UInt64}", params) or 0)
    left_out: dict[date, int] = {}
    for _, day in bulk:
        left_out[day] = left_out.get(day, 0) + 1
    return written, left_out


def unbuild_days(store: Store, site: str, days: list[date]) -> None:
    """Marks `days` of `site` as not built, so the stats read them from the hits until the builder has built them
    again (after an erasure or a restriction changed what they may hold). A marker row (layout 0: unreadable,
    due) rather than a delete: without any row, a site's first built days would count as "before the first
    built day, so empty", and a range over them would read their old hours from the build they shared with
    the next day."""
    if days:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        store.client.insert(f"{store.db}.visit_days", [[site, d, 0, _midnight(d), 0, 0, now, 0] for d in days],
                            column_names=["site", "day", "hits", "until", "closed", "build", "built_at", "layout"])


def zero_second_visitors(store: Store, window: str, inside: str, params: dict[str, Any],
                         least: int) -> list[tuple[int, date]]:
    """(visitor_hash, UTC day) of the visitors with `least` or more one-hit visits of zero seconds starting
    that day (0: none), read once so both inserts leave the same visitors out."""
    if least <= 0:
        return []
    rows = store.query(f"""SELECT visitor_hash, toDate(timestamp) AS day FROM ({visit_rows_sql(window, ())})
                           WHERE {inside} AND duration_ms = 0 AND hits = 1
                           GROUP BY visitor_hash, day HAVING count() >= {{least:UInt32}}""", {**params, "least": least})
    return [(int(h), d) for h, d in rows]


@dataclass(frozen=True)
class Due:
    """A day to (re)build: its hits before `until`, which ends it or is the live cut of an open day."""

    hits: int
    until: datetime
    closed: bool


def live_cut(now: datetime) -> datetime:
    """Naive UTC: hits before it are built into the tables, later ones computed at query time."""
    return now.astimezone(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0) - LIVE


def due_days(store: Store, now: datetime | None = None, changed: set[date] | None = None) -> dict[str, dict[date, Due]]:
    """Per site, the UTC days (from its first hit on, up to the live cut) whose build is missing or out of
    date: hits changed since (late inserts, erasure, retention), the live cut moved on (open days), or
    the day closed. Days without hits are built too (as empty), so a site's built days have no gaps.
    `changed`: the only built days whose hits may have changed (see event_parts); None: count all."""
    now = now or datetime.now(timezone.utc)
    cut = live_cut(now)
    last_closed = (now - BUILD_AFTER).date() - timedelta(days=1)
    built: dict[str, dict[date, Due]] = {}
    for site, day, n, until, closed in store.query("""
            SELECT site, day, argMax(hits, built_at), argMax(until, built_at), argMax(closed, built_at)
            FROM {db}.visit_days GROUP BY site, day HAVING argMax(layout, built_at) = {layout:UInt16}""",
                                                   {"layout": LAYOUT}):
        built.setdefault(site, {})[day] = Due(int(n), until.replace(tzinfo=None), bool(closed))
    counted = None
    if changed is not None:  # and the days not built yet
        counted = set(changed)
        for done in built.values():
            day = min(done)
            while _midnight(day) < cut:
                if day not in done:
                    counted.add(day)
                day += timedelta(days=1)
    hits: dict[str, dict[date, int]] = {}
    if counted is None or counted:
        only = "" if counted is None else "AND toDate(timestamp) IN {days:Array(Date)}"
        for site, day, n in store.query(f"""SELECT site, toDate(timestamp) AS day, count() FROM {{db}}.events
                                            WHERE timestamp < toDateTime64({{cut:DateTime64(3)}}, 3, 'UTC') {only}
                                            GROUP BY site, day""", {"cut": cut, "days": sorted(counted or ())}):
            hits.setdefault(site, {})[day] = int(n)
    out: dict[str, dict[date, Due]] = {}
    for site in hits.keys() | built.keys():
        own, done = hits.get(site, {}), built.get(site, {})
        day = min([*own, *done])
        while _midnight(day) < cut:
            uncounted = counted is not None and day not in counted and day in done
            n = done[day].hits if uncounted else own.get(day, 0)
            want = Due(n, min(cut, _midnight(day + timedelta(days=1))), day <= last_closed)
            if done.get(day) != want:
                out.setdefault(site, {})[day] = want
            day += timedelta(days=1)
    return out


def event_parts(store: Store) -> dict[str, tuple[date, date]]:
    """The active parts of `events` and the days their hits span. Every change to a day's hits (insert,
    merge, delete, retention) adds or removes a part, so comparing two readings tells which days to
    count again instead of counting all of them (400 ms for 10 million hits)."""
    return {name: (lo.date(), hi.date()) for name, lo, hi in store.query(
        "SELECT name, min_time, max_time FROM system.parts WHERE database = {db:String} AND table = 'events' AND active",
        {"db": store.db})}


def changed_days(before: dict[str, tuple[date, date]], after: dict[str, tuple[date, date]]) -> set[date]:
    days: set[date] = set()
    for name in before.keys() ^ after.keys():
        first, last = after.get(name) or before[name]
        # a day more on each side: the parts' times are in the engine's timezone
        days |= {first + timedelta(days=i) for i in range(-1, (last - first).days + 2)}
    return days


def runs(days: list[date], longest: int = MAX_RUN_DAYS) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) runs of at most `longest` days."""
    out: list[tuple[date, date]] = []
    for day in sorted(days):
        if out and day == out[-1][1] + timedelta(days=1) and (day - out[-1][0]).days < longest:
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


def refresh(store: Store, now: datetime | None = None, changed: set[date] | None = None,
            zero_second_visits: int = DEFAULT_ZERO_SECOND_VISITS, bots: dict[tuple[str, date], int] | None = None,
            stopping: threading.Event | None = None) -> int:
    """Builds every due day; returns the number of days built. Closed days go in runs, open ones alone.
    `changed`: as for due_days; `zero_second_visits`: as for build_days; `bots` gets (site, day) -> the
    visitors left out; `stopping`: when set, no further run is started."""
    built, months, rebuilt = 0, set(), {}
    since = time.time_ns()  # every build of this refresh is newer: older rows of its days are replaced
    try:
        for site, due in due_days(store, now, changed).items():
            closed = [d for d, w in due.items() if w.closed]
            for first, last in runs(closed) + [(d, d) for d, w in due.items() if not w.closed]:
                if stopping is not None and stopping.is_set():
                    break
                hits = {d: due[d].hits for d in due}
                _, left_out = build_days(store, site, first, last, hits, due[last].until, due[first].closed,
                                         zero_second_visits)
                days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
                if bots is not None:
                    for day in days:
                        bots[(site, day)] = left_out.get(day, 0)
                rebuilt.setdefault(site, []).extend(days)
                months |= {first.year * 100 + first.month, last.year * 100 + last.month}
                built += len(days)
    finally:
        # The replaced rows go in one delete per table and site, not one per run: readers take only current
        # builds, so they never saw them; but the rows cost space and merge time until they are gone.
        store.delete([(table, f"site = {{site:String}} AND {day} IN {{days:Array(Date)}} AND build < {{since:UInt64}}",
                       {"site": site, "days": days, "since": since})
                      for site, days in rebuilt.items()
                      for table, day in (("visits", "toDate(timestamp)"), ("hit_hours", "toDate(timestamp)"),
                                         ("visit_days", "day"))])
    # Each build leaves small parts and rows masked by its DELETEs: reading those costs 5-10x more
    # (a 30-day breakdown: 125 ms instead of 15). Merge the touched months into whole parts.
    for month in sorted(months):
        for table in ("visits", "hit_hours"):
            store.command(f"OPTIMIZE TABLE {{db}}.{table} PARTITION {month} FINAL")
    if months:
        store.command("OPTIMIZE TABLE {db}.visit_days FINAL")
    return built


class VisitBuilder:
    """Keeps `visits` and `hit_hours` up to date in a thread of its own. Services makes one per store from the
    config; the first stats request starts it (`VisitBuilder.ensure`); Services.stop stops it before the
    store closes (a thread left inside a chDB query at interpreter exit crashes the process)."""

    # The builder made for each store, so `ensure(store)` starts that one: store id -> builder (while alive).
    _made: "weakref.WeakValueDictionary[int, VisitBuilder]" = weakref.WeakValueDictionary()
    _made_lock = threading.RLock()

    def __init__(self, store: Store, interval: float = DEFAULT_REFRESH_SECONDS,
                 zero_second_visits: int = DEFAULT_ZERO_SECOND_VISITS) -> None:
        self.store = store
        self.interval = interval
        self.zero_second_visits = zero_second_visits
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._parts: dict[str, tuple[date, date]] | None = None  # at the last refresh that succeeded
        self._bots: dict[tuple[str, date], int] = {}  # (site, day) -> visitors left out by its latest build
        self._building = threading.Lock()  # held for each refresh: see between_builds
        with VisitBuilder._made_lock:
            VisitBuilder._made[id(store)] = self

    @classmethod
    def ensure(cls, store: Store) -> "VisitBuilder":
        """Starts the builder made for `store` (with the defaults when none was made) unless it runs."""
        with cls._made_lock:
            builder = cls._made.get(id(store))
            if builder is None or builder.store is not store:
                builder = cls(store)
            builder.start()
        return builder

    def start(self) -> None:
        with VisitBuilder._made_lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._loop, name="visit-builder", daemon=True)
                self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stops after the build in progress (at most MAX_RUN_DAYS days): returns when the thread has ended.
        A stopped builder stays the store's, so a late stats request does not start another one."""
        self._stopping.set()
        with VisitBuilder._made_lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def between_builds(self, action: Callable[[], T]) -> T:
        """Runs `action` while this builder builds nothing: days it drops (a restriction changed what they may
        hold) are not written again by a build that read the hits before the change; and the next pass looks
        at every day, not only those whose hits changed (a restriction changes no hit, so the dropped days
        would wait for the next change of their hits). Builders of other processes on a server store are not
        held."""
        with self._building:
            result = action()
            self._parts = None
            return result

    def bot_visitor_days(self) -> float:
        """Visitor-days left out as zero-second bots, by the latest build of each day built since start."""
        return float(sum(self._bots.values()))

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                started = time.monotonic()
                parts = event_parts(self.store)
                with self._building:
                    days = refresh(self.store, changed=None if self._parts is None else changed_days(self._parts, parts),
                                   zero_second_visits=self.zero_second_visits, bots=self._bots, stopping=self._stopping)
                self._parts = parts
                if days:
                    log.info("built the visits of %d day(s) in %.1f s", days, time.monotonic() - started)
            except Exception:  # the stats fall back to the hits; count every day again next time
                self._parts = None
                if self._stopping.is_set():
                    break  # the store may be closing under us
                log.exception("building visits failed")
            self._stopping.wait(self.interval)


@dataclass(frozen=True)
class Coverage:
    """What the tables hold of a range: visits starting and hits before `until` (naive UTC), in `builds`."""

    until: datetime
    builds: tuple[int, ...]
    hits: int  # hits of the covered days


def coverage(store: Store, site: str, lo: datetime, hi: datetime) -> Coverage | None:
    """The built days from the one holding `lo` on, without a gap, up to the first open one; None when the
    day of `lo` is not built. Days before a site's first built day held no hits when the builder last
    looked: they count as built. A day built with an older LAYOUT counts as not built."""
    rows = store.query("""SELECT day, argMax(build, built_at), argMax(hits, built_at), argMax(until, built_at),
                                 argMax(layout, built_at) = {layout:UInt16}
                          FROM {db}.visit_days WHERE site = {site:String} AND day <= {last:Date}
                          GROUP BY day ORDER BY day""", {"site": site, "last": hi.date(), "layout": LAYOUT})
    expect, until, builds, hits = lo.date(), _midnight(lo.date()), [], 0
    if rows and rows[0][0] > expect:
        expect = rows[0][0]
    for day, build, day_hits, day_until, current_layout in rows:
        if day < expect:
            continue
        if day != expect or not current_layout:  # a gap, or a day built with an older layout: not readable
            break
        builds.append(int(build))
        hits += int(day_hits)
        until = day_until.replace(tzinfo=None)
        expect = day + timedelta(days=1)
        if until < _midnight(expect):  # an open day: the hours after its cut are live
            break
    until = min(hi, until)
    if not builds or until <= lo:
        return None
    return Coverage(until, tuple(builds), hits)
