"""Real vendor endpoints for forwarding tests: http.server on 127.0.0.1, one thread each.

A VendorServer records every request (path, query, headers, raw body) and the status
it answered. Its behaviour can change while it runs: accept, answer slowly, fail the
first N requests, fail everything after N, refuse with a 4xx. A vendor that is down is
a port with nothing listening: `VendorServer(port)` not started (or stopped).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from harness import free_port


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lowercased
    body: bytes
    status: int = 0  # what the server answered
    at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)

    def raw(self) -> str:
        """Everything the vendor got, as text: for searching it for data that must not be there."""
        head = "".join(f"{k}: {v}\n" for k, v in self.headers.items())
        return f"{self.path}?{self.query}\n{head}\n{self.body.decode(errors='replace')}"


# (the request, its 0-based index) -> (status, seconds to wait before answering)
Behaviour = Callable[[Received, int], tuple[int, float]]


def accept(request: Received, index: int) -> tuple[int, float]:
    return 200, 0.0


def slow(seconds: float) -> Behaviour:
    return lambda request, index: (200, seconds)


def fail_first(count: int, status: int = 500) -> Behaviour:
    return lambda request, index: (status, 0.0) if index < count else (200, 0.0)


def fail_after(count: int, status: int = 503) -> Behaviour:
    return lambda request, index: (200, 0.0) if index < count else (status, 0.0)


def refuse(status: int = 400) -> Behaviour:
    return lambda request, index: (status, 0.0)


class VendorServer:
    def __init__(self, behaviour: Behaviour = accept, port: int | None = None) -> None:
        self.behaviour = behaviour
        self.port = port or free_port()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "VendorServer":
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                parts = urlsplit(self.path)
                request = Received(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                                   {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length),
                                   at=time.time())
                with vendor._lock:
                    index = len(vendor.received)
                    vendor.received.append(request)
                status, delay = vendor.behaviour(request, index)
                if delay:
                    time.sleep(delay)
                request.status = status
                answer = json.dumps({"ok": 200 <= status < 300, "index": index}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def accepted(self) -> list[Received]:
        return [r for r in self.requests() if 200 <= r.status < 300]

    def wait_for(self, condition: Callable[["VendorServer"], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                statuses = [r.status for r in self.requests()]
                raise AssertionError(f"vendor on port {self.port}: condition not met in {timeout}s; "
                                     f"answered {statuses}")
            time.sleep(0.05)
