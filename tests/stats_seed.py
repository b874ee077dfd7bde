"""Known past hits for the stats tests, written into a gateway's store before it starts.

Hits sent over HTTP all get "now" as their time; visits, days and timezones need hits
at chosen times, so tests write them with the store's own insert (in a subprocess:
chDB lets one process open one store) and then start the real gateway on that store.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import ROOT

SEED_SCRIPT = """
import json, sys
from analytics.records import ConsentRecord, EventRecord
from analytics.store import Store
from gateway.config import load_config
config = load_config(sys.argv[1])
store = Store(config.store, config.retention_days)
store.migrate()
data = json.load(sys.stdin)
for kind, record in (("event", EventRecord), ("consent", ConsentRecord)):
    store.insert([record(**r) for r in data[kind]])
"""


@dataclass(frozen=True)
class Hit:
    site: str
    visitor: str
    at: datetime  # aware
    path: str = "/"
    type: str = "pageview"
    name: str = ""
    referrer_host: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    browser: str = "Chrome"
    os: str = "Windows"
    device: str = "desktop"
    country: str = "NL"
    props: tuple[tuple[str, str], ...] = ()  # custom event properties (events.props)

    def record(self) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()), "site": self.site, "timestamp": self.at.timestamp(), "type": self.type,
            "name": self.name, "visitor_id": self.visitor, "url": f"https://www.example.com{self.path}",
            "hostname": "www.example.com", "path": self.path,
            "referrer": f"https://{self.referrer_host}/" if self.referrer_host else "",
            "referrer_host": self.referrer_host, "utm_source": self.utm_source, "utm_medium": self.utm_medium,
            "utm_campaign": self.utm_campaign, "browser": self.browser, "browser_version": "120", "os": self.os,
            "device": self.device, "country": self.country, "ip": "203.0.113.0", "props": dict(self.props),
        }


@dataclass(frozen=True)
class Decision:
    site: str
    consent_id: str
    at: datetime
    method: str  # accept_all / reject_all / custom / gpc / withdraw
    analytics: bool = False
    marketing: bool = False
    preferences: bool = False

    def record(self) -> dict[str, Any]:
        return {
            "record_id": str(uuid.uuid4()), "site": self.site, "timestamp": self.at.timestamp(), "consent_id": self.consent_id,
            "action": "withdraw" if self.method == "withdraw" else "grant", "method": self.method,
            "preferences": int(self.preferences), "analytics": int(self.analytics), "marketing": int(self.marketing),
            "policy_version": 1, "language": "en", "ip": "203.0.113.0", "browser": "Chrome", "os": "Windows",
            "gpc": int(self.method == "gpc"), "banner_version": "", "page": "",
        }


def seed(config_path: Path, hits: list[Hit], decisions: list[Decision] = ()) -> None:
    payload = {"event": [h.record() for h in hits], "consent": [d.record() for d in decisions]}
    out = subprocess.run([sys.executable, "-c", SEED_SCRIPT, str(config_path)], input=json.dumps(payload),
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# ---- plain-Python references over seeded hits (the definitions of docs/stats.md) -------------------

HIT_FILTER_FIELD = {"page": "path", "event": "name", "country": "country", "browser": "browser", "os": "os",
                    "device": "device"}
CHANNEL_OF_HOST = {"google.com": "search", "bing.com": "search", "facebook.com": "social"}


def visits_of(hits: list[Hit]) -> list[list[Hit]]:
    """Each visitor's hits in time order, cut where two hits are more than 30 minutes apart."""
    by_visitor: dict[str, list[Hit]] = {}
    for h in hits:
        by_visitor.setdefault(h.visitor, []).append(h)
    visits = []
    for own in by_visitor.values():
        own.sort(key=lambda h: h.at)
        current = [own[0]]
        for prev, h in zip(own, own[1:]):
            if (h.at - prev.at).total_seconds() > 30 * 60:
                visits.append(current)
                current = []
            current.append(h)
        visits.append(current)
    return visits


def channel_of(first: Hit) -> str:
    if first.utm_medium == "email":
        return "email"
    if not first.referrer_host:
        return "direct"
    return CHANNEL_OF_HOST.get(first.referrer_host, "referral")


def hit_passes(h: Hit, filters: dict[str, str]) -> bool:
    props = dict(h.props)
    return (all(getattr(h, HIT_FILTER_FIELD[k]) == v for k, v in filters.items() if k in HIT_FILTER_FIELD)
            and all(props.get(k[len("prop."):], "") == v for k, v in filters.items() if k.startswith("prop.")))


def visit_passes(visit: list[Hit], filters: dict[str, str]) -> bool:
    """A visit passes when its first hit has the visit filters' values and one of its hits the hit filters'."""
    first = visit[0]
    attrs = {"referrer_host": first.referrer_host, "source": channel_of(first), "utm_source": first.utm_source,
             "utm_medium": first.utm_medium, "utm_campaign": first.utm_campaign}
    return (all(attrs[k] == v for k, v in filters.items() if k in attrs)
            and any(hit_passes(h, filters) for h in visit))
