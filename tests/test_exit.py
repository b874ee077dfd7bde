"""Every command exits cleanly: 0 on success, a clear non-zero code with a message on failure, never a
crash (139 = SIGSEGV, 134 = SIGABRT, or death by those signals).

The crash this guards against: bench/stats_bench.py printed its table and died with exit 139. The visit
builder (analytics/visits.py) was still inside a chDB query in its daemon thread when the interpreter
finalized; chDB's engine was torn down under it. Now Services.stop stops the builder and closes the
store, every command that opens the store closes it, and a store nobody closed is closed at exit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness import ROOT, SITE_ORIGIN, STATS_TOKEN, UA_CHROME, GatewayProcess, grant, write_config

CRASHES = {139, 134, -signal.SIGSEGV, -signal.SIGABRT}
ADMIN_TOKEN = "admin-token-for-exit-tests-0123456789"
AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_")})


def send_hits(gw: GatewayProcess, n: int) -> str:
    """n stored page views of one visitor; returns its consent id."""
    with gw.client() as c:
        consent = grant(c, analytics=True)
        for i in range(n):
            r = c.post("/s/demo/collect", json={"type": "pageview", "url": f"https://www.example.com/p{i}",
                                                "consent": consent["token"]},
                       headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME})
            assert r.headers["x-consentgate-result"] == "stored", r.text
    return consent["consent_id"]


# A thread inside a long chDB query while the main thread ends: what the visit builder did at the end
# of the stats bench. The Store is never closed by the script: the store's own exit hook must do it.
QUERY_IN_FLIGHT_AT_EXIT = """
import sys, threading, time
from analytics.store import Store
store = Store(sys.argv[1])
store.query_value("SELECT 1")
inside = threading.Event()
def query_forever():
    while True:
        inside.set()
        store.query_value("SELECT count() FROM numbers(200000000) WHERE number % 7 = 3")
threading.Thread(target=query_forever, daemon=True).start()
inside.wait(30)
time.sleep(0.3)
print("exiting with a query in flight", flush=True)
"""


def test_a_query_in_flight_at_interpreter_exit_does_not_crash_the_process(tmp_path: Path):
    out = subprocess.run([sys.executable, "-c", QUERY_IN_FLIGHT_AT_EXIT, f"chdb://{tmp_path / 'store'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert "exiting with a query in flight" in out.stdout
    assert out.returncode == 0, f"exit {out.returncode}:\n{out.stderr[-2000:]}"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_exits_0_after_a_stop_signal_with_hits_spooled(make_gateway, signum: int):
    # flush_interval 60: the hits are still in the spool when the signal comes; stopping writes them out.
    gw = make_gateway(gateway={"flush_interval": 60, "stats_refresh_seconds": 0.1})
    send_hits(gw, 25)
    # A stats request starts the visit builder: the thread the stats bench died of.
    assert httpx.get(f"{gw.url}/api/stats/demo/summary", headers=AUTH, timeout=30).status_code == 200
    gw.process.send_signal(signum)
    code = gw.process.wait(120)
    assert code == 0, f"exit {code}:\n{gw.logs()[-3000:]}"
    assert "spool fully written to the store" in gw.logs()
    assert gw.sql("SELECT count() AS n FROM {db}.events WHERE site = 'demo'") == [{"n": 25}]


def test_cli_commands_exit_0_on_success_and_1_or_2_with_a_message_on_failure(make_gateway, tmp_path: Path):
    gw = make_gateway(gateway={"admin_tokens": [ADMIN_TOKEN]})
    consent_id = send_hits(gw, 3)
    config = str(gw.config_path)
    privacy = ("--config", config, "--site", "demo", "--consent-id", consent_id, "--url", gw.url, "--token", ADMIN_TOKEN)
    running = {
        "consents export": cli("consents", "export", "--config", config, "--site", "demo", "--url", gw.url,
                               "--token", STATS_TOKEN, "--out", str(tmp_path / "consents.json")),
        "privacy export": cli("privacy", "export", *privacy, "--out", str(tmp_path / "visitor.json")),
        "privacy restrict": cli("privacy", "restrict", *privacy),
        "privacy lift": cli("privacy", "lift", *privacy),
        "backup": cli("backup", "--config", config, "--to", str(tmp_path / "backup"), "--url", gw.url,
                      "--token", ADMIN_TOKEN),
        "privacy erase": cli("privacy", "erase", *privacy),
        "check-config": cli("check-config", config),
        "scan --help": cli("scan", "--help"),
        "vendors test --help": cli("vendors", "test", "--help"),
    }
    for name, out in running.items():
        assert out.returncode == 0, f"{name}: exit {out.returncode}\n{out.stderr[-2000:]}"
    assert json.loads((tmp_path / "visitor.json").read_text())
    # Failures while the gateway runs: a clear message and 1 (or 2 for usage), never a crash.
    failing = {
        "sql (store locked by the gateway)": (cli("sql", "--config", config, "SELECT 1 AS one"), "is the gateway running"),
        "privacy export (wrong token)": (cli("privacy", "export", *privacy[:-1], "wrong-token-" + "0" * 24), "401"),
        "restore (store not empty)": (cli("restore", "--config", config, "--from", str(tmp_path / "backup")), "restore"),
        "unknown command": (cli("no-such-command"), "invalid choice"),
    }
    for name, (out, message) in failing.items():
        assert out.returncode in (1, 2) and out.returncode not in CRASHES, f"{name}: exit {out.returncode}\n{out.stderr}"
        assert message in out.stderr, f"{name}: {out.stderr[-2000:]}"
    gw.stop()
    counted = cli("sql", "--config", config, "SELECT count() AS n FROM {db}.events")
    assert counted.returncode == 0, counted.stderr
    assert [json.loads(line) for line in counted.stdout.splitlines()] == [{"n": 0}]  # erased above
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    restored = cli("restore", "--config", str(write_config(fresh)), "--from", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr
    bad_sql = cli("sql", "--config", config, "SELECT no_such_column FROM {db}.events")
    assert bad_sql.returncode == 1 and "consentgate sql:" in bad_sql.stderr


def test_the_stats_bench_exits_0_after_printing_its_table(tmp_path: Path):
    out = subprocess.run([sys.executable, "bench/stats_bench.py", "--events", "2000", "--days", "3", "--repeat", "1",
                          "--only", "filtered by page", "--store", str(tmp_path / "store")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"exit {out.returncode}:\n{out.stderr[-3000:]}"
    assert "summary, filtered by page" in out.stdout
