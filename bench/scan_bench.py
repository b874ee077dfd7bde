"""What `consentgate scan` costs: wall time and CPU (the command plus Chromium) on the tests' site.

Starts a real gateway and the leaky test site of tests/test_scan.py (two loopback origins), then
runs the real command N times with --pages P and prints wall seconds, CPU seconds of the command and
its children (Chromium included), and the time per page visit. On a shared machine the CPU seconds
are the steadier figure.

    .venv/bin/python bench/scan_bench.py [--runs 3] [--pages 2]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from harness import GatewayProcess, write_config  # noqa: E402
from test_scan import SITE_COOKIES, TRACKER_COOKIE, ScanSite  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", type=int, default=2, help="pages besides the start URL (the site has 3)")
    args = parser.parse_args()
    site = ScanSite().start()
    with tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(write_config(Path(tmp), sites={"demo": {
            "origins": [site.origin], "cookies": SITE_COOKIES, "cookie": [TRACKER_COOKIE]}}), Path(tmp)).start()
        site.gateway = gw.url
        walls, cpus = [], []
        try:
            for _ in range(args.runs):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.monotonic()
                out = subprocess.run([sys.executable, "-m", "gateway.cli", "scan", site.origin + "/", "--config",
                                      str(gw.config_path), "--pages", str(args.pages), "--json", f"{tmp}/r.json"],
                                     cwd=ROOT, capture_output=True, text=True)
                walls.append(time.monotonic() - started)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                assert out.returncode == 1, out.stdout + out.stderr  # the leaky site has findings
        finally:
            gw.kill()
            site.stop()
    pages = args.pages + 1
    loads = 3 * pages + 2  # each phase visits every page; reject and accept load the start page once more to click
    print(f"scan of {pages} pages x 3 phases ({loads} page loads), {args.runs} runs:")
    print(f"  wall  median {statistics.median(walls):.1f} s  (min {min(walls):.1f}, max {max(walls):.1f})")
    print(f"  CPU   median {statistics.median(cpus):.1f} s  (command + Chromium)")
    print(f"  wall per page load {statistics.median(walls) / loads:.2f} s")


if __name__ == "__main__":
    main()
