"""User agent -> browser, version, OS, device class, and whether it is a bot.

ua-parser 1.x with its Rust resolver (ua-parser[regex]) measured ~20 us per unseen
UA here against ~900 us for `user-agents` (research.md), so it is the parser. Only
its user-agent and OS domains are resolved (10 us): its device domain is the
largest regex set, and the device class (desktop / mobile / tablet) comes from three
patterns below. Its own cache is left out: an LRU cache around the whole function
makes repeat UAs cost well under a microsecond, and a flood of new UAs (what an
attacker buys) pays only the resolver.

Bots and tools are caught first, which also spares them the parse: the maintained
list of the `crawler-user-agents` package (1,500 patterns, case-sensitive as published),
plus the generic words and tools it misses (EXTRA_TOOLS), compiled once into one RE2
expression. RE2 matches in time linear in the UA whatever the patterns (no backtracking
on third-party regexes an attacker can aim a UA at); bench/bot_bench.py measured ~8 us per
unseen UA against ~200 us for the former ~30-name case-insensitive Python pattern.
"""
from __future__ import annotations

from functools import cache, lru_cache
from typing import NamedTuple

import re2
from crawleruseragents import CRAWLER_USER_AGENTS_DATA
from ua_parser import load_lazy_builtins
from ua_parser.regex import Resolver

# What the maintained list misses, any case (tests/test_bots.py): generic words of unknown bots, tools and
# monitors, the empty UA.
EXTRA_TOOLS = (r"bot\b|bot/|crawl|spider|lighthouse|pagespeed|undici|postmanruntime|insomnia|java/|monitor|"
               r"feedfetcher|^$")
RE2_MEMORY = 64 << 20  # the compiled program and its DFA cache; RE2's 8 MiB default cannot hold the list's DFA
# Markers of a tablet and of a phone, looked for anywhere in the UA, any case. Both in one RE2 set: one pass
# tells which occur (bench/ua_bench.py per unseen UA: 1.6 us, against 8 for two RE2 searches and 27-38 for
# Python's `re`, which the gateway used up to round 6; a flood of new User-Agents pays it on every hit).
# `\b` is ASCII in RE2, as in a UA.
TABLET_MARKERS = r"(?i)ipad|tablet|kindle|silk/|playbook|sm-t\d|tab\b"
MOBILE_MARKERS = r"(?i)mobi|iphone|ipod|android.*mobile|windows phone|blackberry|opera mini"
MAX_UA_LENGTH = 512  # real browsers send 100-300 characters


class UserAgentInfo(NamedTuple):  # a tuple: made for every unseen UA at half a frozen dataclass's cost
    browser: str
    browser_version: str
    os: str
    device: str  # desktop, mobile, tablet
    is_bot: bool


BOT = UserAgentInfo("", "", "", "", True)


@cache
def bot_pattern() -> "re2._Regexp":
    """The one compiled bot expression (~0.2 s to compile: once, at start)."""
    options = re2.Options()
    options.max_mem = RE2_MEMORY
    listed = "|".join(entry["pattern"] for entry in CRAWLER_USER_AGENTS_DATA)
    return re2.compile(f"(?i:{EXTRA_TOOLS})|{listed}", options)


@cache
def device_markers() -> "re2.Set":
    """TABLET_MARKERS (index 0) and MOBILE_MARKERS (1) as one RE2 set."""
    markers = re2.Set.SearchSet(re2.Options())
    for pattern in (TABLET_MARKERS, MOBILE_MARKERS):
        markers.Add(pattern)
    markers.Compile()
    return markers


def is_bot(ua: str) -> bool:
    return bot_pattern().search(ua) is not None


@cache
def _resolver() -> Resolver:
    # The Rust resolver takes the patterns' text; lazy matchers skip compiling them in Python's `re`
    # as well (0.6 s of every start, measured), and give the same results.
    return Resolver(load_lazy_builtins())


def browser_and_os(ua: str) -> tuple[str, str, str]:
    """(browser family, its major version, OS family) from the Rust resolver's two extractors.
    Called directly: Resolver.__call__ wraps them in Domain flag tests and three dataclasses, which cost
    13 of its 21 us per unseen UA (bench/ua_bench.py); a flood of new User-Agents pays that on every hit."""
    resolver = _resolver()
    agent, os_ = resolver.ua.extract(ua), resolver.os.extract(ua)
    return (agent.family if agent else "", (agent.major or "") if agent else "", os_.family if os_ else "")


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
    if is_bot(ua):
        return BOT
    browser, version, os_family = browser_and_os(ua)
    found = device_markers().Match(ua) or ()  # indices of the markers present: 0 tablet, 1 mobile
    if 0 in found or ("Android" in ua and "Mobile" not in ua):
        device = "tablet"
    elif 1 in found:
        device = "mobile"
    else:
        device = "desktop"
    return UserAgentInfo(browser=browser, browser_version=version, os=os_family, device=device, is_bot=False)
