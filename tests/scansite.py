"""A site to scan, on two loopback origins: the shop (http://localhost:P) and a tracker (http://127.0.0.2:T).

Modes:
- leaky: before any consent an inline script sets the cookie `site_visitor` and the localStorage key
  `site_last_visit`, and a pixel from the tracker (with a visitor id in its URL) sets `trk_uid`;
  the consentgate banner gates /analytics.js (cookies `_ga`, `_gid`).
- fixed: the same, but the cookie, the storage key and the pixel wait in a gated /tracking.js.
- other_banner: no consentgate banner, a cookie notice the scan cannot answer, nothing stored.
Every page links to /, /producten, /contact and to a page on the tracker, which the scan must not follow.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from harness import free_port

TRACKER_HOST = "127.0.0.2"  # another site than localhost (the shop) and 127.0.0.1 (the gateway); still loopback
PIXEL_ID = "9f8e7d6c5b4a3928"  # the visitor id the pixel carries: 16 hex characters
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")

LEAKY_HEAD = """<script>document.cookie = "site_visitor=v" + Date.now() + "; max-age=31536000; path=/";
localStorage.setItem("site_last_visit", String(Date.now()));</script>"""
LEAKY_BODY = '<img src="{tracker}/pixel.gif?uid={pixel_id}" alt="" width="1" height="1">'
FIXED_BODY = '<script type="text/plain" data-category="marketing" data-src="/tracking.js"></script>'
TRACKING_JS = """document.cookie = "site_visitor=v" + Date.now() + "; max-age=31536000; path=/";
localStorage.setItem("site_last_visit", String(Date.now()));
var img = document.createElement("img"); img.src = "{tracker}/pixel.gif?uid={pixel_id}"; document.body.appendChild(img);"""
ANALYTICS_JS = """document.cookie = "_ga=GA1.1.123456789.1700000000; max-age=63072000; path=/";
document.cookie = "_gid=GA1.1.987654321.1700000000; max-age=86400; path=/";"""
PAGE = """<!doctype html><html lang="nl"><head><meta charset="utf-8"><title>Koffiebranderij: {title}</title>
{banner}{head}</head><body>
<nav><a href="/">Home</a> <a href="/producten">Producten</a> <a href="/contact#formulier">Contact</a>
<a href="{tracker}/elsewhere">Partner</a> <a href="/prijslijst.pdf">Prijslijst</a></nav>
<h1>{title}</h1><p>Vers gebrande koffie.</p>{notice}{body}
<script type="text/plain" data-category="analytics" data-src="/analytics.js"></script>
</body></html>"""
NOTICE = '<div id="cookie-notice">Wij gebruiken cookies. <button type="button">OK</button></div>'
PAGES = {"/": "Home", "/producten": "Producten", "/contact": "Contact"}


@dataclass
class ScanSite:
    mode: str = "leaky"
    gateway: str = ""  # the gateway's base URL, for the banner tag
    site: str = "demo"
    port: int = field(default_factory=free_port)
    tracker_port: int = field(default_factory=free_port)
    tracker_paths: list[str] = field(default_factory=list)
    servers: list[ThreadingHTTPServer] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def tracker(self) -> str:
        return f"http://{TRACKER_HOST}:{self.tracker_port}"

    def page(self, path: str) -> str:
        leaky = self.mode == "leaky"
        banner = "" if self.mode == "other_banner" else f'<script src="{self.gateway}/s/{self.site}/banner.js" defer></script>\n'
        body = {"leaky": LEAKY_BODY, "fixed": FIXED_BODY}.get(self.mode, "")
        return PAGE.format(title=PAGES[path], banner=banner, head=LEAKY_HEAD if leaky else "", tracker=self.tracker,
                           notice=NOTICE if self.mode == "other_banner" else "",
                           body=body.format(tracker=self.tracker, pixel_id=PIXEL_ID))

    def start(self) -> "ScanSite":
        site = self

        class Shop(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = urlsplit(self.path).path
                if path in PAGES:
                    _send(self, 200, site.page(path).encode(), "text/html; charset=utf-8")
                elif path == "/analytics.js":
                    _send(self, 200, ANALYTICS_JS.encode(), "text/javascript")
                elif path == "/tracking.js":
                    _send(self, 200, TRACKING_JS.format(tracker=site.tracker, pixel_id=PIXEL_ID).encode(), "text/javascript")
                else:
                    _send(self, 404, b"not found", "text/plain")

            def log_message(self, *args: Any) -> None:
                pass

        class Tracker(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                site.tracker_paths.append(urlsplit(self.path).path)
                # SameSite=None; Secure: what a tracker sends so that browsers keep it in a third-party context.
                _send(self, 200, GIF, "image/gif",
                      {"Set-Cookie": "trk_uid=t7c1d2e3f4a5b6c7d8; Max-Age=31536000; Path=/; SameSite=None; Secure"})

            def log_message(self, *args: Any) -> None:
                pass

        for handler, host, port in ((Shop, "127.0.0.1", self.port), (Tracker, TRACKER_HOST, self.tracker_port)):
            server = ThreadingHTTPServer((host, port), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
          headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Cache-Control", "no-store")
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
