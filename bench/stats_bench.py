"""Speed of the stats API on the embedded store with generated traffic (not a test: figures to read).

    .venv/bin/python bench/stats_bench.py                     # 10M events over 90 days, site "bench"
    .venv/bin/python bench/stats_bench.py --events 1000000 --store /tmp/cg-bench-1m
    .venv/bin/python bench/stats_bench.py --compare            # also time every call sessionizing the hits

`--compare` runs the rounds twice in one process: first with every range answered from the hits
(as before the per-visit table: [gateway] stats_exact_below above any range), then as configured
(large ranges from the tables; with filters, goals and funnels from the visits' hit arrays).

The store is generated once (INSERT ... SELECT in ClickHouse, ~30 s for 10M rows) and
reused while it holds the asked number of events. Every call goes through the real
Starlette app in-process (auth, parsing, SQL, JSON), like the dashboard's fetches; the
"dashboard page" figure runs all of the page's calls at once, as the browser does.
Targets (issue 4): summary and timeseries for 30 days <= 150 ms, each breakdown <= 300 ms,
the whole dashboard page <= 1 s. Issue 12: every filtered 30-day summary and breakdown <= 300 ms, and the
dashboard page <= 1 s with its goals and funnel panels (the bench site has two goals and a funnel).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics import visits  # noqa: E402
from analytics.stats_traffic import generate_traffic  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.config import parse_config  # noqa: E402

SITE = "bench"
TOKEN = "bench-stats-token-0123456789"
TZ = "Europe/Amsterdam"
TARGETS_MS = {"summary": 150, "timeseries": 150, "breakdown": 300, "dashboard page": 1000, "filtered": 300}
GOALS = [{"name": "Pricing", "page": "/pricing*"}, {"name": "Purchase", "event": "purchase", "revenue_property": "amount"}]
FUNNEL = {"name": "Signup", "steps": [{"page": "/"}, {"page": "/pricing"}, {"event": "signup"}]}
DASHBOARD_BREAKDOWNS = ("page", "source", "country", "browser", "event")


def build_app(store_path: Path):
    config = parse_config({
        "gateway": {"secret_key": "bench-secret-key-0123456789abcdefghij", "store": f"chdb://{store_path}", "stats_tokens": [TOKEN]},
        "sites": {SITE: {"origins": ["https://www.example.com"], "timezone": TZ, "goals": GOALS, "funnels": [FUNNEL]}},
    }, store_path.parent)
    return create_app(config)


def ensure_data(app, events: int, days: int) -> None:
    store = app.state.services.store
    store.migrate()
    have = store.query_value("SELECT count() FROM {db}.events WHERE site = {s:String}", {"s": SITE}) or 0
    if have == events:
        print(f"store holds {have:,} events of site {SITE!r}: reusing it", file=sys.stderr)
        return
    if have:
        for table in ("events", "consents", "visits", "visit_days"):
            store.command(f"TRUNCATE TABLE {{db}}.{table}")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        print(f"\r  generating {done:,}/{total:,} events ({time.monotonic() - started:.0f} s)", end="", file=sys.stderr,
              flush=True)

    generate_traffic(store, SITE, events, days, tz=TZ, progress=progress)
    print(f"\n  generated in {time.monotonic() - started:.1f} s", file=sys.stderr)


def ensure_visits(app) -> None:
    """Builds the per-visit table of the closed days now, as the gateway's builder does in the background."""
    started = time.monotonic()
    days = visits.refresh(app.state.services.store)
    print(f"  visits table: {days} day(s) built in {time.monotonic() - started:.1f} s", file=sys.stderr)


