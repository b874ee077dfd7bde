"""Shared bits of the forwarding tests: vendor tables, sending hits, reading metrics."""
from __future__ import annotations

import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness import SITE_ORIGIN, UA_CHROME, grant

FAST_RETRY = {"retry_initial": 0.05, "retry_max": 0.3, "breaker_failures": 3, "breaker_reset": 0.4, "timeout": 5.0}
GATEWAY = {"trusted_proxies": ["127.0.0.1/32"]}


def webhook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "category": "marketing", "type": "webhook", "url": url, **FAST_RETRY, **extra}


def send_hit(client: httpx.Client, token: str, path: str, ip: str = "203.0.113.77", site: str = "demo",
             origin: str = SITE_ORIGIN, referrer: str = "", query: str = "") -> httpx.Response:
    r = client.post(f"/s/{site}/collect",
                    json={"type": "pageview", "url": f"{origin}{path}{query}", "referrer": referrer, "consent": token},
                    headers={"Origin": origin, "User-Agent": UA_CHROME, "X-Forwarded-For": ip})
    assert r.status_code == 202, r.text
    return r


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one sample on the gateway's /metrics (0 when absent)."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.05)


def webhook_gateway(make_gateway, vendor_url: str, name: str = "hook"):
    """A gateway whose site `demo` forwards to one webhook vendor."""
    return make_gateway(gateway=GATEWAY, sites={"demo": {"origins": [SITE_ORIGIN],
                                                         "vendors": [webhook(name, f"{vendor_url}/hook")]}})


def consent_and_send(client: httpx.Client, count: int) -> str:
    """A visitor who accepts everything and views `count` pages; returns their token."""
    token = grant(client, analytics=True, marketing=True)["token"]
    for i in range(count):
        send_hit(client, token, f"/page-{i}")
    return token
