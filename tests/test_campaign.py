"""The crash and outage campaign of docs/reliability.md, run in CI at a size that fits its time.

The campaign itself is `bench/crash_campaign.py` (one implementation for CI and for longer runs); these tests
run it against real gateways and read the summary it prints as its last line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness import ROOT

pytestmark = pytest.mark.alone  # under load by design: run with nothing else beside them (scripts/test)


def campaign(*args: str, timeout: float = 400) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "crash_campaign.py"), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-3000:]
    summary = json.loads(lines[-1])
    print(json.dumps(summary, indent=1))  # the figures, for the log of the run
    print(out.stderr[-4000:], file=sys.stderr)  # what the campaign saw go wrong, shown when a test fails
    return summary | {"exit": out.returncode}


def test_kill_9_at_random_moments_under_load_loses_and_duplicates_nothing():
    s = campaign("kill9", "--rounds", "5", "--threads", "6", "--seconds", "3")
    assert s["acknowledged_hits"] > 100 and s["acknowledged_decisions"] > 10
    assert s["broken_connections"] > 0  # the kills did land mid-traffic
    assert (s["lost_hits"], s["lost_decisions"], s["duplicated_hits"], s["refused_but_stored"], s["other_5xx"]) == (0, 0, 0, 0, 0)
    assert s["exit"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the outage gives the store a tmpfs of its own: mounting needs root")
def test_store_disk_full_for_30_s_under_load_refuses_at_the_limit_and_recovers_everything():
    s = campaign("outage", "--outage", "30", "--threads", "6")
    assert s["store_down_seen_in_metrics"] and s["readyz_503_during"]
    assert s["answered_503"] > 0  # the spool limit was reached: refused, never silently dropped
    assert s["spool_peak_bytes"] >= 1024 * 1024
    assert s["acknowledged_hits"] > 100
    assert (s["lost_hits"], s["lost_decisions"], s["duplicated_hits"], s["refused_but_stored"], s["other_5xx"]) == (0, 0, 0, 0, 0)
    assert s["exit"] == 0
