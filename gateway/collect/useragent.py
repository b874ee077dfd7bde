"""User agent -> browser, version, OS, device class, and whether it is a bot.

ua-parser 1.x with its Rust resolver (ua-parser[regex]) measured ~20 us per unseen
UA here against ~900 us for `user-agents` (research.md), so it is the parser. Only
its user-agent and OS domains are resolved (10 us): its device domain is the
largest regex set, and the device class (desktop / mobile / tablet) comes from three
patterns below. Its own cache is left out: an LRU cache around the whole function
makes repeat UAs cost well under a microsecond, and a flood of new UAs (what an
attacker buys) pays only the resolver. Bots and tools (Googlebot, curl,
HeadlessChrome, python-requests, ...) are caught by one compiled pattern first,
which also spares them the parse.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

from ua_parser import Domain, load_builtins
from ua_parser.regex import Resolver

TOOL_PATTERN = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|headless|phantomjs|lighthouse|pagespeed|curl/|wget/|"
    r"python-requests|python-urllib|aiohttp|httpx|go-http-client|okhttp|axios/|node-fetch|"
    r"undici|postmanruntime|insomnia|java/|apache-httpclient|libwww-perl|scrapy|"
    r"facebookexternalhit|preview|monitor|uptime|pingdom|feedfetcher|mediapartners|google-inspectiontool|"
    r"whatsapp|embedly|^$",
    re.IGNORECASE,
)
TABLET_PATTERN = re.compile(r"ipad|tablet|kindle|silk/|playbook|sm-t\d|tab\b", re.IGNORECASE)
MOBILE_PATTERN = re.compile(r"mobi|iphone|ipod|android.*mobile|windows phone|blackberry|opera mini", re.IGNORECASE)
MAX_UA_LENGTH = 512  # real browsers send 100-300 characters


@dataclass(frozen=True)
class UserAgentInfo:
    browser: str
    browser_version: str
    os: str
    device: str  # desktop, mobile, tablet
    is_bot: bool


BOT = UserAgentInfo("", "", "", "", True)


@cache
def _resolver() -> Resolver:
    return Resolver(load_builtins())  # loading ua-parser's regexes takes ~0.3 s: once, at start


def edge_user_agent(header: str) -> str:
    """The User-Agent as the gateway keeps it anywhere (cache, spool, log, vendor outbox): at most
    MAX_UA_LENGTH characters. Cut where the header is read, before anything holds on to it."""
    return header[:MAX_UA_LENGTH]


def parse_user_agent(ua: str) -> UserAgentInfo:
    return _parse_user_agent(edge_user_agent(ua))  # the cache key is the cut form, never the raw header


# Bounded in entries and bytes: keys are at most 512 characters, so the worst case (8192 distinct
# 512-character ASCII keys) is ~8192 x (561 B key + 100 B link) ~ 5.5 MB; the values are mostly shared
# short strings (browser and OS names), measured at ~7 MB in all (tests/test_edge_input.py).
@lru_cache(maxsize=8192)
def _parse_user_agent(ua: str) -> UserAgentInfo:
    if TOOL_PATTERN.search(ua):
        return BOT
    result = _resolver()(ua, Domain.USER_AGENT | Domain.OS)
    agent, os_ = result.user_agent, result.os
    if TABLET_PATTERN.search(ua) or ("Android" in ua and "Mobile" not in ua):
        device = "tablet"
    elif MOBILE_PATTERN.search(ua):
        device = "mobile"
    else:
        device = "desktop"
    return UserAgentInfo(
        browser=agent.family if agent else "",
        browser_version=agent.major or "" if agent else "",
        os=os_.family if os_ else "",
        device=device,
        is_bot=False,
    )
