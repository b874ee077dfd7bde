"""Input at the edge (issue 8, findings 2, 6, 7, 10): oversized headers, User-Agents and caches,
IPv4 carried in IPv6, log injection, and one X-Forwarded-For rule for every route. Real gateways."""
from __future__ import annotations

import re
import socket
import tracemalloc

import httpx
import pytest

from forwarding_helpers import GATEWAY, webhook_gateway
from harness import SITE_ORIGIN, UA_CHROME, grant
from vendor_servers import VendorServer

MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """The process's resident set size, from /proc (kB there)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


def test_300_one_megabyte_user_agents_leave_memory_flat_and_get_431(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        for _ in range(20):  # warm up: the first requests of a process allocate for good
            c.post("/s/demo/collect", json={"url": "https://www.example.com/", "consent": token},
                   headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME})
        before = rss_bytes(gw.process.pid)
        statuses = []
        for i in range(300):
            ua = f"Mozilla/5.0 {i:04d} " + "x" * MB  # distinct, so no cache could share them
            if i % 2:
                r = c.post("/s/demo/consent", json={"choices": {"analytics": True}},
                           headers={"Origin": SITE_ORIGIN, "User-Agent": ua})
            else:
                r = c.post("/s/demo/collect", json={"url": "https://www.example.com/", "consent": token},
                           headers={"Origin": SITE_ORIGIN, "User-Agent": ua})
            statuses.append(r.status_code)
        grown = rss_bytes(gw.process.pid) - before
        assert all(s < 500 for s in statuses), sorted(set(statuses))
        assert set(statuses) == {431}
        assert r.headers["content-type"] == "application/json" and r.json()["error"] == "headers_too_large"
        assert "shorter" in r.json()["detail"]
        assert grown < 50 * MB, f"RSS grew by {grown / MB:.0f} MB"
        assert c.get("/healthz").status_code == 200  # and the gateway still serves


def test_a_head_that_never_ends_is_cut_off_with_431(make_gateway):
    gw = make_gateway()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: ")
        answer = b""
        try:
            for _ in range(64):  # 4 MB of one header value that never ends
                s.sendall(b"y" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway answered and closed: what we want
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"error":"headers_too_large"' in answer


def _raw_exchange(port: int, pieces: list[bytes]) -> bytes:
    """Sends a request in the given pieces (separate writes) and reads the whole answer."""
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for piece in pieces:
            s.sendall(piece)
            time.sleep(0.05)  # separate reads on the server side
        s.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


@pytest.mark.parametrize("split", ["one_read", "blank_line_split_over_two_reads"])
def test_the_head_limit_holds_at_its_boundary(make_gateway, split):
    """A head of exactly the limit is served; one byte more is a 431, also when the blank line that ends it
    arrives split over two reads, and a head pipelined behind another request in the same read."""
    from gateway.http_protocol import MAX_HEAD_BYTES

    gw = make_gateway()

    def head(size: int) -> bytes:
        start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
        return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"

    for size, status in ((MAX_HEAD_BYTES, b"200"), (MAX_HEAD_BYTES + 1, b"431")):
        request = head(size)
        assert len(request) == size
        pieces = [request] if split == "one_read" else [request[:-2], request[-2:]]
        answer = _raw_exchange(gw.port, pieces)
        assert answer.startswith(b"HTTP/1.1 " + status), (size, answer[:120])
    # Behind a small request in the same read (pipelining): the oversized head is refused all the same
    # (the connection closes with the 431, so the first request may go unanswered).
    small = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = _raw_exchange(gw.port, [small + head(MAX_HEAD_BYTES + 100)])
    assert b"HTTP/1.1 431 " in answer and b"HTTP/1.1 5" not in answer, answer[:300]


def test_user_agent_is_cut_to_512_before_spool_and_vendor(make_gateway):
    vendor = VendorServer().start()
    try:
        gw = webhook_gateway(make_gateway, vendor.url)
        long_ua = UA_CHROME + " " + "z" * 20_000  # under the head limit: accepted, but never kept whole
        with gw.client() as c:
            token = grant(c, analytics=True, marketing=True)["token"]
            r = c.post("/s/demo/collect", json={"url": "https://www.example.com/ua", "consent": token},
                       headers={"Origin": SITE_ORIGIN, "User-Agent": long_ua, "X-Forwarded-For": "203.0.113.8"})
            assert r.status_code == 202 and r.headers["x-consentgate-result"] == "stored"
            vendor.wait_for(lambda v: len(v.accepted()) >= 1)
        sent_ua = vendor.accepted()[0].json()["event"]["user_agent"]
        assert sent_ua == long_ua[:512]
        gw.stop()
        spooled = b"".join(p.read_bytes() for p in gw.folder.rglob("*") if p.is_file() and "spool" in str(p)
                           or p.is_file() and "outbox" in str(p))
        assert b"z" * 600 not in spooled
        assert gw.sql("SELECT browser FROM {db}.events") == [{"browser": "Chrome"}]
    finally:
        vendor.stop()


def test_caches_keyed_by_client_input_are_bounded_in_bytes():
    """In-process: 3000 distinct 20 KB User-Agents, 1000 distinct 4 KB junk tokens and 3000 2 KB URLs
    must not be kept whole (each cache holds only cut or short keys)."""
    from gateway.collect.hit import parse_page_url
    from gateway.collect.useragent import parse_user_agent
    from gateway.tokens import TokenSigner

    signer = TokenSigner(("k" * 32,), 30)
    parse_user_agent(UA_CHROME)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for i in range(3000):
            parse_user_agent(f"Mozilla/5.0 {i} " + "u" * 20_000)
            parse_page_url(f"https://www.example.com/{i}/" + "p" * 2000)
        for i in range(1000):
            signer.consent_id_of(f"{i}." + "t" * 4000, "demo")
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    # whole keys would be 3000 x 20 KB + 3000 x (2 KB key + ~4 KB parts) + ... > 70 MB; cut keys ~2.5 MB
    assert grown < 8 * MB, f"caches grew by {grown / MB:.1f} MB"


def _lines_of(logs: str, logger: str) -> list[str]:
    return [line for line in logs.splitlines() if f" {logger}: " in line]


def test_control_characters_in_a_path_cannot_forge_a_log_line(make_gateway):
    gw = make_gateway(gateway={"access_log": "all"})
    forged = '203.0.113.9 "GET /dashboard" 200 0.1ms'
    with gw.client() as c:
        # %0a (LF), %0d (CR), %1b (ESC) and %e2%80%a8 (U+2028) each decode into the path
        for sep in ("%0a", "%0d", "%0d%0a", "%1b[2K%0d", "%e2%80%a8", "%c2%85"):
            assert c.get(f"/nowhere{sep}{forged.replace(' ', '%20').replace(chr(34), '%22')}").status_code == 404
    gw.stop()
    logs = gw.logs()
    for line in logs.splitlines():
        # every line starts with a timestamp: nothing a client sent begins a line of its own
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line) or line.startswith(("Traceback", " ")), line
    access = _lines_of(logs, "consentgate.access")
    assert sum("/nowhere" in line for line in access) == 6
    assert any("/nowhere\\x0a203.0.113.9 \\x22GET" in line for line in access)
    assert any("\\u2028" in line for line in access) and any("\\x85" in line for line in access)
    assert not any(ch in logs for ch in "\r\x1b\u2028\x85")


def _consent_row_ip(gw) -> list[str]:
    return [row["ip"] for row in gw.sql("SELECT ip FROM {db}.consents ORDER BY timestamp")]


def test_every_x_forwarded_for_line_counts_the_same_on_every_route(make_gateway):
    gw = make_gateway(gateway=GATEWAY)
    # Two header lines: a proxy chain may add its own. Together they are one list; the right-most
    # untrusted hop is 198.51.100.7 on collect and consent alike.
    two_lines = [("Origin", SITE_ORIGIN), ("User-Agent", UA_CHROME),
                 ("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-For", "198.51.100.7, 127.0.0.1")]
    with gw.client() as c:
        r = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "method": "custom"}, headers=two_lines)
        token = r.json()["token"]
        r = c.post("/s/demo/collect", json={"url": "https://www.example.com/", "consent": token}, headers=two_lines)
        assert r.headers["x-consentgate-result"] == "stored"
    gw.stop()
    assert _consent_row_ip(gw) == ["198.51.100.0"]
    assert gw.sql("SELECT ip FROM {db}.events") == [{"ip": "198.51.100.0"}]


def _consent_and_hit_from(gw, forwarded_for: list[str]) -> None:
    """For each X-Forwarded-For value in turn: a consent, then a hit on /hit-<i> with its token."""
    with gw.client() as c:
        for i, value in enumerate(forwarded_for):
            headers = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME, "X-Forwarded-For": value}
            r = c.post("/s/demo/consent", json={"choices": {"analytics": True}}, headers=headers)
            assert r.status_code == 200, r.text
            r = c.post("/s/demo/collect", json={"url": f"https://www.example.com/hit-{i}", "consent": r.json()["token"]},
                       headers=headers)
            assert r.headers["x-consentgate-result"] == "stored"
    gw.stop()


def _stored_ips(gw) -> tuple[list[str], list[str]]:
    """(consents' ip in order of time, events' ip in order of /hit-<i>)."""
    events = gw.sql("SELECT path, ip FROM {db}.events")
    by_path = {row["path"]: row["ip"] for row in events}
    return _consent_row_ip(gw), [by_path[f"/hit-{i}"] for i in range(len(events))]


def test_a_non_ip_hop_from_a_trusted_proxy_gives_the_peer_never_an_empty_ip(make_gateway):
    gw = make_gateway(gateway=GATEWAY)
    hops = ["unknown", "203.0.113.9:4711", "[2001:db8::1]", "_hidden", "203.0.113.9 junk"]
    _consent_and_hit_from(gw, [f"192.0.2.1, {hop}" for hop in hops])
    # the chain stops at the hop nobody can vouch for: the trusted peer itself, truncated
    assert _stored_ips(gw) == (["127.0.0.0"] * len(hops), ["127.0.0.0"] * len(hops))


EMBEDDED = [
    ("2002:cb00:714d::1", "203.0.113.0"),  # 6to4 of 203.0.113.77
    ("2001:0:4136:e378:8000:63bf:34ff:8eb2", "203.0.113.0"),  # Teredo: client 203.0.113.77 inverted in the last 32 bits
    ("64:ff9b::cb00:714d", "203.0.113.0"),  # NAT64
    ("64:ff9b::203.0.113.77", "203.0.113.0"),
    ("64:ff9b:1::cb00:714d", "203.0.113.0"),  # NAT64 local-use prefix, /96 layout
    ("::ffff:203.0.113.77", "203.0.113.0"),  # IPv4-mapped
    ("::203.0.113.77", "203.0.113.0"),  # IPv4-compatible
    ("2001:db8:1234:5678::1", "2001:db8:1234::"),  # plain IPv6: its /48
]


def test_ipv4_inside_ipv6_is_stored_as_its_ipv4_network(make_gateway):
    gw = make_gateway(gateway=GATEWAY)
    _consent_and_hit_from(gw, [client for client, _ in EMBEDDED])
    expected = [stored for _, stored in EMBEDDED]
    assert _stored_ips(gw) == (expected, expected)
    for path in gw.folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"203.0.113.77" not in data and b"cb00:714d" not in data and b"34ff:8eb2" not in data, path
