"""Bad input to collect: a clear JSON 4xx (or a named drop for bad tokens), never a 5xx, and the service keeps serving."""
import signal
import time

import pytest

from gateway.tokens import TokenSigner
from harness import SECRET, SITE_ORIGIN, UA_CHROME, grant

H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
URL = "https://www.example.com/page"

BAD_BODIES = [
    (b'{"url": "https://www.example.com/"', "not valid JSON"),
    (b'["https://www.example.com/"]', "must be a JSON object"),
    (b"", "body is empty"),
    (b'{"url": 42}', "'url' must be a string"),
    (b'{"type": "pageview"}', "'url' is missing"),
    (b'{"url": "javascript:alert(1)"}', "must be an http(s) URL"),
    (b'{"url": "ftp://www.example.com/"}', "must be an http(s) URL"),
    (b'{"url": "https://www.example.com/", "type": "purchase"}', "'type' must be one of"),
    (b'{"url": "https://www.example.com/", "type": "event"}', "needs a 'name'"),
    (b'{"url": "https://www.example.com/", "referrer": ["x"]}', "'referrer' must be a string"),
    (b'{"url": "https://www.example.com/' + b"a" * 3000 + b'"}', "longer than 2048"),
    (b'{"url": "https://www.example.com/", "name": "' + b"n" * 200 + b'"}', "'name' is longer"),
    (b'{"url": "https://www.example.com/\xff\xfe"}', "not valid UTF-8"),
    (b'{"url": "https://www.example.com/\\ud800"}', "surrogate"),
    (b'{"url": "https://www.example.com/", "consent": {"a": 1}}', "'consent' must be a string"),
]


@pytest.mark.parametrize("body,detail", BAD_BODIES)
def test_bad_bodies_get_400_with_a_clear_detail(module_gateway, body, detail):
    with module_gateway.client() as c:
        r = c.post("/s/demo/collect", content=body, headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request" and detail in r.json()["detail"], r.json()


def test_body_over_64_kib_is_413(module_gateway):
    big = b'{"url": "https://www.example.com/", "pad": "' + b"x" * (64 * 1024) + b'"}'
    with module_gateway.client() as c:
        r = c.post("/s/demo/collect", content=big, headers=H)
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"

        def chunks():  # no Content-Length: the limit holds while streaming too
            for _ in range(70):
                yield b"x" * 1024
        r = c.post("/s/demo/collect", content=chunks(), headers=H)
        assert r.status_code == 413


def test_unknown_site_404_and_foreign_origin_403(module_gateway):
    with module_gateway.client() as c:
        r = c.post("/s/nosuchsite/collect", json={"url": URL}, headers=H)
        assert r.status_code == 404 and r.json()["error"] == "unknown_site"
        r = c.post("/s/demo/collect", json={"url": URL}, headers={**H, "Origin": "https://attacker.example"})
        assert r.status_code == 403 and r.json()["error"] == "bad_origin"


def test_refused_requests_are_counted_by_error_in_metrics(module_gateway):
    """Every 4xx counts in consentgate_requests_rejected_total{error}: from the collect lane and from the
    app's own error handler (a consent with a bad body) alike."""
    from forwarding_helpers import metric

    name = "consentgate_requests_rejected_total"
    with module_gateway.client() as c:
        before = {e: metric(c, name, error=e) for e in ("bad_request", "unknown_site", "bad_origin")}
        assert c.post("/s/demo/collect", content=b"[]", headers=H).status_code == 400
        assert c.post("/s/nosuchsite/collect", json={"url": URL}, headers=H).status_code == 404
        assert c.post("/s/demo/collect", json={"url": URL}, headers={**H, "Origin": "https://x.example"}).status_code == 403
        assert c.post("/s/demo/consent", content=b"{", headers=H).status_code == 400
        after = {e: metric(c, name, error=e) for e in before}
    assert {e: after[e] - before[e] for e in before} == {"bad_request": 2, "unknown_site": 1, "bad_origin": 1}


def test_sendbeacon_text_plain_is_accepted(module_gateway):
    with module_gateway.client() as c:
        token = grant(c, analytics=True)["token"]
        r = c.post("/s/demo/collect", content=f'{{"url": "{URL}", "consent": "{token}"}}',
                   headers={**H, "Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 202 and r.headers["x-consentgate-result"] == "stored"


def _signed(site: str, policy: int, choices: dict, now_ms: int | None = None, secret: str = SECRET) -> str:
    # Tokens made the way another gateway (or an attacker holding an old token) would have them.
    signer = TokenSigner((secret,), 182)
    return signer.dumps(signer.issue("c0ffee", site, choices, policy, now_ms))


def test_bad_tokens_are_no_consent_never_an_error(module_gateway):
    with module_gateway.client() as c:
        good = grant(c, analytics=True)["token"]
        c.cookies.clear()
        payload, sig = good.rsplit(".", 1)
        cases = {
            "bad_token": [payload + "." + sig[::-1], "garbage", _signed("demo", 1, {"analytics": True}, secret="another-secret-0123")],
            "expired_token": [_signed("demo", 1, {"analytics": True}, now_ms=1_000)],
            "other_site_token": [_signed("other", 1, {"analytics": True})],
            "old_policy": [_signed("demo", 0, {"analytics": True})],
            "no_consent": [_signed("demo", 1, {"analytics": False, "marketing": False})],
        }
        for reason, tokens in cases.items():
            for token in tokens:
                r = c.post("/s/demo/collect", json={"url": URL, "consent": token}, headers=H)
                assert r.status_code == 202 and r.headers["x-consentgate-result"] == f"dropped: {reason}"
        assert c.get("/healthz").status_code == 200


def test_no_5xx_from_a_burst_of_junk(module_gateway):
    junk = [b"\x00" * 10, b"{" * 5000, b'{"url": null}', b'{"url": "http://"}', b'{"url": "https://[::1"}',
            b'{"url": "https://www.example.com/", "referrer": "\\u0000"}', b"1e999999", b'{"a":' * 2000 + b"1" + b"}" * 2000]
    with module_gateway.client() as c:
        for body in junk:
            r = c.post("/s/demo/collect", content=body, headers=H)
            assert 200 <= r.status_code < 500, (body[:40], r.status_code, r.text)
        assert c.get("/healthz").json()["status"] == "ok"
    assert "Traceback" not in module_gateway.logs()


def test_a_stalled_event_loop_shows_in_metrics(module_gateway):
    """The gateway stopped for half a second (SIGSTOP, then SIGCONT: a real stall, as when the process is not
    scheduled) shows as one event-loop lag over 0.25 s in consentgate_event_loop_lag_seconds."""
    from prometheus_client.parser import text_string_to_metric_families

    def late(c) -> float:
        """Looks later than 0.25 s, from one reading of /metrics (two readings would see different looks)."""
        buckets = {s.labels["le"]: s.value for f in text_string_to_metric_families(c.get("/metrics").text)
                   for s in f.samples if s.name == "consentgate_event_loop_lag_seconds_bucket"}
        assert buckets, "no consentgate_event_loop_lag_seconds in /metrics"
        return buckets["+Inf"] - buckets["0.25"]

    with module_gateway.client() as c:
        before = late(c)
        module_gateway.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(0.5)
        finally:
            module_gateway.process.send_signal(signal.SIGCONT)
        time.sleep(0.3)  # the watcher's next look
        assert late(c) - before >= 1
