"""uvicorn's httptools protocol with a bound on the request head (request line plus headers).

uvicorn's httptools protocol has no header size limit (its `h11_max_incomplete_event_size`
applies to h11 only): measured here, a single 8 MB User-Agent is parsed and handed to the
app whole, and httptools buffers a header value until it ends. This subclass answers
431 with a JSON error once the head passes MAX_HEAD_BYTES, counting both the raw bytes
of a head still arriving (so an endless header is cut off after about one read past the
limit) and the parsed URL and headers of a complete head.
"""
from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# nginx's default large_client_header_buffers (4 x 8k) lets at most 32 KiB of head through:
# a gateway behind it never sees more, one without it is held to the same.
MAX_HEAD_BYTES = 32 * 1024


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing; httptools passes it on as a parser error."""


def head_too_large_response(limit: int) -> bytes:
    body = orjson.dumps({"error": "headers_too_large",
                         "detail": f"the request line and headers are over {limit} bytes (an oversized User-Agent, "
                                   "cookie or URL?): send them shorter"})
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._raw_head_bytes = 0  # bytes received while the head is incomplete
        self._parsed_head_bytes = 0  # URL and header bytes the parser handed over
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._raw_head_bytes += len(data)
        super().data_received(data)
        if self._in_head and not self._refused and self._raw_head_bytes > self.max_head_bytes:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._raw_head_bytes = True, 0

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; a head over the limit (HeadTooLarge) gets its 431.
        if self._parsed_head_bytes > self.max_head_bytes:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._parsed_head_bytes += size
        if self._parsed_head_bytes > self.max_head_bytes:
            raise HeadTooLarge

    def _refuse(self) -> None:
        self._refused = True
        if not self.transport.is_closing():
            self.transport.write(head_too_large_response(self.max_head_bytes))
            self.transport.close()
