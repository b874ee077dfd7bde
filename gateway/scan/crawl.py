"""The browser part of the scan: a fresh Chromium profile per phase, pages visited like a visitor would.

Phase no_consent visits the start URL and follows same-origin links; phases reject and accept
start a new visitor, answer the banner on the start page, then browse the same pages again.
What a phase records is the state the visitor's browser holds after each page (cookie jar,
localStorage/sessionStorage of every frame) plus the requests the pages made to other sites;
hooks on `document.cookie`, `Storage.setItem` and every response's Set-Cookie tell which
script or response wrote each cookie or key. Importing this module needs Playwright (the `scan` extra).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from gateway.scan.banners import BANNERS, DETECT_JS, BannerKind
from gateway.scan.classify import Classifier, identifier_params, site_of
from gateway.scan.model import PHASE_TITLES, CookieSeen, Decision, PageVisit, Phase, RequestSeen, SetBy, StorageSeen

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download is not needed
# As tests/harness.py's CHROMIUM_ARGS: no background traffic of the browser's own, so every request is the site's.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
QUIET_MS = 500  # a page is settled when no request has been in flight for this long
SKIP_EXTENSIONS = re.compile(r"\.(pdf|zip|gz|jpe?g|png|gif|svg|webp|ico|mp[34]|webm|docx?|xlsx?|pptx?|css|js|xml|json|txt)$", re.I)
BINDING = "__consentgateScanWrite"

# Runs before any script of every frame: reports who writes a cookie or a storage key.
# The writer is the first http(s) frame of the call stack (an inline script shows as the page's URL).
HOOKS_JS = """(() => {
  const report = (kind, name) => {
    try {
      const stack = (new Error()).stack.split("\\n");
      let source = "";
      for (const line of stack) {
        const m = line.match(/(https?:\\/\\/[^\\s()]+?):\\d+:\\d+\\)?\\s*$/);
        if (m) { source = m[1]; break; }
      }
      window.%(binding)s(kind, String(name), source, location.hostname, location.origin);
    } catch (e) { /* never break the page */ }
  };
  const cookie = Object.getOwnPropertyDescriptor(Document.prototype, "cookie");
  Object.defineProperty(Document.prototype, "cookie", {
    configurable: true, enumerable: cookie.enumerable,
    get() { return cookie.get.call(this); },
    set(value) { report("cookie", String(value).split(";")[0].split("=")[0].trim()); cookie.set.call(this, value); }
  });
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (key, value) {
    let area = "sessionStorage";
    try { if (this === window.localStorage) area = "localStorage"; } catch (e) {}
    report(area, key);
    return setItem.apply(this, arguments);
  };
})();""" % {"binding": BINDING}

STORAGE_JS = """() => {
  const out = [];
  for (const area of ["localStorage", "sessionStorage"]) {
    try { const s = window[area]; for (let i = 0; i < s.length; i++) out.push([area, s.key(i)]); } catch (e) {}
  }
  return {origin: location.origin, items: out};
}"""


class ScanFailed(Exception):
    """The scan cannot give a verdict (the start page did not load, the browser did not start)."""


@dataclass(frozen=True)
class CrawlOptions:
    url: str
    pages: int = 20  # same-origin pages besides the start URL
    wait_ms: int = 3000  # the longest wait for a page to settle after its load event
    timeout_ms: int = 30000  # the longest wait for a page to load
    chromium: str = CHROMIUM


def browser_identity(chromium: str) -> tuple[str, str | None]:
    """The browser's version line, and a user agent without "Headless" (sites hide trackers from
    headless browsers; a regulator's crawler does not announce itself either)."""
    try:
        out = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "", None
    match = re.search(r"(\d+)\.\d+\.\d+\.\d+", out)
    if not match:
        return out.strip(), None
    return out.strip().split(" built")[0], (
        f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{match.group(1)}.0.0.0 Safari/537.36")


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class PhaseRecorder:
    """One visitor through one phase: a fresh profile, and everything its pages left behind."""

    context: Any  # playwright BrowserContext
    site: str  # site_of(the start URL's host)
    classifier: Classifier
    options: CrawlOptions
    cookies: dict[tuple[str, str, str, str], CookieSeen] = field(default_factory=dict)
    storage: dict[tuple[str, str, str], StorageSeen] = field(default_factory=dict)
    requests: dict[str, RequestSeen] = field(default_factory=dict)
    writers: dict[tuple[str, str], list[tuple[str, SetBy]]] = field(default_factory=dict)  # (kind, name) -> [(host, by)]
    consentgate_apis: set[str] = field(default_factory=set)
    pending_requests: list[Any] = field(default_factory=list)
    pending_responses: list[Any] = field(default_factory=list)
    in_flight: int = 0
    last_activity: float = 0.0

    def __post_init__(self) -> None:
        self.context.expose_binding(BINDING, self._on_write)
        self.context.add_init_script(HOOKS_JS)
        self.context.on("request", self._on_request)
        self.context.on("requestfinished", self._on_request_done)
        self.context.on("requestfailed", self._on_request_done)
        self.context.on("response", self._on_response)
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()

    # -- events (Playwright delivers them while the main flow waits in a Playwright call)

    def _on_request(self, request: Any) -> None:
        self.in_flight += 1
        self.last_activity = time.monotonic()
        self.pending_requests.append(request)

    def _on_response(self, response: Any) -> None:
        self.pending_responses.append(response)

    def _on_request_done(self, request: Any) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.last_activity = time.monotonic()

    def _on_write(self, source: Any, kind: str, name: str, script: str, host: str, origin: str) -> None:
        page_url = urldefrag(source["frame"].url).url if source.get("frame") else ""
        by: SetBy = {"kind": "unknown", "url": None}
        if script:
            inline = urldefrag(script).url == page_url
            by = {"kind": "inline_script" if inline else "script", "url": _strip_query(script)}
        where = host if kind == "cookie" else origin
        self.writers.setdefault((kind, name), []).append((where, by))

    # -- waiting

    def settle(self) -> None:
        """Waits until no request has been in flight for QUIET_MS, at most wait_ms."""
        deadline = time.monotonic() + self.options.wait_ms / 1000
        self.last_activity = max(self.last_activity, time.monotonic())
        while time.monotonic() < deadline:
            if self.in_flight == 0 and time.monotonic() - self.last_activity >= QUIET_MS / 1000:
                return
            self.page.wait_for_timeout(50)

    # -- pages

    def visit(self, url: str, adopt_site: bool = False) -> tuple[PageVisit, list[str]]:
        """Loads one page, lets it settle, records what it left; returns the visit and its links.
        adopt_site: the site (first party) is where the page landed, after redirects (the start URL)."""
        visit: PageVisit = {"url": url, "status": None, "error": None, "banner": None,
                            "new_cookies": [], "new_storage": [], "third_party_hosts": []}
        try:
            response = self.page.goto(url, wait_until="load", timeout=self.options.timeout_ms)
            visit["status"] = response.status if response is not None else None
        except PlaywrightError as exc:
            visit["error"] = str(exc).splitlines()[0][:300]
            return visit, []
        if adopt_site:
            self.site = site_of(urlsplit(self.page.url).hostname or "")
        self.settle()
        visit["banner"] = self.banner_shown()[0]
        links = self._links()
        self.record(visit)
        return visit, links

    def record(self, visit: PageVisit) -> None:
        """Takes what appeared since the last record into the phase and the page's visit."""
        self._read_set_cookie_headers()
        jar = self.context.cookies()
        values = {c["value"] for c in jar}
        for cookie in jar:
            key = (cookie["name"], cookie["domain"], cookie["path"], cookie.get("partitionKey") or "")
            if key not in self.cookies:
                self.cookies[key] = self._cookie(cookie, visit["url"])
                visit["new_cookies"].append(f"{cookie['name']}@{cookie['domain']}")
        for area, key, origin in self._storage_items():
            if (area, key, origin) not in self.storage:
                self.storage[(area, key, origin)] = self._storage(area, key, origin, visit["url"])
                visit["new_storage"].append(f"{area}:{key}@{origin}")
        hosts = []
        for request in self.pending_requests:
            host = self._third_party_request(request, values, visit["url"])
            if host and host not in hosts:
                hosts.append(host)
        self.pending_requests.clear()
        visit["third_party_hosts"] = hosts

    # -- the banner

    def banner_shown(self) -> tuple[str | None, BannerKind | None]:
        """The banner on screen now: a recognised kind, "unknown", or None."""
        try:
            found = self.page.evaluate(DETECT_JS, [[kind.name, kind.shown] for kind in BANNERS])
        except PlaywrightError:
            return None, None  # navigated away meanwhile
        self.consentgate_apis.update(found["apis"])
        return found["banner"], next((kind for kind in BANNERS if kind.name == found["banner"]), None)

    def decide(self, kind: BannerKind, choice: str) -> None:
        """Clicks Accept or Reject on the settled page; the requests made before the click belong to the first visit."""
        selector = kind.accept if choice == "accept" else kind.reject
        self.pending_requests.clear()
        self.page.locator(selector).first.click(timeout=5000)
        self.settle()

    # -- helpers

    def _links(self) -> list[str]:
        try:
            return self.page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        except PlaywrightError:
            return []

    def _read_set_cookie_headers(self) -> None:
        responses, self.pending_responses[:] = list(self.pending_responses), []
        for response in responses:
            try:
                headers = response.headers_array()
            except PlaywrightError:
                continue
            host = urlsplit(response.url).hostname or ""
            for header in headers:
                if header["name"].lower() == "set-cookie":
                    for line in header["value"].split("\n"):  # some servers' headers arrive folded
                        name = line.split(";")[0].split("=")[0].strip()
                        by: SetBy = {"kind": "http_response", "url": _strip_query(response.url)}
                        self.writers.setdefault(("cookie", name), []).append((host, by))

    def _set_by(self, kind: str, name: str, where: str) -> SetBy:
        """The first recorded writer of this cookie (domain-matched) or storage key (same origin)."""
        for host, by in self.writers.get((kind, name), []):
            if kind != "cookie" and host == where:
                return by
            if kind == "cookie" and (host == where or host.endswith("." + where)):
                return by
        return {"kind": "unknown", "url": None}

    def _party(self, host: str) -> str:
        return "first" if site_of(host) == self.site else "third"

    def _cookie(self, cookie: dict[str, Any], page_url: str) -> CookieSeen:
        domain = cookie["domain"].lstrip(".")
        category = self.classifier.category(cookie["name"])
        expires = cookie.get("expires", -1)
        session = expires is None or expires < 0
        return {
            "name": cookie["name"], "domain": cookie["domain"], "path": cookie["path"],
            "party": self._party(domain),
            "expires": None if session else _iso(expires),
            "lifetime_days": None if session else round((expires - time.time()) / 86400, 1),
            "http_only": bool(cookie.get("httpOnly")), "secure": bool(cookie.get("secure")),
            "same_site": cookie.get("sameSite", ""),
            "set_by": self._set_by("cookie", cookie["name"], domain),
            "first_page": page_url,
            "category": category.name, "category_source": category.source,
            "vendor": category.vendor, "purpose": category.purpose,
        }

    def _storage_items(self) -> Iterator[tuple[str, str, str]]:
        for frame in self.page.frames:
            try:
                found = frame.evaluate(STORAGE_JS)
            except PlaywrightError:
                continue
            if not found["origin"].startswith("http"):
                continue
            for area, key in found["items"]:
                yield area, key, found["origin"]

    def _storage(self, area: str, key: str, origin: str, page_url: str) -> StorageSeen:
        category = self.classifier.category(key)
        return {
            "area": area, "key": key, "origin": origin, "party": self._party(urlsplit(origin).hostname or ""),
            "set_by": self._set_by(area, key, origin), "first_page": page_url,
            "category": category.name, "category_source": category.source,
            "vendor": category.vendor, "purpose": category.purpose,
        }

    def _third_party_request(self, request: Any, cookie_values: set[str], page_url: str) -> str | None:
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or self._party(parts.hostname) == "first":
            return None
        host = parts.hostname
        role = "consent_banner" if any(request.url.startswith(api + "/") for api in self.consentgate_apis) else "other"
        seen = self.requests.get(host)
        if seen is None:
            seen = self.requests[host] = {"host": host, "party": "third", "role": role, "types": [], "count": 0,
                                          "example": _strip_query(request.url), "identifier_params": [],
                                          "first_page": page_url}
        seen["count"] += 1
        if request.resource_type not in seen["types"]:
            seen["types"].append(request.resource_type)
        if role == "other":
            seen["role"] = "other"  # one tracking call is enough to make a host more than the banner
        params = identifier_params(request.url, cookie_values)
        if params:
            seen["identifier_params"] = sorted(set(seen["identifier_params"]) | set(params))
            seen["example"] = _strip_query(request.url)
        return host

    def phase(self, name: str, status: str, note: str, decision: Decision | None,
              pages: list[PageVisit]) -> Phase:
        return {"name": name, "title": PHASE_TITLES[name], "status": status, "note": note, "decision": decision,
                "pages": pages, "cookies": list(self.cookies.values()), "storage": list(self.storage.values()),
                "requests": list(self.requests.values())}


@contextmanager
def visitor(playwright: Any, options: CrawlOptions, user_agent: str | None) -> Iterator[Any]:
    """A first-time visitor: a new, empty browser profile that accepts third-party cookies, as a
    default desktop browser does (Chromium blocks them in its incognito-like contexts, which
    would hide a tracker's cookies)."""
    profile = Path(tempfile.mkdtemp(prefix="consentgate-scan-"))
    try:
        (profile / "Default").mkdir()
        (profile / "Default" / "Preferences").write_text(json.dumps(
            {"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False}}))
        # Chromium refuses to run as root with its sandbox (containers, CI): only then without it.
        args = CHROMIUM_ARGS + (["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            context = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=options.chromium, args=args, headless=True,
                user_agent=user_agent, viewport={"width": 1280, "height": 800}, locale="nl-NL")
        except PlaywrightError as exc:
            raise ScanFailed(f"Chromium did not start ({options.chromium}): {str(exc).splitlines()[0][:300]}; "
                             "install Debian's chromium (apt-get install chromium) or pass --chromium PATH") from None
        try:
            yield context
        finally:
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def same_origin_links(links: list[str], origin: str) -> list[str]:
    """The links worth visiting: same origin, http(s), not a download; fragments dropped."""
    found = []
    for link in links:
        url = urldefrag(link).url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != origin or SKIP_EXTENSIONS.search(parts.path):
            continue
        if url not in found:
            found.append(url)
    return found


@dataclass
class CrawlResult:
    origin: str
    browser: str
    banner: str | None
    phases: list[Phase]
    errors: list[dict[str, str | None]]


def crawl(options: CrawlOptions, classifier: Classifier) -> CrawlResult:
    """Runs the three phases. Raises ScanFailed when no verdict is possible."""
    browser, user_agent = browser_identity(options.chromium)
    errors: list[dict[str, str | None]] = []
    with sync_playwright() as playwright:
        # Phase 1: a first-time visitor who does not answer the banner.
        with visitor(playwright, options, user_agent) as context:
            recorder = PhaseRecorder(context, site_of(urlsplit(options.url).hostname or ""), classifier, options)
            start, links = recorder.visit(options.url, adopt_site=True)
            if start["error"] or (start["status"] or 0) >= 400:
                raise ScanFailed(f"the start page {options.url} did not load: "
                                 f"{start['error'] or 'HTTP ' + str(start['status'])}")
            final = urlsplit(recorder.page.url)
            origin = f"{final.scheme}://{final.netloc}"
            banner = start["banner"]
            banner_kind = next((kind for kind in BANNERS if kind.name == banner), None)
            pages, queue, visited = [start], same_origin_links(links, origin), [urldefrag(recorder.page.url).url]
            while queue and len(pages) <= options.pages:
                url = queue.pop(0)
                if url in visited:
                    continue
                visited.append(url)
                page, links = recorder.visit(url)
                pages.append(page)
                queue += [link for link in same_origin_links(links, origin) if link not in visited and link not in queue]
            phases = [recorder.phase("no_consent", "done", "", None, pages)]

        # Phases 2 and 3: new visitors who answer the banner on the start page, then browse the same pages.
        urls = [p["url"] for p in pages if not p["error"]]
        for choice, name in (("reject", "reject"), ("accept", "accept")):
            if banner_kind is None:
                why = "banner not recognised" if banner == "unknown" else "no consent banner shown"
                phases.append({"name": name, "title": PHASE_TITLES[name], "status": "skipped",
                               "note": f"{why}: phases after consent skipped", "decision": None, "pages": [],
                               "cookies": [], "storage": [], "requests": []})
                continue
            phases.append(_decided_phase(playwright, options, user_agent, classifier, recorder.site,
                                         banner_kind, choice, urls, errors))
    return CrawlResult(origin, browser, banner, phases, errors)


def _decided_phase(playwright: Any, options: CrawlOptions, user_agent: str | None, classifier: Classifier,
                   site: str, kind: BannerKind, choice: str, urls: list[str],
                   errors: list[dict[str, str | None]]) -> Phase:
    with visitor(playwright, options, user_agent) as context:
        recorder = PhaseRecorder(context, site, classifier, options)
        try:
            recorder.page.goto(urls[0], wait_until="load", timeout=options.timeout_ms)
            recorder.settle()
            recorder.decide(kind, choice)
        except PlaywrightError as exc:
            message = f"could not click {choice} in the {kind.name} banner: {str(exc).splitlines()[0][:200]}"
            errors.append({"phase": choice, "page": urls[0], "message": message})
            return recorder.phase(choice, "error", message, None, [])
        decision: Decision = {"banner": kind.name, "clicked": choice, "page": urls[0]}
        pages = []
        for url in urls:
            pages.append(recorder.visit(url)[0])
        return recorder.phase(choice, "done", "", decision, pages)
