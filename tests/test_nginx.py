"""The shipped nginx config in front of a real gateway: forwarding works, and nginx's logs hold no full address."""
from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import time

import httpx
import pytest

from harness import ROOT, SITE_ORIGIN, UA_CHROME, free_port, grant

LINK_SECRET = "S3cr3t-link-address-" + "x" * 23  # the shape of a shared link's secret (43 characters)
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
def nginx_gateway(make_gateway, tmp_path, request):
    gw = make_gateway(gateway={"trusted_proxies": ["127.0.0.1/32"], "access_log": "all"})
    port = free_port()
    conf = tmp_path / "nginx.conf"
    text = nginx_conf(tmp_path, gw.port, port)
    for old, new in getattr(request, "param", {}).items():  # indirect parametrization: edits of the shipped text
        assert old in text, old
        text = text.replace(old, new)
    conf.write_text(text)
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
        granted = grant(c, analytics=True)
        token, consent_id = granted["token"], granted["consent_id"]
        r = c.post("/s/demo/collect", json={"url": "https://www.example.com/via-nginx", "consent": token},
                   headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME, "X-Forwarded-For": visitor})
        assert r.status_code == 202 and r.headers["x-consentgate-result"] == "stored"
        big = c.post("/s/demo/collect", content=b"x" * (100 * 1024), headers={"X-Forwarded-For": visitor})
        assert big.status_code == 413
        assert c.post("/s/demo/consent", json={"choices": {}}, headers={"X-Forwarded-Proto": "https"}).status_code == 200
        # A shared link's secret and a visitor's consent id in a path: in no log (nginx's, the gateway's).
        assert c.get("/share/" + LINK_SECRET).status_code == 404
        assert 400 <= c.get(f"/api/admin/demo/visitors/{consent_id}").status_code < 500
    gw.stop()
    for path in folder.rglob("*.log"):
        text = path.read_text(errors="replace")
        assert LINK_SECRET not in text and consent_id not in text, path
    assert "GET /share/<redacted>" in (folder / "consentgate.access.log").read_text()
    assert gw.sql("SELECT ip FROM {db}.events") == [{"ip": "203.0.113.0"}]
    access = (folder / "consentgate.access.log").read_text()
    assert "POST /s/demo/collect" in access and access.splitlines()[0].startswith("127.0.0.0 ")
    for path in folder.rglob("*.log"):
        assert visitor not in path.read_text(), path
    assert visitor not in gw.logs()


