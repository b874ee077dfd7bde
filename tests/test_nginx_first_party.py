"""nginx/consentgate-first-party.conf with real nginx: the gateway under the site's own origin at /cg/,
two gateways behind one upstream, the consent cookie first party and scoped to /cg/, only the consent
cookie passed on, nothing but the visitor routes exposed; and a real Chromium on a page of that site."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from harness import ROOT, SITE_ORIGIN, UA_CHROME, free_port
from test_nginx import nginx_conf

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is installed by scripts/setup")

VISITOR = "203.0.113.77"
SITE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Example shop</title>
<script src="/cg/s/demo/banner.js" defer></script></head>
<body><h1>Example shop</h1><p>Coffee, roasted weekly.</p></body></html>
"""


def first_party_conf(tmp: Path, port: int, upstream_ports: list[int], subdomain_port: int) -> str:
    """Both shipped files in one nginx: consentgate.conf (own subdomain, with the log map and format the
    first-party file uses) and the first-party server, on plain http (no certificates in tests)."""
    text = (ROOT / "nginx" / "consentgate-first-party.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=2 fail_timeout=10s;\n" for p in upstream_ports)
    text, n = re.subn(r"(upstream consentgate_gateways \{\n)(?:\s*server [^\n]+\n)+", lambda m: m.group(1) + servers, text)
    assert n == 1
    text = re.sub(r"listen 443 ssl;\n\s*http2 on;", f"listen 127.0.0.1:{port};", text)
    text = re.sub(r"\s*ssl_certificate(_key)? [^;]+;", "", text)
    text = text.replace("/var/log/nginx/", f"{tmp}/").replace("/var/www/www.example.com", f"{tmp}/site")
    both = nginx_conf(tmp, upstream_ports[0], subdomain_port)
    # The site's page is read by nginx's worker: as root, the worker must be root to read pytest's 0700 folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return user + both[:both.rstrip().rfind("}")] + text + "\n}\n"


@pytest.fixture
def run_nginx(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(upstream_ports: list[int], port: int | None = None) -> str:
        port = port or free_port()
        (tmp_path / "site").mkdir(exist_ok=True)
        (tmp_path / "site" / "index.html").write_text(SITE_PAGE)
        conf = tmp_path / "nginx.conf"
        conf.write_text(first_party_conf(tmp_path, port, upstream_ports, free_port()))
        check = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        procs.append(subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"]))
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{url}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def two_gateways(make_gateway, nginx_port: int) -> list:
    origins = [SITE_ORIGIN, f"http://127.0.0.1:{nginx_port}"]
    return [make_gateway(gateway={"trusted_proxies": ["127.0.0.1/32"]}, sites={"demo": {"origins": origins}})
            for _ in range(2)]


def test_banner_consent_and_collect_through_the_prefix_on_two_gateways(make_gateway, run_nginx, tmp_path: Path):
    port = free_port()
    gateways = two_gateways(make_gateway, port)
    url = run_nginx([gw.port for gw in gateways], port)
    h = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME, "X-Forwarded-For": VISITOR}
    with httpx.Client(base_url=url, timeout=10) as c:
        script = c.get("/cg/s/demo/banner.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        decision = c.post("/cg/s/demo/consent", headers=h, json={"choices": {"analytics": True}, "method": "custom"})
        assert decision.status_code == 200, decision.text
        cookie = decision.headers["set-cookie"]
        assert cookie.startswith("cg_consent=") and "Path=/cg/" in cookie and "Path=/;" not in cookie
        assert "domain=" not in cookie.lower()  # host-only: www.example.com itself, no other name
        # The cookie alone (as the browser sends it to /cg/...) carries the consent; the gateways take
        # turns (round robin), and a token made at one counts at the other (same secret).
        results = [c.post("/cg/s/demo/collect", headers=h, json={"type": "pageview", "url": f"{SITE_ORIGIN}/p{i}"})
                   for i in range(4)]
        assert [(r.status_code, r.headers["x-consentgate-result"]) for r in results] == [(202, "stored")] * 4
        # Only the visitor routes are under the site's origin.
        for path in ("/cg/dashboard", "/cg/api/stats/sites", "/cg/metrics", "/cg/healthz", "/cg/s/../dashboard",
                     "/cg/s/%2e%2e/dashboard"):
            assert c.get(path).status_code == 404, path
        assert c.get("/").text == SITE_PAGE  # and the site is still the site
    for gw in gateways:
        gw.stop()
    per_gateway = [gw.sql("SELECT path, ip FROM {db}.events ORDER BY path") for gw in gateways]
    assert all(per_gateway), "round robin: each gateway took some of the hits"
    assert sorted(r["path"] for rows in per_gateway for r in rows) == ["/p0", "/p1", "/p2", "/p3"]
    assert {r["ip"] for rows in per_gateway for r in rows} == {"203.0.113.0"}
    access = (tmp_path / "consentgate.access.log").read_text()
    assert '"POST /cg/s/demo/collect" 202' in access and VISITOR not in access


class Echo(BaseHTTPRequestHandler):
    """An upstream that answers what it received (path and Cookie header) and sets a cookie at Path=/."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"path": self.path, "cookie": self.headers.get("Cookie")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "cg_consent=fresh; Path=/; HttpOnly; SameSite=Lax")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_only_the_consent_cookie_reaches_the_gateway(run_nginx):
    echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    try:
        url = run_nginx([echo.server_address[1]])
        with httpx.Client(base_url=url, timeout=10) as c:
            seen = c.get("/cg/s/demo/consent?x=1", headers={"Cookie": "session=s3cret; cg_consent=tok.en; cart=9"})
            assert seen.json() == {"path": "/s/demo/consent?x=1", "cookie": "cg_consent=tok.en"}
            assert re.search(r"Path=/cg/(;|$)", seen.headers["set-cookie"])
            assert c.get("/cg/s/demo/consent", headers={"Cookie": "session=s3cret"}).json()["cookie"] is None
    finally:
        echo.shutdown()


def test_a_browser_on_the_site_uses_the_gateway_first_party(make_gateway, run_nginx, browser):
    port = free_port()
    gateways = two_gateways(make_gateway, port)
    url = run_nginx([gw.port for gw in gateways], port)
    context = browser.new_context(user_agent=UA_CHROME)  # HeadlessChrome would be dropped as a bot
    page = context.new_page()
    requests: list[str] = []
    results: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("response", lambda r: results.append(r.headers.get("x-consentgate-result", ""))
            if r.url.endswith("/collect") else None)
    try:
        page.goto(f"{url}/")
        with page.expect_response(lambda r: r.url.endswith("/consent") and r.request.method == "POST") as answer:
            page.get_by_role("button", name="Accept", exact=True).click()
        assert answer.value.status == 200
        deadline = time.monotonic() + 10
        while not results and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert results == ["stored"]
        cookies = [ck for ck in context.cookies() if ck["name"] == "cg_consent"]
        assert [(ck["domain"], ck["path"], ck["httpOnly"]) for ck in cookies] == [("127.0.0.1", "/cg/", True)]
        gateway_calls = [u for u in requests if "/s/" in u]
        assert gateway_calls and all(u.startswith(f"{url}/cg/s/demo/") for u in gateway_calls)
        assert not [u for u in requests if not u.startswith(url)]  # everything first party
    finally:
        context.close()
