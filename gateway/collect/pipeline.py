"""The collect pipeline: a hit flows through named steps, in the order of `CollectPipeline.steps`.

Each step returns the hit, raises `Dropped(reason)` (answered 202 with
`X-Consentgate-Result: dropped: <reason>` and counted), or raises a
`GatewayError` for input that is wrong (4xx). Nothing is written before the
`spool` step, and the full client IP leaves the hit in `truncate_ip`.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from gateway.bodies import optional_str
from gateway.clientip import truncate_ip
from gateway.collect.geo import CountryLookup
from gateway.collect.useragent import parse_user_agent
from gateway.config import GatewayConfig, SiteConfig
from gateway.errors import GatewayError, bad_request, unknown_site
from gateway.revocations import RevocationList
from gateway.tokens import ConsentToken, TokenInvalid, TokenSigner

MAX_URL = 2048
MAX_NAME = 120
MAX_UTM = 256
HIT_TYPES = ("pageview", "event")


class Dropped(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(slots=True)
class Hit:
    """One hit on its way through the pipeline. `client_ip` is the full address: memory only."""

    site_name: str
    body: dict[str, Any]
    origin: str
    cookie_token: str
    user_agent: str
    client_ip: str
    site: SiteConfig | None = None
    token: ConsentToken | None = None
    record: dict[str, Any] = field(default_factory=dict)
    stored: bool = False
    forwarded: bool = False
    commit_ticket: int = 0  # the spool lines' group-commit ticket: the 202 waits until it is on disk


def random_uuid() -> str:
    """A version-4 UUID string. uuid.uuid4() costs ~10 us a call (os.urandom plus the UUID object);
    ids only need to be unique, not secret, so Python's seeded PRNG is enough here."""
    n = random.getrandbits(128)
    n = (n & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC000 << 48) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class PageURL(NamedTuple):
    """The parts of a page address worth keeping: no user info, no query, no fragment."""

    clean: str  # scheme://host[:port]/path
    host: str
    path: str
    utm: tuple[str, str, str]  # utm_source, utm_medium, utm_campaign


MAX_CACHED_URL = 512


def parse_page_url(value: str) -> PageURL | None:
    """The page address split for storage, or None when it is not an http(s) URL with a host.
    Query strings and fragments can carry personal data (e-mail addresses, session ids):
    only the UTM parameters are kept."""
    # Pages and referrers repeat, and the parse is the dearest part of this step: short ones are cached.
    return _cached_page_url(value) if len(value) <= MAX_CACHED_URL else _split_page_url(value)


def _split_page_url(value: str) -> PageURL | None:
    try:
        parts = urlsplit(value)
        host = parts.hostname
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    utm = ("", "", "")
    if "utm_" in parts.query:
        found = dict(parse_qsl(parts.query))
        utm = tuple(found.get(k, "")[:MAX_UTM] for k in ("utm_source", "utm_medium", "utm_campaign"))  # type: ignore[assignment]
    path = parts.path or "/"
    return PageURL(f"{parts.scheme}://{host}" + (f":{port}" if port else "") + path, host, path, utm)


# Bounded in entries and bytes: keys of at most MAX_CACHED_URL characters, so at worst
# 8192 x (key + clean URL + host + path + UTM, each within 512 characters) ~ 15 MB (measured).
_cached_page_url = lru_cache(maxsize=8192)(_split_page_url)


Step = Callable[[Hit], Hit]


