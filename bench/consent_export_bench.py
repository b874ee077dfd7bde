"""The auditor export of a large site: time and gateway memory while streaming N decisions.

    .venv/bin/python bench/consent_export_bench.py --decisions 1000000

Seeds N decisions (a year, evenly spread) into a fresh embedded store, starts a real gateway on it,
exports the year as JSON and as CSV through GET /api/consents/{site}, and prints, per format, the
seconds, bytes and the gateway's resident memory before and at its peak. For contrast it then
loads the same rows in one query (what a non-streamed export would hold) in a child process and
prints that process's growth. Figures are noisy on a shared machine: compare within one run.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import STATS_TOKEN, GatewayProcess, PeakRSS, write_config  # noqa: E402
from test_proof_of_consent import SEED_MILLION, SITES  # noqa: E402

MATERIALIZED = """
import sys
from analytics.store import Store
from gateway.config import load_config
def rss():
    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) / 1024
config = load_config(sys.argv[1])
store = Store(config.store, config.retention_days)
store.query("SELECT 1")
before = rss()
rows = store.query("SELECT timestamp, consent_id, action, method, preferences, analytics, marketing, gpc, "
                   "policy_version, language, page, banner_version FROM {db}.consents WHERE site = 'demo' ORDER BY timestamp")
print(len(rows), round(before), round(rss()))
"""


def export(gw: GatewayProcess, fmt: str) -> tuple[float, int, float, float]:
    assert gw.process is not None
    size = 0
    start = time.perf_counter()
    with PeakRSS(gw.process.pid) as rss, httpx.stream(
            "GET", f"{gw.url}/api/consents/demo", params={"from": "2025-01-01", "to": "2025-12-31", "format": fmt},
            headers={"Authorization": f"Bearer {STATS_TOKEN}"}, timeout=httpx.Timeout(30, read=600)) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            size += len(chunk)
    return time.perf_counter() - start, size, rss.before, rss.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        gw = GatewayProcess(write_config(Path(folder), sites=SITES), Path(folder))
        seeded = subprocess.run([sys.executable, "-c", SEED_MILLION, str(gw.config_path), str(args.decisions)],
                                cwd=ROOT, capture_output=True, text=True)
        if seeded.returncode:
            raise SystemExit(seeded.stderr)
        gw.start()
        try:
            for fmt in ("json", "csv"):
                seconds, size, before, peak = export(gw, fmt)
                print(f"{fmt}: {args.decisions} decisions, {size / 1e6:.0f} MB in {seconds:.1f} s; "
                      f"gateway RSS {before:.0f} MiB before, {peak:.0f} MiB peak (+{peak - before:.0f})")
        finally:
            gw.stop()
        out = subprocess.run([sys.executable, "-c", MATERIALIZED, str(gw.config_path)], cwd=ROOT,
                             capture_output=True, text=True)
        rows, before, after = out.stdout.split()
        print(f"contrast, one query holding every row: {rows} rows, RSS {before} MiB -> {after} MiB "
              f"(+{int(after) - int(before)})")


if __name__ == "__main__":
    main()
