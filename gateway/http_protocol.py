"""uvicorn's httptools protocol with a bound on the request head (request line plus headers).

uvicorn's httptools protocol has no header size limit (its `h11_max_incomplete_event_size`
applies to h11 only): measured here, a single 8 MB User-Agent is parsed and handed to the
app whole, and httptools buffers a header value until it ends. This subclass answers
431 with a JSON error once a head passes MAX_HEAD_BYTES, before the parser sees the
bytes past the limit: it counts the raw bytes of a head as they arrive and, once they
pass the limit, looks for the blank line that ends the head. It checks nothing per header:
Python callbacks on every URL and header (the first version) cost 35-40 us a request, a
quarter of a bare app's throughput (measured with bench/bare_app.py under wrk).
"""
from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0  # bytes received since the current head began
        self._tail = b""  # the last bytes of the previous read: a blank line may straddle two reads
        self._refused = False
        self._parsed_too_large = False

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
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; a head over the limit (HeadTooLarge) gets its 431.
        if self._parsed_too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._tail = True, 0, b""

    def _refuse(self) -> None:
        self._refused = True
        if not self.transport.is_closing():
            self.transport.write(head_too_large_response(self.max_head_bytes))
            self.transport.close()
