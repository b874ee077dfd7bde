"""Several gateways on one store: a withdrawal, a new choice or an erasure at one holds at all within 2 s.

No ClickHouse server runs here, so the scaled-out shape is run with what is real: one child
process (`python tests/test_scale_out.py CONFIG...`) holds two gateways, each a real Services
and Starlette app under its own uvicorn server (in threads), each with its own spool and
revocation list, both on one real chDB store (chDB allows one data path per process). The
test drives them over HTTP like a load balancer that sends a visitor's hits anywhere.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness import ROOT, SITE_ORIGIN, STATS_TOKEN, UA_CHROME, free_port, gateways_on_one_store, grant, write_config

BOUND_S = 2.0  # the promise: every gateway learns a decision made at another within 2 seconds
HEADERS = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}


def serve_gateways(config_paths: list[str]) -> None:
    """Child process: one uvicorn server per config, in threads, until stdin closes."""
    import uvicorn

    from gateway.app import create_app
    from gateway.config import load_config

    servers = []
    for path in config_paths:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(load_config(path)), host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        servers.append(server)
        print(port, flush=True)
    sys.stdin.read()  # the test closes stdin to stop us
    for server in servers:
        server.should_exit = True
    time.sleep(1.5)


@pytest.fixture
def two_gateways(tmp_path: Path):
    with gateways_on_one_store(tmp_path, [{"revocation_sync_interval": 0.5}] * 2) as clients:
        yield clients


def collect(client: httpx.Client, token: str, path: str = "/") -> str:
    r = client.post("/s/demo/collect", json={"url": f"https://www.example.com{path}", "consent": token}, headers=HEADERS)
    assert r.status_code == 202, r.text
    return r.headers["x-consentgate-result"]


def until_dropped(client: httpx.Client, token: str, started: float) -> float:
    """Seconds from `started` until `client` drops the token's hits (fails past the bound, with margin
    for a loaded machine: the delay itself is printed and measured in bench/propagation_bench.py)."""
    while time.monotonic() - started < BOUND_S * 3:
        if collect(client, token, "/probe") != "stored":
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"the other gateway still stores hits {BOUND_S * 3} s after the decision")


def test_withdrawal_at_one_gateway_stops_hits_at_the_other(two_gateways):
    a, b = two_gateways
    token = grant(a, analytics=True, marketing=True)["token"]
    assert collect(b, token) == "stored"  # b trusts a's token: same secret
    started = time.monotonic()
    r = a.request("DELETE", "/s/demo/consent", json={"consent": token}, headers=HEADERS)
    assert r.status_code == 200 and r.json()["withdrawn"] is True
    assert collect(a, token) == "dropped: withdrawn"  # at once where it was made
    delay = until_dropped(b, token, started)
    print(f"withdrawal reached the other gateway after {delay:.2f} s")
    assert collect(b, token) == "dropped: withdrawn"


def test_a_new_choice_at_one_gateway_supersedes_the_old_token_at_the_other(two_gateways):
    a, b = two_gateways
    old = grant(a, analytics=True, marketing=True)
    assert collect(b, old["token"]) == "stored"
    started = time.monotonic()
    r = a.post("/s/demo/consent", json={"choices": {"analytics": True, "marketing": False}, "consent": old["token"]},
               headers=HEADERS)
    new = r.json()
    assert new["consent_id"] == old["consent_id"]
    until_dropped(b, old["token"], started)
    assert collect(b, new["token"]) == "stored"  # the newer token is not touched


def test_erasure_at_one_gateway_holds_at_all(two_gateways):
    a, b = two_gateways
    token = grant(a, analytics=True)["token"]
    for i in range(5):
        assert collect(b, token, f"/before-{i}") == "stored"  # spooled at b, maybe not yet in the store
    started = time.monotonic()
    r = a.request("DELETE", "/s/demo/privacy/me", headers={**HEADERS, "X-Consent-Token": token})
    assert r.status_code == 200, r.text
    until_dropped(b, token, started)
    time.sleep(1.0)  # b's writer has flushed everything it had spooled
    other = grant(b, analytics=True)["token"]  # another visitor: the store still takes hits
    assert collect(a, other) == "stored"
    # The erased visitor's hits, including those b spooled before it learned of the erasure, are gone:
    # the store (read through a gateway's stats API) ends up with the other visitor's one pageview only.
    for _ in range(50):
        summary = a.get("/api/stats/demo/summary", params={},
                        headers={"Authorization": f"Bearer {STATS_TOKEN}"})
        assert summary.status_code == 200, summary.text
        if summary.json()["current"]["pageviews"] >= 1:
            break
        time.sleep(0.1)
    time.sleep(1.0)
    summary = a.get("/api/stats/demo/summary", params={}, headers={"Authorization": f"Bearer {STATS_TOKEN}"})
    assert summary.json()["current"]["pageviews"] == 1, summary.json()


def test_readyz_and_metrics_show_the_sync(two_gateways):
    a, _ = two_gateways
    ready = a.get("/readyz").json()
    assert ready["checks"]["revocations_in_sync"] is True
    metrics = a.get("/metrics").text
    lag = [line for line in metrics.splitlines() if line.startswith("consentgate_revocation_sync_lag_seconds ")]
    assert lag and 0 <= float(lag[0].split()[1]) < BOUND_S


def test_the_same_hits_get_the_same_answers_after_a_restart(make_gateway):
    """The rule that loads at start is the rule that ran live (gateway/revocations.py)."""
    gw = make_gateway()
    tokens = {}
    with gw.client() as c:
        first = grant(c, analytics=True)
        tokens["first"] = first["token"]
        def decide(token: str, **choices: bool) -> str:
            r = c.post("/s/demo/consent", json={"choices": choices, "consent": token}, headers=HEADERS)
            c.cookies.clear()
            return r.json()["token"]
        tokens["same_again"] = decide(tokens["first"], analytics=True)
        tokens["wider"] = decide(tokens["same_again"], analytics=True, marketing=True)
        tokens["narrower"] = decide(tokens["wider"], analytics=True)
        tokens["other_visitor"] = grant(c, analytics=True)["token"]
        c.cookies.clear()
        tokens["withdrawn"] = grant(c, analytics=True)["token"]
        c.cookies.clear()
        c.request("DELETE", "/s/demo/consent", json={"consent": tokens["withdrawn"]}, headers=HEADERS)
        before = {name: collect(c, t) for name, t in tokens.items()}
    gw.stop()
    gw.start()
    with gw.client() as c:
        after = {name: collect(c, t) for name, t in tokens.items()}
    assert after == before
    # and the answers are the rule's: only each visitor's latest token counts
    assert before == {"first": "dropped: withdrawn", "same_again": "dropped: withdrawn", "wider": "dropped: withdrawn",
                      "narrower": "stored", "other_visitor": "stored", "withdrawn": "dropped: withdrawn"}, before


def test_workers_on_the_embedded_store_are_refused_with_the_alternative(tmp_path):
    config = write_config(tmp_path)
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--workers", "2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "ClickHouse server store" in r.stderr and "one process" in r.stderr and "docs/deploy.md" in r.stderr


def test_the_worker_factory_builds_an_app_with_its_own_spool(tmp_path, monkeypatch):
    """Each worker claims its own slot (and spool) while it lives; a freed slot is taken again."""
    from gateway.asgi import CONFIG_ENV, app_from_env, claim_worker_slot

    # A server store that is never contacted: building the app opens no connection.
    config = write_config(tmp_path, {"store": "http://127.0.0.1:9/consentgate", "data_dir": str(tmp_path / "data")})
    monkeypatch.setenv(CONFIG_ENV, str(config))
    first = app_from_env()
    second = app_from_env()
    spools = [app.state.services.config.spool_dir for app in (first, second)]
    assert spools == [tmp_path / "data" / "worker-0" / "spool", tmp_path / "data" / "worker-1" / "spool"]
    first.state.worker_lock.close()  # worker 0 exits
    slot, lock = claim_worker_slot(tmp_path / "data")
    assert slot == 0
    lock.close()
    second.state.worker_lock.close()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    serve_gateways(sys.argv[1:])