def test_nginx_keeps_metrics_to_internal_networks(nginx_gateway):
    """Issue 8 finding 10: /metrics only from internal networks. 127.0.0.2 stands for an outside client
    (the allow list names 127.0.0.1 only); the rest of the gateway stays open to it."""
    gw, url, folder = nginx_gateway
    with httpx.Client(base_url=url, timeout=10) as inside:
        assert inside.get("/metrics").status_code == 200
    with httpx.Client(base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as outside:
        r = outside.get("/metrics")
        assert r.status_code == 403 and "consentgate_" not in r.text
        assert outside.get("/healthz").status_code == 200


SHIPPED_RATES = {"zone=consentgate_login:10m rate=10r/m": "zone=consentgate_login:10m rate=1r/m",
                 "zone=consentgate_api:10m rate=20r/s": "zone=consentgate_api:10m rate=1r/m"}


@pytest.mark.parametrize("nginx_gateway", [SHIPPED_RATES], indirect=True)
def test_nginx_limits_login_attempts_and_api_floods(nginx_gateway):
    """Issue 8 finding 5: limit_req in front of the gateway's own failure limit. The shipped rates
    (10 logins a minute, 20 API requests a second) are slowed to 1 a minute here, so that the count
    of refusals depends on the bursts alone and not on how fast this shared machine answers; the
    bursts are as shipped. nginx's 429 page says "nginx"; the gateway's own answers never do."""
    from harness import STATS_TOKEN

    gw, url, folder = nginx_gateway
    with httpx.Client(base_url=url, timeout=10) as c:
        logins = [c.post("/dashboard/login", data={"token": f"guess-{i}"}) for i in range(12)]
        assert [r.status_code for r in logins] == [401] * 6 + [429] * 6  # 1 + burst 5 reach the gateway
        assert all("nginx" in r.text for r in logins[6:])
        answers = [c.get("/api/stats/sites", headers={"Authorization": f"Bearer {STATS_TOKEN}"}) for _ in range(50)]
        assert [r.status_code for r in answers] == [200] * 41 + [429] * 9  # the right token too: 1 + burst 40
        assert all("nginx" in r.text for r in answers[41:])
        assert c.get("/healthz").status_code == 200  # other locations are not limited


def _log_map_server(tmp, port: int) -> str:
    """nginx with the shipped log map and log_format only, on 127.0.0.1 and [::1]. realip lets the
    test choose $remote_addr (header X-Real-IP from a local peer), so every textual form reaches the map."""
    text = (ROOT / "nginx" / "consentgate.conf").read_text()
    log_map = "\n".join(re.search(rf"^map \${var} \${name} \{{.*?^\}}", text, re.S | re.M).group()
                        for var, name in (("remote_addr", "consentgate_client_net"), ("uri", "consentgate_log_uri")))
    log_format = re.search(r"^log_format consentgate .*?;$", text, re.S | re.M).group()
    return f"""worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/main.error.log crit;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
{log_map}
{log_format}
    server {{
        listen 127.0.0.1:{port};
        listen [::1]:{port};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        access_log {tmp}/map.log consentgate;
        location / {{ return 204; }}
    }}
}}
"""


def _expected_log_net(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """What the log may hold, computed with the ipaddress module: an IPv4 carried in IPv6 as no more
    than its /24 (as IPv4, or as the IPv6 network that covers exactly that /24), other IPv6 as /48."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return ipaddress.ip_network(f"{ip}/24", strict=False).network_address
    n = int(ip)
    if ip.ipv4_mapped or (n >> 32 == 0 and n >> 24):  # ::ffff:a.b.c.d, ::a.b.c.d
        return ipaddress.ip_network(f"{ipaddress.IPv4Address(n & 0xFFFFFFFF)}/24", strict=False).network_address
    if ip in ipaddress.ip_network("2002::/16"):
        return ipaddress.ip_network(f"{ip}/40", strict=False).network_address
    if ip in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.ip_network(f"{ip}/120", strict=False).network_address
    return ipaddress.ip_network(f"{ip}/48", strict=False).network_address


LOG_MAP_CASES = [
    "203.0.113.77", "2001:db8:1234:5678::9", "2001:db8::77", "2001::abcd:1234", "2a02::77", "2001:db8:0:1::1",
    "::ffff:203.0.113.77", "::203.0.113.77", "2002:cb00:714d::1", "2002:cb00:4d::1", "2002:cb00::1",
    "2001:0:4136:e378:8000:63bf:34ff:8eb2", "64:ff9b::cb00:714d", "64:ff9b::cb00:4d", "64:ff9b:1::cb00:714d",
    "2001:DB8:0001:0002:0003:0004:0005:0006", "fe80::1",
]


def test_nginx_log_map_truncates_every_textual_ipv6_form(tmp_path):
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(_log_map_server(tmp_path, port))
    check = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"])
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        with httpx.Client(timeout=5) as c:
            for address in LOG_MAP_CASES:
                assert c.get(f"http://127.0.0.1:{port}/case", headers={"X-Real-IP": address}).status_code == 204
            # a real IPv6 client: the connection comes from ::1
            assert c.get(f"http://[::1]:{port}/real-v6").status_code == 204
    finally:
        proc.terminate()
        proc.wait(10)
    lines = (tmp_path / "map.log").read_text().splitlines()
    logged = [line.split(" ", 1)[0] for line in lines]
    assert len(logged) == len(LOG_MAP_CASES) + 2  # + the readiness probe
    for address, net in zip(LOG_MAP_CASES, logged[1:]):
        assert ipaddress.ip_address(net) == _expected_log_net(address), (address, net)
        assert net.lower() != address.lower()
    assert logged[-1] == "::"  # ::1 as its /48
    log = (tmp_path / "map.log").read_text().lower()
    for secret in ("203.0.113.77", "714d", "8eb2", "abcd:1234", "::77", "::9", "0006"):
        assert secret not in log, secret
