"""What a thing the scan saw is: whose site, which category, whether a request carries an identifier."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gateway.scan.known_cookies import KnownCookie, known_cookie

# Second-level labels under which registrable domains sit one level deeper (example.co.uk).
# A small approximation of the Public Suffix List, which is not bundled.
_SECOND_LEVEL = {"co", "com", "org", "net", "gov", "ac", "edu", "ne", "or", "gv"}

# Query parameter names that carry a visitor, device or click id by convention.
IDENTIFIER_PARAMS = {
    "uid", "user_id", "userid", "cid", "client_id", "clientid", "vid", "visitor_id", "visitorid",
    "sid", "session_id", "sessionid", "anonymous_id", "anonymousid", "anon_id", "device_id", "deviceid",
    "_ga", "_gid", "fbp", "fbc", "_fbp", "_fbc", "gclid", "fbclid", "msclkid", "dclid", "ttclid",
    "ecid", "mid", "puid", "guid", "uuid",
}
_ID_VALUE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # UUID
    r"|[0-9a-f]{16,}"  # long hex
    r"|(GA\d\.\d\.)?\d{6,}\.\d{9,}"  # Google Analytics client id
    r"|fb\.\d\.\d{10,}\.\d+",  # Meta's _fbp
    re.I)


def site_of(host: str) -> str:
    """The registrable part of a host ("www.shop.example.co.uk" -> "example.co.uk"); an IP address or
    a single label is its own site. Ports never matter, as for browsers' cookies."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.split(".")
    keep = 3 if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2 else 2
    return ".".join(labels[-keep:])


def identifier_params(url: str, cookie_values: set[str] = frozenset()) -> list[str]:
    """Names of query parameters that look like they carry an identifier: a conventional name with a
    value of 6+ characters, a value shaped like an id, or the value of a cookie the browser holds."""
    found = []
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if (name.lower() in IDENTIFIER_PARAMS and len(value) >= 6) or _ID_VALUE.fullmatch(value) \
                or (len(value) >= 8 and value in cookie_values):
            found.append(name)
    return sorted(set(found))


@dataclass(frozen=True)
class Category:
    name: str | None  # necessary, preferences, analytics, marketing; None: unknown
    source: str  # config, known, none
    purpose: str = ""
    vendor: str = ""
    lifetime: str = ""

    @property
    def necessary(self) -> bool:
        return self.name == "necessary"


def _matches(pattern: str, name: str) -> bool:
    # The banner's rule (banner.js clearCookies): a trailing "*" is a prefix, anything else exact.
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def declared_cookies(site: Any) -> list[KnownCookie]:
    """A site's own declaration (gateway.config.SiteConfig): the detailed `[[sites.NAME.cookie]]` tables
    first, then the short `cookies = {category = [names]}` lists."""
    declared = []
    for cookie in site.cookie_details:
        texts = cookie.purpose
        purpose = texts.get("en") or texts.get("nl") or texts.get("") or next(iter(texts.values()), "")
        declared.append(KnownCookie(cookie.name, cookie.category, cookie.provider, purpose, cookie.lifetime))
    for category, names in site.cookies.items():
        declared += [KnownCookie(name, category, "", "", "") for name in names]
    return declared


class Classifier:
    """The site's declaration decides first, then the built-in list of well-known cookies."""

    def __init__(self, declared: list[KnownCookie] | None = None) -> None:
        self.declared = declared or []

    def category(self, name: str) -> Category:
        known = known_cookie(name)
        for entry in self.declared:
            if _matches(entry.pattern, name):
                return Category(entry.category, "config", entry.purpose or (known.purpose if known else ""),
                                entry.vendor or (known.vendor if known else ""),
                                entry.lifetime or (known.lifetime if known else ""))
        if known is not None:
            return Category(known.category, "known", known.purpose, known.vendor, known.lifetime)
        return Category(None, "none")