async def timed(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    r = await client.get(path, params=params)
    r.raise_for_status()
    return (time.perf_counter() - started) * 1000


async def run(app, repeat: int, only: str = "") -> dict[str, list[float]]:
    today = datetime.now(ZoneInfo(TZ)).date()
    rng = {"from": str(today - timedelta(days=29)), "to": str(today)}
    prev = {"from": str(today - timedelta(days=59)), "to": str(today - timedelta(days=30))}
    base = f"/api/stats/{SITE}"
    calls: dict[str, tuple[str, dict[str, str]]] = {
        "summary": (f"{base}/summary", rng),
        "timeseries": (f"{base}/timeseries", {**rng, "interval": "day"}),
        **{f"breakdown/{d}": (f"{base}/breakdown/{d}", {**rng, "limit": "10"}) for d in
           ("page", "entry_page", "exit_page", "source", "referrer_host", "utm_campaign", "browser", "os", "device",
            "country", "event")},
        "consent": (f"{base}/consent", rng),
        "realtime": (f"{base}/realtime", {}),
        "summary, filtered by source": (f"{base}/summary", {**rng, "source": "search"}),
        "summary, filtered by page": (f"{base}/summary", {**rng, "page": "/pricing"}),
        "summary, filtered by country": (f"{base}/summary", {**rng, "country": "BE"}),
        "summary, filtered by prop.plan": (f"{base}/summary", {**rng, "prop.plan": "pro"}),
        "breakdown/page, filtered by source": (f"{base}/breakdown/page", {**rng, "source": "search", "limit": "10"}),
        "breakdown/source, filtered by page": (f"{base}/breakdown/source", {**rng, "page": "/pricing", "limit": "10"}),
        "breakdown/country, filtered by page": (f"{base}/breakdown/country", {**rng, "page": "/pricing", "limit": "10"}),
        "breakdown/prop:plan": (f"{base}/breakdown/prop:plan", {**rng, "limit": "10"}),
        "breakdown/entry_page, filtered by country": (f"{base}/breakdown/entry_page",
                                                      {**rng, "country": "BE", "limit": "10"}),
        "timeseries, filtered by page": (f"{base}/timeseries", {**rng, "interval": "day", "page": "/pricing"}),
        "conversions (2 goals)": (f"{base}/conversions", rng),
        "conversions, filtered by source": (f"{base}/conversions", {**rng, "source": "search"}),
        "goal by source": (f"{base}/goals/config:Purchase/breakdown/source", {**rng, "limit": "10"}),
        "funnel (3 steps)": (f"{base}/funnels/config:Signup", rng),
        "funnel, filtered by country": (f"{base}/funnels/config:Signup", {**rng, "country": "BE"}),
        "funnel, filtered by source": (f"{base}/funnels/config:Signup", {**rng, "source": "search"}),
        "goal over time, filtered by source": (f"{base}/goals/config:Purchase/timeseries", {**rng, "source": "search"}),
    }
    page_calls = [calls["summary"], calls["timeseries"], (f"{base}/timeseries", {**prev, "interval": "day"}),
                  calls["consent"], calls["realtime"], *(calls[f"breakdown/{d}"] for d in DASHBOARD_BREAKDOWNS),
                  calls["conversions (2 goals)"], (f"{base}/funnels", {}), calls["funnel (3 steps)"]]
    calls = {name: call for name, call in calls.items() if only in name or name == "summary"}
    times: dict[str, list[float]] = {name: [] for name in calls}
    times["dashboard page"] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
        await timed(client, *calls["summary"])  # warm-up: first query loads marks and caches
        for i in range(repeat):
            for name, (path, params) in calls.items():
                times[name].append(await timed(client, path, params))
            started = time.perf_counter()
            await asyncio.gather(*(timed(client, p, q) for p, q in page_calls))
            times["dashboard page"].append((time.perf_counter() - started) * 1000)
            print(f"  round {i + 1}/{repeat} done", file=sys.stderr)
    return times


def target_of(name: str) -> int | None:
    if "filtered" in name:
        return TARGETS_MS["filtered"]
    if name.startswith("breakdown/"):
        return TARGETS_MS["breakdown"]
    return TARGETS_MS.get(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="/tmp/consentgate-bench-store", help="chDB folder (made if missing)")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--compare", action="store_true", help="first time every call answered from the hits")
    parser.add_argument("--only", default="", help="time only the calls whose name holds this text")
    args = parser.parse_args()
    app = build_app(Path(args.store).resolve())
    ensure_data(app, args.events, args.days)
    ensure_visits(app)
    before: dict[str, list[float]] = {}
    services = app.state.services
    if args.compare:
        configured = services.config
        services.config = replace(configured, stats_exact_below=sys.maxsize)
        print("  rounds answered from the hits:", file=sys.stderr)
        before = asyncio.run(run(app, args.repeat, args.only))
        services.config = configured
    times = asyncio.run(run(app, args.repeat, args.only))
    print(f"\n{args.events:,} events over {args.days} days, one site, last 30 days asked; "
          f"ms over {args.repeat} rounds (median / best)")
    print(f"{'call':42s} {'hits':>8s} {'median':>8s} {'best':>8s} {'target':>8s}")
    for name, values in times.items():
        target = target_of(name)
        median = statistics.median(values)
        verdict = "" if target is None else ("ok" if median <= target else "MISSED")
        hits = f"{statistics.median(before[name]):8.0f}" if before else f"{'-':>8s}"
        print(f"{name:42s} {hits} {median:8.0f} {min(values):8.0f} {target or '':>8} {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: statistics.median(v) for k, v in times.items()}, indent=2))
    # No thread may be inside chDB when the interpreter exits: the builder did, and the bench died with 139.
    services.visits.stop()
    services.store.close()


if __name__ == "__main__":
    main()
