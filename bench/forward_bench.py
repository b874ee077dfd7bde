"""What forwarding costs `collect`, and how fast the outbox drains to a local vendor.

Starts a real gateway with two sites, `plain` (no vendors) and `fwd` (three webhook vendors on
one local accepting server), sends N hits to each, interleaved, and prints the median and p95
collect latency per site and their ratio (measured side by side in one run). Then it times how
long the vendors take to receive every delivery.

    .venv/bin/python bench/forward_bench.py [--hits 2000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from forwarding_helpers import GATEWAY, send_hit, webhook  # noqa: E402
from harness import SITE_ORIGIN, GatewayProcess, grant, write_config  # noqa: E402
from vendor_servers import VendorServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, default=2000)
    args = parser.parse_args()
    vendor = VendorServer().start()
    with tempfile.TemporaryDirectory() as folder:
        vendors = [webhook(f"v{i}", f"{vendor.url}/v{i}", max_concurrency=8) for i in range(3)]
        config = write_config(Path(folder), GATEWAY, {"plain": {"origins": [SITE_ORIGIN]},
                                                      "fwd": {"origins": [SITE_ORIGIN], "vendors": vendors}})
        gw = GatewayProcess(config, Path(folder)).start()
        try:
            timings: dict[str, list[float]] = {"plain": [], "fwd": []}
            with gw.client() as a, gw.client() as b:
                clients = {"plain": a, "fwd": b}
                tokens = {s: grant(c, site=s, analytics=True, marketing=True)["token"] for s, c in clients.items()}
                started_all = time.perf_counter()
                for i in range(args.hits):
                    for site, times in timings.items():
                        started = time.perf_counter()
                        send_hit(clients[site], tokens[site], f"/p{i % 50}", site=site)
                        times.append(time.perf_counter() - started)
                sent_at = time.perf_counter()
                backlog = 3 * args.hits - len(vendor.accepted())
                expected = 3 * args.hits
                vendor.wait_for(lambda v: len(v.accepted()) >= expected, timeout=600)
                drained_at = time.perf_counter()
            for site, times in timings.items():
                times.sort()
                print(f"{site:>5}: collect median {statistics.median(times) * 1000:.2f} ms, "
                      f"p95 {times[int(len(times) * .95)] * 1000:.2f} ms")
            ratio = statistics.median(timings["fwd"]) / statistics.median(timings["plain"])
            print(f"ratio forwarded/plain (median): {ratio:.2f}")
            print(f"{expected} deliveries to 3 vendors: {expected / (drained_at - started_all):.0f}/s over the whole "
                  f"run; the {backlog} still queued after the last collect drained at "
                  f"{backlog / max(drained_at - sent_at, 1e-9):.0f}/s")
            gw.stop()
        finally:
            gw.kill()
            vendor.stop()


if __name__ == "__main__":
    main()
