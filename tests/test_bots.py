"""Bots out of the numbers (issue 12): the maintained User-Agent list, the hit-rate signal
(gateway/collect/behaviour.py) and zero-second visits in bulk (analytics/visits.py), each against a
plain-Python reference."""
from __future__ import annotations

import random
import re
import sys
import time
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import httpx
import pytest
from crawleruseragents import CRAWLER_USER_AGENTS_DATA

from gateway.collect.behaviour import VisitorRate
from gateway.collect.useragent import EXTRA_TOOLS, edge_user_agent, is_bot, parse_user_agent
from harness import ROOT, SITE_ORIGIN, STATS_TOKEN, UA_CHROME, GatewayProcess, write_config
from stats_seed import Hit, seed, visits_of

sys.path.insert(0, str(ROOT / "bench"))
from collect_bench import USER_AGENTS  # noqa: E402

AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}


# --- the User-Agent list -----------------------------------------------------------------------------

def test_every_example_bot_of_the_maintained_list_is_caught():
    examples = [i for entry in CRAWLER_USER_AGENTS_DATA for i in entry.get("instances", [])]
    assert len(examples) > 1000
    missed = [ua for ua in examples if not parse_user_agent(ua).is_bot]
    assert missed == []


# One UA per name of EXTRA_TOOLS: what the list misses and the gateway caught before.
EXTRA_SAMPLES = {
    r"bot\b": "Mozilla/5.0 (compatible; SomeNewbot; +https://bots.example)",
    "bot/": "SomeNewBot/1.0",
    "crawl": "Mozilla/5.0 (compatible; NewCrawler/1.0)",
    "spider": "Mozilla/5.0 (compatible; NewSpider/1.0)",
    "lighthouse": "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/119.0.0.0 Mobile Safari/537.36 Lighthouse",
    "pagespeed": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 PageSpeed",
    "undici": "undici",
    "postmanruntime": "PostmanRuntime/7.36.0",
    "insomnia": "insomnia/2023.5.8",
    "java/": "Java/17.0.9",
    "monitor": "Mozilla/5.0 (compatible; SiteMonitor/1.0)",
    "feedfetcher": "FeedFetcher-Google; (+http://www.google.com/feedfetcher.html)",
    "^$": "",
}


def test_the_names_the_list_misses_are_still_caught():
    assert set(EXTRA_SAMPLES) == set(EXTRA_TOOLS.split("|"))
    listed = re.compile("|".join(e["pattern"] for e in CRAWLER_USER_AGENTS_DATA))
    for name, ua in EXTRA_SAMPLES.items():
        assert not listed.search(ua), f"{name}: the list catches it now; drop it from EXTRA_TOOLS"
        assert is_bot(ua) and is_bot(ua.upper()), name
    for ua in ("curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1",
               "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0"):
        assert parse_user_agent(ua).is_bot, ua


def test_realistic_browser_uas_are_not_bots():
    browsers = {ua.format(v=v, m=m) for _, ua in USER_AGENTS for v in range(100, 131) for m in range(1, 10)}
    browsers |= {UA_CHROME, "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
                 "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0",
                 "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/119.0.0.0 Safari/537.36"}
    flagged = [ua for ua in browsers if is_bot(ua)]
    assert flagged == []


def test_a_crafted_long_ua_costs_linear_time():
    # Third-party patterns, attacker-controlled input: RE2 never backtracks. 1,000 cut UAs built to make
    # backtracking engines work hard still pass quickly (a generous bound: this is a guard, not a timing).
    crafted = [edge_user_agent("Mozilla/5.0 (" + "a" * 300 + "b" * i + "(" * 200) for i in range(1000)]
    started = time.perf_counter()
    assert not any(is_bot(ua) for ua in crafted)
    assert time.perf_counter() - started < 20


# --- hits a minute -----------------------------------------------------------------------------------

def reference_flags(hits: list[tuple[str, Fraction]], per_minute: int) -> list[bool]:
    """A leaky bucket per visitor in exact arithmetic: each hit adds one (up to twice the limit), the
    bucket drains per_minute a minute; a hit is too fast when the bucket then holds more than the limit."""
    level: dict[str, Fraction] = {}
    last: dict[str, Fraction] = {}
    out = []
    for visitor, at in hits:
        drained = (at - last.get(visitor, at)) * per_minute / 60
        level[visitor] = min(max(level.get(visitor, Fraction(0)) - drained, Fraction(0)) + 1, Fraction(2 * per_minute))
        last[visitor] = at
        out.append(level[visitor] > per_minute)
    return out


def test_visitor_rate_matches_a_leaky_bucket_reference():
    rng = random.Random(12)
    hits: list[tuple[str, Fraction]] = []
    at = Fraction(1000)
    for _ in range(30_000):
        # bursts, paces and pauses (ms): `fast` sends about the limit, so it crosses it both ways
        at += Fraction(rng.choices([0, 1, 5, 20, 200, 1000, 30_000], [30, 30, 20, 10, 5, 3, 2])[0], 1000)
        hits.append((rng.choice(["fast", "fast", "fast", "medium", "slow"]), at))
    rate = VisitorRate(60)
    got = [rate.too_fast(v, float(t)) for v, t in hits]
    assert got == reference_flags(hits, 60)
    assert 0 < sum(got) < len(got)  # the stream has both


