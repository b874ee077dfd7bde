"""Generated, realistic past traffic for demo mode and benchmarks, made inside ClickHouse.

Rows come from `INSERT ... SELECT FROM numbers(...)` with hash-based picks, so ten
million events take seconds instead of a Python loop's minutes. The shape is what a
marketing site sees: a daily curve peaking in office hours, quieter weekends, a slow
upward trend, visits of one to seven pages (about 45% bounces), returning visitors,
referrers and UTM campaigns on entry pages, a browser/OS/device/country mix per
visitor, custom events, and consent decisions (accepts, rejects, custom, GPC,
withdrawals) whose accepting visitors are the ones in the events.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from analytics.store import Store

# Weighted picks: each entry repeats as often as its weight (percent).
PLATFORMS = [  # browser, os, device, weight
    ("Chrome", "Windows", "desktop", 26), ("Chrome Mobile", "Android", "mobile", 18),
    ("Mobile Safari", "iOS", "mobile", 17), ("Safari", "Mac OS X", "desktop", 8),
    ("Chrome", "Mac OS X", "desktop", 7), ("Edge", "Windows", "desktop", 7),
    ("Firefox", "Windows", "desktop", 4), ("Samsung Internet", "Android", "mobile", 4),
    ("Mobile Safari", "iOS", "tablet", 4), ("Firefox", "Linux", "desktop", 2),
    ("Chrome", "Chrome OS", "desktop", 1), ("Chrome Mobile", "Android", "tablet", 2),
]
COUNTRIES = [("NL", 38), ("BE", 12), ("DE", 11), ("GB", 8), ("US", 9), ("FR", 5), ("ES", 3),
             ("SE", 2), ("PL", 2), ("IT", 2), ("", 6), ("IN", 2)]
ENTRY_PAGES = [("/", 34), ("/pricing", 10), ("/blog/cookie-consent-guide", 14), ("/features", 8),
               ("/blog/gdpr-analytics-without-cookies", 9), ("/docs/getting-started", 7),
               ("/blog/consent-mode-v2", 6), ("/about", 3), ("/contact", 3), ("/signup", 6)]
NEXT_PAGES = [("/pricing", 18), ("/features", 16), ("/signup", 10), ("/docs/getting-started", 12),
              ("/docs/configuration", 8), ("/about", 6), ("/contact", 6), ("/", 12),
              ("/blog", 8), ("/docs/api", 4)]
SOURCES = [  # referrer host, utm source, utm medium, utm campaign, weight
    ("", "", "", "", 30), ("google.com", "", "", "", 30), ("bing.com", "", "", "", 4),
    ("duckduckgo.com", "", "", "", 4), ("facebook.com", "", "", "", 4),
    ("linkedin.com", "linkedin", "social", "autumn-launch", 6), ("t.co", "", "", "", 2),
    ("news.ycombinator.com", "", "", "", 3), ("reddit.com", "", "", "", 2), ("github.com", "", "", "", 3),
    ("", "newsletter", "email", "november-digest", 6), ("nu.nl", "", "", "", 2),
    ("google.com", "google", "cpc", "brand-search", 4),
]
EVENT_NAMES = ["signup", "download", "outbound-link", "video-play", "purchase"]
# Custom event properties (events.props), per event name: key -> the values picked from.
EVENT_PROPS = {"signup": {"plan": ["free", "pro", "business"]},
               "download": {"file": ["guide.pdf", "pricing.pdf", "whitepaper.pdf"]},
               "purchase": {"plan": ["pro", "business"], "amount": ["19", "49", "99", "249"]}}
HOUR_WEIGHTS = [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4.5, 6, 6.5, 6.2, 5.6, 6, 6.3, 6, 5.4, 4.6, 4, 4.2, 4.4, 3.8, 2.6, 1.6]
MEAN_PAGES_PER_VISIT = 0.45 * 1 + 0.55 * 4.5  # 45% bounce, else 2..7 pages


def _expand(values: list, weights: list[int]) -> list:
    return [v for v, w in zip(values, weights) for _ in range(w)]


def _literal(values: list) -> str:
    parts = []
    for v in values:
        if isinstance(v, tuple):
            parts.append("(" + ", ".join(_literal([x])[1:-1] for x in v) + ")")
        else:
            parts.append("'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'")
    return "[" + ", ".join(parts) + "]"


def _props_sql() -> str:
    """SQL of a generated hit's `props`: per event name, one picked value per key (`s`, `k`: visit, page)."""
    branches = []
    for i, (name, keys) in enumerate(EVENT_PROPS.items()):
        pairs = ", ".join(f"'{key}', {_literal(values)}[1 + cityHash64(s, k, {40 + 5 * i + j}) % {len(values)}]"
                          for j, (key, values) in enumerate(keys.items()))
        branches.append(f"name = '{name}', map({pairs})")
    return f"multiIf({', '.join(branches)}, CAST(map(), 'Map(String, String)'))"


