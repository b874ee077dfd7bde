"""The gateway's HTTP protocol: uvicorn's httptools protocol with a bound on the request head, answering
`POST /s/{site}/collect` itself.

The head bound: uvicorn's httptools protocol has no header size limit (its `h11_max_incomplete_event_size`
applies to h11 only): measured here, a single 8 MB User-Agent is parsed and handed to the
app whole, and httptools buffers a header value until it ends. This subclass answers
431 with a JSON error once a head passes MAX_HEAD_BYTES, before the parser sees the
bytes past the limit: it counts the raw bytes of a head as they arrive and, once they
pass the limit, looks for the blank line that ends the head. It checks nothing per header:
Python callbacks on every URL and header (the first version) cost 35-40 us a request, a
quarter of a bare app's throughput (measured with bench/bare_app.py under wrk).

Collect: every page view is one, so it is answered here, without an ASGI task. When a head ends
the protocol takes a collect request (`_start_collect`) and puts a `CollectCycle` where uvicorn keeps
its current request; the parser's body callbacks fill it; when the message ends the lane answers it
(gateway/collect/endpoint.py) and the answer is written at once, or, with `durability = "machine"`,
by the group commit's callback once the hit's line is on disk. The rest of uvicorn's bookkeeping
(keep-alive, pipelining, shutdown) sees the cycle as one of its own. Measured with
bench/collect_bench.py: an ASGI request's shell (task, receive/send, scope) cost more than all of the
lane's own work.
"""
from __future__ import annotations

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.bodies import body_too_large
from gateway.collect.endpoint import CollectAnswer, CollectLane, CollectRequest, collect_site

# nginx's default large_client_header_buffers (4 x 8k) lets at most 32 KiB of head through:
# a gateway behind it never sees more, one without it is held to the same.
MAX_HEAD_BYTES = 32 * 1024


def head_too_large_response(limit: int) -> bytes:
    body = orjson.dumps({"error": "headers_too_large",
                         "detail": f"the request line and headers are over {limit} bytes (an oversized User-Agent, "
                                   "cookie or URL?): send them shorter"})
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


