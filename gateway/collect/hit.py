"""A collect request read and checked: every field bounded and typed before the pipeline sees it.

`parse_hit` answers bad input with a 400 (GatewayError) that says what to send; what
it returns is a `Hit` the pipeline's steps only pass on or drop. The full client IP
is in the hit in memory only: the pipeline's record step truncates it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from analytics.records import EventRecord
from gateway.bodies import optional_str
from gateway.collect.props import parse_props, personal_data_in
from gateway.config import SiteConfig
from gateway.errors import bad_request
from gateway.tokens import ConsentToken

MAX_URL = 2048
MAX_NAME = 120
MAX_UTM = 256
MAX_TOKEN = 1024
HIT_TYPES = ("pageview", "event")


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
    # Pages and referrers repeat, and the parse is the dearest part of a hit: short ones are cached.
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


@dataclass(slots=True)
class Hit:
    """One checked hit on its way through the pipeline. `client_ip` is the full address: memory only."""

    site: SiteConfig
    type: str
    name: str
    page: PageURL
    referrer: PageURL | None  # None: no referrer, or one within the site
    props: dict[str, str]
    screened: list[str]  # why property values were dropped (personal data), one reason each
    token_text: str  # from the body, else the cg_consent cookie
    user_agent: str  # cut to MAX_UA_LENGTH at the edge
    client_ip: str
    token: ConsentToken | None = None  # set by the consent step
    record: EventRecord | None = None  # set by the record step
    stored: bool = False
    forwarded: bool = False
    commit_ticket: int = 0  # the spool lines' group-commit ticket: the 202 waits until it is on disk


def parse_hit(site: SiteConfig, body: dict[str, Any], cookie_token: str, user_agent: str, client_ip: str) -> Hit:
    """The hit a collect body describes; a 400 naming the field for anything out of bounds."""
    hit_type = optional_str(body, "type", 16, "pageview")
    if hit_type not in HIT_TYPES:
        raise bad_request(f"'type' must be one of {', '.join(HIT_TYPES)}, got {hit_type[:20]!r}")
    name = optional_str(body, "name", MAX_NAME)
    if hit_type == "event" and not name:
        raise bad_request("an event needs a 'name'")
    if name and personal_data_in(name):
        raise bad_request("'name' looks like it holds an e-mail address, an IP address or an id: name the event "
                          "(\"signup\"), and put details without personal data in 'props'")
    url = optional_str(body, "url", MAX_URL)
    if not url:
        raise bad_request("'url' is missing: send the page's address")
    page = parse_page_url(url)
    if page is None:
        raise bad_request(f"'url' must be an http(s) URL, got {url[:80]!r}")
    referrer = parse_page_url(optional_str(body, "referrer", MAX_URL) or "-")
    if referrer is not None and referrer.host.removeprefix("www.") == page.host.removeprefix("www."):
        referrer = None  # a visitor moving within the site is no source
    props, screened = parse_props(body.get("props"))
    token = optional_str(body, "consent", MAX_TOKEN)
    return Hit(site, hit_type, name, page, referrer, props, screened, token or cookie_token, user_agent, client_ip)
