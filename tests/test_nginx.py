"""The shipped nginx config in front of a real gateway: forwarding works, and nginx's logs hold no full address."""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import httpx
import pytest

from harness import ROOT, SITE_ORIGIN, UA_CHROME, free_port, grant

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is installed by scripts/setup")


def nginx_conf(tmp, upstream_port: int, port: int) -> str:
    """The shipped config, with plain http on a free port instead of TLS (no certificates in tests)."""
    text = (ROOT / "nginx" / "consentgate.conf").read_text()
    text = text.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    text = re.sub(r"listen 443 ssl;\n\s*http2 on;", f"listen 127.0.0.1:{port};", text)
    text = re.sub(r"\s*ssl_certificate(_key)? [^;]+;", "", text)
    text = text.replace("/var/log/nginx/", f"{tmp}/")
    text = re.sub(r"server \{\n\s*listen 80;.*?\n\}\n", "", text, flags=re.S)  # the redirect server is not under test
    return f"""worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/main.error.log crit;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
{text}
}}
"""


@pytest.fixture
def nginx_gateway(make_gateway, tmp_path):
    gw = make_gateway(gateway={"trusted_proxies": ["127.0.0.1/32"], "access_log": "all"})
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, gw.port, port))
    check = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield gw, url, tmp_path
    proc.terminate()
    proc.wait(10)


def test_hits_through_nginx_are_attributed_and_no_log_holds_a_full_ip(nginx_gateway):
    gw, url, folder = nginx_gateway
    # A CDN or load balancer before nginx has put the visitor's address into X-Forwarded-For;
    # nginx appends its own peer (127.0.0.1, trusted), the gateway takes the right-most untrusted one.
    visitor = "203.0.113.77"
    with httpx.Client(base_url=url, timeout=10) as c:
        token = grant(c, analytics=True)["token"]
        r = c.post("/s/demo/collect", json={"url": "https://www.example.com/via-nginx", "consent": token},
                   headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME, "X-Forwarded-For": visitor})
        assert r.status_code == 202 and r.headers["x-consentgate-result"] == "stored"
        big = c.post("/s/demo/collect", content=b"x" * (100 * 1024), headers={"X-Forwarded-For": visitor})
        assert big.status_code == 413
        assert c.post("/s/demo/consent", json={"choices": {}}, headers={"X-Forwarded-Proto": "https"}).status_code == 200
    gw.stop()
    assert gw.sql("SELECT ip FROM {db}.events") == [{"ip": "203.0.113.0"}]
    access = (folder / "consentgate.access.log").read_text()
    assert "POST /s/demo/collect" in access and access.splitlines()[0].startswith("127.0.0.0 ")
    for path in folder.rglob("*.log"):
        assert visitor not in path.read_text(), path
    assert visitor not in gw.logs()
