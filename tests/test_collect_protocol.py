"""POST /s/{site}/collect answered inside uvicorn's HTTP protocol (gateway/http_protocol.py, CollectCycle):
keep-alive, pipelining, HTTP/1.0 and `Connection: close`, chunked bodies, the body limit, refusals before the
body, `Expect: 100-continue` (the ASGI path), CORS, a client that leaves while its answer waits for fdatasync,
and bad JSON. Real gateways, spoken to over raw sockets where the bytes on the wire matter."""
from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from harness import SITE_ORIGIN, UA_CHROME, GatewayProcess, grant, write_config

MAX_BODY = 2048  # [gateway] max_body_bytes of the gateways here


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """gateways(durability) -> (a running gateway, a consent token with analytics): one per durability,
    shared by the module's tests (each test uses its own connections and paths)."""
    started: dict[str, tuple[GatewayProcess, str]] = {}

    def get(durability: str = "machine") -> tuple[GatewayProcess, str]:
        if durability not in started:
            folder = tmp_path_factory.mktemp(f"collect-{durability}")
            gw = GatewayProcess(write_config(folder, {"durability": durability, "max_body_bytes": MAX_BODY}), folder)
            gw.start()
            with gw.client() as c:
                started[durability] = (gw, grant(c, analytics=True)["token"])
        return started[durability]

    yield get
    for gw, _ in started.values():
        gw.kill()


# ---- raw HTTP/1.1 -------------------------------------------------------------------------------------------


def hit_body(token: str, path: str) -> bytes:
    return json.dumps({"url": f"https://www.example.com{path}", "consent": token}).encode()


def collect(body: bytes, site: str = "demo", origin: str | None = SITE_ORIGIN, version: str = "1.1",
            extra: tuple[str, ...] = (), send_body: bool = True) -> bytes:
    """The bytes of a collect request with a Content-Length (its body too unless send_body is False)."""
    lines = [f"POST /s/{site}/collect HTTP/{version}", "Host: 127.0.0.1", f"User-Agent: {UA_CHROME}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body if send_body else b"")


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Response:
    version: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Conn:
    """One client connection that reads answers one by one off a buffer (pipelined answers included)."""

    sock: socket.socket
    buf: bytes = field(default=b"")

    @classmethod
    def open(cls, gw: GatewayProcess, timeout: float = 10) -> "Conn":
        return cls(socket.create_connection(("127.0.0.1", gw.port), timeout=timeout))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"the gateway closed the connection; unread: {self.buf[:200]!r}")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self) -> Response:
        """The next answer (an interim 100 Continue is an answer of its own, without body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status = status_line.split(" ", 2)[:2]
        headers = [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines)]
        response = Response(version, int(status), headers)
        if response.status < 200 or response.status in (204, 304):
            return response
        if response.header("transfer-encoding") == "chunked":
            while size := int(self._line().split(b";")[0], 16):
                response.body += self._take(size)
                assert self._take(2) == b"\r\n"
            while self._line():  # trailers, then the blank line
                pass
        else:
            response.body = self._take(int(response.header("content-length") or 0))
        return response

    def closed_by_peer(self, timeout: float = 5) -> bool:
        """Whether the gateway closes the connection (within `timeout`) with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            rest = self.sock.recv(65536)
        except ConnectionResetError:
            return not self.buf
        except TimeoutError:
            return False
        return rest == b"" and not self.buf

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conns() -> Iterator:
    """conn(gw) -> an open Conn, closed after the test."""
    opened: list[Conn] = []

    def make(gw: GatewayProcess) -> Conn:
        opened.append(Conn.open(gw))
        return opened[-1]

    yield make
    for c in opened:
        c.close()


def assert_stored(r: Response) -> None:
    assert (r.status, r.header("x-consentgate-result")) == (202, "stored"), (r, r.body)