HEAD_END = b"\r\n\r\n"


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing; httptools passes it on as a parser error."""


class GatewayHttpProtocol(HttpToolsProtocol):
    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0  # bytes received since the current head began
        self._tail = b""  # the last bytes of the previous read: a blank line may straddle two reads
        self._refused = False
        self._parsed_too_large = False
        self._lane: CollectLane | None = getattr(self.app, "collect_lane", None)
        self._defaults: tuple[list[tuple[bytes, bytes]], bytes] = ([], b"")  # uvicorn's default headers, encoded

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes and self._head_too_large(data):
                self._refuse()
                return
            self._tail = data[-3:]
        super().data_received(data)

    def _head_too_large(self, data: bytes) -> bool:
        """Past the limit: whether the head does not end within it (the rest of this read may be body)."""
        seen = self._tail + data
        end = seen.find(HEAD_END)
        if end < 0:
            return True
        head = self._head_bytes - len(data) - len(self._tail) + end + len(HEAD_END)
        return head > self.max_head_bytes

    def on_headers_complete(self) -> None:
        self._in_head = False
        # The parsed head, once per request: also catches a head that arrived behind another request in
        # one read (pipelining), which the raw count above started counting late.
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.max_head_bytes:
            self._parsed_too_large = True
            raise HeadTooLarge
        if self.transport.is_closing():
            # The connection was answered with `connection: close` mid-read (a 413): nothing after that answer
            # is processed (RFC 9112 9.6), though the parser goes on through what this read holds.
            self.cycle = CollectCycle.ignored()  # type: ignore[assignment]
        elif not self._start_collect():
            super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; a head over the limit (HeadTooLarge) gets its 431.
        if self._parsed_too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._refused = True
        if not self.transport.is_closing():
            self.transport.write(head_too_large_response(self.max_head_bytes))
            self.transport.close()

    def on_message_complete(self) -> None:
        if isinstance(self.cycle, CollectCycle):
            self._complete_collect(self.cycle)
        else:
            super().on_message_complete()
        self._in_head, self._head_bytes, self._tail = True, 0, b""

    def on_message_begin(self) -> None:
        # A collect answered inside the parser armed the keep-alive timer (on_response_complete) while the
        # next request of the same read was still to come: that request must not run under it.
        self._unset_keepalive_if_required()
        super().on_message_begin()

    def on_body(self, body: bytes) -> None:
        if isinstance(self.cycle, CollectCycle):
            self._collect_body(self.cycle, body)
        else:
            super().on_body(body)

    # ---- POST /s/{site}/collect, answered here (gateway/collect/endpoint.py) --------------------------

    def _start_collect(self) -> bool:
        """Takes a collect request whose head just ended, unless the ASGI app should have it: another
        method or path, a percent-escaped path, an upgrade, `Expect: 100-continue`, a request pipelined behind
        an unanswered one, or any request while writes are paused."""
        lane = self._lane
        # Writes paused (a client that sends and does not read): uvicorn's path queues the request and stops
        # reading until the answers drain; answered here, they would pile up in the transport's buffer.
        if (lane is None or self.flow.write_paused or self.parser.get_method() != b"POST" or self.expect_100_continue
                or (self.cycle is not None and not self.cycle.response_complete) or self.parser.should_upgrade()):
            return False
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        site = collect_site(path) if "%" not in path else None  # an escaped path: the app decodes and routes it
        if site is None:
            return False
        http_version = self.parser.get_http_version()
        self.scope.update(method="POST", path=self.root_path + path, raw_path=self.root_path.encode("ascii") + url.path,
                          query_string=url.query or b"", http_version=http_version)
        request = lane.request(self.scope, site)
        cycle = CollectCycle(lane, request, keep_alive=http_version != "1.0" and self.parser.should_keep_alive())
        self.cycle = cycle  # type: ignore[assignment]
        refusal = lane.refusal(request)
        if refusal is not None:  # answered now; the body that follows is read past (cycle.response_complete)
            self._send_collect(cycle, refusal)
        return True

    def _collect_body(self, cycle: "CollectCycle", body: bytes) -> None:
        if cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > cycle.lane.max_body_bytes:  # answered at once, and the connection closed: no more reading
            cycle.keep_alive = False
            self._send_collect(cycle, cycle.lane.error(cycle.request, body_too_large(cycle.lane.max_body_bytes)))

    def _complete_collect(self, cycle: "CollectCycle") -> None:
        if cycle.response_complete:
            return
        answer = cycle.lane.answer(cycle.request, bytes(cycle.body))
        cycle.body = bytearray()  # not held while the answer waits for the disk
        commit = cycle.lane.services.commit
        if answer.ticket and not commit.covers(answer.ticket):
            # durability = machine: acknowledged means on disk
            commit.when_synced(answer.ticket, self.loop, lambda: self._send_collect(cycle, answer))
        else:
            self._send_collect(cycle, answer)

    def _send_collect(self, cycle: "CollectCycle", answer: CollectAnswer) -> None:
        """Writes the answer as uvicorn's cycle would (its default headers first), then lets the connection go
        on: the next pipelined request, the keep-alive timer, or closing."""
        if cycle.response_complete:
            return
        cycle.response_complete = True
        if cycle.disconnected or self.transport.is_closing():
            cycle.lane.sent(cycle.request, answer)
            return
        defaults = self.server_state.default_headers  # a new list every second (the date header)
        if defaults is not self._defaults[0]:
            self._defaults = (defaults, b"".join(b"%s: %s\r\n" % h for h in defaults))
        self.transport.write(b"".join([STATUS_LINE[answer.status], self._defaults[1],
                                       *(b"%s: %s\r\n" % h for h in answer.headers),
                                       b"" if cycle.keep_alive else b"connection: close\r\n", b"\r\n", answer.body]))
        cycle.lane.sent(cycle.request, answer)
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()


class _NoEvent:
    """uvicorn's protocol wakes its cycle's ASGI task through `message_event.set()`; a collect cycle has none."""

    def set(self) -> None:
        pass


class CollectCycle:
    """Stands in for uvicorn's RequestResponseCycle while the protocol answers a collect request itself:
    the attributes uvicorn's protocol reads and sets on its current cycle, and the gathered body."""

    message_event = _NoEvent()

    @classmethod
    def ignored(cls) -> "CollectCycle":
        """A request that gets no answer and whose body is read past (behind a closing answer)."""
        cycle = cls(None, None, keep_alive=False)  # type: ignore[arg-type]
        cycle.response_complete = True
        return cycle

    def __init__(self, lane: CollectLane, request: CollectRequest, keep_alive: bool) -> None:
        self.lane = lane
        self.request = request
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.response_complete = False
        self.disconnected = False
