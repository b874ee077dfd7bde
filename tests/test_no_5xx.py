"""Junk against every route of a real gateway: always a 4xx (or 2xx) with a JSON error, never a 5xx."""
import itertools

from harness import SITE_ORIGIN

JUNK_BODIES = [b"", b"null", b"[]", b"{}", b'{"choices": null}', b"\xff\xfe\x00", b'{"a": "\\ud800"}',
               b"{" * 3000, b'{"choices": {"analytics": 1}, "method": ["x"]}', b'"' + b"x" * 70000 + b'"']
PATHS = ["/s/demo/consent", "/s/demo/collect", "/s/demo/privacy/me", "/s/demo/banner.js", "/s/nosuch/consent",
         "/s/%00/collect", "/s/demo/../../etc/passwd", "/api/stats/demo/summary?from=yesterday&to=%ff",
         "/api/stats/demo/breakdown/%3Cscript%3E", "/api/stats/demo/timeseries?interval=fortnight",
         "/dashboard/assets/..%2F..%2Fpyproject.toml", "/dashboard/login", "/metrics", "/healthz", "/nope"]
HEADERS = [{}, {"Origin": SITE_ORIGIN, "X-Consent-Token": "x" * 600, "Cookie": "cg_consent=\x7f;;;="},
           {"Origin": "null", "Content-Type": "text/plain", "X-Forwarded-For": "not-an-ip, , 999.1.1.1",
            "Authorization": "Bearer \u00ff".encode("latin-1")}]


def test_junk_never_gets_a_5xx(module_gateway):
    seen = set()
    with module_gateway.client() as c:
        for path, method, body, headers in itertools.product(PATHS, ["GET", "POST", "DELETE"], JUNK_BODIES[:4], HEADERS):
            r = c.request(method, path, content=body, headers=headers)
            assert r.status_code < 500, (method, path, body[:30], headers, r.status_code, r.text[:200])
            seen.add(r.status_code)
        for body in JUNK_BODIES:
            for path in ("/s/demo/consent", "/s/demo/collect", "/dashboard/login"):
                r = c.post(path, content=body, headers={"Origin": SITE_ORIGIN})
                assert 400 <= r.status_code < 500 or r.status_code in (200, 202, 303), (path, body[:30], r.status_code)
                if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
                    assert set(r.json()) >= {"error", "detail"}
        assert c.get("/healthz").json()["status"] == "ok"
    assert {400, 404}.issubset(seen)
    assert "Traceback" not in module_gateway.logs()
