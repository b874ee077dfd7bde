"""Findings: what was there before consent or after a refusal and is not strictly necessary, and what to do."""
from __future__ import annotations

from gateway.scan.model import CHECKED_PHASES, CookieSeen, Finding, Phase, RequestSeen, SetBy, StorageSeen

_WHEN = {"no_consent": "before the visitor answered the banner", "reject": "after the visitor clicked Reject"}


def _category_text(category: str | None, source: str) -> str:
    if category is None:
        return "not declared in the site's config and not a cookie consentgate knows"
    return f"declared as {category} in the site's config" if source == "config" else f"a known {category} cookie"


def _store_advice(item: CookieSeen | StorageSeen, phase: str, what: str) -> str:
    by: SetBy = item["set_by"]
    category = item["category"] or "marketing"
    if item["party"] == "third":
        source = f"the response of {by['url']}" if by["url"] else "a third party"
        fix = (f"It comes with {source}, which the page loads before consent: load that party's tag (script, "
               f'pixel or frame) only after consent, as <script type="text/plain" data-category="{category}" '
               'data-src="...">.')
    elif by["kind"] == "http_response":
        fix = (f"The server response {by['url']} sets it. Set it only after consent (read the visitor's choice "
               "server-side), or stop setting it.")
    elif by["kind"] in ("script", "inline_script"):
        inline = by["kind"] == "inline_script"
        where = "an inline script of the page" if inline else f"the script {by['url']}"
        src = "" if inline else f' data-src="{by["url"]}"'
        fix = (f"It is written by {where}: let that script wait for consent, as "
               f'<script type="text/plain" data-category="{category}"{src}>.')
    else:
        fix = "Find the script that writes it (the browser's devtools show it) and let it wait for consent."
    if phase == "reject" and what == "key":
        fix += (" After a refusal it must be gone: the banner removes cookies, not storage keys, so the script that "
                "writes it must not run (or must remove it) once the visitor refused.")
    elif phase == "reject" and item["party"] == "third":
        fix += " After a refusal no page can remove another site's cookie: only not loading the tag prevents it."
    elif phase == "reject":
        listed = f'cookies = {{{item["category"] or "marketing"} = ["{item["name"]}"]}}'
        fix += (f" After a refusal it must be gone: list it in the site's config ({listed}) so the consentgate "
                "banner removes it on Reject.")
    if item["category"] is None and item["party"] == "first":
        fix += (" If it is strictly necessary (login, basket, security), declare it with category = \"necessary\" "
                "in the site's config; then it is no finding.")
    return fix


def _cookie_finding(phase: str, cookie: CookieSeen) -> Finding:
    lifetime = "a session cookie" if cookie["lifetime_days"] is None else f"kept {cookie['lifetime_days']:g} days"
    return {
        "id": f"{phase}/cookie/{cookie['name']}@{cookie['domain']}",
        "phase": phase, "kind": "cookie", "name": cookie["name"], "where": cookie["domain"],
        "party": cookie["party"], "category": cookie["category"], "category_source": cookie["category_source"],
        "first_page": cookie["first_page"], "set_by": cookie["set_by"],
        "problem": (f"{cookie['party'].capitalize()}-party cookie {cookie['name']} ({cookie['domain']}, {lifetime}) "
                    f"is set {_WHEN[phase]}; it is {_category_text(cookie['category'], cookie['category_source'])}."),
        "advice": _store_advice(cookie, phase, "cookie"),
    }


def _storage_finding(phase: str, item: StorageSeen) -> Finding:
    return {
        "id": f"{phase}/storage/{item['area']}:{item['key']}@{item['origin']}",
        "phase": phase, "kind": "storage", "name": item["key"], "where": item["origin"],
        "party": item["party"], "category": item["category"], "category_source": item["category_source"],
        "first_page": item["first_page"], "set_by": item["set_by"],
        "problem": (f"{item['area']} key {item['key']!r} ({item['origin']}) is written {_WHEN[phase]}; "
                    f"it is {_category_text(item['category'], item['category_source'])}. The consent rules "
                    "cover browser storage as they cover cookies."),
        "advice": _store_advice(item, phase, "key"),
    }


def _request_finding(phase: str, request: RequestSeen) -> Finding:
    params = ", ".join(request["identifier_params"])
    return {
        "id": f"{phase}/request/{request['host']}",
        "phase": phase, "kind": "request", "name": request["host"], "where": request["host"],
        "party": "third", "category": None, "category_source": "none",
        "first_page": request["first_page"], "set_by": None,
        "problem": (f"{request['host']} receives an identifier ({params}) {_WHEN[phase]}, "
                    f"e.g. {request['example']} ({request['count']} request(s): {', '.join(request['types'])})."),
        "advice": ("Load this party's tag only after consent: "
                   '<script type="text/plain" data-category="marketing" data-src="..."> (or analytics), '
                   "or send it nothing that identifies the visitor."),
    }


def findings(phases: list[Phase]) -> list[Finding]:
    """Everything present before consent or after a refusal that is not strictly necessary, phase by phase."""
    found: list[Finding] = []
    for phase in phases:
        if phase["name"] not in CHECKED_PHASES or phase["status"] != "done":
            continue
        found += [_cookie_finding(phase["name"], c) for c in phase["cookies"] if c["category"] != "necessary"]
        found += [_storage_finding(phase["name"], s) for s in phase["storage"] if s["category"] != "necessary"]
        found += [_request_finding(phase["name"], r) for r in phase["requests"]
                  if r["identifier_params"] and r["role"] != "consent_banner"]
    return found
