"""What a visit build costs the stats requests that arrive meanwhile (not a test: figures to read).

    .venv/bin/python bench/build_bench.py                  # 60,000 demo events over 90 days, both modes
    .venv/bin/python bench/build_bench.py --events 200000

Each mode runs in its own process on a fresh store (one chDB path per process): generated traffic, then
a full build of its visits (analytics.visits.refresh) while another thread sends the realtime query of
the dashboard every 50 ms, like a dashboard left open. Printed: the build's duration and the latency of
those queries (median and worst). Modes:
- `batched`: Store.delete as it is (one asynchronous delete per table for the whole build, then polling);
- `synchronous`: Store.delete replaced by what the builder did before, a synchronous DELETE per table
  and run of days, each holding the connection ~1.3 s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_mode(mode: str, events: int) -> dict[str, float]:
    from analytics import stats, visits
    from analytics.stats_traffic import generate_traffic
    from analytics.store import Store

    store = Store(f"chdb://{tempfile.mkdtemp(prefix='cg-build-bench-')}/store")
    store.migrate()
    generate_traffic(store, "bench", events, 90, tz="Europe/Amsterdam", hostname="www.example.com")
    if mode == "synchronous":
        def delete(deletes: list, wait: bool = True, timeout: float = 0) -> None:
            for table, where, parameters in deletes:
                store.command(f"DELETE FROM {{db}}.{table} WHERE {where}", parameters)
        # the builder deleted per run of days: replay that by building run by run
        store.delete = delete  # type: ignore[method-assign]
        real_build = visits.build_days

        def build_then_delete(store_: Store, site: str, first, last, *args, **kwargs):  # type: ignore[no-untyped-def]
            out = real_build(store_, site, first, last, *args, **kwargs)
            newest = store_.query_value("SELECT max(build) FROM {db}.visit_days WHERE site = {s:String}", {"s": site})
            for table, day in (("visits", "toDate(timestamp)"), ("hit_hours", "toDate(timestamp)"), ("visit_days", "day")):
                store_.command(f"DELETE FROM {{db}}.{table} WHERE site = {{s:String}} AND {day} >= {{a:Date}} "
                               f"AND {day} <= {{b:Date}} AND build != {{n:UInt64}}", {"s": site, "a": first, "b": last, "n": newest})
            return out
        visits.build_days = build_then_delete  # type: ignore[assignment]
    today = date.today()
    query = stats.StatsQuery("bench", today, today, "Europe/Amsterdam")
    latencies: list[float] = []
    done = threading.Event()

    def dashboard() -> None:
        while not done.is_set():
            started = time.monotonic()
            stats.realtime(store, query)
            latencies.append(time.monotonic() - started)
            done.wait(0.05)

    reader = threading.Thread(target=dashboard)
    started = time.monotonic()
    reader.start()
    days = visits.refresh(store)
    took = time.monotonic() - started
    done.set()
    reader.join()
    store.close()
    return {"days": days, "build_s": took, "queries": len(latencies), "median_ms": statistics.median(latencies) * 1000,
            "worst_ms": max(latencies) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--mode", choices=["batched", "synchronous"], help="run one mode here (used by the runs)")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.events)))
        return
    results = {}
    for mode in ("batched", "synchronous"):
        print(f"  {mode}: generating {args.events:,} events and building their visits ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--events", str(args.events)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    print(f"\n  {'mode':<12} {'days':>5} {'build':>8} {'queries':>8} {'median':>9} {'worst':>9}")
    for mode, r in results.items():
        print(f"  {mode:<12} {r['days']:>5} {r['build_s']:>7.1f}s {r['queries']:>8} {r['median_ms']:>7.0f}ms {r['worst_ms']:>7.0f}ms")
    b, s = results["batched"], results["synchronous"]
    print(f"\n  build {s['build_s'] / b['build_s']:.1f}x faster; worst stats query {s['worst_ms'] / b['worst_ms']:.1f}x shorter")


if __name__ == "__main__":
    main()
