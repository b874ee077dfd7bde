"""`consentgate scan` (issue 13) against a real site on two loopback origins, a real gateway and Debian's Chromium.

The site (http://localhost:P) and a tracker (http://127.0.0.2:T) are http.server threads of this
test; the banner comes from a real gateway (tests/harness.py). The scan runs as the real command
in a subprocess, so its exit status and files are what CI gets. Modes of the site:
- leaky: before any consent an inline script sets the cookie `site_visitor` and the localStorage key
  `site_last_visit`, and a pixel from the tracker (a visitor id in its URL) sets `trk_uid`;
  the consentgate banner gates /analytics.js (cookies `_ga`, `_gid`).
- fixed: the same cookie, key and pixel, but inside a gated /tracking.js.
- other_banner: no consentgate banner, a cookie notice the scan cannot answer, nothing stored.
- onetrust: a banner with OneTrust's element ids, which loads /analytics.js after Accept.
Every page links to /, /producten, /contact, a PDF and a page on the tracker; the scan follows only
same-origin pages, so all traffic stays on loopback.

Refresh the report screenshot in docs/ with
CONSENTGATE_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -q tests/test_scan.py -k screenshot
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest

from gateway.scan.classify import identifier_params, site_of
from gateway.scan.findings import findings as judge
from gateway.scan.report_html import render_html
from gateway.scan.schema import REPORT_SCHEMA
from gateway.scan.suggest import suggest_config
from harness import ROOT, SECRET, GatewayProcess, free_port, write_config

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
# A banner with OneTrust's documented element ids (not OneTrust's code): it stores the choice in its
# consent cookie and loads /analytics.js only after Accept.
ONETRUST = """<div id="onetrust-banner-sdk">Wij gebruiken cookies.
<button id="onetrust-accept-btn-handler">Accepteren</button> <button id="onetrust-reject-all-handler">Weigeren</button></div>
<script>(function () {
  var banner = document.getElementById("onetrust-banner-sdk");
  function apply(choice) {
    banner.hidden = true;
    if (choice === "all") { var s = document.createElement("script"); s.src = "/analytics.js"; document.body.appendChild(s); }
  }
  function decide(choice) { document.cookie = "OptanonConsent=" + choice + "; max-age=31536000; path=/"; apply(choice); }
  var stored = (document.cookie.match(/OptanonConsent=(\\w+)/) || [])[1];
  if (stored) apply(stored);
  document.getElementById("onetrust-accept-btn-handler").onclick = function () { decide("all"); };
  document.getElementById("onetrust-reject-all-handler").onclick = function () { decide("necessary"); };
})();</script>"""
PAGES = {"/": "Home", "/producten": "Producten", "/contact": "Contact"}


@dataclass
class ScanSite:
    mode: str = "leaky"
    gateway: str = ""  # the gateway's base URL, for the banner tag
    site: str = "demo"
    port: int = field(default_factory=free_port)
    tracker_port: int = field(default_factory=free_port)
    tracker_paths: list[str] = field(default_factory=list)
    shop_paths: list[str] = field(default_factory=list)
    servers: list[ThreadingHTTPServer] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def tracker(self) -> str:
        return f"http://{TRACKER_HOST}:{self.tracker_port}"

    def page(self, path: str) -> str:
        leaky = self.mode == "leaky"
        consentgate = self.mode in ("leaky", "fixed")
        banner = f'<script src="{self.gateway}/s/{self.site}/banner.js" defer></script>\n' if consentgate else ""
        body = {"leaky": LEAKY_BODY, "fixed": FIXED_BODY}.get(self.mode, "")
        return PAGE.format(title=PAGES[path], banner=banner, head=LEAKY_HEAD if leaky else "", tracker=self.tracker,
                           notice={"other_banner": NOTICE, "onetrust": ONETRUST}.get(self.mode, ""),
                           body=body.format(tracker=self.tracker, pixel_id=PIXEL_ID))

    def start(self) -> "ScanSite":
        site = self

        class Shop(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = urlsplit(self.path).path
                site.shop_paths.append(path)
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


# -- fixtures: one site and one gateway for the module; the leaky scan runs once and several tests read it

SITE_COOKIES = {"analytics": ["_ga", "_gid"]}  # the short form
TRACKER_COOKIE = {"name": "trk_uid", "category": "marketing", "purpose": "the test tracker's visitor id",
                  "party": "third", "provider": TRACKER_HOST}  # the detailed form ([[sites.demo.cookie]])
LOOPBACK = {"localhost", "127.0.0.1", TRACKER_HOST}


@pytest.fixture(scope="module")
def scan_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScanSite, GatewayProcess]]:
    site = ScanSite().start()
    folder = tmp_path_factory.mktemp("scan-gw")
    gw = GatewayProcess(write_config(folder, sites={"demo": {
        "origins": [site.origin], "cookies": SITE_COOKIES, "cookie": [TRACKER_COOKIE]}}), folder).start()
    site.gateway = gw.url
    yield site, gw
    gw.kill()
    site.stop()


@dataclass
class ScanRun:
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    html: str


def scan(tmp_path: Path, url: str, *args: str) -> ScanRun:
    """The real command, as CI runs it."""
    json_path, html_path = tmp_path / "report.json", tmp_path / "report.html"
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "scan", url, "--json", str(json_path), "--html",
                          str(html_path), "--wait", "2000", *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    report = json.loads(json_path.read_text()) if json_path.exists() else {}
    if report:
        jsonschema_rs.validate(REPORT_SCHEMA, report)  # every report keeps the documented schema
    return ScanRun(out.returncode, out.stdout, out.stderr, report, html_path.read_text() if html_path.exists() else "")


@pytest.fixture(scope="module")
def leaky_scan(scan_site: tuple[ScanSite, GatewayProcess], tmp_path_factory: pytest.TempPathFactory) -> ScanRun:
    site, gw = scan_site
    site.mode = "leaky"
    site.shop_paths.clear()
    site.tracker_paths.clear()
    return scan(tmp_path_factory.mktemp("leaky"), site.origin + "/", "--config", str(gw.config_path),
                "--pages", "1", "--suggest-config")


def phase(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report["phases"] if p["name"] == name)


def items(p: dict[str, Any], necessary: bool = False) -> set[str]:
    """What a phase saw, as "cookie:name", "localStorage:key", "request:host" (the consent banner's host left out);
    the strictly necessary ones only when asked."""
    found = {f"cookie:{c['name']}" for c in p["cookies"] if (c["category"] == "necessary") == necessary}
    found |= {f"{s['area']}:{s['key']}" for s in p["storage"] if (s["category"] == "necessary") == necessary}
    if not necessary:
        found |= {f"request:{r['host']}" for r in p["requests"] if r["role"] != "consent_banner"}
    return found


# -- the leaky site: exactly its cookie, storage key and tracker, before consent and after Reject

def test_scan_finds_exactly_what_the_site_stores_before_consent_and_after_reject(scan_site, leaky_scan):
    site, gw = scan_site
    run, report = leaky_scan, leaky_scan.report
    assert run.code == 1, run.stderr
    assert report["verdict"] == {"status": "findings", "exit_code": 1, "findings": 8, "errors": 0}
    assert report["site"] == "demo" and report["banner"] == "consentgate"
    assert [(p["name"], p["status"]) for p in report["phases"]] == [
        ("no_consent", "done"), ("reject", "done"), ("accept", "done")]

    leaked = {"cookie:site_visitor", "cookie:trk_uid", "localStorage:site_last_visit", f"request:{TRACKER_HOST}"}
    assert items(phase(report, "no_consent")) == leaked
    assert items(phase(report, "reject")) == leaked
    assert items(phase(report, "accept")) == leaked | {"cookie:_ga", "cookie:_gid"}
    # The banner's own record of the decision: strictly necessary, so no finding.
    assert items(phase(report, "no_consent"), necessary=True) == set()
    assert items(phase(report, "reject"), necessary=True) == {"localStorage:consentgate:demo"}

    expected = set()
    for name in ("no_consent", "reject"):
        expected |= {f"{name}/cookie/site_visitor@localhost", f"{name}/cookie/trk_uid@{TRACKER_HOST}",
                     f"{name}/storage/localStorage:site_last_visit@{site.origin}", f"{name}/request/{TRACKER_HOST}"}
    assert {f["id"] for f in report["findings"]} == expected

    first = phase(report, "no_consent")
    cookies = {c["name"]: c for c in first["cookies"]}
    assert cookies["site_visitor"]["party"] == "first"
    assert cookies["site_visitor"]["set_by"] == {"kind": "inline_script", "url": site.origin + "/"}
    assert cookies["site_visitor"]["category"] is None and 364 <= cookies["site_visitor"]["lifetime_days"] <= 365
    assert cookies["trk_uid"]["party"] == "third"
    assert cookies["trk_uid"]["set_by"] == {"kind": "http_response", "url": site.tracker + "/pixel.gif"}
    assert (cookies["trk_uid"]["category"], cookies["trk_uid"]["category_source"]) == ("marketing", "config")
    storage = first["storage"][0]
    assert storage["set_by"] == {"kind": "inline_script", "url": site.origin + "/"}
    requests = {r["host"]: r for r in first["requests"]}
    assert requests[TRACKER_HOST]["identifier_params"] == ["uid"]
    assert requests["127.0.0.1"]["role"] == "consent_banner" and requests["127.0.0.1"]["identifier_params"] == []
    accept = {c["name"]: c for c in phase(report, "accept")["cookies"]}
    assert accept["_ga"]["set_by"] == {"kind": "script", "url": site.origin + "/analytics.js"}
    assert (accept["_ga"]["category"], accept["_ga"]["category_source"]) == ("analytics", "config")
    assert phase(report, "reject")["decision"] == {"banner": "consentgate", "clicked": "reject", "page": site.origin + "/"}


def test_scan_stays_on_the_site_and_on_loopback(scan_site, leaky_scan):
    site, _ = scan_site
    report = leaky_scan.report
    visited = [p["url"] for p in phase(report, "no_consent")["pages"]]
    assert visited == [site.origin + "/", site.origin + "/producten"]  # --pages 1: the start page and one more
    assert all(p["url"] in visited for name in ("reject", "accept") for p in phase(report, name)["pages"])
    assert "/contact" not in site.shop_paths and "/prijslijst.pdf" not in site.shop_paths
    assert set(site.tracker_paths) == {"/pixel.gif"}  # its link was never followed
    hosts = {r["host"] for p in report["phases"] for r in p["requests"]}
    hosts |= {urlsplit(p["url"]).hostname for ph in report["phases"] for p in ph["pages"]}
    assert hosts <= LOOPBACK


def test_html_report_names_each_finding_and_what_to_do(leaky_scan):
    text = html_text(leaky_scan.html)
    assert "8 findings" in text and "What to fix" in text
    for name in ("site_visitor", "trk_uid", "site_last_visit", TRACKER_HOST):
        assert name in text
    assert text.count("What to do:") == 4  # one card per cookie, key or host, naming both phases
    assert "<script" not in leaky_scan.html


def test_suggested_config_parses_with_check_config(scan_site, leaky_scan, tmp_path):
    site, _ = scan_site
    suggestion = leaky_scan.stdout
    entries = {c["name"]: c for c in tomllib.loads(suggestion)["sites"]["demo"]["cookie"]}
    assert set(entries) == {"site_visitor", "trk_uid", "site_last_visit", "_ga", "_gid"}
    assert entries["_ga"]["category"] == "analytics" and entries["_ga"]["provider"] == "Google Analytics"
    assert entries["trk_uid"] == {**TRACKER_COOKIE, "lifetime": "12 months"}
    assert entries["site_visitor"]["category"] == "marketing"  # not recognised: the strictest, to check
    assert "FINDING" in leaky_scan.stderr and "FINDING" not in suggestion  # the summary went to stderr
    config = tmp_path / "consentgate.toml"
    config.write_text(f'[gateway]\nsecret_key = "{SECRET}"\nstore = "chdb://{tmp_path / "store"}"\n\n'
                      f'[sites.demo]\norigins = ["{site.origin}"]\n\n{suggestion}')
    check = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(config)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_html_report_screenshot(leaky_scan, browser, tmp_path):
    out = Path(os.environ.get("CONSENTGATE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    report = tmp_path / "report.html"
    report.write_text(leaky_scan.html)
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    try:
        page.goto(report.as_uri())
        assert page.locator(".verdict").inner_text() == "8 findings"
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # long URLs wrap
        page.screenshot(path=str(out / "scan-report.png"))
    finally:
        page.close()


# -- after the fix, and banners the scan cannot answer

def test_fixed_site_exits_0_and_still_shows_everything_after_accept(scan_site, tmp_path):
    site, gw = scan_site
    site.mode = "fixed"
    run = scan(tmp_path, site.origin + "/", "--config", str(gw.config_path), "--pages", "0")
    assert run.code == 0, run.stdout + run.stderr
    assert run.report["verdict"] == {"status": "clean", "exit_code": 0, "findings": 0, "errors": 0}
    assert items(phase(run.report, "no_consent")) == set() and items(phase(run.report, "reject")) == set()
    # Gated, not gone: after Accept the scan sees them all.
    assert items(phase(run.report, "accept")) == {"cookie:site_visitor", "cookie:trk_uid", "localStorage:site_last_visit",
                                                  f"request:{TRACKER_HOST}", "cookie:_ga", "cookie:_gid"}
    assert "No findings" in html_text(run.html)


def test_unrecognised_banner_skips_the_phases_after_consent(scan_site, tmp_path):
    site, _ = scan_site
    site.mode = "other_banner"
    run = scan(tmp_path, site.origin + "/", "--pages", "0")
    assert run.code == 0, run.stdout + run.stderr
    assert run.report["banner"] == "unknown" and run.report["site"] is None
    for name in ("reject", "accept"):
        p = phase(run.report, name)
        assert (p["status"], p["note"]) == ("skipped", "banner not recognised: phases after consent skipped")
    assert "banner not recognised: phases after consent skipped" in run.stdout


def test_a_recognised_other_banner_is_answered_too(scan_site, tmp_path):
    site, _ = scan_site
    site.mode = "onetrust"
    run = scan(tmp_path, site.origin + "/", "--pages", "0")
    assert run.code == 0, run.stdout + run.stderr
    assert run.report["banner"] == "onetrust"
    assert phase(run.report, "reject")["decision"] == {"banner": "onetrust", "clicked": "reject", "page": site.origin + "/"}
    # Its consent cookie is strictly necessary (built-in list); the gated analytics run only after Accept.
    assert items(phase(run.report, "reject"), necessary=True) == {"cookie:OptanonConsent"}
    assert items(phase(run.report, "reject")) == set() and items(phase(run.report, "no_consent")) == set()
    assert items(phase(run.report, "accept")) == {"cookie:_ga", "cookie:_gid"}


# -- errors: exit 2, never 1 (which means findings)

def test_unreachable_site_exits_2_with_a_report(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    run = scan(tmp_path, url)
    assert run.code == 2
    assert run.report["verdict"]["status"] == "error" and "did not load" in run.report["errors"][0]["message"]
    assert "Scan failed" in html_text(run.html)


def test_bad_input_exits_2_and_says_what_to_do(scan_site, tmp_path):
    site, gw = scan_site
    unknown_site = subprocess.run([sys.executable, "-m", "gateway.cli", "scan", site.origin + "/", "--config",
                                   str(gw.config_path), "--site", "shop"], cwd=ROOT, capture_output=True, text=True,
                                  timeout=60)
    assert unknown_site.returncode == 2 and "its sites are: demo" in unknown_site.stderr
    not_http = subprocess.run([sys.executable, "-m", "gateway.cli", "scan", "file:///etc/passwd"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert not_http.returncode == 2 and "http(s) URL" in not_http.stderr


def test_missing_playwright_exits_2_with_the_install_command():
    # A fake for a fault not produced for real here (a venv without Playwright): None in sys.modules
    # makes `import playwright...` raise ImportError, exactly as when the package is absent.
    code = ("import sys; sys.modules['playwright'] = None; sys.modules['playwright.sync_api'] = None; "
            "from gateway.cli import main; main(['scan', 'http://127.0.0.1:9/'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "pip install 'consentgate[scan]'" in out.stderr


# -- what the site controls never becomes markup or config

HOSTILE_KEY = 'k<img src=x onerror="alert(1)">\n[gateway]\nsecret_key = "x"'


def hostile_report() -> dict[str, Any]:
    by = {"kind": "inline_script", "url": "http://shop.example/<b>"}
    storage = {"area": "localStorage", "key": HOSTILE_KEY, "origin": "http://shop.example", "party": "first",
               "set_by": by, "first_page": "http://shop.example/", "category": None, "category_source": "none",
               "vendor": "", "purpose": ""}
    phase_ = {"name": "no_consent", "title": "First visit", "status": "done", "note": "", "decision": None,
              "pages": [{"url": "http://shop.example/?q=<script>", "status": 200, "error": None, "banner": None,
                         "new_cookies": [], "new_storage": [HOSTILE_KEY], "third_party_hosts": []}],
              "cookies": [], "storage": [storage], "requests": []}
    report = {"schema_version": 1, "tool": "consentgate scan", "tool_version": "0", "url": "http://shop.example/",
              "origin": "http://shop.example", "site": None, "config": None, "started_at": "2026-12-01T00:00:00Z",
              "finished_at": "2026-12-01T00:00:10Z", "browser": "", "options": {}, "banner": None,
              "verdict": {"status": "findings", "exit_code": 1, "findings": 1, "errors": 0},
              "phases": [phase_], "findings": [], "errors": []}
    report["findings"] = judge(report["phases"])
    jsonschema_rs.validate(REPORT_SCHEMA, report)
    return report


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def html_text(html: str) -> str:
    parser = _Tags()
    parser.feed(html)
    return " ".join(parser.text)


def test_html_report_shows_site_controlled_names_as_text():
    html = render_html(hostile_report())
    parser = _Tags()
    parser.feed(html)
    assert "img" not in parser.tags and "b" not in parser.tags and "script" not in parser.tags
    assert 'k<img src=x onerror="alert(1)">' in "".join(parser.text)  # shown, as text


def test_suggested_config_keeps_a_hostile_storage_key_inside_its_string():
    raw = tomllib.loads(suggest_config(hostile_report(), "shop"))
    assert set(raw) == {"sites"}  # no [gateway] table smuggled in through the key's newlines
    assert [c["name"] for c in raw["sites"]["shop"]["cookie"]] == [HOSTILE_KEY]


# -- the small judgements

def test_site_of_and_identifier_params():
    assert site_of("www.shop.example.co.uk") == "example.co.uk" and site_of("cdn.clientbox.nl") == "clientbox.nl"
    assert site_of("127.0.0.2") == "127.0.0.2" and site_of("localhost") == "localhost" and site_of("[::1]") == "::1"
    assert identifier_params("https://t.example/p?uid=ab12cd34&v=2&page=home") == ["uid"]  # by name
    assert identifier_params("https://t.example/p?x=550e8400-e29b-41d4-a716-446655440000") == ["x"]  # a UUID
    assert identifier_params("https://t.example/collect?c=GA1.1.123456789.1700000000") == ["c"]  # a GA client id
    assert identifier_params("https://t.example/p?k=visitor-77", {"visitor-77"}) == ["k"]  # a cookie's value
    assert identifier_params("https://t.example/p?uid=1&lang=nl&w=1280&ts=1700000000") == []  # short or no id


def test_what_the_config_declares_necessary_is_no_finding(tmp_path):
    from gateway.config import load_config
    from gateway.scan.classify import Classifier, declared_cookies

    path = tmp_path / "consentgate.toml"
    path.write_text(f'[gateway]\nsecret_key = "{SECRET}"\nstore = "chdb://{tmp_path / "store"}"\n\n'
                    '[sites.demo]\norigins = ["http://localhost:8080"]\ncookies = {analytics = ["stats_*"]}\n\n'
                    '[[sites.demo.cookie]]\nname = "basket"\ncategory = "necessary"\npurpose = "the shopping basket"\n')
    classifier = Classifier(declared_cookies(load_config(path).sites["demo"]))

    def cookie(name: str) -> dict[str, Any]:
        category = classifier.category(name)
        return {"name": name, "domain": "localhost", "path": "/", "party": "first", "expires": None,
                "lifetime_days": None, "http_only": False, "secure": False, "same_site": "Lax",
                "set_by": {"kind": "http_response", "url": "http://localhost:8080/"}, "first_page": "http://localhost:8080/",
                "category": category.name, "category_source": category.source, "vendor": category.vendor,
                "purpose": category.purpose}

    phase_ = {"name": "no_consent", "title": "", "status": "done", "note": "", "decision": None, "pages": [],
              "cookies": [cookie("basket"), cookie("stats_1"), cookie("PHPSESSID"), cookie("_ga")],
              "storage": [], "requests": []}
    assert cookie("basket")["purpose"] == "the shopping basket"
    # basket: necessary by the config; PHPSESSID: by the built-in list; stats_1 (declared analytics) and _ga are findings.
    assert [f["name"] for f in judge([phase_])] == ["stats_1", "_ga"]