def assert_error(r: Response, status: int, error: str) -> dict:
    assert r.status == status, (r, r.body)
    assert r.header("content-type") == "application/json", r.headers
    payload = r.json()
    assert payload["error"] == error and payload["detail"], payload
    return payload


# ---- keep-alive, pipelining, closing ------------------------------------------------------------------------


def test_three_collects_on_one_keep_alive_connection_are_answered_in_order_and_all_stored(make_gateway):
    gw = make_gateway({"max_body_bytes": MAX_BODY})  # durability = machine: each 202 after its fdatasync
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
    conn = Conn.open(gw)
    try:
        for i in range(3):
            conn.send(collect(hit_body(token, f"/keep-alive-{i}")))
            r = conn.response()
            assert_stored(r)
            assert r.version == "HTTP/1.1" and r.header("connection") is None, r.headers
            assert r.body == b""
        assert not conn.closed_by_peer(timeout=0.3)  # still open for more
    finally:
        conn.close()
    gw.stop()
    rows = gw.sql("SELECT path FROM {db}.events WHERE site = 'demo' ORDER BY path")
    assert rows == [{"path": f"/keep-alive-{i}"} for i in range(3)]


@pytest.mark.parametrize("durability", ["machine", "process"])
def test_pipelined_collects_and_a_get_are_answered_in_request_order(gateways, conns, durability):
    gw, token = gateways(durability)
    conn = conns(gw)
    # One write: the second collect and the GET arrive behind a collect whose answer (with machine) waits for
    # fdatasync, so they queue for the ASGI app; with process the protocol answers both collects itself.
    conn.send(collect(hit_body(token, f"/pipelined-{durability}-1"))
              + collect(hit_body(token, f"/pipelined-{durability}-2")) + HEALTHZ)
    first, second, third = conn.response(), conn.response(), conn.response()
    assert_stored(first)
    assert_stored(second)
    assert third.status == 200 and third.header("x-consentgate-result") is None, (third, third.body)
    assert conn.buf == b""
    # And the connection goes on serving.
    conn.send(collect(hit_body(token, f"/pipelined-{durability}-3")))
    assert_stored(conn.response())


def test_keep_alive_timer_after_collects_neither_cuts_a_busy_connection_nor_spares_an_idle_one(gateways, conns):
    """Each answer must arm uvicorn's keep-alive timer (5 s) and each read disarm it. Two collects answered
    inside one read leave no earlier timer armed that nobody disarms: a connection in use (a request every
    3 s) stays open past 5 s after the burst. And once idle it is closed: an answer that armed no timer would
    keep idle connections forever."""
    gw, token = gateways("process")
    conn = conns(gw)
    conn.send(collect(hit_body(token, "/burst-1")) + collect(hit_body(token, "/burst-2")))
    assert_stored(conn.response())
    assert_stored(conn.response())
    for i, pause in enumerate((3.0, 2.5)):  # 5.5 s after the burst, 2.5 s after the last answer
        time.sleep(pause)
        conn.send(collect(hit_body(token, f"/after-burst-{i}")))
        assert_stored(conn.response())
    idle = time.monotonic()
    assert conn.closed_by_peer(timeout=8), "an idle keep-alive connection was never closed"
    assert 4 < time.monotonic() - idle < 7.5


@pytest.mark.parametrize("case", ["http_1_0", "http_1_1_connection_close"])
def test_a_collect_without_keep_alive_is_answered_with_connection_close_and_closed(gateways, conns, case):
    gw, token = gateways("machine")
    conn = conns(gw)
    if case == "http_1_0":
        request = collect(hit_body(token, "/http-1-0"), version="1.0")
    else:
        request = collect(hit_body(token, "/connection-close"), extra=("Connection: close",))
    conn.send(request)
    r = conn.response()
    assert_stored(r)
    assert r.header("connection") == "close", r.headers
    assert conn.closed_by_peer(), "the gateway kept the connection open"


# ---- bodies ---------------------------------------------------------------------------------------------------