def day_weights(days: list[datetime]) -> list[float]:
    """Weekdays busier than weekends, a slow upward trend, and some day-to-day noise."""
    out = []
    for i, day in enumerate(days):
        weekend = 0.62 if day.weekday() >= 5 else 1.0
        trend = 0.8 + 0.4 * i / max(1, len(days) - 1)
        noise = 1 + 0.12 * math.sin(i * 2.3) * math.cos(i * 0.7)
        out.append(weekend * trend * noise)
    return out


def _cdf(weights: list[float]) -> list[float]:
    total = sum(weights)
    acc, out = 0.0, []
    for w in weights:
        acc += w / total
        out.append(round(acc, 9))
    out[-1] = 1.0
    return out


def generate_traffic(store: Store, site: str, events: int, days: int = 90, tz: str = "Europe/Amsterdam",
                     hostname: str = "www.example.com", now: datetime | None = None, seed: int = 1,
                     progress: Callable[[int, int], None] | None = None, chunk: int = 1_000_000) -> int:
    """Inserts about `events` events (exactly, unless 0) for `site` over the last `days` days, plus
    consent decisions; returns the number of events inserted. `progress(done, total)` after each chunk."""
    if events <= 0:
        return 0
    zone = ZoneInfo(tz)
    now = (now or datetime.now(zone)).astimezone(zone)
    first = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    local_days = [first + timedelta(days=i) for i in range(days)]
    day_starts = [int(d.replace(tzinfo=None).replace(tzinfo=zone).timestamp()) for d in local_days]
    weights = day_weights(local_days)
    # The last day is only partly over: weight it by how much of its traffic has happened.
    hour_cdf = _cdf(HOUR_WEIGHTS)
    elapsed = (now.hour + now.minute / 60) / 24
    weights[-1] *= sum(w for h, w in enumerate(HOUR_WEIGHTS) if h < now.hour + 1) / sum(HOUR_WEIGHTS) if elapsed else 0
    day_cdf = _cdf(weights)
    sessions_total = math.ceil(events / MEAN_PAGES_PER_VISIT * 1.08)  # a margin: LIMIT cuts it to exactly `events`
    visitors_total = max(1, int(sessions_total * 0.62))
    params = {"site": site, "host": hostname, "day_cdf": day_cdf, "day_starts": day_starts, "hour_cdf": hour_cdf,
              "now": int(now.timestamp()), "visitors": visitors_total, "seed": seed}
    platforms = _expand([p[:3] for p in PLATFORMS], [p[3] for p in PLATFORMS])
    countries = _expand([c for c, _ in COUNTRIES], [w for _, w in COUNTRIES])
    entries = _expand([p for p, _ in ENTRY_PAGES], [w for _, w in ENTRY_PAGES])
    nexts = _expand([p for p, _ in NEXT_PAGES], [w for _, w in NEXT_PAGES])
    sources = _expand([s[:4] for s in SOURCES], [s[4] for s in SOURCES])
    # One row per (visit, page index): `s` numbers the visit, `k` the page within it.
    select = f"""
        SELECT
            generateUUIDv4(s * 8 + k) AS event_id, {{site:String}} AS site,
            toDateTime64(least(start + k * (20 + cityHash64(s, k, 3) % 170), {{now:UInt32}}) + (cityHash64(s, k, 4) % 1000) / 1000, 3, 'UTC') AS timestamp,
            if(k > 0 AND cityHash64(s, k, 5) % 100 < 8, 'event', 'pageview') AS type,
            if(type = 'event', {_literal(EVENT_NAMES)}[1 + cityHash64(s, k, 6) % {len(EVENT_NAMES)}], '') AS name,
            lower(hex(MD5(concat(toString({{seed:UInt32}}), ':', toString(v))))) AS visitor_id,
            concat('https://', {{host:String}}, path) AS url, {{host:String}} AS hostname,
            if(k = 0, {_literal(entries)}[1 + cityHash64(s, 7) % {len(entries)}],
                      {_literal(nexts)}[1 + cityHash64(s, k, 8) % {len(nexts)}]) AS path,
            if(k = 0 AND src.1 != '', concat('https://', src.1, '/'), '') AS referrer,
            if(k = 0, src.1, '') AS referrer_host,
            if(k = 0, src.2, '') AS utm_source, if(k = 0, src.3, '') AS utm_medium, if(k = 0, src.4, '') AS utm_campaign,
            plat.1 AS browser, toString(110 + cityHash64(v, 10) % 22) AS browser_version, plat.2 AS os, plat.3 AS device,
            {_literal(countries)}[1 + cityHash64(v, 11) % {len(countries)}] AS country,
            concat(toString(1 + cityHash64(v, 12) % 223), '.', toString(cityHash64(v, 13) % 256), '.', toString(cityHash64(v, 14) % 256), '.0') AS ip,
            {_props_sql()} AS props
        FROM (
            SELECT number AS s,
                   cityHash64({{seed:UInt32}}, number, 1) % {{visitors:UInt64}} AS v,
                   if(cityHash64(number, 2) % 100 < 45, 1, 2 + cityHash64(number, 9) % 6) AS pages,
                   {{day_starts:Array(UInt32)}}[arrayFirstIndex(x -> x >= (cityHash64({{seed:UInt32}}, number, 15) % 1000000000) / 1e9, {{day_cdf:Array(Float64)}})] AS day_start,
                   day_start + (arrayFirstIndex(x -> x >= (cityHash64(number, 16) % 1000000) / 1e6, {{hour_cdf:Array(Float64)}}) - 1) * 3600
                       + cityHash64(number, 17) % 3600 AS start_raw,
                   if(start_raw > {{now:UInt32}}, start_raw - 86400, start_raw) AS start,
                   {_literal(platforms)}[1 + cityHash64(v, 18) % {len(platforms)}] AS plat,
                   {_literal(sources)}[1 + cityHash64(number, 19) % {len(sources)}] AS src
            FROM numbers({{first:UInt64}}, {{count:UInt64}})
        ) ARRAY JOIN range(pages) AS k
        LIMIT {{limit:UInt64}}"""
    inserted = 0
    first_session = 0
    while inserted < events and first_session < sessions_total * 2:
        limit = min(chunk, events - inserted)
        count = max(1, int(limit / MEAN_PAGES_PER_VISIT * 1.08))
        store.command(f"INSERT INTO {{db}}.events SELECT * FROM ({select})",
                      {**params, "first": first_session, "count": count, "limit": limit})
        first_session += count
        inserted += limit
        if progress:
            progress(inserted, events)
    _generate_consents(store, site, visitors_total, params)
    return inserted