def test_a_person_is_never_too_fast_and_a_flood_is_until_it_stops():
    rate = VisitorRate(300)
    # A busy person: 3 hits a second in bursts of 10, for ten minutes (180 a minute).
    assert not any(rate.too_fast("person", t / 3) for t in range(1800))
    # 300 hits at once pass, the 301st does not; a visitor sending 10 a second stays flagged.
    assert [rate.too_fast("bot", 0.0) for _ in range(301)] == [False] * 300 + [True]
    assert all(rate.too_fast("bot", i / 10) for i in range(1, 1200))
    # It stops: within two minutes its bucket is back under the limit.
    assert not rate.too_fast("bot", 120 + 120.0)


def test_visitor_rate_memory_is_bounded_under_a_flood_of_distinct_visitors():
    rate = VisitorRate(300, max_visitors=10_000)
    tracemalloc.start()
    for i in range(200_000):
        rate.too_fast(f"{i:032x}", i / 1000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(rate) == 10_000
    assert peak < 10_000 * 400  # ~150 bytes per entry measured; 400 leaves room for dict growth
    # The most recent visitors are the ones kept: a flagged visitor seen lately is still counted.
    assert [rate.too_fast("x" * 32, 200.0) for _ in range(301)][-1] is True


# --- zero-second visits in bulk ----------------------------------------------------------------------

TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
D1, D2 = TODAY - timedelta(days=6), TODAY - timedelta(days=5)  # closed UTC days
LIMIT = 5


def bulk_hits() -> list[Hit]:
    hits = []
    for i in range(6):  # bot1: six one-hit visits on D2 (40 minutes apart: each a visit of its own)
        hits.append(Hit("z", "bot1", D2 + timedelta(hours=6, minutes=40 * i), f"/b{i % 2}"))
    hits += [Hit("z", "bot1", D1 + timedelta(hours=9), "/"), Hit("z", "bot1", D1 + timedelta(hours=9, minutes=1), "/x")]
    for i in range(5):  # bot2: exactly the limit on D1
        hits.append(Hit("z", "bot2", D1 + timedelta(hours=12, minutes=45 * i), "/b0"))
    for i in range(4):  # near: one under it on D2
        hits.append(Hit("z", "near", D2 + timedelta(hours=8, minutes=50 * i), "/"))
    for day in (D1, D2):  # people: visits of several hits, and one of one hit
        hits += [Hit("z", "p1", day + timedelta(hours=10), "/"), Hit("z", "p1", day + timedelta(hours=10, minutes=3), "/x"),
                 Hit("z", "p2", day + timedelta(hours=15), "/x"),
                 Hit("z", "p3", day + timedelta(hours=16), "/"), Hit("z", "p3", day + timedelta(hours=16, seconds=20), "/y")]
    return hits


def expected_without_bulk(hits: list[Hit]) -> tuple[dict[str, int], Counter, int]:
    """Totals and pageviews per path of the visits left after dropping the visitor-days with LIMIT or more
    one-hit visits, and how many visitor-days were dropped (a plain-Python sessionization)."""
    visits = visits_of(hits)
    one_hit = Counter((v[0].visitor, v[0].at.date()) for v in visits if len(v) == 1)
    dropped = {key for key, n in one_hit.items() if n >= LIMIT}
    kept = [v for v in visits if (v[0].visitor, v[0].at.date()) not in dropped]
    totals = {"visitors": len({v[0].visitor for v in kept}), "visits": len(kept), "pageviews": sum(len(v) for v in kept)}
    return totals, Counter(h.path for v in kept for h in v), len(dropped)


def test_visitors_with_zero_second_visits_in_bulk_are_left_out_and_counted(tmp_path: Path):
    config = write_config(tmp_path, gateway={"stats_exact_below": 0, "stats_refresh_seconds": 0.3,
                                             "bot_zero_second_visits": LIMIT},
                          sites={"z": {"origins": [SITE_ORIGIN], "timezone": "UTC"}})
    hits = bulk_hits()
    seed(config, hits, [])
    gw = GatewayProcess(config, tmp_path).start()
    try:
        span = {"from": str(D1.date()), "to": str(D2.date())}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = httpx.get(f"{gw.url}/api/stats/z/summary", params=span, headers=AUTH, timeout=30).json()
            if body["exact"] is False:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the visits table was not built within 60 s:\n" + gw.logs()[-3000:])
        totals, pages, dropped = expected_without_bulk(hits)
        assert dropped == 2  # bot1 on D2, bot2 on D1; not bot1 on D1, not `near`
        assert {k: body["current"][k] for k in totals} == totals
        rows = httpx.get(f"{gw.url}/api/stats/z/breakdown/page", params={**span, "limit": "100"}, headers=AUTH,
                         timeout=30).json()["results"]
        assert {r["value"]: r["pageviews"] for r in rows} == dict(pages)
        metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
        assert f"consentgate_stats_bot_visitor_days {float(dropped)}" in metrics
    finally:
        gw.stop()
