"""`--suggest-config`: the cookies and storage keys the scan saw, as `[[sites.NAME.cookie]]` tables.

A draft to paste into the site's config (gateway/config.py reads the detailed form), and from there
into the cookie declaration (/s/{site}/cookies). Every value a site controls goes through a TOML
string escape, also in comments, so a hostile cookie name or storage key cannot add config keys.
"""
from __future__ import annotations

import json
import re

from gateway.scan.known_cookies import known_cookie
from gateway.scan.model import Report

UNKNOWN_CATEGORY = "marketing"  # the strictest: it waits for consent until the owner knows better


def site_name_for(host: str) -> str:
    """A config site name from a host, for when none is given: "www.clientbox.nl" -> "clientbox"."""
    labels = [label for label in host.lower().split(".") if label not in ("www", "")]
    name = re.sub(r"[^a-z0-9_-]", "-", labels[-2] if len(labels) >= 2 else (labels[0] if labels else "site"))
    return name.strip("-") or "site"


def _toml(text: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \\uXXXX for control characters).
    return json.dumps(text)


def _lifetime(days: float | None, area: str | None = None) -> str:
    if area == "localStorage":
        return "until deleted (localStorage)"
    if area == "sessionStorage":
        return "until the tab is closed (sessionStorage)"
    if days is None:
        return "session"
    if days < 1:
        amount, unit = max(1, round(days * 24)), "hour"
    elif days < 60:
        amount, unit = round(days), "day"
    elif days < 730:
        amount, unit = round(days / 30.4), "month"
    else:
        amount, unit = round(days / 365), "year"
    return f"{amount} {unit}{'s' if amount != 1 else ''}"


def _declared_name(name: str) -> str:
    """The name to declare: a known prefix pattern (`_ga_*`) stands for all its instances."""
    known = known_cookie(name)
    if known and known.pattern.endswith("*") and not re.search(r"[*?\[]", known.pattern[:-1]):
        return known.pattern
    return name


def suggest_config(report: Report, site: str) -> str:
    """TOML for the site's config: one [[sites.SITE.cookie]] per cookie or storage key seen in any phase."""
    entries: dict[str, dict[str, str]] = {}
    unknown: list[str] = []
    for phase in report["phases"]:
        items = [(c, c["name"], _lifetime(c["lifetime_days"]), c["domain"].lstrip(".")) for c in phase["cookies"]]
        items += [(s, s["key"], _lifetime(None, s["area"]), s["origin"]) for s in phase["storage"]]
        for item, name, lifetime, where in items:
            known = known_cookie(name)
            if known is not None and known.vendor == "consentgate":
                continue  # the gateway declares its own consent cookie and storage key
            declared = _declared_name(name)
            if declared in entries:
                continue
            if item["category"] is None:
                unknown.append(declared)
            entries[declared] = {
                "name": declared,
                "category": item["category"] or UNKNOWN_CATEGORY,
                "purpose": item["purpose"] or "",
                "lifetime": lifetime,
                "party": item["party"],
                "provider": item["vendor"] or (where if item["party"] == "third" else ""),
            }
    lines = [
        f"# Drafted by `consentgate scan {report['url']}` on {report['started_at'][:10]}:",
        f"# {len(entries)} cookie(s) and storage key(s) seen. Put these tables after [sites.{site}] in the config,",
        "# then check every category and purpose: they are guesses from a list of well-known cookies.",
    ]
    if unknown:
        lines.append(f"# Not recognised, so {UNKNOWN_CATEGORY} until you know better (and a purpose to write): "
                     + ", ".join(_toml(n) for n in unknown))
    for entry in entries.values():
        lines.append("")
        if entry["name"] in unknown:
            lines.append("# CHECK: category and purpose")
        lines.append(f"[[sites.{site}.cookie]]")
        lines += [f"{key} = {_toml(value)}" for key, value in entry.items() if value or key == "purpose"]
    return "\n".join(lines) + "\n"
