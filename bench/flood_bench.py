"""Floods against one real gateway on loopback, bounded in time and count (issue 8, the campaign):
distinct random User-Agents, 1 MB headers, deeply nested and huge JSON, slow bodies (slowloris).
Reports per scenario: requests sent, 5xx, peak RSS of the gateway, p50/p99 of normal hits before,
during and after.  Run: .venv/bin/python bench/flood_bench.py [--scale 1.0]
"""
from __future__ import annotations

import argparse
import random
import socket
import statistics
import string
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import SITE_ORIGIN, UA_CHROME, GatewayProcess, grant, write_config  # noqa: E402


class PeakRSS(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            time.sleep(0.05)


def normal_latencies(c: httpx.Client, token: str, count: int) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        r = c.post("/s/demo/collect", json={"url": f"https://www.example.com/n{i}", "consent": token},
                   headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME})
        out.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 202, r.status_code
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    args = parser.parse_args()
    n = lambda base: max(1, int(base * args.scale))  # noqa: E731
    folder = Path(tempfile.mkdtemp(prefix="flood-"))
    gw = GatewayProcess(write_config(folder), folder).start()
    rss = PeakRSS(gw.process.pid)
    rss.start()
    rows = []
    try:
        with gw.client() as c:
            token = grant(c, analytics=True)["token"]
            normal_latencies(c, token, 50)  # warm-up

            def scenario(name: str, flood) -> None:
                before = normal_latencies(c, token, n(200))
                rss.peak = 0
                during: list[float] = []
                stop = threading.Event()

                def probe() -> None:
                    with gw.client() as pc:
                        while not stop.is_set():
                            during.extend(normal_latencies(pc, token, 5))

                prober = threading.Thread(target=probe)
                prober.start()
                sent, errors5 = flood()
                stop.set()
                prober.join()
                after = normal_latencies(c, token, n(200))
                rows.append((name, sent, errors5, rss.peak / 2**20, pct(before, 99), pct(during, 99) if len(during) > 1
                             else float("nan"), pct(after, 99), pct(before, 50), pct(after, 50)))

            def post_many(make, count: int, workers: int = 8) -> tuple[int, int]:
                def one(i: int) -> int:
                    with httpx.Client(base_url=gw.url, timeout=30) as fc:
                        try:
                            return make(fc, i).status_code
                        except httpx.HTTPError:
                            return 0
                with ThreadPoolExecutor(workers) as pool:
                    statuses = list(pool.map(one, range(count)))
                return count, sum(s >= 500 for s in statuses)

            rand = lambda k: "".join(random.choices(string.ascii_letters + string.digits, k=k))  # noqa: E731
            scenario("distinct random User-Agents", lambda: post_many(lambda fc, i: fc.post(
                "/s/demo/collect", json={"url": "https://www.example.com/", "consent": token},
                headers={"Origin": SITE_ORIGIN, "User-Agent": f"Mozilla/5.0 ({rand(40)}) {rand(400)}"}), n(5000)))
            scenario("1 MB headers", lambda: post_many(lambda fc, i: fc.post(
                "/s/demo/consent", json={"choices": {}}, headers={"User-Agent": rand(16) + "x" * 2**20}), n(300), 4))
            scenario("deeply nested JSON (100k levels)", lambda: post_many(lambda fc, i: fc.post(
                "/s/demo/collect", content=b"[" * 60_000 + b"]" * 60_000 if i % 2 else b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
                headers={"Origin": SITE_ORIGIN}), n(300)))
            scenario("huge JSON (60 KB and 10 MB bodies)", lambda: post_many(lambda fc, i: fc.post(
                "/s/demo/collect", content=(b'{"url":"https://www.example.com/","x":"' + b"y" * (60_000 if i % 2 else 10 * 2**20) + b'"}'),
                headers={"Origin": SITE_ORIGIN}), n(200), 4))

            def slowloris() -> tuple[int, int]:
                socks = []
                for _ in range(n(300)):
                    s = socket.create_connection(("127.0.0.1", gw.port))
                    s.sendall(b"POST /s/demo/collect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 60000\r\nOrigin: " + SITE_ORIGIN.encode() + b"\r\n\r\n{")
                    socks.append(s)
                for _ in range(20):  # 10 s of one byte per connection every half second
                    for s in socks:
                        try:
                            s.sendall(b" ")
                        except OSError:
                            pass
                    time.sleep(0.5)
                for s in socks:
                    s.close()
                return len(socks), 0

            scenario("slow bodies (slowloris, 300 connections, 10 s)", slowloris)
    finally:
        rss.running = False
        gw.stop()
    print("| scenario | sent | 5xx | peak RSS MB | p99 before ms | p99 during ms | p99 after ms | p50 before/after ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, sent, e5, peak, b99, d99, a99, b50, a50 in rows:
        print(f"| {name} | {sent} | {e5} | {peak:.0f} | {b99:.1f} | {d99:.1f} | {a99:.1f} | {b50:.1f} / {a50:.1f} |")


if __name__ == "__main__":
    main()
