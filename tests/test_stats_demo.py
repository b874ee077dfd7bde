"""`consentgate demo`: a real demo process generates the asked traffic, shows progress, serves the demo site."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from gateway.demo import DEMO_TOKEN
from harness import ROOT, free_port

EVENTS = 20_000
DAYS = 56


def test_demo_generates_the_asked_traffic_with_a_weekly_pattern(tmp_path):
    port, site_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--events", str(EVENTS), "--days",
                                    str(DAYS), "--dir", str(tmp_path / "data"), "--port", str(port),
                                    "--site-port", str(site_port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    gateway = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{gateway}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        text = log.read_text()
        assert f"{EVENTS:,}/{EVENTS:,} events" in text and "generating traffic [" in text  # progress was shown
        assert f"stats token: {DEMO_TOKEN}" in text

        today = datetime.now(ZoneInfo("Europe/Amsterdam")).date()
        whole = {"from": str(today - timedelta(days=DAYS - 1)), "to": str(today)}
        with httpx.Client(base_url=f"{gateway}/api/stats/demo", headers={"Authorization": f"Bearer {DEMO_TOKEN}"}) as api:
            days = api.get("/timeseries", params=whole).json()["results"]
            events = api.get("/breakdown/event", params={**whole, "limit": "1000"}).json()["results"]
            # every generated row is a pageview or a custom event, and all of them are in the range
            assert sum(d["pageviews"] for d in days) + sum(e["events"] for e in events) == EVENTS
            full_days = [d for d in days if d["bucket"] != str(today)]
            weekday = [d["pageviews"] for d in full_days if date.fromisoformat(d["bucket"]).weekday() < 5]
            weekend = [d["pageviews"] for d in full_days if date.fromisoformat(d["bucket"]).weekday() >= 5]
            assert sum(weekend) / len(weekend) < 0.8 * sum(weekday) / len(weekday)  # quieter weekends
            assert all(d["pageviews"] > 0 for d in full_days)
            channels = {r["value"] for r in api.get("/breakdown/source", params=whole).json()["results"]}
            assert {"search", "social", "direct", "email", "paid"} <= channels
            devices = {r["value"] for r in api.get("/breakdown/device", params=whole).json()["results"]}
            assert devices == {"desktop", "mobile", "tablet"}
            consent = api.get("/consent", params=whole).json()
            assert all(n > 0 for n in consent["methods"].values()) and consent["withdrawals"] > 0
            assert 0 < consent["visible_share"] < 100
            summary = api.get("/summary", params=whole).json()["current"]
            assert 30 < summary["bounce_rate"] < 60 and summary["visits"] > summary["visitors"]
        page = httpx.get(f"http://127.0.0.1:{site_port}/pricing")
        assert page.status_code == 200 and f'src="{gateway}/s/demo/banner.js"' in page.text
        assert httpx.get(f"{gateway}/s/demo/banner.js").status_code == 200
    finally:
        process.terminate()
        process.wait(30)
