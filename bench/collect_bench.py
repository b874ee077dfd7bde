"""Collect throughput: the real gateway against a bare Starlette app, same server settings, same load.

    .venv/bin/python bench/collect_bench.py            # realistic hits (varied consented visitors, UAs, IPs)
    .venv/bin/python bench/collect_bench.py --flood    # a distinct User-Agent on every hit (what an attacker buys)
    .venv/bin/python bench/collect_bench.py --durability both   # durability = machine vs process, same run

Both servers run as uvicorn processes with uvloop + httptools, one worker, access logs
as in production (the gateway's truncating log on, uvicorn's own off). Debian's wrk
drives each for the same time, one after the other, and the script prints hits/s,
p99 latency, errors and the ratio gateway / bare. Afterwards it stops the gateway
with SIGTERM and checks that every hit wrk saw acknowledged as stored is in the store.
Machines here are shared and noisy: read the ratio, not the absolute figures.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness import free_port, write_config  # noqa: E402

# A realistic mix: desktop and mobile Chrome, Safari, Firefox, Edge, Samsung, in rough market shares.
USER_AGENTS = [
    (30, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
    (18, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1"),
    (15, "Mozilla/5.0 (Linux; Android 14; Pixel {m}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36"),
    (10, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15"),
    (8, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0"),
    (7, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"),
    (5, "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S91{m}B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/{v}.0.0.0 Mobile Safari/537.36"),
    (4, "Mozilla/5.0 (iPad; CPU OS 16_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.{m} Mobile/15E148 Safari/604.1"),
    (3, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
]
PAGES = ["/", "/pricing", "/blog/avg-en-cookies", "/contact", "/features", "/blog/consent-mode-v2", "/about"]
REFERRERS = ["", "", "https://www.google.com/", "https://www.bing.com/", "https://www.linkedin.com/", "https://duckduckgo.com/"]


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not come up")


def make_hits(gateway_url: str, visitors: int, out: Path) -> int:
    """Gives consent for `visitors` visitors and writes one prepared hit per line for wrk."""
    rng = random.Random(7)
    weights = [w for w, _ in USER_AGENTS]
    lines = []
    with httpx.Client(base_url=gateway_url, timeout=10) as c:
        for i in range(visitors):
            c.cookies.clear()  # each visitor is a browser of its own: its own consent id, not the previous one's
            r = c.post("/s/bench/consent", json={"choices": {"analytics": True}, "method": "custom"},
                       headers={"Origin": "https://www.example.com"})
            r.raise_for_status()
            token = r.json()["token"]
            ua = rng.choices(USER_AGENTS, weights)[0][1].format(v=rng.randint(118, 125), m=rng.randint(1, 8))
            ip = f"203.0.113.{rng.randint(1, 254)}" if i % 3 else f"2001:db8:{rng.randint(0, 0xffff):x}::{rng.randint(1, 0xffff):x}"
            for _ in range(3):
                body = json.dumps({"type": "pageview", "url": "https://www.example.com" + rng.choice(PAGES)
                                   + ("?utm_source=newsletter" if rng.random() < 0.1 else ""),
                                   "referrer": rng.choice(REFERRERS), "consent": token})
                lines.append(f"{ip}\t{ua}\t{body}")
    rng.shuffle(lines)
    out.write_text("\n".join(lines) + "\n")
    return len(lines)


WRK_RE = {
    "rps": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "p99": re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M),
    "non2xx": re.compile(r"Non-2xx or 3xx responses:\s+(\d+)"),
    "socket": re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"),
    "requests": re.compile(r"(\d+) requests in"),
    "stored": re.compile(r"CG_STORED (\d+)"),
}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, hits: Path, seconds: int, connections: int, flood: bool, pid: int) -> dict:
    env = {**os.environ, "CG_HITS": str(hits), "CG_FLOOD": "1" if flood else "0"}
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
                          str(ROOT / "bench" / "collect.lua"), url], capture_output=True, text=True, env=env)
    cpu = cpu_seconds(pid) - cpu_before
    text = out.stdout + out.stderr
    m = WRK_RE["p99"].search(text)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    socket = WRK_RE["socket"].search(text)
    return {
        "rps": float(WRK_RE["rps"].search(text).group(1)),
        "p99_ms": float(m.group(1)) * scale[m.group(2)] if m else float("nan"),
        "errors": int((WRK_RE["non2xx"].search(text) or [0, 0])[1]) + (sum(map(int, socket.groups())) if socket else 0),
        "requests": int(WRK_RE["requests"].search(text).group(1)),
        "stored": int(WRK_RE["stored"].search(text).group(1)),
        "cpu_s": cpu,
    }


def serve(args: list[str], port: int, log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(args + ["--port", str(port)], cwd=cwd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flood", action="store_true", help="a distinct User-Agent on every hit")
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="bare/gateway pairs, interleaved")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--visitors", type=int, default=400)
    parser.add_argument("--durability", choices=["machine", "process", "both"], default="machine",
                        help="the gateway's durability setting; both: one gateway of each, rounds interleaved")
    parser.add_argument("--baseline", help="another checkout (e.g. `git worktree add /tmp/old COMMIT`) served side by "
                                           "side as gw-baseline, with the first gateway's settings: before/after")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: run scripts/setup (it installs Debian's wrk)")
    work = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    modes = ["machine", "process"] if args.durability == "both" else [args.durability]
    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline is not None:
        if not (baseline / "gateway" / "cli.py").is_file():
            raise SystemExit(f"--baseline {baseline}: no consentgate checkout there (git worktree add {baseline} COMMIT)")
        modes.append("baseline")  # the other checkout, same settings as the first gateway
    names = {m: "gateway" if len(modes) == 1 else f"gw-{m}" for m in modes}
    py = sys.executable
    configs, gateways, ports = {}, {}, {}
    for mode in modes:
        folder = work / mode
        folder.mkdir()
        tree = baseline if mode == "baseline" and baseline is not None else ROOT
        # wrk replays 3 hits per visitor thousands of times a minute: the rate check runs, never trips
        rate = {"bot_hits_per_minute": 1_000_000_000} if "bot_hits_per_minute" in (tree / "gateway" / "config.py").read_text() else {}
        configs[mode] = write_config(folder, gateway={
            "trusted_proxies": ["127.0.0.1/32"], "consent_rate_per_minute": 1_000_000,
            "durability": modes[0] if mode == "baseline" else mode, **rate,
            "flush_interval": float(os.environ.get("CG_FLUSH", "1.0")),
            **({"commit_interval_ms": float(os.environ["CG_COMMIT_MS"])} if "CG_COMMIT_MS" in os.environ else {})}, sites={"bench": {"origins": ["https://www.example.com"]}})
        ports[mode] = free_port()
        gateways[mode] = serve([py, "-m", "gateway.cli", "serve", "--config", str(configs[mode]), "--host", "127.0.0.1"],
                               ports[mode], folder / "gateway.log", cwd=tree)
    bare_port = free_port()
    bare = serve([py, "-m", "uvicorn", "bare_app:app", "--no-access-log", "--loop", "uvloop", "--http", "httptools",
                  "--host", "127.0.0.1"], bare_port, work / "bare.log", cwd=ROOT / "bench")
    in_store: dict[str, int] = {}
    try:
        for mode in modes:
            wait_up(f"http://127.0.0.1:{ports[mode]}/healthz")
        wait_up(f"http://127.0.0.1:{bare_port}/")
        hits = work / "hits.tsv"
        # Tokens are signed with the shared test secret for site `bench`: valid at every gateway of the run.
        n = make_hits(f"http://127.0.0.1:{ports[modes[0]]}", args.visitors, hits)
        print(f"prepared {n} hits from {args.visitors} consented visitors; {args.rounds} rounds of "
              f"wrk -t2 -c{args.connections} -d{args.seconds}s on each server"
              f"{' (flood: a new User-Agent every hit)' if args.flood else ''}", flush=True)
        # Interleaved rounds: load from other processes drifts over seconds, so each gateway round is
        # compared with the bare round right before it, and the figures are summed over the rounds.
        rounds: dict[str, list[dict]] = {"bare": [], **{names[m]: [] for m in modes}}
        for i in range(args.rounds):
            # The gateways swap places every round: neither always runs right after the bare app.
            order = modes if i % 2 == 0 else modes[::-1]
            for name, port, pid in (("bare", bare_port, bare.pid),
                                    *((names[m], ports[m], gateways[m].pid) for m in order)):
                print(f"  round {i + 1}/{args.rounds}: {name} ...", flush=True)
                rounds[name].append(run_wrk(f"http://127.0.0.1:{port}", hits, args.seconds, args.connections,
                                            args.flood, pid))
        results = {name: {"rps": sum(r["rps"] for r in rs) / len(rs), "p99_ms": max(r["p99_ms"] for r in rs),
                          "errors": sum(r["errors"] for r in rs), "requests": sum(r["requests"] for r in rs),
                          "stored": sum(r["stored"] for r in rs),
                          # CPU time of the server process per request answered: what a hit costs, whatever the load
                          "cpu_us": 1e6 * sum(r["cpu_s"] for r in rs) / max(1, sum(r["requests"] for r in rs))}
                   for name, rs in rounds.items()}
        flushes, stalls = {}, {}
        for mode in modes:  # group-commit rounds per hit answered: how well one fdatasync is shared
            text = httpx.get(f"http://127.0.0.1:{ports[mode]}/metrics").text
            found = re.search(r"^consentgate_spool_flushes (\S+)", text, re.M)
            if found and float(found.group(1)):
                flushes[names[mode]] = float(found.group(1))
            # the event loop's stalls over the whole run (gateway/looplag.py): looks, and how many came late
            lag = {le: float(v) for le, v in re.findall(r'^consentgate_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)',
                                                         text, re.M)}
            if lag:
                stalls[names[mode]] = (lag["+Inf"], lag["+Inf"] - lag["0.05"], lag["+Inf"] - lag["0.25"])
        for mode in modes:
            gateways[mode].send_signal(signal.SIGTERM)
            gateways[mode].wait(120)
            rows = subprocess.run([py, "-m", "gateway.cli", "sql", "--config", str(configs[mode]),
                                   "SELECT count() AS n FROM {db}.events"], cwd=ROOT, capture_output=True, text=True)
            in_store[mode] = json.loads(rows.stdout.splitlines()[0])["n"]
    finally:
        for p in (*gateways.values(), bare):
            if p.poll() is None:
                p.kill()
    b = results["bare"]
    print(f"\n{'':12}{'hits/s':>10}{'p99 ms':>10}{'errors':>8}{'ratio':>8}{'CPU us/hit':>12}")
    for name in ("bare", *names.values()):
        r = results[name]
        print(f"{name:12}{r['rps']:>10.0f}{r['p99_ms']:>10.2f}{r['errors']:>8}{r['rps'] / b['rps']:>8.2f}"
              f"{r['cpu_us']:>12.0f}")
    for name, n in flushes.items():
        print(f"{name}: {n:,.0f} fdatasync rounds, {results[name]['requests'] / n:.1f} hits answered per round")
    for name, (looks, over_50, over_250) in stalls.items():
        print(f"{name}: event loop late by over 50 ms in {over_50:,.0f} of {looks:,.0f} looks (every 0.1 s), over 250 ms in "
              f"{over_250:,.0f}")
    target = 0.4 if args.flood else 0.6
    summary: dict = {"results": results, "in_store": in_store}
    failed = False
    for mode in modes:
        g = results[names[mode]]
        pair_ratios = sorted(x["rps"] / y["rps"] for x, y in zip(rounds[names[mode]], rounds["bare"]))
        summary[f"ratio_{mode}"] = g["rps"] / b["rps"]
        print(f"\n{names[mode]}: ratio / bare {g['rps'] / b['rps']:.2f} (target >= {target}); per round: "
              + ", ".join(f"{r:.2f}" for r in pair_ratios))
        print(f"  acknowledged as stored: {g['stored']}, rows in the store after SIGTERM: {in_store[mode]} "
              f"({'OK' if in_store[mode] >= g['stored'] else 'LOST HITS'}; the store may hold a few more: "
              f"hits answered after wrk stopped counting)")
        failed |= in_store[mode] < g["stored"] or bool(g["errors"])
    if "machine" in names and "process" in names:
        m, p = results[names["machine"]], results[names["process"]]
        summary["machine_over_process"] = m["rps"] / p["rps"]
        per_round = sorted(x["rps"] / y["rps"] for x, y in zip(rounds[names["machine"]], rounds[names["process"]]))
        summary["machine_over_process_rounds"] = per_round
        print(f"\ndurability machine / process: throughput {m['rps'] / p['rps']:.2f} (target >= 0.9; per round, "
              f"sorted: {', '.join(f'{r:.2f}' for r in per_round)}), "
              f"p99 {m['p99_ms']:.1f} ms vs {p['p99_ms']:.1f} ms (+{m['p99_ms'] - p['p99_ms']:.1f} ms, target <= 15)")
    if baseline is not None:
        new, old = results[names[modes[0]]], results[names["baseline"]]
        per_round = sorted(x["rps"] / y["rps"] for x, y in zip(rounds[names[modes[0]]], rounds[names["baseline"]]))
        summary["over_baseline"] = new["rps"] / old["rps"]
        print(f"\n{names[modes[0]]} / baseline ({baseline}): throughput {new['rps'] / old['rps']:.2f} (per round, "
              f"sorted: {', '.join(f'{r:.2f}' for r in per_round)}), CPU per hit {new['cpu_us']:.0f} vs "
              f"{old['cpu_us']:.0f} us")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    suffix = ("-flood" if args.flood else "") + ("-durability" if args.durability == "both" else "") + ("-baseline" if baseline else "")
    (out / f"collect{suffix}.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