class CollectPipeline:
    def __init__(
        self,
        config: GatewayConfig,
        signer: TokenSigner,
        revocations: RevocationList,
        countries: CountryLookup,
        sinks: list[Callable[[Hit], None]],
    ) -> None:
        self.config = config
        self.signer = signer
        self.revocations = revocations
        self.countries = countries
        self.sinks = sinks  # what the spool step hands a finished hit to (store spool, vendor outbox)
        self.steps: list[tuple[str, Step]] = [
            ("site_origin", self.check_site_origin),  # also run before the body is read: 404/403 first
            ("parse", self.parse),
            ("consent", self.check_consent),
            ("bot", self.check_bot),
            ("enrich", self.enrich),
            ("truncate_ip", self.truncate_client_ip),
            ("spool", self.spool),
        ]

    def run(self, hit: Hit) -> Hit:
        for _name, step in self.steps:
            hit = step(hit)
        return hit

    def check_site_origin(self, hit: Hit) -> Hit:
        site = self.config.sites.get(hit.site_name)
        if site is None:
            raise unknown_site(hit.site_name)
        if hit.origin and hit.origin not in site.origins:
            raise GatewayError(403, "bad_origin", f"origin {hit.origin[:100]!r} is not configured for site {site.name!r}")
        hit.site = site
        return hit

    def parse(self, hit: Hit) -> Hit:
        body = hit.body
        hit_type = optional_str(body, "type", 16, "pageview")
        if hit_type not in HIT_TYPES:
            raise bad_request(f"'type' must be one of {', '.join(HIT_TYPES)}, got {hit_type[:20]!r}")
        name = optional_str(body, "name", MAX_NAME)
        if hit_type == "event" and not name:
            raise bad_request("an event needs a 'name'")
        url = optional_str(body, "url", MAX_URL)
        if not url:
            raise bad_request("'url' is missing: send the page's address")
        page = parse_page_url(url)
        if page is None:
            raise bad_request(f"'url' must be an http(s) URL, got {url[:80]!r}")
        referrer = parse_page_url(optional_str(body, "referrer", MAX_URL) or "-")
        token = optional_str(body, "consent", 1024)
        referrer_host = referrer.host.removeprefix("www.") if referrer else ""
        if referrer_host == page.host.removeprefix("www."):
            referrer, referrer_host = None, ""  # a visitor moving within the site is no source
        hit.record = {
            "type": hit_type,
            "name": name,
            "url": page.clean,
            "hostname": page.host,
            "path": page.path,
            "referrer": referrer.clean if referrer else "",
            "referrer_host": referrer_host,
            "utm_source": page.utm[0],
            "utm_medium": page.utm[1],
            "utm_campaign": page.utm[2],
        }
        hit.cookie_token = token or hit.cookie_token
        return hit

    def check_consent(self, hit: Hit) -> Hit:
        assert hit.site is not None
        if not hit.cookie_token:
            raise Dropped("no_consent")
        try:
            token = self.signer.loads(hit.cookie_token, hit.site.name, hit.site.policy_version)
        except TokenInvalid as exc:
            raise Dropped(exc.reason) from None
        if self.revocations.is_revoked(token.consent_id, token.issued_ms):
            raise Dropped("withdrawn")
        if not (token.grants("analytics") or token.grants("marketing")):
            raise Dropped("no_consent")
        hit.token = token
        return hit

    def check_bot(self, hit: Hit) -> Hit:
        info = parse_user_agent(hit.user_agent)
        if info.is_bot:
            raise Dropped("bot")
        hit.record.update(browser=info.browser, browser_version=info.browser_version, os=info.os, device=info.device)
        return hit

    def enrich(self, hit: Hit) -> Hit:
        hit.record["country"] = self.countries.country(hit.client_ip)
        return hit

    def truncate_client_ip(self, hit: Hit) -> Hit:
        hit.record["ip"] = truncate_ip(hit.client_ip)
        hit.client_ip = ""  # nothing after this step can see the full address
        return hit

    def spool(self, hit: Hit) -> Hit:
        assert hit.site is not None and hit.token is not None
        hit.record.update(
            kind="event",
            event_id=random_uuid(),
            site=hit.site.name,
            timestamp=round(time.time(), 3),
            visitor_id=hit.token.consent_id,
        )
        for sink in self.sinks:
            sink(hit)
        if not hit.stored and not hit.forwarded:
            raise Dropped("no_consent")
        return hit
