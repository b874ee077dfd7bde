"""Custom event properties (`props` in a collect body): bounded, and screened for personal data.

At most MAX_PROPS string pairs, keys of at most MAX_KEY and values of at most MAX_VALUE
characters: more is a 400 that says the limit. A value the gateway can recognise as
personal data (an e-mail address, an IP address, a consent id or UUID) is dropped
from the hit, never stored or forwarded, and counted by the reason.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from gateway.errors import bad_request

MAX_PROPS = 30
MAX_KEY = 64
MAX_VALUE = 256
SCREEN_REASONS = ("email", "ip", "id")

_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+\.[^\s@<>()\[\],;:\"]{2,}")
# "at 203.0.113.7." ends a sentence with an address; "10.0.0.1.5" is a version, not one.
_IPV4 = re.compile(r"(?<!\d)(?<!\d\.)(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
# Starts and ends at a word boundary, so "Foo::Bar" and "std::string" hold no candidate.
_IPV6_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?![0-9A-Za-z])")
_ID = re.compile(r"(?<![0-9a-f])(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?![0-9a-f])",
                 re.IGNORECASE)


def personal_data_in(value: str) -> str:
    """Why `value` may not be kept ('email', 'ip', 'id'), or '' when it may."""
    if "@" in value and _EMAIL.search(value):
        return "email"
    if "." in value and any(_is_ip(m) for m in _IPV4.findall(value)):
        return "ip"
    if ":" in value and any(_is_ip(m) for m in _IPV6_CANDIDATE.findall(value)):
        return "ip"
    if len(value) >= 32 and _ID.search(value):
        return "id"
    return ""


def _is_ip(text: str) -> bool:
    if not any(c.isdigit() for c in text):
        return False  # "a::b" and "::" parse as IPv6, but no address a person has is written so
    # A candidate may end in a sentence's full stop or follow a label's colon ("ip:2001:db8::1."):
    # the address is also tried without them.
    for candidate in (text, text.rstrip("."), text.rstrip(".:"), text.strip(".:"), text.lstrip(".:").rstrip(".")):
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            continue
        return True
    return False


def parse_props(value: Any) -> tuple[dict[str, str], list[str]]:
    """The properties to keep and the reasons of the values dropped; raises a 400 for a body over the limits."""
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        raise bad_request(f"'props' must be an object of string keys and values, got {type(value).__name__}")
    if len(value) > MAX_PROPS:
        raise bad_request(f"'props' has {len(value)} properties; at most {MAX_PROPS} are accepted: send fewer")
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for key, item in value.items():
        if not key or len(key) > MAX_KEY:
            raise bad_request(f"a 'props' key must be 1 to {MAX_KEY} characters, got {len(key)}: {key[:40]!r}")
        if not isinstance(item, str):
            raise bad_request(f"'props.{key[:40]}' must be a string, got {type(item).__name__}: send strings only")
        if len(item) > MAX_VALUE:
            raise bad_request(f"'props.{key[:40]}' is longer than {MAX_VALUE} characters: send less")
        reason = personal_data_in(key) or personal_data_in(item)  # a key is stored as much as its value
        if reason:
            dropped.append(reason)
        else:
            kept[key] = item
    return kept, dropped