def _generate_consents(store: Store, site: str, visitors: int, params: dict) -> None:
    """Decisions: every visitor in the events accepted analytics; as many again declined in some way."""
    declined = int(visitors * 0.55)
    store.command(f"""
        INSERT INTO {{db}}.consents (record_id, site, timestamp, consent_id, action, method, preferences, analytics,
                                     marketing, policy_version, language, ip, browser, os, gpc)
        SELECT generateUUIDv4(i) AS record_id, {{site:String}} AS site,
               toDateTime64(least({{day_starts:Array(UInt32)}}[arrayFirstIndex(x -> x >= (cityHash64(i, 21) % 1000000) / 1e6, {{day_cdf:Array(Float64)}})]
                   + (arrayFirstIndex(x -> x >= (cityHash64(i, 22) % 1000000) / 1e6, {{hour_cdf:Array(Float64)}}) - 1) * 3600
                   + cityHash64(i, 23) % 3600, {{now:UInt32}}), 3, 'UTC') AS timestamp,
               if(i < {{visitors:UInt64}}, lower(hex(MD5(concat(toString({{seed:UInt32}}), ':', toString(i))))),
                  lower(hex(MD5(concat('declined:', toString(i)))))) AS consent_id,
               if(i < {{visitors:UInt64}} AND cityHash64(i, 24) % 100 < 3, 'withdraw', 'grant') AS action,
               multiIf(action = 'withdraw', 'withdraw',
                       i < {{visitors:UInt64}}, if(cityHash64(i, 25) % 100 < 78, 'accept_all', 'custom'),
                       cityHash64(i, 26) % 100 < 68, 'reject_all', cityHash64(i, 26) % 100 < 90, 'custom', 'gpc') AS method,
               toUInt8(method = 'accept_all' OR (method = 'custom' AND cityHash64(i, 27) % 2 = 0)) AS preferences,
               toUInt8(i < {{visitors:UInt64}} AND action = 'grant') AS analytics,
               toUInt8(method = 'accept_all' OR (method = 'custom' AND i < {{visitors:UInt64}} AND cityHash64(i, 28) % 3 = 0)) AS marketing,
               1 AS policy_version, if(cityHash64(i, 29) % 100 < 60, 'nl', 'en') AS language,
               concat(toString(1 + cityHash64(i, 30) % 223), '.', toString(cityHash64(i, 31) % 256), '.0.0') AS ip,
               'Chrome' AS browser, 'Windows' AS os, toUInt8(method = 'gpc') AS gpc
        FROM (SELECT number AS i FROM numbers({{total:UInt64}}))""",
                  {**params, "total": visitors + declined})