def test_a_chunked_body_in_several_writes_is_stored(gateways, conns):
    gw, token = gateways("machine")
    conn = conns(gw)
    body = hit_body(token, "/chunked")
    head = (f"POST /s/demo/collect HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {UA_CHROME}\r\n"
            f"Origin: {SITE_ORIGIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    conn.send(head)
    for piece in (body[:10], body[10:40], body[40:]):
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        time.sleep(0.05)  # separate reads on the gateway's side
    conn.send(b"0\r\n\r\n")
    r = conn.response()
    assert_stored(r)
    assert r.header("access-control-allow-origin") == SITE_ORIGIN
    conn.send(collect(hit_body(token, "/after-chunked")))  # and the connection goes on
    assert_stored(conn.response())


def test_a_declared_length_over_the_limit_is_refused_413_before_the_body_is_sent(gateways, conns):
    gw, token = gateways("machine")
    conn = conns(gw)
    body = b'{"url": "https://www.example.com/big", "pad": "' + b"x" * (MAX_BODY * 2) + b'"}'
    conn.send(collect(body, send_body=False))  # the head only: the answer must not wait for the body
    r = conn.response()
    payload = assert_error(r, 413, "body_too_large")
    assert str(MAX_BODY) in payload["detail"]
    assert r.header("access-control-allow-origin") == SITE_ORIGIN  # the banner can read the refusal
    # A browser sends the body all the same: the gateway reads past it and serves the next request.
    conn.send(body + collect(hit_body(token, "/after-413")))
    assert_stored(conn.response())


def test_a_chunked_body_over_the_limit_is_refused_413_and_the_connection_closed(gateways, conns):
    gw, token = gateways("machine")
    conn = conns(gw)
    head = (f"POST /s/demo/collect HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {SITE_ORIGIN}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"%x\r\n%s\r\n" % (1000, b"x" * 1000)
    conn.send(head + chunk * 3)  # 3000 bytes, no end: only the running count can stop it
    r = conn.response()
    assert_error(r, 413, "body_too_large")
    assert r.header("connection") == "close", r.headers
    assert conn.closed_by_peer(), "the gateway kept reading a body over the limit"
    # The gateway itself goes on.
    other = conns(gw)
    other.send(collect(hit_body(token, "/after-chunked-413")))
    assert_stored(other.response())


def test_requests_pipelined_behind_a_chunked_413_are_neither_processed_nor_answered(make_gateway):
    # The 413 closes the connection mid-read; httptools goes on parsing what that read holds. RFC 9112 9.6:
    # a server that sends close must not process further requests (a collect was stored, unanswered, before).
    gw = make_gateway({"durability": "process", "max_body_bytes": MAX_BODY})
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
    conn = Conn.open(gw)
    try:
        head = (f"POST /s/demo/collect HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {SITE_ORIGIN}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        consent = json.dumps({"choices": {"analytics": True}}).encode()
        conn.send(head + b"%x\r\n%s\r\n0\r\n\r\n" % (3000, b"x" * 3000)
                  + collect(hit_body(token, "/behind-413"))
                  + (f"POST /s/demo/consent HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {SITE_ORIGIN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(consent)}\r\n\r\n").encode() + consent)
        r = conn.response()
        assert_error(r, 413, "body_too_large")
        assert r.header("connection") == "close"
        assert conn.closed_by_peer(), "a second answer came"  # the pipelined collect is never answered...
    finally:
        conn.close()
    gw.stop()
    assert gw.sql("SELECT path FROM {db}.events") == []  # ...so it must not have been stored either
    assert gw.sql("SELECT count() AS n FROM {db}.consents WHERE action = 'grant'") == [{"n": 1}]  # the first only


# ---- refusals and errors keep the connection ------------------------------------------------------------------


@pytest.mark.parametrize("site, origin, status, error", [
    ("nosuchsite", SITE_ORIGIN, 404, "unknown_site"),
    ("demo", "https://evil.example", 403, "bad_origin"),
])
def test_a_refused_collect_gets_its_json_error_and_the_connection_serves_the_next(gateways, conns, site, origin,
                                                                                  status, error):
    gw, token = gateways("machine")
    conn = conns(gw)
    conn.send(collect(hit_body(token, "/refused"), site=site, origin=origin))  # head and body, as a browser would
    r = conn.response()
    assert_error(r, status, error)
    assert r.header("access-control-allow-origin") is None  # neither a foreign origin nor an unknown site's
    assert r.header("connection") is None, r.headers
    conn.send(collect(hit_body(token, "/after-refusal")))
    assert_stored(conn.response())


@pytest.mark.parametrize("body, detail", [
    (b'{"url": "https://www.example.com/bad", ', "not valid JSON"),
    (b'["https://www.example.com/"]', "must be a JSON object"),
    (b"", "empty"),
])
def test_a_body_that_is_no_json_object_is_a_400_with_a_detail_and_the_connection_goes_on(gateways, conns, body,
                                                                                         detail):
    gw, token = gateways("machine")
    conn = conns(gw)
    conn.send(collect(body))
    r = conn.response()
    payload = assert_error(r, 400, "bad_request")
    assert detail in payload["detail"], payload
    conn.send(collect(hit_body(token, "/after-400")))
    assert_stored(conn.response())


def test_expect_100_continue_gets_100_first_then_202_via_the_asgi_app(gateways, conns):
    gw, token = gateways("machine")
    conn = conns(gw)
    body = hit_body(token, "/expect-100")
    conn.send(collect(body, extra=("Expect: 100-continue",), send_body=False))
    interim = conn.response()
    assert (interim.version, interim.status) == ("HTTP/1.1", 100), interim
    conn.send(body)
    r = conn.response()
    assert_stored(r)
    assert r.header("access-control-allow-origin") == SITE_ORIGIN
    conn.send(collect(hit_body(token, "/after-expect-100")))  # the protocol takes the next one again
    assert_stored(conn.response())


def test_a_percent_escaped_collect_path_is_served_by_the_asgi_app(gateways, conns):
    gw, token = gateways("machine")
    conn = conns(gw)
    conn.send(collect(hit_body(token, "/escaped"), site="d%65mo"))  # /s/d%65mo/collect is /s/demo/collect
    r = conn.response()
    assert_stored(r)
    assert r.header("access-control-allow-origin") == SITE_ORIGIN
    conn.send(collect(hit_body(token, "/after-escaped")))
    assert_stored(conn.response())


def test_cors_headers_only_for_the_sites_own_origin(gateways, conns):
    gw, token = gateways("machine")
    conn = conns(gw)
    conn.send(collect(hit_body(token, "/cors")))
    r = conn.response()
    assert_stored(r)
    assert r.header("access-control-allow-origin") == SITE_ORIGIN
    assert r.header("access-control-allow-credentials") == "true"
    assert "x-consentgate-result" in (r.header("access-control-expose-headers") or "").lower()
    assert r.header("vary") == "Origin"
    conn.send(collect(hit_body(token, "/no-origin"), origin=None))  # sendBeacon may send no Origin
    r = conn.response()
    assert_stored(r)
    assert [k for k, _ in r.headers if k.startswith("access-control-")] == [], r.headers


# ---- a client that leaves -------------------------------------------------------------------------------------


def test_clients_leaving_while_their_answer_waits_for_fdatasync_leave_the_gateway_serving(gateways, conns):
    gw, token = gateways("machine")
    for i in range(20):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
            # With a pipelined GET behind it too: queued for the ASGI app when the client goes.
            s.sendall(collect(hit_body(token, f"/left-{i}")) + (HEALTHZ if i % 2 else b""))
            if i % 4 < 2:  # closed with a reset rather than a FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn = conns(gw)
    conn.send(collect(hit_body(token, "/after-leavers")))
    assert_stored(conn.response())  # a later fdatasync: the leavers' waiters have gone by now
    conn.send(HEALTHZ)
    assert conn.response().status == 200
    time.sleep(0.3)
    logs = gw.logs()
    assert "Traceback" not in logs and "waiter failed" not in logs, logs[-3000:]


# ---- what the review of the protocol lane found -------------------------------------------------------------


def rejected(gw: GatewayProcess, error: str) -> float:
    with gw.client() as c:
        text = c.get("/metrics").text
    line = [x for x in text.splitlines() if x.startswith(f'consentgate_requests_rejected_total{{error="{error}"}}')]
    return float(line[0].split()[-1]) if line else 0.0


def test_a_client_that_sends_and_never_reads_stops_being_read(gateways):
    # Answers written inside the parser pile up in the transport's buffer when the client does not read:
    # past its high-water mark the protocol must leave requests to uvicorn's path, which stops reading.
    # 200,000 refused collects (12 MB) would be 60 MB of answers held in memory.
    gw, _ = gateways("machine")
    before = rejected(gw, "unknown_site")
    request = b"POST /s/nosuchsite/collect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing holds little
    sock.connect(("127.0.0.1", gw.port))
    sock.settimeout(8)
    sent = 0
    try:
        batch = request * 1000
        for _ in range(200):
            sock.sendall(batch)
            sent += 1000
    except TimeoutError:
        pass  # the gateway stopped reading: what we want
    processed = rejected(gw, "unknown_site") - before
    sock.close()
    # what the kernel's buffers (the gateway's send buffer: tcp_wmem, 4 MB here) and the transport's
    # 64 KiB hold at most: about 4 MB / 300 B per answer
    assert processed < 30_000, f"{processed:.0f} requests answered into a connection that reads nothing (sent {sent})"
    with gw.client() as c:
        assert c.get("/healthz").status_code == 200


def test_a_request_pipelined_behind_a_refused_collect_is_not_cut_by_the_keep_alive_timer(gateways, conns):
    # The refused collect is answered inside the parser, which arms uvicorn's keep-alive timer (5 s) while the
    # next request of the same read is still to come: a consent whose body comes 6 s later must be answered.
    gw, _ = gateways("machine")
    c = conns(gw)
    consent = json.dumps({"choices": {"analytics": True}}).encode()
    head = (f"POST /s/demo/consent HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {SITE_ORIGIN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(consent)}\r\n\r\n").encode()
    c.send(collect(b"{}", origin="https://evil.example") + head)
    assert_error(c.response(), 403, "bad_origin")
    time.sleep(6.5)
    c.send(consent)
    r = c.response()
    assert r.status == 200 and r.json()["token"], (r, r.body)


def test_a_collect_is_refused_503_at_once_while_the_spool_cannot_be_written(tmp_path):
    # durability = machine keeps lines in memory until a flush writes and syncs them; while flushes fail (disk
    # full or failing), a hit would wait with no end: it is refused at its head instead. A real failed flush needs
    # a file system of its own to fill (root and a tmpfs, as bench/crash_campaign.py's outage does for the store);
    # here the group commit's failure is set by hand, the one fake of this file.
    from gateway.app import create_app
    from gateway.config import load_config

    app = create_app(load_config(write_config(tmp_path)))
    lane, commit = app.collect_lane, app.state.services.commit
    scope = {"type": "http", "method": "POST", "path": "/s/demo/collect", "client": ("203.0.113.9", 40000),
             "headers": [(b"origin", SITE_ORIGIN.encode()), (b"content-length", b"40")]}
    assert lane.refusal(lane.request(scope, "demo")) is None
    commit.failed = OSError(28, "No space left on device")
    answer = lane.refusal(lane.request(scope, "demo"))
    assert answer is not None and answer.status == 503, answer
    assert json.loads(answer.body)["error"] == "spool_unwritable"
    assert (b"retry-after", b"30") in answer.headers
    commit.failed = None  # the next flush worked
    assert lane.refusal(lane.request(scope, "demo")) is None
    app.state.services.store.close()
