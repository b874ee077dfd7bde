"""Crash and outage campaign: what the gateway acknowledged is stored exactly once, whatever happens to it.

    .venv/bin/python bench/crash_campaign.py kill9 --rounds 5        # kill -9 at random moments under load
    .venv/bin/python bench/crash_campaign.py outage --outage 30      # the store unreachable for 30 s under load

Traffic: several threads, each a visitor that gives (or refuses) consent and then sends
page views with a unique path each, plus hits with a refused token that must never be
stored. Every answer is recorded: 2xx (acknowledged), 503 (refused, to be retried),
or a broken connection (not acknowledged). Afterwards the gateway is stopped with
SIGTERM and the store is reconciled against the answers: every acknowledged hit and
consent decision is there exactly once, nothing refused is there, nothing twice.

`kill9`: each round runs traffic for a random 1-4 s, kills the gateway with SIGKILL
mid-traffic, and restarts it on the same data.
`outage`: the store's disk fills up (a real ENOSPC: the embedded store lives on a small
tmpfs that a ballast file fills; needs root for the mount) for --outage seconds while
traffic goes on with a small max_spool_bytes; the backlog shows in /metrics, the limit
answers 503, and once space is back everything acknowledged is written once. p99 latency of acknowledged hits
is reported before, during and after the outage.

Prints a JSON summary as its last line and exits 1 when anything was lost or duplicated.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness import SITE_ORIGIN, UA_CHROME, GatewayProcess, write_config  # noqa: E402

H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}


@dataclass
class Ledger:
    """What the gateway answered, shared by the traffic threads."""

    acked_paths: set[str] = field(default_factory=set)
    refused_paths: set[str] = field(default_factory=set)  # sent with a refused token: must never be stored
    answered_503_paths: set[str] = field(default_factory=set)  # 503: not acknowledged, must not be stored
    acked_decisions: dict[str, int] = field(default_factory=dict)  # consent id -> acknowledged decisions
    sent: int = 0
    http_5xx_other: int = 0
    broken: int = 0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (time, seconds) of acknowledged hits
    lock: threading.Lock = field(default_factory=threading.Lock)


def visitor(base_url: str, ledger: Ledger, stop: threading.Event, rng: random.Random) -> None:
    """One browser: consents (or refuses), then views pages until told to stop."""
    with httpx.Client(base_url=base_url, timeout=10) as c:
        token = ""
        consent_id = ""
        while not stop.is_set():
            try:
                if not token or rng.random() < 0.05:  # a new decision now and then (narrowing included)
                    analytics = rng.random() < 0.8
                    body = {"choices": {"analytics": analytics}, "method": "custom", "language": "nl"}
                    if token:
                        body["consent"] = token
                    r = c.post("/s/demo/consent", json=body, headers=H)
                    with ledger.lock:
                        ledger.sent += 1
                    if r.status_code == 200:
                        data = r.json()
                        token, consent_id = data["token"], data["consent_id"]
                        with ledger.lock:
                            ledger.acked_decisions[consent_id] = ledger.acked_decisions.get(consent_id, 0) + 1
                        granted = analytics
                    elif r.status_code == 503:
                        stop.wait(0.2)  # as the banner would: try again a little later
                    elif r.status_code >= 500:
                        with ledger.lock:
                            ledger.http_5xx_other += 1
                    continue
                path = f"/k/{uuid.uuid4().hex}"
                started = time.monotonic()
                r = c.post("/s/demo/collect", json={"url": f"{SITE_ORIGIN}{path}", "consent": token}, headers=H)
                with ledger.lock:
                    ledger.sent += 1
                    if r.status_code == 202:
                        result = r.headers.get("x-consentgate-result", "")
                        if result == "stored":
                            ledger.acked_paths.add(path)
                            ledger.latencies.append((time.monotonic(), time.monotonic() - started))
                        elif not granted:
                            ledger.refused_paths.add(path)
                    elif r.status_code == 503:
                        ledger.answered_503_paths.add(path)
                    elif r.status_code >= 500:
                        ledger.http_5xx_other += 1
                if r.status_code == 503:
                    stop.wait(0.05)  # back off a little, as a client told Retry-After would
            except httpx.HTTPError:
                with ledger.lock:
                    ledger.broken += 1  # the gateway died mid-request: not acknowledged
                stop.wait(0.05)


def traffic(base_url: str, ledger: Ledger, threads: int, seed: int) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    workers = [threading.Thread(target=visitor, args=(base_url, ledger, stop, random.Random(seed * 100 + i)), daemon=True)
               for i in range(threads)]
    for w in workers:
        w.start()
    return stop, workers


def reconcile(gw: GatewayProcess, ledger: Ledger) -> dict:
    events = gw.sql("SELECT path, count() AS n FROM {db}.events GROUP BY path")
    stored = {r["path"]: r["n"] for r in events}
    decisions = {r["consent_id"]: r["n"] for r in gw.sql("SELECT consent_id, count() AS n FROM {db}.consents GROUP BY consent_id")}
    dup_ids = gw.sql("SELECT count() - uniqExact(event_id) AS d FROM {db}.events")[0]["d"]
    return {
        "sent": ledger.sent,
        "acknowledged_hits": len(ledger.acked_paths),
        "acknowledged_decisions": sum(ledger.acked_decisions.values()),
        "stored_hits": sum(stored.values()),
        "stored_decisions": sum(decisions.values()),
        "lost_hits": len([p for p in ledger.acked_paths if p not in stored]),
        "lost_decisions": sum(max(0, n - decisions.get(cid, 0)) for cid, n in ledger.acked_decisions.items()),
        "duplicated_hits": sum(n - 1 for n in stored.values() if n > 1) + dup_ids,
        "refused_but_stored": len([p for p in ledger.refused_paths | ledger.answered_503_paths if p in stored]),
        "answered_503": len(ledger.answered_503_paths),
        "other_5xx": ledger.http_5xx_other,
        "broken_connections": ledger.broken,
    }


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 1)


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except FileNotFoundError:
        pass
    return float("nan")


def kill9(args: argparse.Namespace, folder: Path) -> dict:
    # Each traffic thread sends hundreds of hits a minute with one token: the behavioural bot check is off.
    gw = GatewayProcess(write_config(folder, {"consent_rate_per_minute": 1_000_000, "bot_hits_per_minute": 0}), folder)
    ledger = Ledger()
    rng = random.Random(args.seed)
    peak = 0.0
    for round_ in range(args.rounds):
        gw.start()
        stop, workers = traffic(gw.url, ledger, args.threads, args.seed + round_)
        time.sleep(rng.uniform(1.0, args.seconds))
        assert gw.process is not None
        peak = max(peak, peak_rss_mb(gw.process.pid))
        gw.process.send_signal(signal.SIGKILL)  # mid-traffic: requests in flight break
        gw.process.wait(10)
        stop.set()
        for w in workers:
            w.join(15)
        print(f"round {round_ + 1}/{args.rounds}: killed; so far {len(ledger.acked_paths)} hits and "
              f"{sum(ledger.acked_decisions.values())} decisions acknowledged", flush=True)
    gw.start()
    gw.stop()
    summary = reconcile(gw, ledger)
    summary.update(scenario=f"kill -9 under load, {args.rounds} rounds, {args.threads} visitors", peak_rss_mb=peak)
    return summary


def outage(args: argparse.Namespace, folder: Path) -> dict:
    """The store's disk fills up while the gateway runs (a real ENOSPC: the store lives on a small tmpfs of its
    own, and a ballast file takes the rest), then space comes back. The spool is on another file system."""
    storefs = folder / "storefs"
    storefs.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.store_fs_mb}m", "tmpfs", str(storefs)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        raise SystemExit(f"the outage scenario mounts a small tmpfs for the store and needs root: {mounted.stderr.strip()}")
    try:
        return _outage(args, folder, storefs)
    finally:
        subprocess.run(["umount", "-l", str(storefs)], capture_output=True)


def _outage(args: argparse.Namespace, folder: Path, storefs: Path) -> dict:
    max_spool = args.max_spool_mb * 1024 * 1024
    gw = GatewayProcess(write_config(folder, {"consent_rate_per_minute": 1_000_000, "bot_hits_per_minute": 0,
                                              "max_spool_bytes": max_spool, "store": f"chdb://{storefs / 'chdb'}", "data_dir": str(folder / "data")}),
                        folder)
    gw.start()
    ledger = Ledger()
    stop, workers = traffic(gw.url, ledger, args.threads, args.seed)
    t0 = time.monotonic()
    time.sleep(3)  # before: normal service
    ballast = storefs / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)  # fill the store's file system to the last byte
    for size in (1024 * 1024, 4096, 1):
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
    os.close(fd)
    t_fault = time.monotonic()
    spool_peak = 0.0
    store_down_seen = False
    ready_503 = False
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        while time.monotonic() - t_fault < args.outage:
            for line in c.get("/metrics").text.splitlines():
                if line.startswith("consentgate_spool_disk_bytes "):
                    spool_peak = max(spool_peak, float(line.split()[1]))
                if line.startswith("consentgate_store_up ") and float(line.split()[1]) == 0:
                    store_down_seen = True
            ready_503 |= c.get("/readyz").status_code == 503
            time.sleep(1)
        ballast.unlink()  # space is back
        t_back = time.monotonic()
        deadline = time.monotonic() + 90
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        t_ready = time.monotonic()
        if c.get("/readyz").status_code != 200:  # not back: what the gateway said, for whoever reads the run
            said = [line for line in gw.logs().splitlines() if "consentgate.access" not in line]  # not the requests
            print(f"the gateway is not ready 90 s after space came back: {c.get('/readyz').text}\n"
                  + "\n".join(said[-60:]), file=sys.stderr)
        time.sleep(5)  # after: normal service again
    stop.set()
    for w in workers:
        w.join(15)
    assert gw.process is not None
    peak = peak_rss_mb(gw.process.pid)
    gw.stop()
    summary = reconcile(gw, ledger)
    lat = ledger.latencies
    summary.update(
        scenario=f"store disk full (ENOSPC) for {args.outage:.0f} s under load, max_spool_bytes {args.max_spool_mb} MiB, "
                 f"{args.threads} visitors",
        store_down_seen_in_metrics=store_down_seen, spool_peak_bytes=int(spool_peak), readyz_503_during=ready_503,
        recovery_seconds=round(t_ready - t_back, 1), peak_rss_mb=peak,
        p99_ms_before=p99([s for t, s in lat if t < t_fault]),
        p99_ms_during=p99([s for t, s in lat if t_fault <= t < t_back]),
        p99_ms_after=p99([s for t, s in lat if t >= t_ready]),
        total_seconds=round(time.monotonic() - t0, 1),
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["kill9", "outage"])
    parser.add_argument("--rounds", type=int, default=5, help="kill9: kill/restart rounds")
    parser.add_argument("--seconds", type=float, default=4.0, help="kill9: longest traffic time before a kill")
    parser.add_argument("--outage", type=float, default=30.0, help="outage: seconds the store stays unreachable")
    parser.add_argument("--max-spool-mb", type=int, default=1, help="outage: max_spool_bytes in MiB")
    parser.add_argument("--store-fs-mb", type=int, default=256, help="outage: size of the store's own file system")
    parser.add_argument("--threads", type=int, default=8, help="concurrent visitors")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    with tempfile.TemporaryDirectory(prefix="cg-campaign-") as tmp:
        try:
            summary = (kill9 if args.scenario == "kill9" else outage)(args, Path(tmp))
        finally:  # never leave a gateway behind, whatever failed
            subprocess.run(["pkill", "-9", "-f", f"--config {tmp}/"], capture_output=True)
    print(json.dumps(summary))
    bad = summary["lost_hits"] or summary["lost_decisions"] or summary["duplicated_hits"] \
        or summary["refused_but_stored"] or summary["other_5xx"]
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
